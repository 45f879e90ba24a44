"""A user's wallet read live from the ledger (spec api.md §7) and the book-versus-ledger checks (§6.2, §6.3).

The checks follow DESIGN decision 7: administrative credits and debits move book money with no ledger
counterpart, so the book should equal the wallet's ledger USDC plus the user's net administrative postings.
"""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from orchestrator import amounts
from orchestrator.db import reconciliation
from orchestrator.db import users as users_db
from orchestrator.db import wallets as wallets_db
from orchestrator.errors import Conflict, NotFound, ProviderFailure
from orchestrator.money.ledger import ADJUSTMENT
from orchestrator.operations.check import Comparison
from orchestrator.providers.horizon_reads import HorizonReader
from schemas import queries, views
from schemas.balances import BalanceOut
from schemas.common import page_limit, reject_unknown
from schemas.wallets import AIRTM_DEPOSIT, CryptoDepositOut, WalletOut, WalletTransactionOut, transaction_view
from web import audit, render
from web.apidoc import doc
from web.auth import requires
from web.keys import ENGINE, SETTINGS
from web.responses import envelope

UNKNOWN = "unknown"


@doc("A user's wallet with its balances read live from the ledger", response=WalletOut, provider=True,
     errors=("USER_NOT_FOUND", "WALLET_NOT_FOUND"))
@requires("read")
async def get_wallet(request: web.Request) -> web.Response:
    wallet = await _wallet(request, await render.user_from_path(request))
    async with HorizonReader(request.app[SETTINGS]) as horizon:
        ledger = await horizon.account(wallet.public_key)
    return envelope(request, WalletOut().dump({"wallet": wallet, "ledger": ledger}))


@doc("How to fund a user's balance", response=views.DepositInstructions,
     errors=("USER_NOT_FOUND", "WALLET_NOT_FOUND"))
@requires("read")
async def get_deposit_instructions(request: web.Request) -> web.Response:
    """A WALLET-backed user is told its wallet's address, an AIRTM-backed one is pointed at top-ups (spec
    api.md §2.4): by the user's own backing, whatever mode the instance runs now (DESIGN decision 26)."""
    settings = request.app[SETTINGS]
    user = await render.user_from_path(request)
    if user.backing == "AIRTM":
        return envelope(request, AIRTM_DEPOSIT)
    wallet = await _wallet(request, user)
    if wallet.status != "ACTIVE":  # the account cannot receive USDC before its trustline exists
        raise NotFound(f"User {user.id} has no active wallet yet", code="WALLET_NOT_FOUND")
    return envelope(request, CryptoDepositOut().dump({"wallet": wallet, "settings": settings}))


@doc("A wallet's payments on the ledger, newest first", query=queries.WalletTransactions,
     response=WalletTransactionOut, many=True, provider=True, errors=("USER_NOT_FOUND", "WALLET_NOT_FOUND"))
@requires("read")
async def list_wallet_transactions(request: web.Request) -> web.Response:
    reject_unknown(request.query, {"limit"})
    limit = page_limit(request.query)
    wallet = await _wallet(request, await render.user_from_path(request))
    async with HorizonReader(request.app[SETTINGS]) as horizon:
        records = await horizon.payments(wallet.public_key, limit)
    views = [v for r in records if (v := transaction_view(r, wallet.public_key)) is not None]
    return envelope(request, WalletTransactionOut(many=True).dump(views))


@doc("Compare the book with the wallet on the ledger", response=views.VerifiedBalance, provider=True,
     errors=("USER_NOT_FOUND", "BALANCE_DISCREPANCY"))
@requires("read")
async def verify_balance(request: web.Request) -> web.Response:
    """200 with the provider's view, or 409 BALANCE_DISCREPANCY beyond the tolerance (spec api.md §6.2)."""
    user = await render.user_from_path(request)
    check = await _compare(request, user)
    if check.discrepancy:
        raise Conflict("The book and the ledger disagree by more than 1.00", code="BALANCE_DISCREPANCY",
                       details={"userId": user.id, **_figures(check), "currency": "USD"})
    figures = _figures(check)
    return envelope(request, {**BalanceOut().dump(user), "providerVerified": check.verified,
                              "providerBalance": figures["providerBalance"],
                              "adjustments": figures["adjustments"]})


@doc("Reconciliation check; never moves money", response=views.BalanceSync, provider=True,
     errors=("USER_NOT_FOUND",))
@requires("write")
async def sync_balance(request: web.Request) -> web.Response:
    """A reconciliation check that never moves money: it only reports and flags (spec api.md §6.3)."""
    user = await render.user_from_path(request)
    check = await _compare(request, user)
    figures = _figures(check)
    # api.md §6.3: the check itself is audited, SUCCESS or DISCREPANCY_FOUND
    await audit.record(request, "balance.sync", "Balance", user.id, user_id=user.id, after=figures,
                       result="DISCREPANCY_FOUND" if check.discrepancy else "SUCCESS")
    return envelope(request, {
        "synced": check.difference is not None, "localBalance": figures["localBalance"],
        "providerBalance": figures["providerBalance"], "discrepancy": figures["difference"],
        "action": "flagged" if check.discrepancy else "none", "adjustments": figures["adjustments"]})


def _figures(check: Comparison) -> dict[str, str]:
    show = amounts.format_balance
    return {"localBalance": show(check.book),
            "adjustments": UNKNOWN if check.adjustments is None else show(check.adjustments),
            "providerBalance": UNKNOWN if check.ledger is None else show(check.ledger),
            "difference": UNKNOWN if check.difference is None else show(check.difference)}


async def _compare(request: web.Request, user: users_db.User) -> Comparison:
    """Read the book and the ledger; an unreachable ledger or a user without a wallet compares as unknown."""
    settings = request.app[SETTINGS]
    async with request.app[ENGINE].connect() as conn:
        books = await conn.run_sync(lambda sync: reconciliation.wallet_books(
            sync, adjustment_account=ADJUSTMENT, user_ids=[user.id]))
    if not books or user.backing != "WALLET":  # an AIRTM-backed user's balance is a claim at AirTM
        return Comparison(user.available + user.reserved, books[0].adjustments if books else None, None)
    book = books[0]
    local = book.available + book.reserved
    try:
        async with HorizonReader(settings) as horizon:
            ledger = await horizon.account(book.public_key)
    except ProviderFailure:
        return Comparison(local, book.adjustments, None)
    return Comparison(local, book.adjustments, (ledger.usdc if ledger else None) or Decimal(0))


async def _wallet(request: web.Request, user: users_db.User) -> wallets_db.Wallet:
    row = await render.fetch_one(request, wallets_db.of_user(user.id))
    if row is None:
        raise NotFound(f"User {user.id} has no wallet", code="WALLET_NOT_FOUND")
    return wallets_db.to_wallet(row)
