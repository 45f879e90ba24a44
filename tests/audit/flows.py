"""The flows the audit scans drive themselves, so each scan proves something whether it runs first, last or alone.

``drive`` runs, through the real API (an in-process server on a real socket, the run's in-process worker,
a monitor process, the sandbox's ledger, Trustless Work and AirTM), everything the scans look for:

- an API key created by the master key (its plaintext shown once, the request sent with an
  ``Idempotency-Key``, so its answer is stored), and a short-lived token minted from it and used; every
  later call is made with that key, so its plaintext rides on every request;
- a buyer and a seller created with e-mail addresses, each with a sealed wallet activated on the ledger;
- a USDC deposit into the buyer's wallet, credited by the monitor;
- an order funded into escrow by the buyer's wallet and released to the seller (chain steps signed);
- an administrative credit whose description quotes the buyer's e-mail (as a support agent's note would);
- a crypto withdrawal paid from the seller's wallet (signed by its secret);
- an AirTM-backed user linked to a seeded AirTM account by e-mail (``POST /users/{id}/airtm/link``).

The AirTM-backed user is created by ``users.create`` with ``backing=AIRTM`` (as
``tests/airtm/test_backing_in_core.py`` does): the run's own instance is in crypto mode and backs the users
it creates by wallets, and a second AirTM-mode instance would write to a database of its own, which the
scans do not read. The link itself goes through the API, the AirTM lookup and the command, as in AirTM mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine

from orchestrator import crypto
from orchestrator.accounts import users
from orchestrator.settings import Settings
from orchestrator.unit_of_work import UnitOfWork
from tests import builders
from tests.api import Api, idempotency_key, unique
from tests.e2e.test_deposits import credited
from tests.e2e.test_wallets import wallet_status
from tests.fixtures.airtm import AirtmControl
from tests.fixtures.sandbox import SandboxControl
from web.app import create_app

WAIT = {"Prefer": "wait=30"}


@dataclass
class Flows:
    """What ``drive`` made: the ids, e-mails, credentials and wallets the scans assert on."""

    key_id: str
    key: str  # the API key's plaintext, shown once
    token: str  # a short-lived token minted from it
    buyer: dict[str, Any]
    seller: dict[str, Any]
    linked_id: str  # the AirTM-backed user, linked by e-mail
    emails: dict[str, str]  # who -> the full e-mail address the flows sent
    wallets: dict[str, dict[str, Any]]  # "buyer" / "seller" -> the wallet row
    deposit_hash: str
    order_id: str
    escrow_id: str
    withdrawal_id: str
    credit_audit_id: str  # the administrative credit's audit entry

    @property
    def users(self) -> list[str]:
        return [self.buyer["id"], self.seller["id"], self.linked_id]

    @property
    def aggregates(self) -> list[str]:
        """Every aggregate the flows' events are about."""
        return [*self.users, *(w["id"] for w in self.wallets.values()), self.order_id, self.escrow_id,
                self.withdrawal_id]

    def secrets(self, settings: Settings) -> dict[str, str]:
        """The flows' wallets' secret seeds, opened from their sealed rows ("buyer" / "seller" -> seed)."""
        keyring = crypto.Keyring.from_settings(settings.wallet_encryption_key)
        return {who: crypto.open_sealed(keyring, crypto.Sealed(w["sealed_secret"], w["nonce"], w["key_version"]),
                                        public_key=w["public_key"]) for who, w in self.wallets.items()}


def email(who: str) -> str:
    """A unique address whose local part is long enough that a redacted copy (``b***@…``) differs from it."""
    return f"{unique(who)}@example.com".lower()


def airtm_backed_user(engine: Engine, address: str) -> str:
    def create(uow: UnitOfWork, command: users.CreateUser) -> Any:
        return users.create(uow, command, backing=users.Backing.AIRTM)

    return builders.run(engine, create, {"externalUserId": unique("ext"), "email": address}).id


async def drive(master: Api, engine: Engine, ledger: SandboxControl) -> Flows:
    # an API key (its create answer stored under an idempotency key) and a token minted from it
    created = await master.post("/auth/api-keys", {"name": unique("audit"), "scopes": ["read", "write", "support"]},
                                headers={"Idempotency-Key": idempotency_key()})
    assert created.status == 201, created.body
    key_id, key = created.data["id"], created.data["key"]
    api = master.as_(key)
    minted = await api.post(f"/auth/api-keys/{key_id}/token", {"ttl": 600})
    assert minted.status == 201, minted.body
    token = minted.data["token"]
    me = await api.get("/auth/me", key=token)
    assert (me.status, me.data["apiKeyId"]) == (200, key_id), me.body

    # a buyer and a seller with e-mails, each with a wallet activated on the ledger
    emails = {"buyer": email("buyer"), "seller": email("seller")}
    buyer = await api.user(email=emails["buyer"])
    seller = await api.user(email=emails["seller"])
    wallets = {"buyer": await wallet_status(engine, buyer["id"]), "seller": await wallet_status(engine, seller["id"])}

    # a deposit on the ledger, credited by the monitor
    deposit_hash = ledger.pay("issuer", wallets["buyer"]["public_key"], "50.00")["hash"]
    await credited(engine, buyer["id"], 1)

    # an order funded into escrow by the buyer's wallet and released to the seller
    order = await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "30.00",
                                       "title": "Audited work"})
    assert order.status == 201, order.body
    order_id = order.data["id"]
    assert (await api.post(f"/orders/{order_id}/reserve")).status == 200
    escrowed = await api.post(f"/orders/{order_id}/escrow", headers=WAIT)
    assert escrowed.status == 200, escrowed.body
    funded = await api.post(f"/orders/{order_id}/escrow/fund", headers=WAIT)
    assert funded.data["status"] == "IN_PROGRESS", funded.body
    released = await api.post(f"/orders/{order_id}/resolution/release", headers=WAIT)
    assert released.data["status"] == "CLOSED", released.body
    escrow_id = released.data["escrow"]["id"]

    # an administrative credit whose note quotes the buyer's e-mail
    credit = await api.post(f"/users/{buyer['id']}/balance/credit",
                            {"amount": "5.00", "reference": unique("ticket"),
                             "description": f"goodwill credit, asked for by {emails['buyer']}"}, headers=WAIT)
    assert credit.status == 200, credit.body
    credit_audit_id = credit.data["auditLogId"]

    # a withdrawal paid from the seller's wallet
    outside = ledger.create_account(usdc_trustline=True)
    withdrawal = await api.post("/withdrawals", {"userId": seller["id"], "amount": "10.00",
                                                 "destinationType": "crypto", "destinationRef": outside["publicKey"]},
                                headers=WAIT)
    assert withdrawal.data["status"] == "WITHDRAWAL_COMPLETED", withdrawal.body

    # an AirTM-backed user linked to its AirTM account by e-mail
    emails["linked"] = email("linked")
    emails["airtm"] = AirtmControl(ledger).user(email=email("airtm"))
    linked_id = airtm_backed_user(engine, emails["linked"])
    link = await api.post(f"/users/{linked_id}/airtm/link", {"email": emails["airtm"]}, headers=WAIT)
    assert (link.status, link.data["email"]) == (200, emails["airtm"]), link.body

    return Flows(key_id=key_id, key=key, token=token, buyer=buyer, seller=seller, linked_id=linked_id,
                 emails=emails, wallets=wallets, deposit_hash=deposit_hash, order_id=order_id, escrow_id=escrow_id,
                 withdrawal_id=withdrawal.data["id"], credit_audit_id=credit_audit_id)


@pytest.fixture(scope="module")
async def flows(settings: Settings, engine: Engine, worker: object, monitor: None,
                sandbox_url: str) -> AsyncIterator[Flows]:
    """The flows above, driven once for the module that asks for them, before any of its tests scans."""
    ledger = SandboxControl(sandbox_url)
    try:
        async with TestClient(TestServer(create_app(settings))) as client:
            yield await drive(Api(client, settings.master_key), engine, ledger)
    finally:
        ledger.http.close()
