"""``offerhub demo --provider airtm``: the seed flows on an AirTM-mode instance, narrated as they happen.

Users have no wallet in AirTM mode: each is linked to an AirTM account (seeded at the sandbox's AirTM), and
its balance is a claim on the marketplace's enterprise account. The buyer tops up through the sandbox's
hosted checkout (the form a browser would post), AirTM's webhook credits the book; the platform's treasury
pool (Stellar accounts ``bootstrap`` created) funds each escrow on the ledger in the buyer's stead; one order
is released, one refunded, one disputed and split; the seller withdraws to AirTM. The run ends with each
user's book beside what AirTM moved for them, the pool's USDC on the ledger beside what the book moved
through the escrows, and the enterprise balance beside the users' claims. Everything goes over HTTP (the
SDK and the sandbox's public and control routes), never to the database.
"""

from __future__ import annotations

import argparse
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from typing import Any

from orchestrator.cli.demo_crypto import Demo
from orchestrator.cli.narration import TOLERANCE, eventually, http_json, ledger_usdc, table
from orchestrator.client import NotFoundError

#: The pool's users as ``bootstrap`` names them (orchestrator/accounts/platform.py, not imported: it loads the
#: server's settings, which the CLI's HTTP commands never need).
TREASURY_EXTERNAL_ID = "offerhub-treasury-{n}"
SETTLEMENT_EXTERNAL_ID = "offerhub-settlement"
#: The largest order of the story: each treasury account is topped up to cover it (one account funds an escrow).
LARGEST_ORDER = Decimal("100.00")
MAX_TREASURY_ACCOUNTS = 64


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The checkout answers 302 to the instance's callback and on to the marketplace: shown, not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post_form(url: str, fields: dict[str, str]) -> tuple[int, str]:
    """POST a form as a browser would; returns the status and where it was redirected (if it was)."""
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST",  # noqa: S310 - the sandbox's checkout URL
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as answer:
        if answer.code in (301, 302, 303, 307):
            return answer.code, answer.headers.get("Location", "")
        raise SystemExit(f"Error: the sandbox's checkout refused the payment ({answer.code}): "
                         f"{answer.read()[:300].decode(errors='replace')}") from None


class AirtmDemo(Demo):
    """The crypto demo's story with AirTM money in and out, and escrows funded by the treasury pool."""

    def __init__(self, client: Any, sandbox: str) -> None:
        super().__init__(client, sandbox)
        self.emails: dict[str, str] = {}
        self.pool: dict[str, str] = {}  # public key -> TREASURY | SETTLEMENT
        self.escrow_net: dict[str, Decimal] = {}  # what the escrows moved for each user, as the book says

    def run(self, args: argparse.Namespace) -> int:
        self.watcher.start()
        self.say(f"OFFER-HUB demo {self.tag} in AirTM mode against {self.client.config.api_url} "
                 f"(sandbox {self.sandbox})")
        self.users()
        self.deposit(args.deposit)
        self.treasury()
        pool_before = self.pool_usdc()
        self.orders()
        pool_after = self.pool_usdc()
        self.withdrawal(args.withdraw)
        time.sleep(1.5)  # let the last events reach the screen
        self.step("Balances: the book beside AirTM and the ledger")
        return self.summary(pool_before, pool_after)

    def users(self) -> None:
        self.step("Two marketplace users, each linked to an AirTM account (their balances are claims at AirTM)")
        for who in ("buyer", "seller"):
            user = self.client.users.create(external_user_id=f"demo-{who}-{self.tag}",
                                            email=f"{who}-{self.tag}@example.com")
            self.watcher.follow(user["id"])
            email = f"demo-{who}-{self.tag}@example.com"
            http_json("POST", f"{self.sandbox}/_sandbox/airtm/users",
                  {"email": email, "firstName": "Demo", "lastName": who.title()})
            linked = self.client.users.link_airtm(user["id"], email=email)
            self.emails[who] = email
            self.parties[who] = (user, "")
            self.say(f"{who:<6} {user['id']} ({user.get('backing')}-backed) linked to AirTM account "
                     f"{email} ({linked.get('airtmUserId')})", 1)

    def deposit(self, amount: str) -> None:
        """A top-up as a marketplace runs one: the checkout URL, the buyer's confirmation there, the webhook."""
        buyer = self.parties["buyer"][0]
        self.step(f"A top-up: the buyer pays {amount} USD at AirTM's checkout, AirTM's webhook credits the book")
        topup = self.client.topups.create(user_id=buyer["id"], amount=amount, description="Demo top-up")
        self.watcher.follow(topup["id"])
        checkout = topup.get("confirmationUri") or ""
        self.say(f"topup {topup['id']} -> {topup['status']}; the buyer is sent to {checkout}", 1)
        if not checkout.startswith(f"{self.sandbox}/airtm/checkout/"):  # an instance set up with another URL
            checkout = f"{self.sandbox}/airtm/checkout/payin/{topup['airtmPayinId']}"
        status, location = _post_form(f"{checkout}/confirm", {"email": self.emails["buyer"]})
        self.say(f"the buyer confirms as {self.emails['buyer']} -> HTTP {status}, back to {location or '-'}", 1)

        def succeeded() -> dict[str, Any] | None:
            found = self.client.topups.get(topup["id"])
            if found["status"] in ("TOPUP_FAILED", "TOPUP_CANCELED", "TOPUP_EXPIRED"):
                raise SystemExit(f"Error: the top-up ended {found['status']}: {found.get('failureReason')}")
            return found if found["status"] == "TOPUP_SUCCEEDED" else None

        done = eventually("the top-up to be credited", succeeded)
        self.say(f"topup {done['status']}: buyer available {self.client.balance.get(buyer['id'])['available']}", 1)

    def treasury(self) -> None:
        """The pool ``bootstrap`` made; each treasury account is given the largest order's USDC if it lacks it
        (the operator's float, paid by the sandbox's issuer as an operator would pay it in)."""
        self.step("The treasury pool: platform-held Stellar accounts fund the escrows of AirTM-backed buyers")
        names = [(TREASURY_EXTERNAL_ID.format(n=n), "TREASURY") for n in range(1, MAX_TREASURY_ACCOUNTS + 1)]
        for external_id, purpose in [*names, (SETTLEMENT_EXTERNAL_ID, "SETTLEMENT")]:
            found = self.client.users.list(external_user_id=external_id).items
            if not found:
                if purpose == "TREASURY" and external_id != TREASURY_EXTERNAL_ID.format(n=1):
                    continue  # past the last treasury account (TREASURY_ACCOUNTS)
                raise SystemExit(f"Error: the instance has no {external_id} user: run `offerhub bootstrap` on it "
                                 "(it creates the treasury pool in both modes).")
            self.pool[self._active_address(found[0]["id"], external_id)] = purpose
        paid = Decimal(0)
        for key, purpose in self.pool.items():
            held = ledger_usdc(self.sandbox, key)
            short = LARGEST_ORDER - held if purpose == "TREASURY" else Decimal(0)
            if short > 0:
                http_json("POST", f"{self.sandbox}/_sandbox/stellar/pay",
                      {"from": "issuer", "to": key, "amount": f"{short:.7f}", "asset": "USDC"})
                paid += short
                held = ledger_usdc(self.sandbox, key)
            self.say(f"{purpose.lower():<10} {key} holds {held:f} USDC", 1)
        if paid:
            self.say(f"the sandbox's issuer paid {paid:f} USDC into the pool (the operator's float: record it on "
                     "the server with `offerhub reconcile --record-float`)", 1)

    def _active_address(self, user_id: str, name: str) -> str:
        def active() -> str | None:
            try:
                return str(self.client.wallet.get_deposit_address(user_id)["address"])
            except NotFoundError:
                return None

        return eventually(f"{name}'s account to be activated on the ledger (the chain process does it)", active)

    def pool_usdc(self) -> Decimal:
        """The pool's USDC on the ledger, read until two readings agree (a settlement sweep moves USDC between
        two of its accounts, and one could land between the reads of one pass)."""
        last: Decimal | None = None
        for _ in range(20):
            now = sum((ledger_usdc(self.sandbox, key) for key in self.pool), Decimal(0))
            if now == last:
                return now
            last = now
            time.sleep(0.2)
        raise TimeoutError("the treasury pool's USDC kept changing on the ledger (is something else using it?)")

    def withdrawal(self, amount: str) -> None:
        seller = self.parties["seller"][0]
        self.step(f"A withdrawal: the seller takes {amount} USD out to its AirTM account")
        made = self.client.withdrawals.create(user_id=seller["id"], amount=amount, destination_type="airtm_balance",
                                              destination_ref=self.emails["seller"], commit=True)
        self.watcher.follow(made["id"])
        self.say(f"withdrawal {made['id']} -> {made['status']} (AirTM payout {made.get('airtmPayoutId')})", 1)

        def completed() -> dict[str, Any] | None:
            found = self.client.withdrawals.get(made["id"])
            if found["status"] in ("WITHDRAWAL_FAILED", "WITHDRAWAL_CANCELED"):
                raise SystemExit(f"Error: the withdrawal ended {found['status']}: {found.get('failureReason')}")
            return found if found["status"] == "WITHDRAWAL_COMPLETED" else None

        done = eventually("the withdrawal to complete at AirTM", completed)
        self.say(f"withdrawal {done['status']}: seller available "
                 f"{self.client.balance.get(seller['id'])['available']}", 1)

    def summary(self, pool_before: Decimal, pool_after: Decimal) -> int:
        """Each user's book beside what AirTM moved for them and what the escrows moved in the book; the pool's
        USDC on the ledger beside what the book moved through the escrows; the enterprise beside the claims."""
        state = http_json("GET", f"{self.sandbox}/_sandbox/state")
        airtm = state.get("airtm", state)
        rows, agree = [], True
        for who, (user, _) in self.parties.items():
            email = self.emails[who].lower()
            paid_in = sum((Decimal(str(p["amount"])) for p in airtm.get("payins", [])
                           if (p.get("airtmUserEmail") or "").lower() == email and p["status"] == "CONFIRMED"),
                          Decimal(0))
            paid_out = sum((Decimal(str(p["amount"])) for p in airtm.get("payouts", [])
                            if (p.get("airtmUserEmail") or "").lower() == email and p["status"] == "COMPLETED"),
                           Decimal(0))
            book = self.client.balance.get(user["id"])
            total = Decimal(book["available"]) + Decimal(book["reserved"])
            escrows = self.escrow_net[who]
            same = abs(total - (paid_in - paid_out + escrows)) <= TOLERANCE
            agree = agree and same
            rows.append((who, book["available"], book["reserved"], f"{paid_in:.2f}", f"{paid_out:.2f}",
                         f"{escrows:+.2f}", "yes" if same else "NO"))
        table(("party", "available", "reserved", "AirTM paid in", "AirTM paid out", "escrows", "book = AirTM"),
               rows)
        moved, escrowed = pool_after - pool_before, sum(self.escrow_net.values(), Decimal(0))
        pool_same = abs(moved - escrowed) <= TOLERANCE
        table(("treasury pool", "ledger USDC before", "after", "moved", "book moved", "book = ledger"),
               [(f"{len(self.pool)} accounts", f"{pool_before:f}", f"{pool_after:f}", f"{moved:+f}",
                 f"{escrowed:+f}", "yes" if pool_same else "NO")])
        enterprise = ((self.client.system.health_detailed().get("dependencies") or {}).get("airtm") or {}).get(
            "treasury") or {}
        covered = enterprise.get("covered") is True
        table(("AirTM enterprise", "available", "users' balances", "covered"),
               [("at the sandbox", str(enterprise.get("enterpriseAvailable")), str(enterprise.get("userBalances")),
                 "yes" if covered else "NO")])
        self.say(f"{self.watcher.count} events streamed"
                 + (f"; the stream stopped: {self.watcher.error}" if self.watcher.error else ""))
        if not (agree and pool_same and covered):
            self.say("The book, AirTM and the ledger disagree: run `offerhub check` on the server.")
            return 1
        self.say("Done: each user's book equals what AirTM moved for them plus what the escrows paid, the "
                 "treasury pool moved on the ledger exactly what the book moved through the escrows, and the "
                 "AirTM enterprise balance covers the users' balances.")
        return 0

    def orders(self) -> None:
        """The crypto demo's three orders; the book's claims before and after say what the escrows moved."""
        before = {who: self._total(user["id"]) for who, (user, _) in self.parties.items()}
        super().orders()
        self.escrow_net = {who: self._total(user["id"]) - before[who] for who, (user, _) in self.parties.items()}

    def _total(self, user_id: str) -> Decimal:
        book = self.client.balance.get(user_id)
        return Decimal(book["available"]) + Decimal(book["reserved"])

