"""AirTM's webhooks as Svix sends them: signed, retried on Svix's schedule, logged, and faultable.

Each status change AirTM announces becomes one message with a fixed `svix-id` and body; every attempt
(first, retry, duplicate, manual redelivery) signs that same body afresh with the attempt's timestamp.
Retries follow `SVIX_SCHEDULE_SECONDS` times `webhookTimeScale` on the sandbox clock. Deliveries go out
one at a time in due order, so without faults or failures the receiver sees messages in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from scripts.sandbox.airtm_settings import SVIX_SCHEDULE_SECONDS, AirtmSettings
from scripts.sandbox.clock import Clock
from scripts.sandbox.faults import FaultRule, Faults

log = logging.getLogger(__name__)

#: Svix gives the endpoint 15 s to answer with a 2xx.
DELIVERY_TIMEOUT_SECONDS = 15.0

#: How old a `webhook_stale` timestamp is: twice the 5-minute tolerance of receivers.
STALE_SECONDS = 600

#: The delivery loop wakes at least this often, so a clock advance makes retries due promptly.
POLL_SECONDS = 0.02

_ALPHANUMERIC = string.ascii_letters + string.digits


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Svix's `v1` signature: base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed by the secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Message:
    """One webhook message and its delivery history (the delivery log entry)."""

    id: str
    type: str
    body: bytes
    summary: dict[str, Any]
    created_at: float
    #: pending | held | delivered | failed (schedule exhausted) | dropped | no_endpoint
    status: str = "pending"
    next_attempt: int = 0
    next_at: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    hold_left: int = 0
    hold_until: float = 0.0
    reordered: bool = False

    def to_state(self) -> dict[str, Any]:
        """Every field, the signed body as base64 (the same bytes are signed again after a restart)."""
        state = asdict(self)
        state["body"] = base64.b64encode(self.body).decode()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Message:
        return cls(**(state | {"body": base64.b64decode(state["body"])}))

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "createdAt": _iso(self.created_at),
            "data": self.summary,
            "attempts": list(self.attempts),
        }
        if self.status == "pending":
            out["nextAttemptAt"] = _iso(self.next_at)
        return out


class WebhookDeliverer:
    """The message queue, the delivery loop and the log."""

    def __init__(self, settings: AirtmSettings, clock: Clock, faults: Faults) -> None:
        self.settings = settings
        self.clock = clock
        self.faults = faults
        self.messages: dict[str, Message] = {}
        #: Called after each delivery attempt, so a restart neither forgets nor re-counts what was sent.
        self.on_change: Callable[[], None] = lambda: None
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """Forget every message; one already picked for delivery is not sent either."""
        for message in self.messages.values():
            message.status = "discarded"
        self.messages = {}

    def state(self) -> list[dict[str, Any]]:
        return [message.to_json() for message in self.messages.values()]

    def to_state(self) -> list[dict[str, Any]]:
        return [message.to_state() for message in self.messages.values()]

    def from_state(self, state: list[dict[str, Any]]) -> None:
        """The outbox as it was: pending messages go out again with their `svix-id`, so one whose delivery
        had not been recorded before a kill is sent twice, as Svix may (at least once; receivers dedupe on the
        id: https://docs.svix.com/idempotency, "Receiving idempotency (deduplication)")."""
        self.messages = {m["id"]: Message.from_state(m) for m in state}

    def enqueue(self, event_type: str, data: dict[str, Any]) -> Message:
        """Queue a message for the endpoint configured when it is attempted."""
        message_id = "msg_" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(27))
        now = self.clock.time()
        payload = {"type": event_type, "data": data}
        if self.settings.webhook_format == "legacy":
            payload = _legacy(message_id, event_type, data, now)
        summary = {
            "type": event_type,
            "resourceId": data.get("id"),
            "code": data.get("code"),
            "status": data.get("status"),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        message = Message(message_id, event_type, body, summary, created_at=now, next_at=now)
        self.messages[message_id] = message
        self._wake.set()
        return message

    # Lifecycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(trust_env=False)
        self._task = asyncio.create_task(self._run(), name="airtm-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            for message in self._due():
                try:
                    await self._attempt(message)
                except Exception:
                    log.exception("Delivering webhook %s failed inside the sandbox.", message.id)
                    message.status = "failed"
                self.on_change()
            await self._sleep()

    def _due(self) -> list[Message]:
        now = self.clock.time()
        for message in self.messages.values():
            if message.status == "held" and now >= message.hold_until:
                message.status, message.next_at = "pending", now
        due = [m for m in self.messages.values() if m.status == "pending" and m.next_at <= now]
        return sorted(due, key=lambda m: m.next_at)

    async def _sleep(self) -> None:
        pending = [m.next_at for m in self.messages.values() if m.status == "pending"]
        wait = min([POLL_SECONDS, *(max(0.0, at - self.clock.time()) for at in pending)])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._wake.wait()

    # One attempt

    async def _attempt(self, message: Message) -> None:
        url = self.settings.webhook_url
        if message.status != "pending":
            return
        if url is None:
            message.status = "no_endpoint"
            return
        rule = self.faults.match(
            "webhooks",
            "POST",
            URL(url).path,
            message.summary | {"id": message.id},
            accept=lambda r: not (r.action == "webhook_reorder" and message.reordered),
        )
        action = rule.action if rule is not None else None
        if rule is not None and action in ("webhook_drop", "webhook_reorder", "status", "timeout"):
            self._skip(message, rule)
            return
        if rule is not None and action == "delay":
            await asyncio.sleep(float(rule.params.get("ms", 1000)) / 1000)
        ok = await self._send(message, url, fault=action)
        if action == "webhook_duplicate":
            ok = await self._send(message, url, fault="webhook_duplicate (copy)") or ok
        if ok:
            message.status = "delivered"
        else:
            self._schedule_retry(message)
        self._release_held(message)

    def _skip(self, message: Message, rule: FaultRule) -> None:
        """Faults that send nothing now: lose it, hold it back, or fake a failed attempt."""
        now = self.clock.time()
        attempt: dict[str, Any] = {"n": len(message.attempts) + 1, "at": _iso(now), "fault": rule.action}
        if rule.action == "webhook_drop":
            message.status = "dropped"
            attempt["result"] = "never sent"
        elif rule.action == "webhook_reorder":
            message.status, message.reordered = "held", True
            message.hold_left = int(rule.params.get("after", rule.params.get("k", 1)))
            message.hold_until = now + float(rule.params.get("maxHoldSeconds", 5))
            attempt["result"] = f"held until {message.hold_left} later message(s) are sent"
        else:
            attempt["result"] = "timeout" if rule.action == "timeout" else rule.params.get("status", 503)
            self._schedule_retry(message)
            self._release_held(message)
        message.attempts.append(attempt)

    async def _send(self, message: Message, url: str, *, fault: str | None = None, manual: bool = False) -> bool:
        timestamp = int(time.time()) - (STALE_SECONDS if fault == "webhook_stale" else 0)
        signature = sign(self.settings.webhook_secret, message.id, timestamp, message.body)
        if fault == "webhook_bad_signature":
            signature = "v1," + base64.b64encode(secrets.token_bytes(32)).decode()
        headers = {
            "svix-id": message.id,
            "svix-timestamp": str(timestamp),
            "svix-signature": signature,
            "content-type": "application/json",
            "user-agent": "Svix-Webhooks/1.0 (sandbox)",
        }
        attempt: dict[str, Any] = {"n": len(message.attempts) + 1, "at": _iso(self.clock.time())}
        attempt |= {"timestamp": timestamp, "url": url}
        if fault:
            attempt["fault"] = fault
        if manual:
            attempt["manual"] = True
        message.attempts.append(attempt)
        assert self._session is not None, "the deliverer is not started"
        started = time.monotonic()
        try:
            async with self._session.post(
                url,
                data=message.body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_SECONDS),
            ) as response:
                await response.read()
                attempt["result"] = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            attempt["result"] = f"{type(error).__name__}: {error}"
        attempt["ms"] = round((time.monotonic() - started) * 1000)
        return isinstance(attempt["result"], int) and 200 <= attempt["result"] < 300

    def _schedule_retry(self, message: Message) -> None:
        message.next_attempt += 1
        if message.next_attempt >= len(SVIX_SCHEDULE_SECONDS):
            message.status = "failed"
            return
        wait = SVIX_SCHEDULE_SECONDS[message.next_attempt] * self.settings.webhook_time_scale
        message.status, message.next_at = "pending", self.clock.time() + wait

    def _release_held(self, sent: Message) -> None:
        """A held (reordered) message goes out once enough later messages have."""
        for message in self.messages.values():
            if message.status == "held" and message is not sent and message.created_at <= sent.created_at:
                message.hold_left -= 1
                if message.hold_left <= 0:
                    message.status, message.next_at = "pending", self.clock.time()
                    self._wake.set()

    async def redeliver(self, message_id: str) -> Message:
        """Send a message once more now (same `svix-id`), whatever its state; no faults apply."""
        message = self.messages.get(message_id)
        if message is None:
            raise KeyError(message_id)
        url = self.settings.webhook_url
        if url is None:
            raise ValueError("no webhook URL is configured")
        if await self._send(message, url, manual=True):
            message.status = "delivered"
        return message


def _legacy(message_id: str, event_type: str, data: dict[str, Any], now: float) -> dict[str, Any]:
    """The original's body shape (`api.md` §14.1), for the `legacy` webhook format."""
    legacy_type = {"payin.confirmed": "payin.succeeded"}.get(event_type, event_type)
    inner = {
        "id": data.get("id"),
        "code": data.get("code"),
        "amount": data.get("grossAmount", data.get("amount")),
        "currency": "USD",
        "status": data.get("status"),
        "userId": data.get("airtmUserId"),
        "reasonCode": data.get("reasonCode"),
        "reasonDescription": data.get("reasonDescription") or data.get("failureReason"),
    }
    return {
        "eventId": message_id,
        "eventType": legacy_type,
        "occurredAt": _iso(now),
        "data": {key: value for key, value in inner.items() if value is not None},
    }
