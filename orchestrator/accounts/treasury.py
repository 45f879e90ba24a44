"""The treasury pool: platform-held accounts that stand in for AIRTM-backed users in escrow (DESIGN decision 25).

An AIRTM-backed user has no wallet: its balance is a claim on the AirTM enterprise account. When such a
user buys, a treasury account of the pool funds the contract, approves, signs the release, opens disputes
and receives refunds; when such a user sells, the settlement account is the contract's service provider and
receiver. The platform wallet stays dispute resolver and fee receiver, so a dispute is never opened by its
resolver and a split always pays two different addresses. A WALLET-backed party keeps its own wallet in its
role, so an order between an AIRTM-backed and a WALLET-backed user works in either direction.

Headroom: a fund reserves the pool's USDC under one transaction-level lock. Under it the USDC promised to
escrows still funding is read first and the ledger second, so an escrow whose funding lands in between is
counted twice (conservative), never not at all: concurrent funds never overdraw the pool, and a pool that
cannot cover an escrow refuses the fund with ``422 TREASURY_INSUFFICIENT_FUNDS`` before anything moves.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator import amounts
from orchestrator.accounts import platform
from orchestrator.db import operations as operations_db
from orchestrator.db import treasury as treasury_db
from orchestrator.db import users as users_db
from orchestrator.db import wallets as wallets_db
from orchestrator.errors import BusinessRuleViolation, Conflict, ProviderFailure
from orchestrator.settings import Settings
from orchestrator.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

WALLET, TREASURY = "WALLET", "TREASURY"
#: The pool's journal accounts: outside accounts like ``world:*`` (no projection). ``platform:treasury``
#: falls by what the pool put into contracts and rises by what came back; ``platform:settlement`` rises by
#: what contracts paid the settlement account and falls by what was swept back to the pool. Their counter-
#: account is ``world:airtm``: a claim that leaves the book through the pool is no longer owed through AirTM.
POOL_TREASURY, POOL_SETTLEMENT = "platform:treasury", "platform:settlement"
#: ``operation_figures`` row holding whether ``treasury.low`` has been emitted for the current crossing.
LOW_FIGURE = "treasury_low"


def funding_mode(backing: str) -> str:
    """An AIRTM-backed buyer's escrow is funded by the pool, a WALLET-backed one's by its wallet."""
    return TREASURY if backing == "AIRTM" else WALLET


def require_linked(conn: Any, user_ids: dict[str, str]) -> dict[str, users_db.Backing]:
    """Every AIRTM-backed party (``{field: user id}``) must be linked to AirTM: its claim lives there, and an
    unlinked one could never be paid out. Returns each party's backing."""
    found = users_db.backings(conn, list(user_ids.values()))
    for field, user_id in user_ids.items():
        party = found.get(user_id)
        if party is not None and party.backing == "AIRTM" and party.airtm_user_id is None:
            raise BusinessRuleViolation("The user's balance is backed by AirTM and the user has no linked AirTM "
                                        "account", code="AIRTM_USER_NOT_LINKED",
                                        details={"userId": user_id, "field": field})
    return found


def ready(conn: Any, purpose: str) -> list[str]:
    """The ACTIVE pool accounts of ``purpose`` (``TREASURY`` or ``SETTLEMENT``)."""
    return [a.public_key for a in wallets_db.pool(conn, purpose) if a.status == "ACTIVE"]


def settlement_key(conn: Any) -> str:
    keys = ready(conn, platform.SETTLEMENT)
    if not keys:
        raise Conflict("The settlement account is not ready", code="ESCROW_NOT_READY",
                       details={"reason": "SETTLEMENT_ACCOUNT_NOT_READY"})
    return keys[0]


def choose_approver(conn: Any) -> str:
    """The treasury account that will hold a new escrow's buyer-side roles (spread over the pool)."""
    keys = ready(conn, platform.TREASURY)
    if not keys:
        raise Conflict("No treasury account is ready", code="ESCROW_NOT_READY",
                       details={"reason": "TREASURY_NOT_READY"})
    return random.choice(keys)


@dataclass(frozen=True)
class Headroom:
    """The pool as one fund saw it under the lock: each account's ledger USDC and what is promised from it."""

    usdc: dict[str, Decimal]
    promised: dict[str, Decimal]

    def free(self, account: str) -> Decimal:
        return self.usdc.get(account, Decimal(0)) - self.promised.get(account, Decimal(0))

    @property
    def total_free(self) -> Decimal:
        return sum((self.free(a) for a in self.usdc), Decimal(0))


#: A Horizon client per process and network for the fund command (the chain actors have their own).
_HORIZONS: dict[str, Any] = {}


def _horizon(settings: Settings) -> Any:
    from orchestrator.providers.horizon import Horizon

    key = settings.horizon_url
    if key not in _HORIZONS:
        _HORIZONS[key] = Horizon(settings, timeout=10.0)
    return _HORIZONS[key]


def read_headroom(conn: Any, settings: Settings, accounts: list[str]) -> Headroom:
    """What is promised first, the ledger second (see the module's docstring for why this order)."""
    promised = treasury_db.funding_by_account(conn)
    horizon = _horizon(settings)
    usdc: dict[str, Decimal] = {}
    for account in accounts:
        try:
            state = horizon.account(account)
        except Exception as error:  # the ledger unreadable: refuse now, nothing has moved
            raise ProviderFailure("The treasury's balance could not be read on the ledger",
                                  code="STELLAR_NETWORK_ERROR", details={"reason": type(error).__name__}) from None
        usdc[account] = (state.usdc or Decimal(0)) if state is not None else Decimal(0)
    return Headroom(usdc, promised)


def reserve(uow: UnitOfWork, amount: Decimal, *, preferred: str | None) -> str:
    """Pick the treasury account that funds an escrow of ``amount`` (the escrow's approver when it can cover
    it) under the pool's lock; the caller marks its escrow FUNDING from it in the same transaction, which is
    what holds the headroom. Raises ``TREASURY_INSUFFICIENT_FUNDS`` when no account can cover it."""
    treasury_db.lock_pool(uow.conn)
    accounts = ready(uow.conn, platform.TREASURY)
    room = read_headroom(uow.conn, uow.config, accounts)
    fits = [a for a in accounts if room.free(a) >= amount]
    if not fits:
        best = max((room.free(a) for a in accounts), default=Decimal(0))
        log.warning("The treasury cannot cover an escrow of %s: the most any account has free is %s (pool %s)",
                    amount, best, room.total_free)
        raise BusinessRuleViolation("The platform treasury cannot cover this escrow now",
                                    code="TREASURY_INSUFFICIENT_FUNDS",
                                    details={"required": amounts.format_amount(amount),
                                             "available": amounts.format_balance(max(best, Decimal(0)))})
    funder = preferred if preferred in fits else max(fits, key=room.free)
    watch_low(uow, room.total_free - amount)
    return funder


def watch_low(uow: UnitOfWork, free: Decimal) -> None:
    """``treasury.low`` once per crossing under ``TREASURY_LOW_WATERMARK`` (events.md §3.9); the flag that
    says it was emitted clears once the pool is back above. Call under the pool's lock."""
    settings = uow.config
    row = uow.conn.execute(operations_db.figures(LOW_FIGURE)).first()
    was_low = bool(row and row.figures.get("low"))
    is_low = free < settings.treasury_low_watermark
    if is_low == was_low:
        return
    operations_db.put_figures(uow.conn, LOW_FIGURE, {"low": is_low, "freeUsdc": amounts.format_balance(free)})
    if is_low:
        found = platform.find(uow.conn, settings)
        count, _ = treasury_db.backed(uow.conn)
        uow.emit("treasury.low", found.user_id if found else "platform", {
            "freeUsdc": amounts.format_balance(free), "backedEscrows": count,
            "watermark": amounts.format_balance(settings.treasury_low_watermark)},
            user_id=found.user_id if found else None)


# --- the settlement sweep: the settlement account's USDC goes back to the pool (a chain step) ---

SWEEP_KIND = "settlement_sweep"


def plan_sweep(engine: Any, settings: Settings, horizon: Any) -> list[Any]:
    """Start a sweep of what the settlement account holds into the treasury account holding least, unless one
    is already under way; returns the after-commit messages for the caller to send. The amount is read now
    and fixed in the step: the settlement account only gains between this read and the payment (contracts
    pay it; only sweeps take from it, one at a time), so the payment never lacks funds and the journal books
    exactly what moved."""
    from orchestrator import chain_steps, ids
    from orchestrator.db import chain_steps as steps_db
    from orchestrator.unit_of_work import Context

    with engine.connect() as conn:
        settlement, treasuries = ready(conn, platform.SETTLEMENT), ready(conn, platform.TREASURY)
        if not settlement or not treasuries or steps_db.open_of_kind(conn, SWEEP_KIND):
            return []
    source = settlement[0]
    held = _usdc(horizon, source)
    if held <= 0:
        return []
    destination = min(treasuries, key=lambda key: (_usdc(horizon, key), key))
    with UnitOfWork(engine, Context(actor_type="SYSTEM", actor_id="scheduler"), settings=settings) as uow:
        treasury_db.lock_pool(uow.conn)
        if steps_db.open_of_kind(uow.conn, SWEEP_KIND):  # decided under the lock: one sweep at a time
            return []
        chain_steps.create(uow, step_id=ids.new_id("step"), kind=SWEEP_KIND, subject_type="pool", subject_id=source,
                           source=source, signers=[source],
                           params={"amount": format(held, "f"), "destination": destination})
        uow.commit()
    log.info("Sweeping %s USDC from the settlement account to treasury account %s", held, destination)
    return list(uow.messages)


def _usdc(horizon: Any, key: str) -> Decimal:
    state = horizon.account(key)
    return (state.usdc or Decimal(0)) if state is not None else Decimal(0)


def build_sweep(ctx: Any, step: Any, account: Any) -> Any:
    from stellar_sdk import Account, TransactionBuilder

    from orchestrator.chain_steps import StepNotFinished

    if account is None:
        raise StepNotFinished(f"{step.source_account} is not on the ledger")
    fee = min(ctx.horizon.base_fee(), ctx.settings.stellar_max_fee_stroops)
    return (TransactionBuilder(Account(account.account_id, account.sequence), ctx.settings.network_passphrase,
                               base_fee=fee).set_timeout(60)
            .append_payment_op(step.params["destination"], ctx.horizon.usdc, step.params["amount"]).build())


def swept(uow: UnitOfWork, step: Any, record: dict[str, Any] | None) -> None:
    """The sweep landed: the pool's journal accounts follow (no user's balance moves)."""
    from orchestrator.money import ledger

    amount = Decimal(step.params["amount"])
    ledger.transfer(uow, kind="settlement_sweep", amount=amount, source=POOL_SETTLEMENT, destination=POOL_TREASURY,
                    reference=step.id, description=f"to {step.params['destination']}")
    log.info("Swept %s USDC from the settlement account to treasury account %s", amount, step.params["destination"])


def sweep_failed(uow: UnitOfWork, step: Any, reason: str) -> None:
    """Nothing moved (the step failed finally): the next sweep reads the settlement account again."""
    log.error("The settlement sweep %s failed: %s", step.id, reason)


# --- the pool against the journal, and the operator's float (``offerhub check`` and ``reconcile``) ---

#: ``operation_figures`` row holding the operator's float as last recorded: ``pool`` (USDC the operator put
#: into the pool's accounts) and ``enterprise`` (USD of its own in the AirTM enterprise account).
FLOAT_FIGURE = "operator_float"


@dataclass(frozen=True)
class PoolBook:
    """The pool's accounts on the ledger beside the journal's pool accounts.

    The journal books every movement of the pool's USDC that the product makes (escrows funded from it,
    releases and refunds paid to it, sweeps within it), never the USDC the operator pays in or takes out. So
    ``float`` = the pool's ledger USDC - ``platform:treasury`` - ``platform:settlement`` stays what the operator
    put in, and ``recorded`` is that figure as the operator last acknowledged it (``offerhub reconcile
    --record-float``); any other change is USDC that moved without the book."""

    usdc: dict[str, Decimal]
    journal_treasury: Decimal
    journal_settlement: Decimal
    backed_escrows: int
    backed_amount: Decimal
    in_flight: bool
    recorded: Decimal | None
    errors: tuple[str, ...] = ()

    @property
    def total(self) -> Decimal:
        return sum(self.usdc.values(), Decimal(0))

    @property
    def operator_float(self) -> Decimal:
        """The operator's own USDC in the pool: the ledger's total less what the journal holds for users."""
        return self.total - self.journal_treasury - self.journal_settlement

    @property
    def difference(self) -> Decimal | None:
        """The float now minus the recorded one (``None``: nothing recorded, or the ledger unreadable)."""
        return None if self.recorded is None or self.errors else self.operator_float - self.recorded

    def as_json(self) -> dict[str, Any]:
        def show(amount: Decimal | None) -> str | None:
            return None if amount is None else f"{amount:.7f}"

        return {"usdc": show(self.total), "accounts": {k: show(v) for k, v in self.usdc.items()},
                "journalTreasury": show(self.journal_treasury), "journalSettlement": show(self.journal_settlement),
                "float": show(self.operator_float), "recordedFloat": show(self.recorded),
                "difference": show(self.difference), "backedEscrows": self.backed_escrows,
                "backedAmount": amounts.format_balance(self.backed_amount), "inFlight": self.in_flight}

    def describe(self) -> str:
        recorded = ("not recorded (run `offerhub reconcile --record-float` once the pool is funded)"
                    if self.recorded is None else f"recorded {self.recorded:.7f}")
        return (f"Treasury pool: {self.total:.7f} USDC on the ledger in {len(self.usdc)} account(s) - journal "
                f"platform:treasury {self.journal_treasury:.7f} - platform:settlement {self.journal_settlement:.7f}"
                f" = operator's float {self.operator_float:.7f} ({recorded}); backs {self.backed_escrows} escrow(s) "
                f"holding {amounts.format_balance(self.backed_amount)}")


def _pool_journal(conn: Any) -> tuple[Decimal, Decimal, bool]:
    return (treasury_db.journal_sum(conn, POOL_TREASURY), treasury_db.journal_sum(conn, POOL_SETTLEMENT),
            treasury_db.steps_in_flight(conn))


def read_pool(engine: Any, horizon: Any) -> PoolBook:
    """Read the journal, then the ledger (no transaction open across HTTP), then the journal again: a step that
    ran in between (or is running) marks the comparison in flight instead of reporting a false difference."""
    with engine.connect() as conn:
        keys = [a.public_key for a in wallets_db.pool(conn)]
        before = _pool_journal(conn)
        count, amount = treasury_db.backed(conn)
        row = conn.execute(operations_db.figures(FLOAT_FIGURE)).first()
    usdc: dict[str, Decimal] = {}
    errors: list[str] = []
    for key in keys:
        try:
            usdc[key] = _usdc(horizon, key)
        except Exception as error:  # an unreadable ledger is reported, not raised
            errors.append(f"pool account {key}: the ledger could not be read ({type(error).__name__})")
    with engine.connect() as conn:
        after = _pool_journal(conn)
    recorded = row.figures.get("pool") if row is not None else None
    return PoolBook(usdc, after[0], after[1], count, amount, before[2] or after[2] or before != after,
                    None if recorded is None else Decimal(recorded), tuple(errors))


def recorded_enterprise_float(engine: Any) -> Decimal | None:
    with engine.connect() as conn:
        row = conn.execute(operations_db.figures(FLOAT_FIGURE)).first()
    value = row.figures.get("enterprise") if row is not None else None
    return None if value is None else Decimal(value)


def record_float(engine: Any, pool: PoolBook, enterprise: Decimal | None) -> str | None:
    """The operator acknowledges the float as it is now (after paying USDC into the pool or USD into the
    enterprise account, or taking some out): later checks compare with these figures to the stroop and cent.
    An enterprise figure not read now (AirTM not configured) keeps the one recorded before. Returns why nothing
    was recorded, or ``None``."""
    if pool.errors:
        return "; ".join(pool.errors)
    if pool.in_flight:
        return "a ledger step of the pool is running: try again when it has finished"
    previous = recorded_enterprise_float(engine)
    figures = {"pool": format(pool.operator_float, "f"),
               "enterprise": format(enterprise, "f") if enterprise is not None else (
                   None if previous is None else format(previous, "f"))}
    with engine.begin() as conn:
        operations_db.put_figures(conn, FLOAT_FIGURE, figures)
    log.info("Recorded the operator's float: pool %s USDC, enterprise %s USD", figures["pool"], figures["enterprise"])
    return None


# --- the scheduler's watch: the pool's figures for /health/detailed and /metrics, and ``treasury.low`` ---

#: ``operation_figures`` row holding the pool as the scheduler last measured it.
POOL_FIGURE = "treasury_pool"


def measure(engine: Any, settings: Settings, horizon: Any) -> list[Any]:
    """Read the pool's accounts on the ledger (outside any transaction), then, under the pool's lock, what is
    promised to escrows still funding: store the figures and re-evaluate ``treasury.low`` (a refill clears
    it, a crossing emits once, shared with the funds' own check). Skipped while the pool is not in use (crypto
    mode and no escrow backed by it). Returns the after-commit messages. A fund landing between the read and
    the lock can make this one reading high for a moment; it only informs, the funds decide under the lock."""
    from orchestrator.unit_of_work import Context

    with engine.connect() as conn:
        if settings.payment_provider != "airtm" and not treasury_db.backed(conn)[0]:
            return []
        treasuries, settlement = ready(conn, platform.TREASURY), ready(conn, platform.SETTLEMENT)
    usdc = {key: _usdc(horizon, key) for key in treasuries}
    settled = sum((_usdc(horizon, key) for key in settlement), Decimal(0))
    with UnitOfWork(engine, Context(actor_type="SYSTEM", actor_id="scheduler"), settings=settings) as uow:
        treasury_db.lock_pool(uow.conn)
        room = Headroom(usdc, treasury_db.funding_by_account(uow.conn))
        count, amount = treasury_db.backed(uow.conn)
        watch_low(uow, room.total_free)
        operations_db.put_figures(uow.conn, POOL_FIGURE, {
            "treasuryUsdc": format(sum(usdc.values(), Decimal(0)), "f"), "settlementUsdc": format(settled, "f"),
            "backedEscrows": count, "backedAmount": format(amount, "f"), "headroom": format(room.total_free, "f"),
            "watermark": format(settings.treasury_low_watermark, "f"),
            "low": room.total_free < settings.treasury_low_watermark})
        uow.commit()
    return list(uow.messages)
