"""What the narrated commands (``offerhub demo``, ``offerhub smoke``) share: printing steps and streamed
events in order, waiting for a state, and the sandbox's control plane over plain HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.client import Client, Event, NotFoundError

T = TypeVar("T")
DEFAULT_SANDBOX_URL = "http://127.0.0.1:4100"
STEP_SECONDS = 90.0
TOLERANCE = Decimal("0.0000001")
BACKLOG = 500


class Narrator:
    """Steps from the main thread and events from the stream thread, printed whole and in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def say(self, text: str, indent: int = 0) -> None:
        with self.lock:
            print(f"[{time.monotonic() - self.started:6.1f}s] {'  ' * indent}{text}", flush=True)


class Watcher(threading.Thread):
    """Follows the event stream and prints the events that concern the demo's users and orders."""

    def __init__(self, client: Client, narrator: Narrator, since: str) -> None:
        super().__init__(name="demo-events", daemon=True)
        self.client, self.narrator, self.since = client, narrator, since
        self.ids: set[str] = set()
        self.backlog: list[Event] = []  # events that arrived before the step that made their ids returned
        self.lock = threading.Lock()
        self.count = 0
        self.error: BaseException | None = None

    def follow(self, *ids: str) -> None:
        """Show events about ``ids`` from now on, and those that arrived before the ids were known."""
        with self.lock:
            self.ids.update(ids)
            waiting, self.backlog = self.backlog, []
            for event in waiting:
                self._offer(event)

    def _offer(self, event: Event) -> None:
        if self.concerns(event):
            self.count += 1
            self.narrator.say(f"  event #{event.position} {_event_line(event)}", 1)
        else:
            self.backlog = [*self.backlog[-(BACKLOG - 1):], event]

    def concerns(self, event: dict[str, Any]) -> bool:
        payload = event.get("payload") or {}
        candidates = {event.get("aggregateId"), payload.get("userId"), payload.get("orderId"),
                      payload.get("buyerId"), payload.get("sellerId"), payload.get("disputeId")}
        return bool(self.ids & {c for c in candidates if isinstance(c, str)})

    def run(self) -> None:
        try:
            for event in self.client.events.stream(last_event_id=self.since):
                with self.lock:
                    self._offer(event)
        except BaseException as error:  # reported at the end; the demo's steps go on
            self.error = error


def _event_line(event: dict[str, Any]) -> str:
    payload = event.get("payload") or {}
    shown = [f"{k}={payload[k]}" for k in ("status", "amount", "netAmount", "source", "decision", "reason")
             if payload.get(k) not in (None, "")]
    return f"{event.get('eventType')} {event.get('aggregateId')} {' '.join(shown)}".rstrip()


def sandbox_url(args: argparse.Namespace) -> str:
    dotenv = Path.cwd() / ".env"
    from_file = ""
    if dotenv.is_file():
        for line in dotenv.read_text().splitlines():
            if line.startswith("SANDBOX_URL="):
                from_file = line.split("=", 1)[1].strip().strip("'\"")
    return (getattr(args, "sandbox_url", None) or os.environ.get("SANDBOX_URL") or from_file
            or DEFAULT_SANDBOX_URL).rstrip("/")


def http_json(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - the operator's sandbox URL
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def ledger_usdc(sandbox: str, account: str) -> Decimal:
    """The USDC the account holds according to the sandbox's Horizon."""
    record = http_json("GET", f"{sandbox}/horizon/accounts/{account}")
    for balance in record.get("balances", []):
        if balance.get("asset_code") == "USDC":
            return Decimal(balance["balance"])
    return Decimal(0)


def eventually(what: str, probe: Callable[[], T | None], seconds: float = STEP_SECONDS) -> T:
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = probe()
        except NotFoundError:
            value = None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {seconds:g} s")
        time.sleep(0.3)


def settled(client: Client, order: dict[str, Any]) -> dict[str, Any]:
    """The order once its ledger work is over (a 202 answer means it is still running)."""
    if order.get("status") in {"CLOSED", "IN_PROGRESS"} and not getattr(order, "pending", False):
        return order
    return client.orders.wait_for(order["id"], "CLOSED" if order.get("status") != "ESCROW_FUNDING"
                                  else "IN_PROGRESS", seconds=STEP_SECONDS)



def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Indented columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("    " + "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in
                                enumerate(zip(row, widths, strict=True))), flush=True)
