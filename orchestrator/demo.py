"""``offerhub demo``: the seed flows against a running system on the sandbox, narrated as they happen.

Two users are created; the buyer is funded by a real USDC payment on the sandbox ledger into its wallet (the
deposit monitor credits it); then one order is released, one refunded and one disputed and split. Events
stream in beside the steps (the SDK's ``events.stream``), and the run ends with each party's book balance
beside the USDC its wallet holds on the sandbox ledger. ``--provider airtm`` runs the same story on an
AirTM-mode instance (``orchestrator/demo_airtm.py``); the instance's ``/config`` must name the same provider,
since each mode's money-in flow is refused by the other.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
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


def _http(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - the operator's sandbox URL
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def ledger_usdc(sandbox: str, account: str) -> Decimal:
    """The USDC the account holds according to the sandbox's Horizon."""
    record = _http("GET", f"{sandbox}/horizon/accounts/{account}")
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


def run(client: Client, args: argparse.Namespace) -> int:
    sandbox = sandbox_url(args)
    try:
        _http("GET", f"{sandbox}/_sandbox/state")
    except OSError as error:
        raise SystemExit(f"Error: the sandbox's control plane at {sandbox} does not answer ({error}). The demo "
                         "runs against the local sandbox: start the system with scripts/dev.") from None
    client.system.health()
    wanted = getattr(args, "provider", None) or "crypto"
    running = (client.system.config().get("providers") or {}).get("payment")
    if running != wanted:
        raise SystemExit(
            f"Error: the instance at {client.config.api_url} runs PAYMENT_PROVIDER={running}, and "
            f"`offerhub demo --provider {wanted}` needs one in {wanted} mode (each mode refuses the other's "
            f"money-in flow). Run `offerhub demo --provider {running}`, or set PAYMENT_PROVIDER={wanted} in the "
            "instance's .env and restart it.")
    if wanted == "airtm":
        from orchestrator.demo_airtm import AirtmDemo

        return AirtmDemo(client, sandbox).run(args)
    return Demo(client, sandbox).run(args)


class Demo:
    def __init__(self, client: Client, sandbox: str) -> None:
        self.client, self.sandbox, self.tag = client, sandbox, secrets.token_hex(3)
        narrator = Narrator()
        self.say = narrator.say
        # replay from just before the first step, so no event of the demo is missed while the stream connects
        self.watcher = Watcher(client, narrator, (datetime.now(UTC) - timedelta(seconds=1)).isoformat())
        self.parties: dict[str, tuple[dict[str, Any], str]] = {}
        self.steps = 0

    def step(self, text: str) -> None:
        """A numbered step heading (the modes have different steps; the numbers follow)."""
        self.steps += 1
        self.say(f"{self.steps}. {text}")

    def run(self, args: argparse.Namespace) -> int:
        self.watcher.start()
        self.say(f"OFFER-HUB demo {self.tag} against {self.client.config.api_url} (sandbox {self.sandbox})")
        self.users()
        self.deposit(args.deposit)
        self.orders()
        time.sleep(1.5)  # let the last events reach the screen
        self.step("Balances: the book beside the sandbox ledger")
        return _summary(self.client, self.sandbox, self.say, self.watcher, self.parties)

    def orders(self) -> None:
        """The three order stories, the same in both modes: released, refunded, disputed and split."""
        self.step("Release: the buyer approves and the seller is paid from the escrow")
        first = self.order("Logo design", "100.00")
        done = settled(self.client, self.client.orders.release(first["id"], reason="Work delivered"))
        self.say(f"release        -> {done['status']} / {done.get('finalStatus')}", 1)
        self.step("Refund: the escrow goes back to the buyer")
        second = self.order("Website copy", "50.00")
        done = settled(self.client, self.client.orders.refund(second["id"], reason="Seller cancelled"))
        self.say(f"refund         -> {done['status']} / {done.get('finalStatus')}", 1)
        self.dispute()

    def users(self) -> None:
        self.step("Two marketplace users; each gets an invisible Stellar wallet")
        for who in ("buyer", "seller"):
            user = self.client.users.create(external_user_id=f"demo-{who}-{self.tag}",
                                            email=f"{who}-{self.tag}@example.com")
            self.watcher.follow(user["id"])
            self.say(f"{who:<6} {user['id']}", 1)
            self.parties[who] = (user, "")
        for who, (user, _) in self.parties.items():
            found: dict[str, Any] = eventually(f"the {who}'s wallet to be activated",
                                               functools.partial(self.client.wallet.get_deposit_address, user["id"]))
            self.parties[who] = (user, found["address"])
            self.say(f"{who} wallet {found['address']} is active (USDC trustline in place)", 1)

    def deposit(self, amount: str) -> None:
        buyer, address = self.parties["buyer"]
        self.step(f"A real deposit: {amount} USDC paid on the sandbox ledger into the buyer's wallet")
        paid = _http("POST", f"{self.sandbox}/_sandbox/stellar/pay",
                     {"from": "issuer", "to": address, "amount": amount, "asset": "USDC"})
        self.say(f"ledger transaction {paid.get('hash')}", 1)
        wanted = Decimal(amount)

        def credited() -> bool | None:
            return True if Decimal(self.client.balance.get(buyer["id"])["available"]) >= wanted else None

        eventually("the deposit to be credited", credited)
        self.say(f"credited: buyer available {self.client.balance.get(buyer['id'])['available']}", 1)

    def order(self, title: str, amount: str) -> dict[str, Any]:
        orders = self.client.orders
        created = orders.create(buyer_id=self.parties["buyer"][0]["id"], seller_id=self.parties["seller"][0]["id"],
                                amount=amount, title=title, client_order_ref=f"demo-{self.tag}-{amount}")
        self.watcher.follow(created["id"])
        funding = " (escrow funded by the platform's treasury pool)" if created.get("fundingMode") == "TREASURY" else ""
        self.say(f"order {created['id']} {amount} '{title}': {created['status']}{funding}", 1)
        self.say(f"reserve        -> {orders.reserve(created['id'])['status']}", 1)
        escrow = orders.create_escrow(created["id"])
        if (escrow.get("escrow") or {}).get("status") != "CREATED":  # 202: the deploy is still on the ledger

            def deployed() -> dict[str, Any] | None:
                current = orders.get(created["id"])
                return current if (current.get("escrow") or {}).get("status") == "CREATED" else None

            escrow = eventually("the escrow contract to be deployed", deployed)
        contract = (escrow.get("escrow") or {}).get("trustlessContractId")
        self.say(f"create escrow  -> {escrow['status']} (contract {contract})", 1)
        funded = settled(self.client, orders.fund_escrow(created["id"]))
        self.say(f"fund escrow    -> {funded['status']} (escrow {(funded.get('escrow') or {}).get('status')})", 1)
        return funded

    def dispute(self) -> None:
        self.step("Dispute: the buyer disputes, support splits 60.00 to the seller and 20.00 back")
        third = self.order("Mobile app", "80.00")
        disputes = self.client.disputes
        dispute = disputes.open(third["id"], opened_by="BUYER", reason="QUALITY_ISSUE")
        self.watcher.follow(dispute["id"])
        self.say(f"dispute {dispute['id']} -> {dispute['status']}", 1)
        resolved = disputes.resolve(dispute["id"], decision="SPLIT", release_amount="60.00", refund_amount="20.00",
                                    note="75% of the work delivered")

        def done() -> dict[str, Any] | None:
            current = disputes.get(dispute["id"])
            return current if current.get("status") == "RESOLVED" else None

        if resolved.pending or resolved.get("status") != "RESOLVED":
            resolved = eventually("the dispute to be resolved", done)
        order = resolved.get("order") or {}
        self.say(f"resolve SPLIT  -> dispute {resolved['status']}, order {order.get('status')} "
                 f"/ {order.get('finalStatus')}", 1)


def _summary(client: Client, sandbox: str, say: Callable[..., None], watcher: Watcher,
             parties: dict[str, tuple[dict[str, Any], str]]) -> int:
    rows, agree = [], True
    for who, (user, address) in parties.items():
        book = client.balance.get(user["id"])
        total = Decimal(book["available"]) + Decimal(book["reserved"])
        ledger = ledger_usdc(sandbox, address)
        same = abs(total - ledger) <= TOLERANCE
        agree = agree and same
        rows.append((who, book["available"], book["reserved"], f"{ledger:f}", "yes" if same else "NO"))
    table(("party", "available", "reserved", "ledger USDC", "book = ledger"), rows)
    say(f"{watcher.count} events streamed" + (f"; the stream stopped: {watcher.error}" if watcher.error else ""))
    if not agree:
        say("The book and the ledger disagree: run `offerhub check` on the server.")
        return 1
    say("Done: every party's book balance equals the USDC its wallet holds on the ledger.")
    return 0



def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Indented columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("    " + "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in
                                enumerate(zip(row, widths, strict=True))), flush=True)
