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
``offerhub check``, beside the platform's treasury on the Stellar ledger: its wallet's XLM and USDC.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator.accounts import platform
from orchestrator.amounts import format_balance
from orchestrator.db.airtm import claims_query
from orchestrator.providers.airtm import AirtmClient
from orchestrator.settings import Settings


@dataclass(frozen=True)
class PlatformWallet:
    """The platform wallet as the ledger holds it; ``error`` when it could not be read (or there is none)."""

    public_key: str | None
    status: str | None
    on_ledger: bool = False
    xlm: Decimal | None = None
    usdc: Decimal | None = None  # None: not on the ledger, or no trustline to the configured USDC
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"publicKey": self.public_key, "status": self.status, "onLedger": self.on_ledger,
                               "xlm": _ledger(self.xlm), "usdc": _ledger(self.usdc)}
        return out | ({"error": self.error} if self.error else {})

    def describe(self) -> str:
        if self.public_key is None:
            return f"Platform wallet: {self.error}"
        if self.error:
            return f"Platform wallet {self.public_key} ({self.status}): {self.error}"
        if not self.on_ledger:
            return f"Platform wallet {self.public_key} ({self.status}): not on the ledger yet"
        usdc = "no USDC trustline" if self.usdc is None else f"{_ledger(self.usdc)} USDC"
        return f"Platform wallet {self.public_key} ({self.status}) on the ledger: {_ledger(self.xlm)} XLM, {usdc}"


def _ledger(amount: Decimal | None) -> str | None:
    """Ledger amounts as the ledger writes them: seven decimals."""
    return None if amount is None else f"{amount:.7f}"


def platform_key(conn: Any, settings: Settings) -> PlatformWallet:
    """The platform wallet's key and book status, to be read on the ledger (an error when there is none)."""
    found = platform.find(conn, settings)
    if found is None or found.wallet is None:
        return PlatformWallet(None, None, error="no platform wallet (run `python -m orchestrator bootstrap`)")
    return PlatformWallet(found.wallet.public_key, found.wallet.status)


def on_ledger(wallet: PlatformWallet, account: Any) -> PlatformWallet:
    """``wallet`` with what the ledger holds (``account``: Horizon's record, ``None`` when it does not exist)."""
    if account is None:
        return wallet
    return PlatformWallet(wallet.public_key, wallet.status, True, account.xlm, account.usdc)


def unreadable(wallet: PlatformWallet, error: BaseException) -> PlatformWallet:
    return PlatformWallet(wallet.public_key, wallet.status, error=f"the ledger could not be read ({error})")


@dataclass(frozen=True)
class Treasury:
    enterprise_available: Decimal
    enterprise_pending: Decimal
    user_claims: Decimal
    payouts_in_flight: Decimal
    payouts_unsent: Decimal = Decimal(0)
    book_at_airtm: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)
    platform_wallet: PlatformWallet | None = None

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
                "covered": self.covered, "currency": "USD",
                "platformWallet": self.platform_wallet.as_json() if self.platform_wallet else None}

    def describe(self) -> str:
        return (f"AirTM enterprise available {format_balance(self.enterprise_available)} (pending "
                f"{format_balance(self.enterprise_pending)}) = users' balances {format_balance(self.user_claims)}"
                f" + payouts not yet sent {format_balance(self.payouts_unsent)} + platform-owned "
                f"{format_balance(self.platform_owned)} (AirTM fees paid {format_balance(self.fees_paid)}; "
                f"operator funds {format_balance(self.operator_funds)}; payouts in flight "
                f"{format_balance(self.payouts_in_flight)})"
                + (f"\n{self.platform_wallet.describe()}" if self.platform_wallet else ""))


def of(enterprise: dict[str, Decimal], claims: Any, wallet: PlatformWallet | None = None) -> Treasury:
    return Treasury(enterprise["available"], enterprise["pending"], Decimal(claims.owed), Decimal(claims.flight),
                    Decimal(claims.unsent), Decimal(claims.book), Decimal(claims.fees), wallet)


def read(engine: Any, client: AirtmClient, settings: Settings | None = None, horizon: Any = None) -> Treasury:
    """Read at AirTM and (with ``settings`` and ``horizon``) the platform wallet on the ledger first: no
    database connection stays open across an HTTP call (the wallet's key is read on a connection of its own)."""
    wallet = None
    if settings is not None and horizon is not None:
        with engine.connect() as conn:
            wallet = platform_key(conn, settings)
    if wallet is not None and wallet.public_key is not None:
        try:
            wallet = on_ledger(wallet, horizon.account(wallet.public_key))
        except Exception as error:  # any failure of the ledger read is reported, not raised
            wallet = unreadable(wallet, error)
    enterprise = client.balance()
    with engine.connect() as conn:
        claims = conn.execute(claims_query()).one()  # the web tier runs the same query on its engine
    return of(enterprise, claims, wallet)
