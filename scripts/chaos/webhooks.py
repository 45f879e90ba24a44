"""Outbound webhooks under chaos (issue 17): a local receiver behind two endpoints, and the check that every
event reached every endpoint it matches at least once.

The receiver refuses a share of deliveries with 503 (a receiver that drops), verifies every signature with
the SDK, and deduplicates on the event id as the docs tell receivers to (a retry after a lost answer, a
killed webhooks worker or a restarted RabbitMQ may deliver twice). The check compares what it kept with the
outbox itself, never with our own delivery rows: positioned events after the endpoints existed, by the
endpoints' filters.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiohttp import web

from orchestrator.client.webhooks import WebhookVerificationError, verify
from scripts.chaos.checks import Report
from scripts.chaos.driver import Api
from scripts.loopback import LoopbackServer

#: The endpoints: name -> event-type filter (empty: every event).
ENDPOINTS: dict[str, list[str]] = {"all": [], "orders": ["order.*"]}
#: The share of deliveries the receiver answers with 503, so retries are part of every run.
REFUSED_SHARE = 0.1
#: Fast retries for the run's instance (seconds), so a refused delivery is retried within the run.
RETRY_SCHEDULE = "1,2,4,8"


@dataclass
class Hook:
    """One endpoint as its receiver sees it."""

    name: str
    types: list[str]
    secret: str = ""
    endpoint_id: str = ""
    after: int = 0  # the outbox's top position once the endpoint existed
    received: set[str] = field(default_factory=set)
    deliveries: int = 0
    refused: int = 0
    bad_signatures: int = 0

    def matches_sql(self) -> tuple[str, list[Any]]:
        """The endpoint's filter as a condition on ``outbox`` (the product's own rule: type or ``family.*``)."""
        if not self.types:
            return "true", []
        return ("(event_type = ANY(%s) OR split_part(event_type, '.', 1) || '.*' = ANY(%s))",
                [self.types, self.types])


class Receiver:
    """A marketplace backend's webhook handler, on a loopback port of this process."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.hooks = {name: Hook(name, types) for name, types in ENDPOINTS.items()}
        self._server = LoopbackServer()
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{name}", self._handle)
        self.url = await self._server.start(app)

    async def stop(self) -> None:
        await self._server.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        hook = self.hooks[request.match_info["name"]]
        body = await request.read()
        if self.rng.random() < REFUSED_SHARE:
            hook.refused += 1
            return web.Response(status=503)
        try:
            event = verify(hook.secret, request.headers, body)
        except WebhookVerificationError:
            hook.bad_signatures += 1
            return web.Response(status=400)
        hook.deliveries += 1
        hook.received.add(event["eventId"])
        return web.Response(status=204)

    async def register(self, api: Api, database_url: str) -> None:
        """Create the endpoints, then note the outbox's top: every event after it must arrive."""
        for hook in self.hooks.values():
            status, payload = await api.call("POST", "/webhooks/endpoints", {
                "url": f"{self.url}/hook/{hook.name}", "eventTypes": hook.types, "description": f"chaos {hook.name}"})
            if status != 201:
                raise RuntimeError(f"creating webhook endpoint {hook.name} answered {status}: {payload}")
            hook.secret, hook.endpoint_id = payload["data"]["secret"], payload["data"]["id"]
        top = await asyncio.to_thread(_top, database_url)
        for hook in self.hooks.values():
            hook.after = top

    async def catch_up(self, database_url: str, seconds: float = 120) -> None:
        """Wait until every endpoint has every event it is owed (retries take a few seconds each)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            owed = await asyncio.to_thread(self.owed, database_url)
            if all(ids <= self.hooks[name].received for name, ids in owed.items()):
                return
            await asyncio.sleep(0.5)

    def owed(self, database_url: str) -> dict[str, set[str]]:
        """Per endpoint, the ids of the positioned events after it existed that match its filter."""
        with psycopg.connect(database_url, autocommit=True) as conn:
            return {hook.name: _event_ids(conn, hook, after=hook.after) for hook in self.hooks.values()}


def check(conn: psycopg.Connection[Any], receiver: Receiver | None, report: Report) -> None:
    """One line per endpoint: events delivered / expected, with every missing, foreign or unsigned one."""
    if receiver is None:
        return
    for hook in receiver.hooks.values():
        owed = _event_ids(conn, hook, after=hook.after)
        matching = _event_ids(conn, hook, after=0)
        missing = owed - hook.received
        foreign = hook.received - matching
        problems = ([f"missing {len(missing)}: {sorted(missing)[:5]}"] if missing else []) + (
            [f"received events that do not match or are not in the outbox: {sorted(foreign)[:5]}"]
            if foreign else []) + ([f"{hook.bad_signatures} delivery(ies) with a bad signature"]
                                   if hook.bad_signatures else [])
        report.add(f"webhooks {hook.name}: events delivered / expected (refused, duplicates)",
                   f"{len(owed & hook.received)} / {len(owed)} ({hook.refused}, "
                   f"{hook.deliveries - len(hook.received)})", not problems, problems)


def _top(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(position), 0) FROM outbox").fetchone()
    return int(row[0]) if row else 0


def _event_ids(conn: psycopg.Connection[Any], hook: Hook, *, after: int) -> set[str]:
    condition, params = hook.matches_sql()
    rows = conn.execute(f"SELECT event_id FROM outbox WHERE position > %s AND {condition}",
                        [after, *params]).fetchall()
    return {str(event_id) for (event_id,) in rows}
