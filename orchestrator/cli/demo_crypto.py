"""``offerhub demo`` on a crypto-mode instance: two users, the buyer funded by a USDC payment on the sandbox
ledger into its wallet (the deposit monitor credits it), then one order released, one refunded and one
disputed and split; the run ends with each party's book balance beside the USDC its wallet holds.
"""

from __future__ import annotations

import argparse
import functools
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from orchestrator.cli.narration import (
    TOLERANCE,
    Narrator,
    Watcher,
    eventually,
    http_json,
    ledger_usdc,
    settled,
    table,
)
from orchestrator.client import Client


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
        paid = http_json("POST", f"{self.sandbox}/_sandbox/stellar/pay",
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



