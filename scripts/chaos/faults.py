"""The chaos monkey: at random moments it SIGKILLs and restarts a product process, restarts the run's
private Redis or RabbitMQ, drops every PostgreSQL connection at the proxy, or arms a sandbox fault
(providers.md §4.5; Horizon, Trustless Work, AirTM and its webhooks). Which, and how often, is the fault
mix (``--faults``, ``--fault-interval``). The one instance serves crypto and AirTM lanes alike, so every
kill hits both; a kill waits for a provider switch in progress (``Rig.lock``) and restarts the process in
the mode then in force.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from scripts.chaos.rig import Rig, say

PROCESSES = ("web", "worker", "chain", "monitor", "scheduler", "webhooks")
DEFAULT_FAULTS = {"kill_web": 3, "kill_worker": 3, "kill_chain": 3, "kill_monitor": 2, "kill_scheduler": 2,
                  "kill_webhooks": 2, "restart_redis": 1, "restart_rabbitmq": 1, "drop_postgres": 2,
                  "sandbox": 4}
SUBMIT = {"service": "horizon", "method": "POST", "path": "/transactions"}
#: Trustless Work's send-transaction (T8), where signed TW envelopes go by default (TRUSTLESS_SUBMIT_VIA).
T8 = {"service": "trustless", "method": "POST", "path": "/helper/send-transaction"}
#: Sandbox fault rules every real client must survive (providers.md §4.5), each armed for a few firings.
SANDBOX_FAULTS: dict[str, dict[str, Any]] = {
    "horizon_apply_then_drop": {**SUBMIT, "action": "apply_then_drop"},
    "horizon_apply_then_504": {**SUBMIT, "action": "apply_then_drop", "params": {"status": 504, "ms": 200}},
    "horizon_apply_then_error": {**SUBMIT, "action": "apply_then_error"},
    "horizon_bad_seq": {**SUBMIT, "action": "bad_seq"},
    "horizon_503": {**SUBMIT, "action": "status", "params": {"status": 503}, "times": 2},
    "horizon_slow": {"service": "horizon", "action": "delay", "params": {"ms": 2500}, "times": 5},
    "horizon_timeout": {**SUBMIT, "action": "timeout"},
    # within STELLAR_MAX_FEE_STROOPS and under Trustless Work's 100 000-stroop envelopes: in instant mode a
    # surge nobody can pay never ends (no ledger closes), which the real network's 5 s ledgers never do
    "horizon_surge": {"service": "horizon", "action": "surge", "params": {"stroops": 5_000, "ledgers": 1,
                                                                          "seconds": 10}},
    "horizon_stream_disconnect": {"service": "horizon", "action": "stream_disconnect"},
    "contract_reject": {"service": "horizon", "action": "contract_reject"},
    "trustless_503": {"service": "trustless", "method": "POST", "action": "status", "params": {"status": 503},
                      "times": 2},
    "trustless_429": {"service": "trustless", "method": "POST", "action": "status",
                      "params": {"status": 429, "retry_after": 1}, "times": 2},
    "trustless_apply_then_error": {**T8, "action": "apply_then_error"},
    # TRUSTLESS_SUBMIT_VIA=trustless relays every Trustless Work envelope through T8: the relay's own faults
    "trustless_apply_then_drop": {**T8, "action": "apply_then_drop"},
    "trustless_timeout": {**T8, "action": "timeout"},
    "trustless_bad_seq": {**T8, "action": "bad_seq"},
    "trustless_contract_reject": {**T8, "action": "contract_reject"},
    "trustless_indexer_lag": {"service": "trustless", "action": "indexer_lag", "params": {"seconds": 1},
                              "times": 3},
    "friendbot_503": {"service": "friendbot", "action": "status", "params": {"status": 503}},
    "airtm_503": {"service": "airtm", "method": "POST", "action": "status", "params": {"status": 503}},
    "airtm_apply_then_drop": {"service": "airtm", "method": "POST", "path": "/payins", "action": "apply_then_drop"},
    "webhook_duplicate": {"service": "webhooks", "action": "webhook_duplicate", "times": 2},
    "webhook_reorder": {"service": "webhooks", "action": "webhook_reorder", "params": {"after": 1}},
    "webhook_drop": {"service": "webhooks", "action": "webhook_drop"},
}


def parse_weights(text: str, defaults: dict[str, int], known: Any, what: str = "fault") -> dict[str, int]:
    """``name=weight,…`` over ``known`` names (each a ``what``); names left out get 0; empty text keeps
    the defaults."""
    if not text:
        return dict(defaults)
    weights = dict.fromkeys(known, 0)
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in weights:
            raise ValueError(f"unknown {what} {name!r}; known: {', '.join(known)}")
        weights[name.strip()] = int(weight or 1)
    return weights


@dataclass
class Monkey:
    rig: Rig
    rng: random.Random
    weights: dict[str, int]
    sandbox_weights: dict[str, int]
    interval: float  # mean seconds between two faults
    done: Counter[str] = field(default_factory=Counter)
    died_on_their_own: Counter[str] = field(default_factory=Counter)
    timeline: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(n for name, n in self.done.items() if name.startswith("kill_"))

    async def run(self, stop: asyncio.Event, session: aiohttp.ClientSession) -> None:
        names = [n for n, w in self.weights.items() if w > 0] if self.interval > 0 else []
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.rng.expovariate(1 / self.interval) if names else 1)
                break
            except TimeoutError:
                pass
            await asyncio.to_thread(self.revive)
            if not names:
                continue
            name = self.rng.choices(names, weights=[self.weights[n] for n in names])[0]
            try:
                detail = await self.act(name, session)
            except Exception as error:  # the monkey reports its own trouble and goes on
                detail = f"failed: {type(error).__name__} {error}"
            self.done[name] += 1
            self.timeline.append(f"{time.strftime('%H:%M:%S')} {name} {detail}")
            with (self.rig.directory / "faults.log").open("a") as log:
                log.write(self.timeline[-1] + "\n")
        await asyncio.to_thread(self.revive)

    def revive(self) -> None:
        try:
            revived = self.rig.revive()
        except Exception as error:  # a service that does not come back is tried again next time
            say(f"could not start a service again: {type(error).__name__} {error}")
            return
        for name in revived:
            self.died_on_their_own[name] += 1
            child = self.rig.processes.get(name)
            say(f"{name} was not running; started it again" + (f":\n{child.tail(15)}" if child else ""))

    async def act(self, name: str, session: aiohttp.ClientSession) -> str:
        if name.startswith("kill_"):
            process = name.removeprefix("kill_")
            pause = self.rng.choice((0.0, 0.0, 0.5, 2.0))
            await asyncio.to_thread(self.rig.restart, process, signal.SIGKILL, pause)
            return f"{process} SIGKILLed, restarted after {pause:.1f} s ({self.rig.provider} mode)"
        if name == "restart_redis":
            took = await asyncio.to_thread(self.rig.redis.restart)
            return f"up again in {took:.1f} s"
        if name == "restart_rabbitmq":
            hard = self.rng.random() < 0.5
            took = await asyncio.to_thread(self.rig.rabbitmq.restart, hard)
            return f"{'SIGKILL' if hard else 'SIGTERM'}, up again in {took:.1f} s"
        if name == "drop_postgres":
            self.rig.proxy.drop()
            return "every proxied connection reset"
        if name == "sandbox":
            names = [n for n, w in self.sandbox_weights.items() if w > 0]
            if not names:
                return "no sandbox fault in the mix"
            fault = self.rng.choices(names, weights=[self.sandbox_weights[n] for n in names])[0]
            rule = {"times": 1, **SANDBOX_FAULTS[fault]}
            async with session.post(f"{self.rig.sandbox_url}/_sandbox/faults", json=rule) as reply:
                if reply.status >= 400:
                    return f"{fault} refused: {reply.status} {await reply.text()}"
            self.done[f"sandbox:{fault}"] += 1
            return fault
        raise ValueError(name)


async def fault_firings(session: aiohttp.ClientSession, sandbox_url: str) -> int:
    async with session.get(f"{sandbox_url}/_sandbox/faults") as reply:
        return len((await reply.json())["log"])


async def clear_faults(session: aiohttp.ClientSession, sandbox_url: str) -> None:
    async with session.delete(f"{sandbox_url}/_sandbox/faults") as reply:
        await reply.read()
