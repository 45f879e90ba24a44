"""The AirTM enterprise balance against what the book owes (providers.md §3.1).

In AirTM mode every user balance is a claim on the marketplace's enterprise account at AirTM, so the
enterprise's ``available`` must cover the users' ``available + reserved``; AirTM's ``pending`` is
money held by payouts in flight, already debited from their users. Reported by
``GET /health/detailed`` and checked by ``offerhub check``.
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

    @property
    def covered(self) -> bool:
        return self.enterprise_available >= self.user_claims

    def as_json(self) -> dict[str, Any]:
        return {"enterpriseAvailable": format_balance(self.enterprise_available),
                "enterprisePending": format_balance(self.enterprise_pending),
                "userBalances": format_balance(self.user_claims),
                "payoutsInFlight": format_balance(self.payouts_in_flight), "covered": self.covered,
                "currency": "USD"}

    def describe(self) -> str:
        return (f"AirTM enterprise available {format_balance(self.enterprise_available)} (pending "
                f"{format_balance(self.enterprise_pending)}) vs users' balances {format_balance(self.user_claims)} "
                f"(payouts in flight {format_balance(self.payouts_in_flight)})")


def of(enterprise: dict[str, Decimal], claims: Any) -> Treasury:
    return Treasury(enterprise["available"], enterprise["pending"], Decimal(claims.owed), Decimal(claims.flight))


def read(engine: Any, client: AirtmClient) -> Treasury:
    """Read at AirTM first: no database connection stays open across the HTTP call."""
    enterprise = client.balance()
    with engine.connect() as conn:
        claims = conn.execute(claims_query()).one()  # the web tier runs the same query on its engine
    return of(enterprise, claims)
