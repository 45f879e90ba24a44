"""``offerhub smoke --network testnet|sandbox``: one whole lifecycle against a running instance (DESIGN 32).

It drives the instance over HTTP as ``offerhub demo`` does (two users whose wallets the instance activates,
a USDC deposit to the buyer, an escrow order, its release, a small withdrawal) and reads Horizon itself to
confirm every transaction hash the instance reports. Each step is printed with its timing and hashes, and
the run ends with one ``VERDICT:`` line; exit 0 only when every step passed. The header (versions, network
passphrase, URLs without secrets) and the step lines are meant to be pasted whole into a bug report.

On the sandbox the buyer is paid through the sandbox's control plane (as the demo does); on testnet the
buyer's address is printed and the run waits, up to ``--fund-timeout``, for the operator to send USDC.
Nothing is deleted afterwards: users and wallets stay, named ``smoke-<role>-<run id>``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from orchestrator.cli.narration import Narrator, Watcher, eventually, http_json, sandbox_url, settled
from orchestrator.client import Client, Event
from orchestrator.settings import HORIZON_URLS, PASSPHRASES

NETWORKS = ("testnet", "sandbox")
#: How long a hash may take to appear on Horizon after the instance reported it (ingestion lag).
HORIZON_SECONDS = 30.0
#: How long an event carrying a hash may take to reach the stream after the step that caused it.
EVENT_SECONDS = 30.0
STEP_SECONDS = 180.0
HASH_LENGTH = 64


class StepFailed(Exception):
    """A step did not do what it should; the message is what the operator reads."""


@dataclass
class Tx:
    label: str
    hash: str | None
    ledger: int | None = None


@dataclass
class Step:
    number: int
    name: str
    status: str = "RUNNING"
    seconds: float = 0.0
    txs: list[Tx] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


class Collector(Watcher):
    """The demo's event follower, keeping the events about the run's users and orders instead of printing."""

    def __init__(self, client: Client, narrator: Narrator, since: str) -> None:
        super().__init__(client, narrator, since)
        self.seen: list[Event] = []

    def _offer(self, event: Event) -> None:
        if self.concerns(event):
            self.seen.append(event)
        else:
            self.backlog = [*self.backlog[-499:], event]

    def find(self, event_type: str, match: Callable[[dict[str, Any]], bool], seconds: float = EVENT_SECONDS,
             ) -> dict[str, Any] | None:
        """The first ``event_type`` event whose payload matches, waiting for it up to ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            with self.lock:
                found = next((e for e in self.seen if e.get("eventType") == event_type
                              and match(e.get("payload") or {})), None)
            if found is not None or time.monotonic() > deadline:
                return dict(found) if found is not None else None
            time.sleep(0.2)


def public_url(url: str) -> str:
    """A URL as it may be printed: no user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


class Horizon:
    """The network's Horizon, read directly (never through the instance under test)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers={"Accept": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - the operator's Horizon
            return json.loads(response.read() or b"null")

    def root(self) -> dict[str, Any]:
        return dict(self.get("/"))

    def confirm(self, tx: Tx) -> None:
        """Fill ``tx.ledger`` once Horizon shows the transaction as successful; ``StepFailed`` otherwise."""
        if not tx.hash or len(tx.hash) != HASH_LENGTH:
            raise StepFailed(f"{tx.label}: the instance reported no transaction hash ({tx.hash!r})")
        deadline = time.monotonic() + HORIZON_SECONDS
        while True:
            try:
                record = self.get(f"/transactions/{tx.hash}")
            except urllib.error.HTTPError as error:
                if error.code != 404 or time.monotonic() > deadline:
                    raise StepFailed(f"{tx.label}: Horizon answered {error.code} for transaction {tx.hash}") from None
                time.sleep(1.0)
                continue
            if record.get("successful") is not True:
                raise StepFailed(f"{tx.label}: transaction {tx.hash} failed on the ledger "
                                 f"({record.get('result_xdr')})")
            tx.ledger = int(record.get("ledger") or 0) or None
            return

    def usdc(self, account: str, issuer: str) -> Decimal:
        for balance in self.get(f"/accounts/{account}").get("balances", []):
            if balance.get("asset_code") == "USDC" and balance.get("asset_issuer") == issuer:
                return Decimal(balance["balance"])
        return Decimal(0)

    def payer_of(self, tx_hash: str, to: str) -> str | None:
        """Who paid ``to`` in this transaction (the account a testnet deposit came from)."""
        for record in self.get(f"/transactions/{tx_hash}/operations").get("_embedded", {}).get("records", []):
            if record.get("to") == to:
                return str(record.get("from") or record.get("source_account"))
        return None


def _about(user_id: str, payload: dict[str, Any]) -> bool:
    return payload.get("userId") == user_id


def run(client: Client, args: argparse.Namespace) -> int:
    return Smoke(client, args).run()


class Smoke:
    def __init__(self, client: Client, args: argparse.Namespace) -> None:
        self.client, self.args, self.tag = client, args, secrets.token_hex(3)
        self.network: str = args.network
        self.sandbox = sandbox_url(args) if self.network == "sandbox" else None
        horizon = args.horizon_url or os.environ.get("STELLAR_HORIZON_URL") or (
            f"{self.sandbox}/horizon" if self.sandbox else HORIZON_URLS["testnet"])
        self.horizon = Horizon(horizon)
        self.narrator = Narrator()
        self.say = self.narrator.say
        self.events = Collector(client, self.narrator, (datetime.now(UTC) - timedelta(seconds=1)).isoformat())
        self.steps: list[Step] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.addresses: dict[str, str] = {}
        self.issuer = ""
        self.deposit_hash: str | None = None
        self.order: dict[str, Any] = {}
        self.limits: dict[str, Any] = {}

    # The run

    def run(self) -> int:
        started = time.monotonic()
        self.events.start()
        self.header()
        plan: list[tuple[str, Callable[[Step], None]]] = [
            ("instance and network", self.preflight), ("two users, wallets activated", self.wallets),
            ("USDC deposit to the buyer", self.deposit), ("escrow deployed", self.escrow),
            ("escrow funded", self.fund), ("release to the seller", self.release),
            ("withdrawal from the seller", self.withdraw), ("book equals ledger", self.balances)]
        current = ""
        try:
            for number, (name, action) in enumerate(plan, start=1):
                current = name
                if not self.step(number, len(plan), name, action):
                    break
        except KeyboardInterrupt:
            self.verdict(started, len(plan), interrupted=current)
            raise
        return self.verdict(started, len(plan))

    def step(self, number: int, total: int, name: str, action: Callable[[Step], None]) -> bool:
        step = Step(number, name)
        self.steps.append(step)
        self.say(f"step {number}/{total} {name} ...")
        began = time.monotonic()
        try:
            action(step)
            for tx in step.txs:
                self.horizon.confirm(tx)
            step.status = "PASS"
        except KeyboardInterrupt:
            step.status, step.error = "INTERRUPTED", "Ctrl-C"
            raise
        except Exception as error:  # every failure is reported as the step's, then the run stops
            step.status = "FAIL"
            step.error = str(error) if isinstance(error, StepFailed | TimeoutError) else \
                f"{type(error).__name__}: {error}"
        finally:
            step.seconds = time.monotonic() - began
            self.report(step)
        return step.status == "PASS"

    def report(self, step: Step) -> None:
        self.say(f"step {step.number} {step.name}: {step.status} in {step.seconds:.1f} s", 1)
        for tx in step.txs:
            where = f"ledger {tx.ledger}, confirmed on Horizon" if tx.ledger else "not confirmed"
            self.say(f"tx {tx.label:<22} {tx.hash or '-'} ({where})", 2)
        for note in step.notes:
            self.say(note, 2)
        if step.error:
            self.say(f"error: {step.error}", 2)

    def verdict(self, started: float, total: int, interrupted: str = "") -> int:
        passed = sum(1 for s in self.steps if s.status == "PASS")
        elapsed = time.monotonic() - started
        where = f"network {self.network}, run {self.tag}, {elapsed:.1f} s"
        if interrupted:
            print(f"VERDICT: INTERRUPTED during '{interrupted}' after {passed}/{total} steps passed ({where})",
                  flush=True)
            return 130
        if passed == total:
            print(f"VERDICT: PASS - {passed}/{total} steps passed ({where})", flush=True)
            return 0
        failed = next((s for s in self.steps if s.status != "PASS"), None)
        reason = f"step {failed.number} '{failed.name}': {failed.error}" if failed else "no step ran"
        print(f"VERDICT: FAIL at {reason} - {passed}/{total} steps passed ({where})", flush=True)
        return 1

    # Steps

    def header(self) -> None:
        api = public_url(self.client.config.api_url)
        print(f"OFFER-HUB smoke run {self.tag} on {self.network}, {datetime.now(UTC).isoformat(timespec='seconds')}",
              flush=True)
        print(f"  cli       offerhub-orchestrator {_version('offerhub-orchestrator')}, stellar-sdk "
              f"{_version('stellar-sdk')}, Python {platform.python_version()} on {platform.platform()}", flush=True)
        print(f"  api       {api}", flush=True)
        print(f"  horizon   {public_url(self.horizon.url)} (read directly)", flush=True)
        if self.sandbox:
            print(f"  sandbox   {public_url(self.sandbox)} (pays the buyer)", flush=True)

    def preflight(self, step: Step) -> None:
        config = dict(self.client.system.config())
        health = dict(self.client.system.health_detailed())
        self.limits = config.get("limits") or {}
        states = ", ".join(f"{name} {dep.get('status')}" for name, dep in (health.get("dependencies") or {}).items())
        provider = (config.get("providers") or {}).get("payment")
        step.notes.append(f"server version {config.get('version')}, network {config.get('network')}, payment "
                          f"provider {provider}, health {health.get('status')} ({states})")
        if config.get("network") != self.network:
            raise StepFailed(f"the instance runs STELLAR_NETWORK={config.get('network')}, not {self.network}: "
                             f"start it with STELLAR_NETWORK={self.network} or pass --network "
                             f"{config.get('network')}")
        root = self.horizon.root()
        passphrase = root.get("network_passphrase")
        step.notes.append(f"horizon {root.get('horizon_version')}, core {root.get('core_version')}, latest ledger "
                          f"{root.get('core_latest_ledger')}, history from {root.get('history_elder_ledger')}")
        step.notes.append(f"network passphrase {passphrase!r}")
        if passphrase != PASSPHRASES[self.network]:
            raise StepFailed(f"Horizon at {public_url(self.horizon.url)} serves {passphrase!r}, not the "
                             f"{self.network} passphrase {PASSPHRASES[self.network]!r}")
        if provider != "crypto":
            raise StepFailed(f"the instance runs PAYMENT_PROVIDER={provider}: the smoke run needs crypto mode "
                             "(a USDC deposit and a crypto withdrawal)")
        if health.get("status") == "unhealthy":
            raise StepFailed(f"the instance reports itself unhealthy ({states})")
        self.client.api_keys.me()  # the key is good before anything is created

    def wallets(self, step: Step) -> None:
        for role in ("buyer", "seller"):
            user = dict(self.client.users.create(external_user_id=f"smoke-{role}-{self.tag}",
                                                 email=f"smoke-{role}-{self.tag}@example.com"))
            self.users[role] = user
            self.events.follow(user["id"])
            step.notes.append(f"{role} {user['id']}")
        for role, user in self.users.items():
            found = eventually(f"the {role}'s wallet to be activated (friendbot and trustline)",
                               functools.partial(self.client.wallet.get_deposit_address, user["id"]),
                               seconds=STEP_SECONDS)
            self.addresses[role] = str(found["address"])
            self.issuer = str((found.get("asset") or {}).get("issuer") or self.issuer)
            step.notes.append(f"{role} wallet {self.addresses[role]}")
            activated = self.events.find("wallet.activated", functools.partial(_about, user["id"]))
            step.txs.append(Tx(f"{role} activation", (activated or {}).get("payload", {}).get("transactionHash")))
        step.notes.append(f"asset USDC:{self.issuer}")

    def deposit(self, step: Step) -> None:
        buyer, address, amount = self.users["buyer"], self.addresses["buyer"], Decimal(self.args.amount)
        if self.sandbox:
            paid = http_json("POST", f"{self.sandbox}/_sandbox/stellar/pay",
                         {"from": "issuer", "to": address, "amount": f"{amount:f}", "asset": "USDC"})
            self.deposit_hash = paid.get("hash")
            step.notes.append(f"paid {amount:f} USDC from the sandbox's issuer")
            seconds = STEP_SECONDS
        else:
            seconds = float(self.args.fund_timeout)
            print(f"\n  Send {amount:f} USDC (asset USDC:{self.issuer}) on testnet to the buyer's wallet:\n\n"
                  f"      {address}\n\n  from a USDC faucet (e.g. https://faucet.circle.com, Stellar testnet) or your "
                  f"own account.\n  Waiting up to {seconds:g} s (--fund-timeout) for the instance to credit it...\n",
                  flush=True)

        def credited() -> bool | None:
            return True if Decimal(self.client.balance.get(buyer["id"])["available"]) >= amount else None

        eventually("the deposit to be credited to the buyer", credited, seconds=seconds)
        event = self.events.find("balance.credited", lambda p: p.get("userId") == buyer["id"]
                                 and bool(p.get("transactionHash")))
        reported = (event or {}).get("payload", {}).get("transactionHash")
        if self.deposit_hash and reported and reported != self.deposit_hash:
            raise StepFailed(f"the instance credited transaction {reported}, not the deposit {self.deposit_hash}")
        self.deposit_hash = self.deposit_hash or reported
        step.txs.append(Tx("deposit", self.deposit_hash))
        step.notes.append(f"buyer available {self.client.balance.get(buyer['id'])['available']}")

    def escrow(self, step: Step) -> None:
        orders = self.client.orders
        created = dict(orders.create(buyer_id=self.users["buyer"]["id"], seller_id=self.users["seller"]["id"],
                                     amount=self.args.amount, title=f"Smoke run {self.tag}",
                                     client_order_ref=f"smoke-{self.tag}"))
        self.events.follow(created["id"])
        step.notes.append(f"order {created['id']} {self.args.amount}: reserve -> "
                          f"{orders.reserve(created['id'])['status']}")
        orders.create_escrow(created["id"])

        def deployed() -> dict[str, Any] | None:
            current = dict(orders.get(created["id"]))
            return current if (current.get("escrow") or {}).get("status") == "CREATED" else None

        self.order = eventually("the escrow contract to be deployed", deployed, seconds=STEP_SECONDS)
        step.notes.append(f"contract {(self.order.get('escrow') or {}).get('trustlessContractId')}")
        event = self.events.find("escrow.created", lambda p: p.get("orderId") == created["id"])
        step.txs.append(Tx("escrow deploy", (event or {}).get("payload", {}).get("transactionHash")))

    def fund(self, step: Step) -> None:
        funded = settled(self.client, self.client.orders.fund_escrow(self.order["id"]))
        step.notes.append(f"order {funded['status']}, escrow {(funded.get('escrow') or {}).get('status')}")
        if funded.get("status") != "IN_PROGRESS":
            raise StepFailed(f"the order is {funded.get('status')} after funding, not IN_PROGRESS")
        event = self.events.find("escrow.funded", lambda p: p.get("orderId") == self.order["id"])
        step.txs.append(Tx("escrow fund", (event or {}).get("payload", {}).get("transactionHash")))

    def release(self, step: Step) -> None:
        done = settled(self.client, self.client.orders.release(self.order["id"], reason="Smoke run"))
        step.notes.append(f"order {done['status']} / {done.get('finalStatus')}, seller net {done.get('netAmount')}")
        if (done.get("status"), done.get("finalStatus")) != ("CLOSED", "RELEASED"):
            raise StepFailed(f"the order is {done.get('status')}/{done.get('finalStatus')}, not CLOSED/RELEASED")
        contract = (self.order.get("escrow") or {}).get("trustlessContractId")
        seller = self.users["seller"]["id"]

        def paid() -> str | None:
            for tx in self.client.wallet.get_transactions(seller, limit=20):
                if tx.get("from") == contract and tx.get("to") == self.addresses["seller"]:
                    return str(tx["hash"])
            return None

        with contextlib.suppress(TimeoutError):
            step.txs.append(Tx("escrow release", eventually("the seller's payout in its wallet history", paid,
                                                            seconds=EVENT_SECONDS)))
        if not step.txs:
            raise StepFailed(f"the seller's wallet history shows no payment from the escrow contract {contract}")

    def withdraw(self, step: Step) -> None:
        seller = self.users["seller"]["id"]
        amount = self.args.withdraw or (self.limits.get("withdrawal") or {}).get("min") or "10.00"
        destination = self.args.withdraw_to or self.destination(step)
        answer = self.client.withdrawals.create(user_id=seller, amount=amount, destination_type="crypto",
                                                destination_ref=destination)
        withdrawal = dict(answer)
        step.notes.append(f"withdrawal {withdrawal['id']} of {amount} USDC to {destination}")

        def completed() -> dict[str, Any] | None:
            current = dict(self.client.withdrawals.get(withdrawal["id"]))
            if current["status"] in ("WITHDRAWAL_FAILED", "WITHDRAWAL_CANCELED"):
                raise StepFailed(f"the withdrawal ended {current['status']}: {current.get('failureReason')}")
            return current if current["status"] == "WITHDRAWAL_COMPLETED" else None

        done = eventually("the withdrawal to complete", completed, seconds=STEP_SECONDS)
        step.txs.append(Tx("withdrawal", done.get("transactionHash")))

    def destination(self, step: Step) -> str:
        """Where the withdrawal goes: a fresh sandbox account, or back to whoever funded the testnet deposit."""
        if self.sandbox:
            account = http_json("POST", f"{self.sandbox}/_sandbox/stellar/accounts",
                            {"xlm": "100", "usdcTrustline": True, "usdc": "0"})
            step.notes.append("destination: a new sandbox account with a USDC trustline")
            return str(account["publicKey"])
        payer = self.horizon.payer_of(self.deposit_hash, self.addresses["buyer"]) if self.deposit_hash else None
        if not payer:
            raise StepFailed("cannot tell who funded the deposit: pass --withdraw-to G... (an account with a "
                             "USDC trustline)")
        step.notes.append("destination: the account that funded the deposit")
        return payer

    def balances(self, step: Step) -> None:
        for role, user in self.users.items():
            book = self.client.balance.get(user["id"])
            total = Decimal(book["available"]) + Decimal(book["reserved"])
            ledger = self.horizon.usdc(self.addresses[role], self.issuer)
            step.notes.append(f"{role}: book {total:f} (available {book['available']}, reserved "
                              f"{book['reserved']}), ledger {ledger:f}")
            if total != ledger:
                raise StepFailed(f"the {role}'s book {total:f} differs from its wallet's {ledger:f} USDC on the ledger")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", choices=NETWORKS, required=True,
                        help="the network the instance runs on (checked against its /config and Horizon)")
    parser.add_argument("--amount", default="12.00", help="USDC deposited to the buyer and held in the escrow")
    parser.add_argument("--withdraw", default=None,
                        help="USDC the seller withdraws afterwards (default: the instance's withdrawal minimum)")
    parser.add_argument("--withdraw-to", default=None,
                        help="a G... account with a USDC trustline (default: a new sandbox account, or on "
                             "testnet the account that funded the deposit)")
    parser.add_argument("--fund-timeout", type=float, default=900.0,
                        help="testnet: seconds to wait for the operator to fund the buyer (default 900)")
    parser.add_argument("--horizon-url", default=None,
                        help="Horizon read to confirm hashes (default: STELLAR_HORIZON_URL, else the network's)")
    parser.add_argument("--sandbox-url", help="sandbox: its control plane (default: SANDBOX_URL, .env, "
                                              "http://127.0.0.1:4100)")
