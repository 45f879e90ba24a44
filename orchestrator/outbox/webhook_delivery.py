"""Delivering webhooks: one worker drains an endpoint at a time, in stream order, one attempt per due
delivery; a failure is rescheduled and never holds up the deliveries behind it.

Each attempt resolves the host once, refuses non-public addresses unless allowed, connects to exactly
the addresses it checked (so a second DNS answer cannot point the request elsewhere) and never follows a
redirect (Standard Webhooks 1.0.0, "Delivery success and failure": 3xx is a failure; "SSRF").
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import socket
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from orchestrator import events
from orchestrator.db import webhooks as webhooks_db
from orchestrator.errors import ValidationFailed
from orchestrator.outbox import webhooks
from orchestrator.unit_of_work import Context, Message, UnitOfWork

log = logging.getLogger(__name__)
#: Re-take the lock this many times when deliveries became due while it was held (then the sweep).
RECHECKS = 3
#: One drain delivers for at most this long, then hands over to a fresh message (far inside the
#: actor's time limit, and fair to the other endpoints sharing the worker's threads).
BUDGET_SECONDS = 120.0


@dataclass(frozen=True)
class Answer:
    """What one HTTP attempt came to."""

    status: int | None
    latency_ms: int
    excerpt: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Drained:
    """After-commit messages (the relay, for events emitted) and when the endpoint is next due."""

    messages: list[Message] = field(default_factory=list)
    next_due_in: float | None = None
    #: Whether this call held the endpoint's lock (only then does it schedule the endpoint's next drain).
    drained: bool = False
    deadline: float = 0.0


def drain(engine: Any, settings: Any, endpoint_id: str) -> Drained:
    """Deliver everything due to one endpoint; returns at once if another worker is draining it.

    The whole drain runs on one autocommit connection, which holds the endpoint's lock: about six round
    trips with the database for one delivery (it took ten transactions)."""
    out = Drained(deadline=time.monotonic() + BUDGET_SECONDS)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for _ in range(RECHECKS):
            with webhooks_db.drain_lock(conn, endpoint_id) as held:
                if not held:  # disabled, gone, or drained by another worker, which re-checks after letting go
                    return out
                out.drained = True
                _drain_locked(engine, conn, settings, endpoint_id, out)
            out.next_due_in = webhooks_db.next_due_in(conn, endpoint_id)
            if time.monotonic() >= out.deadline or out.next_due_in is None or out.next_due_in > 0:
                break
    return out


def _drain_locked(engine: Any, conn: Any, settings: Any, endpoint_id: str, out: Drained) -> None:
    ring = webhooks.keyring(settings)
    while True:
        # the endpoint is read with each batch: rotated, edited or disabled meanwhile
        endpoint, batch = webhooks_db.due(conn, endpoint_id)
        if endpoint is None:
            return
        for due in batch:
            if not _attempt(engine, conn, settings, ring, endpoint, due, out) or time.monotonic() >= out.deadline:
                return


def _attempt(engine: Any, conn: Any, settings: Any, ring: Any, endpoint: webhooks_db.Endpoint,
             due: webhooks_db.Due, out: Drained) -> bool:
    """One attempt, recorded; whether the endpoint is still enabled afterwards."""
    delivery = due.delivery
    if due.envelope is None:
        answer = Answer(None, 0, error="the event is no longer retained (EVENT_RETENTION_DAYS)")
        return _record(engine, conn, settings, endpoint, delivery, answer, out, give_up=True)
    now = events.now()
    body = webhooks.body_of(due.envelope)
    sent_headers = webhooks.headers(webhooks.signing_secrets(ring, endpoint, now), event_id=delivery.event_id,
                                    timestamp=int(time.time()), body=body, position=delivery.position)
    answer = post(endpoint.url, sent_headers, body, timeout=settings.webhook_timeout_seconds,
                  allow_private=settings.webhooks_allow_private)
    log.info("Webhook delivery %s (%s) to %s: %s", delivery.id, delivery.event_type, endpoint.id,
             answer.status or answer.error)
    return _record(engine, conn, settings, endpoint, delivery, answer, out)


def _record(engine: Any, conn: Any, settings: Any, endpoint: webhooks_db.Endpoint, delivery: webhooks_db.Delivery,
            answer: Answer, out: Drained, *, give_up: bool = False) -> bool:
    """The attempt row, the delivery's next state, the endpoint's failing streak and, when it must stop,
    its disabling (event and audit entry), in one transaction.

    A success (or a delivery given up without an attempt) is one statement in autocommit: one round trip
    instead of six, on the drain's connection. A failure runs the same statement in a unit of work, which
    may disable the endpoint."""
    now = events.now()
    if answer.ok:
        status, next_at, streak = "SUCCEEDED", None, webhooks_db.HEALTHY
    else:
        next_at = None if give_up else webhooks.next_attempt(
            settings, failures=delivery.attempts + 1, retry_from=delivery.retry_from, now=now)
        status, streak = ("PENDING" if next_at else "FAILED"), (webhooks_db.UNCHANGED if give_up
                                                                else webhooks_db.FAILING)
    values: dict[str, Any] = {"status": status, "status_code": answer.status, "succeeded": answer.ok,
                              "latency_ms": answer.latency_ms, "error": answer.error, "excerpt": answer.excerpt,
                              "next_attempt_at": next_at, "attempted_at": now, "streak": streak}
    if streak != webhooks_db.FAILING:
        recorded, _ = webhooks_db.record(conn, delivery, **values)
        return recorded  # False: deleted meanwhile, with its deliveries
    context = Context(correlation_id=delivery.id, actor_type="SYSTEM", actor_id="webhooks")
    with UnitOfWork(engine, context) as uow:
        recorded, since = webhooks_db.record(uow.conn, delivery, **values)
        if not recorded:
            return False
        since = since or now
        window = timedelta(seconds=settings.webhook_retry_window_seconds)
        reason = (webhooks.GONE if answer.status == 410
                  else webhooks.FAILING if now - since >= window else None)
        enabled = reason is None or not disable(uow, endpoint.id, reason)
        uow.commit()
    out.messages.extend(m for m in uow.messages if m not in out.messages)
    return enabled


def disable(uow: UnitOfWork, endpoint_id: str, reason: str) -> bool:
    """Disable an endpoint with its ``webhook_endpoint.disabled`` event (and so its audit entry); False if
    it was not enabled."""
    endpoint = webhooks_db.disable(uow.conn, endpoint_id, reason)
    if endpoint is None:
        return False
    log.warning("Webhook endpoint %s disabled: %s", endpoint_id, reason)
    uow.emit("webhook_endpoint.disabled", endpoint_id,
             {"endpointId": endpoint_id, "url": endpoint.url, "reason": reason})
    return True


# --- one HTTP attempt ----------------------------------------------------------------------------------

#: The addresses the current attempt checked; the session's resolver answers with these and nothing else.
_CHECKED: ContextVar[list[tuple[int, str]]] = ContextVar("webhook_checked_addresses")


class _Pinned(AbstractResolver):
    """Answers with the addresses the current attempt already checked (``_CHECKED``, set in the attempt's
    own task), so the connection goes where the check looked; outside an attempt it answers nothing."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0,
                              flags=socket.AI_NUMERICHOST) for fam, address in _CHECKED.get([])]

    async def close(self) -> None:
        return None


class _Client:
    """A worker thread's event loop and HTTP session, kept across attempts: a new loop, session and
    connector per attempt cost about a third of an attempt's time. The connector keeps no connection
    (``force_close``): every attempt connects anew, to the addresses it checked."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._open())
        _every_client.append(self)

    @staticmethod
    async def _open() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(resolver=_Pinned(), use_dns_cache=False, force_close=True)
        return aiohttp.ClientSession(connector=connector)


_clients = threading.local()
_every_client: list[_Client] = []


@atexit.register
def _close_clients() -> None:
    """Close the sessions of threads that are idle at exit (else aiohttp warns of unclosed sessions)."""
    for client in _every_client:
        if not client.loop.is_running() and not client.loop.is_closed():
            client.loop.run_until_complete(client.session.close())
            client.loop.close()


def _client() -> _Client:
    found: _Client | None = getattr(_clients, "client", None)
    if found is None or found.loop.is_closed() or found.session.closed:
        found = _clients.client = _Client()
    return found


def resolve(host: str, port: int) -> list[tuple[int, str]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys((int(family), str(sockaddr[0])) for family, _, _, _, sockaddr in infos))


def post(url: str, headers: dict[str, str], body: bytes, *, timeout: float, allow_private: bool) -> Answer:
    """POST once: resolve, check, connect to the checked addresses, no redirects, at most ``timeout``
    seconds and 4 KB of the answer kept."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = webhooks.check_url(url, mainnet=False)
        infos = resolve(target.host, target.port)
        allowed = set(webhooks.check_addresses([a for _, a in infos], allow_private=allow_private))
    except ValidationFailed as refused:
        return Answer(None, elapsed(), error=f"{refused.details.get('reason')}: {refused.message}")
    try:
        client = _client()
        return client.loop.run_until_complete(_post(client.session, url, headers, body,
                                                    [i for i in infos if i[1] in allowed], timeout, started))
    except Exception as error:  # any transport failure is a failed attempt, never a crashed worker
        return Answer(None, elapsed(), error=f"{type(error).__name__}: {error}"[:500])


async def _post(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes,
                infos: list[tuple[int, str]], seconds: float, started: float) -> Answer:
    _CHECKED.set(infos)  # this attempt's task only: the next attempt sets its own
    try:
        async with asyncio.timeout(seconds):
            async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=seconds)) as response:
                raw = b""
                while len(raw) < webhooks.EXCERPT_BYTES:  # the rest of a huge answer is never read
                    chunk = await response.content.read(webhooks.EXCERPT_BYTES - len(raw))
                    if not chunk:
                        break
                    raw += chunk
                return Answer(response.status, int((time.monotonic() - started) * 1000),
                              excerpt=raw.decode("utf-8", errors="replace"))
    except TimeoutError:
        return Answer(None, int((time.monotonic() - started) * 1000),
                      error=f"no answer within {seconds:g} s (WEBHOOK_TIMEOUT_SECONDS)")
