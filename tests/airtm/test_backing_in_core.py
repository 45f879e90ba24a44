"""The core refuses a money flow of the other backing by itself (DESIGN decision 26): not only the web tier
checks, so no actor, replayed command or script can move a user's money through the other provider.

The command handlers run directly on the run's database (as a worker runs them); nothing is mocked.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from orchestrator.accounts import users
from orchestrator.airtm import links, topups
from orchestrator.commands import create_withdrawal
from orchestrator.errors import BusinessRuleViolation
from orchestrator.settings import Settings
from orchestrator.unit_of_work import UnitOfWork
from tests import builders
from tests.api import unique


def backed_user(engine: Engine, backing: users.Backing, *, linked: bool = True) -> str:
    """A user of ``backing`` with 50.00 available, linked to an AirTM account unless told otherwise."""
    def create(uow: UnitOfWork, command: users.CreateUser) -> Any:
        return users.create(uow, command, backing=backing)

    user_id = builders.run(engine, create, {"externalUserId": unique("ext")}).id
    builders.adjust(engine, "credit", user_id, Decimal("50.00"))
    if linked:
        builders.run(engine, links.link, {"userId": user_id, "email": f"{unique('m')}@example.com",
                                                "airtmUserId": unique("airtm")})
    return user_id


def available(engine: Engine, user_id: str) -> Decimal:
    with engine.connect() as conn:
        return Decimal(conn.exec_driver_sql("SELECT available FROM balances WHERE user_id = %s",
                                            (user_id,)).scalar_one())


def refused(engine: Engine, settings: Settings, handler: Any, payload: dict[str, Any]) -> BusinessRuleViolation:
    with pytest.raises(BusinessRuleViolation) as caught:
        builders.run(engine, handler, payload, settings=settings)
    return caught.value


def test_a_wallet_backed_user_gets_no_airtm_withdrawal_or_top_up_even_when_linked(
        engine: Engine, settings: Settings) -> None:
    user_id = backed_user(engine, users.Backing.WALLET)
    payout = refused(engine, settings, create_withdrawal, {"userId": user_id, "amount": "20.00",
                                                            "destinationType": "bank", "destinationRef": "bank_ref"})
    assert (payout.code, payout.details) == ("PROVIDER_NOT_ENABLED", {"provider": "airtm", "backing": "WALLET"})
    topup = refused(engine, settings, topups.create, {"userId": user_id, "amount": "20.00",
                                                      "returnUrl": "https://m.example/ok",
                                                      "cancelUrl": "https://m.example/no"})
    assert (topup.code, topup.details) == ("PROVIDER_NOT_ENABLED", {"provider": "airtm", "backing": "WALLET"})
    assert available(engine, user_id) == Decimal("50.00")  # nothing was debited


def test_an_airtm_backed_user_gets_no_crypto_withdrawal(engine: Engine, settings: Settings) -> None:
    user_id = backed_user(engine, users.Backing.AIRTM)
    crypto = refused(engine, settings, create_withdrawal, {"userId": user_id, "amount": "20.00",
                                                            "destinationType": "crypto",
                                                            "destinationRef": "G" + "A" * 55})
    assert (crypto.code, crypto.details) == ("PROVIDER_NOT_ENABLED", {"provider": "crypto", "backing": "AIRTM"})
    assert available(engine, user_id) == Decimal("50.00")


def test_an_airtm_backed_user_tops_up_only_once_linked(engine: Engine, settings: Settings) -> None:
    unlinked = backed_user(engine, users.Backing.AIRTM, linked=False)
    error = refused(engine, settings, topups.create, {"userId": unlinked, "amount": "20.00",
                                                      "returnUrl": "https://m.example/ok",
                                                      "cancelUrl": "https://m.example/no"})
    assert error.code == "AIRTM_USER_NOT_LINKED"
    linked = backed_user(engine, users.Backing.AIRTM)
    made = builders.run(engine, topups.create, {"userId": linked, "amount": "20.00",
                                                "returnUrl": "https://m.example/ok",
                                                "cancelUrl": "https://m.example/no"}, settings=settings)
    assert (made.status, made.resource) == (201, "topup")  # credited nothing until AirTM confirms it
    assert available(engine, linked) == Decimal("50.00")
