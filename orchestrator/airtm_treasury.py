"""The AirTM enterprise balance against what the book owes (providers.md §3.1).

In AirTM mode every user balance is a claim on the marketplace's enterprise account at AirTM. The
enterprise's ``available`` holds, to the cent, the users' balances, the withdrawals debited here
whose payout AirTM has not created yet (``unsent``), and what the platform owns there
(``platformOwned``: the operator's own funds less the AirTM fees the platform has paid, since a top-up
credits ``amount`` while the enterprise receives ``netAmount``). AirTM's ``pending`` is money held
by payouts it has created, already debited from their users.

The journal's ``world:airtm`` says what the flows through AirTM left in the enterprise account (each
fee an entry of its own), so ``operatorFunds`` = enterprise ``available`` - ``unsent`` - that is the
money the book never saw move: constant while the book follows AirTM; a change is a movement the
book missed (or one the operator made at AirTM). Reported by ``GET /health/detailed`` and checked by
``offerhub check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator.db.airtm import claims_query
from orchestrator.money import format_balance
from orchestrator.providers.airtm import AirtmClient


@dataclass(frozen=True)
class Treasury:
    enterprise_available: Decimal
    enterprise_pending: Decimal
    user_claims: Decimal
    payouts_in_flight: Decimal
    payouts_unsent: Decimal = Decimal(0)
    book_at_airtm: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)

    @property
    def platform_owned(self) -> Decimal:
        """What the enterprise holds beyond the users' balances and the payouts still to be sent."""
        return self.enterprise_available - self.payouts_unsent - self.user_claims

    @property
    def operator_funds(self) -> Decimal:
        """The enterprise's money the journal never saw arrive (the operator's float)."""
        return self.enterprise_available - self.payouts_unsent - self.book_at_airtm

    @property
    def covered(self) -> bool:
        return self.platform_owned >= 0

    def as_json(self) -> dict[str, Any]:
        return {"enterpriseAvailable": format_balance(self.enterprise_available),
                "enterprisePending": format_balance(self.enterprise_pending),
                "userBalances": format_balance(self.user_claims),
                "payoutsInFlight": format_balance(self.payouts_in_flight),
                "payoutsUnsent": format_balance(self.payouts_unsent),
                "platformOwned": format_balance(self.platform_owned),
                "airtmFeesPaid": format_balance(self.fees_paid),
                "bookAtAirtm": format_balance(self.book_at_airtm),
                "operatorFunds": format_balance(self.operator_funds),
                "covered": self.covered, "currency": "USD"}

    def describe(self) -> str:
        return (f"AirTM enterprise available {format_balance(self.enterprise_available)} (pending "
                f"{format_balance(self.enterprise_pending)}) = users' balances {format_balance(self.user_claims)}"
                f" + payouts not yet sent {format_balance(self.payouts_unsent)} + platform-owned "
                f"{format_balance(self.platform_owned)} (AirTM fees paid {format_balance(self.fees_paid)}; "
                f"operator funds {format_balance(self.operator_funds)}; payouts in flight "
                f"{format_balance(self.payouts_in_flight)})")


def of(enterprise: dict[str, Decimal], claims: Any) -> Treasury:
    return Treasury(enterprise["available"], enterprise["pending"], Decimal(claims.owed), Decimal(claims.flight),
                    Decimal(claims.unsent), Decimal(claims.book), Decimal(claims.fees))


def read(engine: Any, client: AirtmClient) -> Treasury:
    """Read at AirTM first: no database connection stays open across the HTTP call."""
    enterprise = client.balance()
    with engine.connect() as conn:
        claims = conn.execute(claims_query()).one()  # the web tier runs the same query on its engine
    return of(enterprise, claims)
