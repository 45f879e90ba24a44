"""Fault rules: which request misbehaves, how, how often; and the generic ways to misbehave.

A rule names a service, an optional method, a path glob, an optional `when` (body fields that must
equal), an action with params, how many times it fires (`times`, 0 = until cleared) and a probability.
Each simulator asks `match` with the request it is handling and interprets the action itself; the
actions every service shares (`delay`, `status`, `timeout`) have helpers here.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

#: The actions each service understands; other parts may `allow` more.
ACTIONS: dict[str, set[str]] = {
    "horizon": {
        "delay",
        "status",
        "timeout",
        "apply_then_drop",
        "apply_then_error",
        "bad_seq",
        "surge",
        "drain_xlm",
        "contract_reject",
        "stream_disconnect",
        "before_history",
    },
    "friendbot": {"delay", "status", "timeout", "apply_then_drop", "apply_then_error"},
    "trustless": {
        "delay",
        "status",
        "timeout",
        "apply_then_drop",
        "apply_then_error",
        "bad_seq",
        "drain_xlm",
        "contract_reject",
        "indexer_lag",
        "unbounded_envelopes",
    },
    "airtm": {"delay", "status", "timeout", "apply_then_drop", "apply_then_error"},
    "webhooks": {
        "delay",
        "status",
        "timeout",
        "webhook_duplicate",
        "webhook_reorder",
        "webhook_drop",
        "webhook_bad_signature",
        "webhook_stale",
    },
}

#: Actions that answer before anything is applied, shared by every simulator.
GENERIC_ACTIONS = frozenset({"delay", "status", "timeout"})

_FIELDS = {"id", "service", "method", "path", "when", "action", "params", "times", "probability"}


@dataclass
class FaultRule:
    """One injected misbehaviour; `fired` counts how often it has taken effect."""

    id: str
    service: str
    method: str | None
    path: str
    when: dict[str, Any] | None
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    times: int = 1
    probability: float = 1.0
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times > 0 and self.fired >= self.times

    def applies_to(self, service: str, method: str, path: str, body: Mapping[str, Any] | None) -> bool:
        """Whether this rule covers the request (ignoring times and probability)."""
        if self.service != service or (self.method and self.method.upper() != method.upper()):
            return False
        if not fnmatch.fnmatchcase(_relative(service, path), _relative(service, self.path)):
            return False
        if self.when:
            if body is None:
                return False
            return all(body.get(key) == value for key, value in self.when.items())
        return True


class Faults:
    """The rule list and the firing log, shared by every simulator in the process."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._listeners: list[Callable[[FaultRule], None]] = []
        self.log: list[dict[str, Any]] = []

    def allow(self, service: str, *actions: str) -> None:
        """Let a simulator declare extra actions it interprets."""
        ACTIONS.setdefault(service, set()).update(actions)

    def on_add(self, listener: Callable[[FaultRule], None]) -> None:
        """Call `listener` with each new rule (for actions that take effect at once, e.g. `surge`)."""
        self._listeners.append(listener)

    def add(self, spec: Mapping[str, Any]) -> FaultRule:
        """Validate and store a rule; raises ValueError with a message fit for a `400`."""
        rule = _parse(spec, f"flt_{next(self._ids)}")
        self._rules.append(rule)
        for listener in self._listeners:
            listener(rule)
        return rule

    def clear(self) -> None:
        self._rules.clear()

    def reset(self) -> None:
        """Clear rules and the log."""
        self._rules.clear()
        self.log.clear()

    def list(self) -> list[dict[str, Any]]:
        return [asdict(rule) for rule in self._rules]

    def match(
        self,
        service: str,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        actions: Collection[str] | None = None,
        accept: Callable[[FaultRule], bool] | None = None,
    ) -> FaultRule | None:
        """Return the first live rule covering the request, consuming one firing and logging it.

        `actions` restricts the search to what the caller can interpret at this point; `accept` is an
        extra condition the caller checks on the rule (e.g. a cursor older than the rule's mark).
        """
        for rule in self._rules:
            if rule.exhausted or (actions is not None and rule.action not in actions):
                continue
            if not rule.applies_to(service, method, path, body):
                continue
            if accept is not None and not accept(rule):
                continue
            if rule.probability < 1.0 and random.random() >= rule.probability:
                continue
            self.fire(rule, {"method": method, "path": path, "body": _summary(body)})
            return rule
        return None

    def active(self, service: str, action: str) -> list[FaultRule]:
        """Live rules of one action, without consuming them."""
        return [r for r in self._rules if r.service == service and r.action == action and not r.exhausted]

    def rules_of(self, service: str) -> list[FaultRule]:
        """The live rules of one service."""
        return [r for r in self._rules if r.service == service and not r.exhausted]

    def rules_for(self, service: str, action: str) -> list[FaultRule]:
        """Every rule of one action, spent or not (for standing conditions such as `indexer_lag`)."""
        return [r for r in self._rules if r.service == service and r.action == action]

    def fire(self, rule: FaultRule, request: Mapping[str, Any], count: bool = True) -> None:
        """Log one firing of `rule` (and count it toward `times` unless `count` is false)."""
        rule.fired += count
        self.log.append(
            {
                "rule": rule.id,
                "service": rule.service,
                "action": rule.action,
                "params": rule.params,
                "at": time.time(),
                "request": dict(request),
            }
        )


#: Service prefixes: rule and request paths match with or without them ("/transactions" or
#: "/horizon/transactions").
PREFIXES = {"horizon": "/horizon", "trustless": "/trustless", "friendbot": "/friendbot", "airtm": "/airtm/v2"}


def _relative(service: str, path: str) -> str:
    prefix = PREFIXES.get(service)
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix) :] or "/"
    return path


def _parse(spec: Mapping[str, Any], default_id: str) -> FaultRule:
    if not isinstance(spec, Mapping):
        raise ValueError("a fault rule is a JSON object")
    unknown = set(spec) - _FIELDS
    if unknown:
        raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
    service, action = spec.get("service"), spec.get("action")
    if service not in ACTIONS:
        raise ValueError(f"service must be one of {sorted(ACTIONS)}")
    if action not in ACTIONS[service]:
        raise ValueError(f"action for {service} must be one of {sorted(ACTIONS[service])}")
    params, when = spec.get("params") or {}, spec.get("when")
    if not isinstance(params, dict) or (when is not None and not isinstance(when, dict)):
        raise ValueError("params and when must be objects")
    times, probability = spec.get("times", 1), spec.get("probability", 1.0)
    if not isinstance(times, int) or isinstance(times, bool) or times < 0:
        raise ValueError("times must be an integer >= 0 (0 = until cleared)")
    if not isinstance(probability, int | float) or not 0 < probability <= 1:
        raise ValueError("probability must be in (0, 1]")
    method = spec.get("method")
    return FaultRule(
        id=str(spec.get("id") or default_id),
        service=service,
        method=method.upper() if method else None,
        path=str(spec.get("path") or "*"),
        when=when,
        action=action,
        params=params,
        times=times,
        probability=float(probability),
    )


#: Body fields the log keeps whole: a signed envelope relayed through TW's T8, so that a test can hash the
#: very envelope a fault met (Horizon's submissions are logged by their decoded `hash`).
WHOLE = frozenset({"signedXdr"})


def _summary(body: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Keep the log readable: long values are cut, but for the envelopes named in `WHOLE`."""
    if body is None:
        return None
    return {k: (v[:80] + "…" if isinstance(v, str) and len(v) > 80 and k not in WHOLE else v)
            for k, v in body.items()}


async def drop_connection(request: web.Request) -> web.Response:
    """Close the client's connection without an answer (the handler returns the unused response)."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


async def apply_generic(
    rule: FaultRule,
    request: web.Request,
    shaped: Callable[[int, str], web.Response],
) -> web.StreamResponse | None:
    """Carry out `delay`, `status` or `timeout`; None means "now answer normally".

    `shaped(status, detail)` builds the service's own error body (Horizon problem JSON, TW
    `{status, message}`, AirTM `{code, message}`), so clients parse the fault as they would the real one.
    """
    params = rule.params
    if rule.action == "delay":
        await asyncio.sleep(float(params.get("ms", 1000)) / 1000)
        return None
    if rule.action == "status":
        status = int(params.get("status", 503))
        response = shaped(status, str(params.get("message", "injected fault")))
        if status == 429 or "retry_after" in params:
            response.headers["Retry-After"] = str(params.get("retry_after", 1))
        return response
    if rule.action == "timeout":
        await asyncio.sleep(float(params.get("ms", 35_000)) / 1000)
        return await drop_connection(request)
    return None


async def answer_after_apply(
    rule: FaultRule,
    request: web.Request,
    shaped: Callable[[int, str], web.Response],
    error_detail: str = "internal error",
) -> web.StreamResponse | None:
    """Carry out `apply_then_drop` / `apply_then_error` once the change is applied.

    `apply_then_drop` closes the connection, or with `status` (e.g. 504) answers it after `ms`.
    """
    params = rule.params
    if rule.action == "apply_then_drop":
        await asyncio.sleep(float(params.get("ms", 0)) / 1000)
        if "status" in params:
            return shaped(int(params["status"]), str(params.get("message", error_detail)))
        return await drop_connection(request)
    if rule.action == "apply_then_error":
        return shaped(int(params.get("status", 500)), str(params.get("message", error_detail)))
    return None
