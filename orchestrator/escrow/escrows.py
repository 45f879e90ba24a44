"""Escrows: one Trustless Work single-release contract per order (spec states.md §3, api.md §9.6 and §9.7).

Creating and funding each start a command whose ledger work runs as chain steps; the command's
flow stays RUNNING until the last step is confirmed or fails finally, so the request that started
it can answer 200 with the result, or 202 while the ledger is still working. Roles: the buyer
approves and signs the release, the seller provides the service and receives, the platform wallet
resolves disputes and receives the platform fee. An AIRTM-backed party has no wallet: a treasury account
of the pool takes the buyer's roles and funds the contract, the settlement account takes the seller's
(DESIGN decisions 25 and 26, ``orchestrator.accounts.treasury``); the book moves the users' claims the same way.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from stellar_sdk import TransactionEnvelope

from orchestrator import amounts, chain_steps, ids
from orchestrator.accounts import platform, treasury
from orchestrator.chain_steps import ChainContext, StepKind, StepNotFinished
from orchestrator.db import commands as commands_db
from orchestrator.db import escrows as escrows_db
from orchestrator.db import orders as orders_db
from orchestrator.db import session
from orchestrator.db import users as users_db
from orchestrator.db import wallets as wallets_db
from orchestrator.db.chain_steps import Step
from orchestrator.errors import BusinessRuleViolation, Conflict, InsufficientFunds, InvalidStateTransition, NotFound
from orchestrator.escrow import dispute_outcomes, orders, tw_envelopes, tw_submit
from orchestrator.events import iso, now
from orchestrator.money import balances, ledger
from orchestrator.money.ledger import AVAILABLE, RESERVED, user_account
from orchestrator.payloads import Payload
from orchestrator.providers.horizon import AccountState
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork


class Status(StrEnum):
    CREATING = "CREATING"
    CREATED = "CREATED"
    FUNDING = "FUNDING"
    FUNDED = "FUNDED"
    RELEASING = "RELEASING"
    RELEASED = "RELEASED"
    REFUNDING = "REFUNDING"
    REFUNDED = "REFUNDED"
    DISPUTED = "DISPUTED"


E = Status
#: states.md §3.2 as data (a failed deploy discards the record instead of moving it).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    E.CREATING: frozenset({E.CREATED}),
    E.CREATED: frozenset({E.FUNDING}),
    E.FUNDING: frozenset({E.FUNDED, E.CREATED}),
    E.FUNDED: frozenset({E.RELEASING, E.REFUNDING, E.DISPUTED}),
    E.RELEASING: frozenset({E.RELEASED, E.FUNDED}),
    E.REFUNDING: frozenset({E.REFUNDED, E.FUNDED}),
    E.DISPUTED: frozenset({E.RELEASED, E.REFUNDED}),
    E.RELEASED: frozenset(),
    E.REFUNDED: frozenset(),
}
#: The failure-only moves (the "(new)" rows of §3.2).
FAILURE_ONLY = frozenset({(E.FUNDING, E.CREATED), (E.RELEASING, E.FUNDED), (E.REFUNDING, E.FUNDED)})
DISCARDED = "DISCARDED"
#: The journal account holding an order's money while its contract holds the USDC.
ESCROW_ACCOUNT = "escrow:{order_id}"
_S = orders.Status
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreateEscrow(Payload):
    """``POST /orders/{id}/escrow``."""

    order_id: str


def create(uow: UnitOfWork, command: CreateEscrow) -> Result:
    """O5: the order moves to ESCROW_CREATING and the platform wallet deploys the contract."""
    order = orders.load(uow, command.order_id)
    if escrows_db.live_for_order(uow.conn, order.id, for_update=True) is not None:
        raise Conflict("The order already has an escrow", code="ESCROW_ALREADY_EXISTS",
                       details={"orderId": order.id})
    orders.guard(order, "create_escrow")
    platform_key = _ready_wallets(uow, order)
    approver = treasury.choose_approver(uow.conn) if order.funding_mode == treasury.TREASURY else None
    # the deploy's signer only pays its fee: any platform-held account will do, and spreading deploys
    # over several keeps them from queueing on one sequence number; the roles stay the platform's
    deployer = random.choice(platform.deployer_keys(uow.conn, uow.config) or [platform_key])
    escrow_id = ids.new_id("escrow")
    escrows_db.create(uow.conn, id=escrow_id, order_id=order.id, status=E.CREATING, amount=order.amount,
                      funding_mode=order.funding_mode, treasury_account=approver)
    orders.move(uow, order, "create_escrow")
    uow.emit("order.escrow_creating", order.id, {"orderId": order.id, "escrowId": escrow_id,
                                                 "amount": amounts.format_amount(order.amount)}, user_id=order.buyer_id)
    _start(uow, kind="tw_deploy", escrow_id=escrow_id, source=deployer, order_id=order.id)
    return Result(200, "order", order.id, {"flow": True})


@dataclass(frozen=True)
class FundEscrow(Payload):
    """``POST /orders/{id}/escrow/fund``."""

    order_id: str


def fund(uow: UnitOfWork, command: FundEscrow) -> Result:
    """O8: the reservation leaves the book for the contract; the buyer's wallet signs the fund call."""
    order = orders.load(uow, command.order_id)
    escrow = escrows_db.live_for_order(uow.conn, order.id, for_update=True)
    if order.status == _S.ESCROW_CREATING and escrow is not None and escrow.status != E.CREATED:
        if escrow.status == E.CREATING:
            raise Conflict("The escrow contract is not deployed yet", code="ESCROW_NOT_READY",
                           details={"reason": "ESCROW_NOT_DEPLOYED", "currentState": escrow.status})
        raise Conflict("The escrow is already being funded", code="ESCROW_ALREADY_FUNDED",
                       details={"currentState": escrow.status})
    orders.guard(order, "fund_escrow")
    assert escrow is not None
    assert escrow.trustless_contract_id
    if escrow.funding_mode == treasury.TREASURY:  # the pool's headroom, reserved before anything moves
        funder = treasury.reserve(uow, order.amount, preferred=escrow.treasury_account)
    else:
        wallet = wallets_db.of_user_now(uow.conn, order.buyer_id)
        assert wallet is not None
        funder = wallet.public_key
    try:
        changes = ledger.post(uow, kind="fund_escrow", reference=order.id, legs=[
            (user_account(order.buyer_id, RESERVED), -order.amount),
            (ESCROW_ACCOUNT.format(order_id=order.id), order.amount), *_pool_legs(escrow, "buyer", -order.amount)])
    except InsufficientFunds as short:  # the reservation is not (all) there any more
        raise NotFound("The order has no active reservation", code="RESERVE_NOT_FOUND",
                       details=short.details) from None
    escrows_db.set_status(uow.conn, escrow.id, expected=E.CREATED, status=E.FUNDING, funder_account=funder)
    orders.move(uow, order, "fund_escrow")
    amount = amounts.format_amount(order.amount)
    uow.emit("order.escrow_funding", order.id, {"orderId": order.id, "escrowId": escrow.id,
                                                "trustlessContractId": escrow.trustless_contract_id,
                                                "amount": amount}, user_id=order.buyer_id)
    uow.emit("escrow.funding_started", escrow.id, {"escrowId": escrow.id, "orderId": order.id,
                                                   "trustlessContractId": escrow.trustless_contract_id,
                                                   "amount": amount}, user_id=order.buyer_id)
    balances.emit_released(uow, changes[order.buyer_id], order.amount, order_id=order.id, reason="escrow_funded")
    _start(uow, kind="tw_fund", escrow_id=escrow.id, source=funder, order_id=order.id,
           contractId=escrow.trustless_contract_id)
    return Result(200, "order", order.id, {"flow": True})


def awaits_buyer_funding(order_status: str, escrow_status: str | None) -> bool:
    """Whether a fund now has the buyer's wallet sign: the contract is deployed and waits for its money (in any
    other state the fund command answers the state error the spec names)."""
    return order_status == _S.ESCROW_CREATING and escrow_status == E.CREATED


def require_buyer_funds(held: Decimal | None, amount: Decimal) -> None:
    """The buyer's wallet must hold the order's USDC on the ledger before it signs the fund call, so a short
    wallet is refused before anything is signed (``held`` ``None``: no account, which holds nothing)."""
    held = held if held is not None else Decimal(0)
    if held < amount:
        raise BusinessRuleViolation("The buyer's wallet holds less USDC than the order amount",
                                    code="ESCROW_INSUFFICIENT_FUNDS",
                                    details={"walletBalance": f"{held:f}", "required": f"{amount:f}"})


def _pool_legs(escrow: escrows_db.Escrow, role: str, amount: Decimal, *, seller_backing: str | None = None
               ) -> list[tuple[str, Decimal]]:
    """The pool's side of a movement for an AIRTM-backed party (decision 25): ``amount`` USDC enters (> 0) or
    leaves (< 0) the pool account standing in for ``role``, and the claim it carries stops (or starts) being
    owed through AirTM. Nothing for a WALLET-backed party: its own wallet is in the contract."""
    if role == "buyer" and escrow.funding_mode == treasury.TREASURY:
        return [(treasury.POOL_TREASURY, amount), (ledger.WORLD_AIRTM, -amount)]
    if role == "seller" and seller_backing == "AIRTM":
        return [(treasury.POOL_SETTLEMENT, amount), (ledger.WORLD_AIRTM, -amount)]
    return []


def _ready_wallets(uow: UnitOfWork, order: orders_db.Order) -> str:
    """Every party's account must be on the ledger with its trustline: a WALLET-backed party's own wallet, the
    pool's for an AIRTM-backed one (which must be linked to AirTM); returns the platform's key."""
    backings = treasury.require_linked(uow.conn, {"buyerId": order.buyer_id, "sellerId": order.seller_id})
    found = platform.find(uow.conn, uow.config)
    parties = (("BUYER", order.buyer_id), ("SELLER", order.seller_id),
               ("PLATFORM", found.user_id if found else None))
    for role, user_id in parties:
        if user_id is not None and role != "PLATFORM" and backings[user_id].backing == "AIRTM":
            if role == "BUYER":
                treasury.choose_approver(uow.conn)  # raises unless a treasury account is ready
            else:
                treasury.settlement_key(uow.conn)
            continue
        wallet = wallets_db.of_user_now(uow.conn, user_id) if user_id else None
        if wallet is None or wallet.status != "ACTIVE":
            raise Conflict(f"The {role.lower()} wallet is not ready", code="ESCROW_NOT_READY",
                           details={"reason": f"{role}_WALLET_NOT_READY"})
    assert found is not None
    assert found.wallet is not None
    return found.wallet.public_key


def _start(uow: UnitOfWork, *, kind: str, escrow_id: str, source: str, order_id: str, **params: Any) -> None:
    command_id = uow.context.command_id
    if command_id:
        commands_db.start_flow(uow.conn, command_id)
    chain_steps.create(uow, step_id=ids.new_id("step"), kind=kind, subject_type="escrow", subject_id=escrow_id,
                       source=source, signers=[source], params={"orderId": order_id, "flow": command_id, **params})


def _tw_envelope(ctx: ChainContext, step: Step, account: AccountState | None, xdr: str, *,
                 contract_id: str | None) -> TransactionEnvelope:
    """Check TW's unsigned envelope (providers.md §1.7) before anything signs it."""
    if account is None:
        raise StepNotFinished(f"{step.source_account} is not on the ledger")
    checked = tw_envelopes.check_envelope(xdr, passphrase=ctx.settings.network_passphrase,
                                          signer=step.source_account, source_sequence=account.sequence,
                                          contract_id=contract_id,
                                          allow_unbounded=ctx.settings.trustless_accept_unbounded)
    assert checked.envelope is not None
    return checked.envelope


def _build_deploy(ctx: ChainContext, step: Step, account: AccountState | None) -> TransactionEnvelope:
    from orchestrator.providers.trustless import EscrowRoles

    with session.reading(ctx.engine) as conn:
        order = orders_db.get(conn, step.params["orderId"])
        assert order is not None
        buyer, seller = _party_key(conn, order, "buyer", ctx.settings), _party_key(conn, order, "seller", ctx.settings)
        platform_key = platform.public_key(conn, ctx.settings)
    roles = EscrowRoles(approver=buyer, service_provider=seller, platform_address=platform_key, release_signer=buyer,
                        dispute_resolver=platform_key, receiver=seller)
    xdr = ctx.trustless.deploy(signer=step.source_account, engagement_id=order.id, title=order.title,
                               description=order.description or order.title, roles=roles, amount=order.amount,
                               platform_fee_percent=ctx.settings.trustless_platform_fee_percent)
    return _tw_envelope(ctx, step, account, xdr, contract_id=None)


def _deployed(uow: UnitOfWork, step: Step, record: dict[str, Any] | None) -> None:
    """The deploy landed: its contract id was derived from the envelope and stored before submission
    (tw_envelopes.deployed_contract_id), so the escrow is created now; TW's indexer is not asked."""
    deploy_hash = record.get("hash") if record else None
    _contract_found(uow, replace(step, params={**step.params, "deployHash": deploy_hash}),
                    {"contractId": step.params["contractId"]})


def _find_contract(ctx: ChainContext, step: Step) -> dict[str, Any]:
    """Steps created before contract ids were derived offline: the id is in the params if known."""
    if step.params.get("contractId"):
        return {"contractId": step.params["contractId"]}
    found = ctx.trustless.escrows_by_signer(step.source_account, engagement_id=step.params["orderId"])
    if not found:
        raise StepNotFinished("the deployed contract is not indexed yet")
    return {"contractId": found[0].contract_id}


def _contract_found(uow: UnitOfWork, step: Step, record: dict[str, Any] | None) -> None:
    escrow = escrows_db.get(uow.conn, step.subject_id, for_update=True)
    assert escrow is not None
    assert record is not None
    contract_id = record["contractId"]
    escrows_db.set_status(uow.conn, escrow.id, expected=E.CREATING, status=E.CREATED,
                          trustless_contract_id=contract_id, deploy_tx_hash=step.params.get("deployHash"))
    order = orders_db.get(uow.conn, escrow.order_id)
    assert order is not None
    uow.emit("escrow.created", escrow.id, {
        "escrowId": escrow.id, "orderId": escrow.order_id, "trustlessContractId": contract_id,
        "amount": amounts.format_amount(escrow.amount), "currency": "USD",
        "transactionHash": step.params.get("deployHash")}, user_id=order.buyer_id)
    chain_steps.finish_flow(uow, step)


def _deploy_failed(uow: UnitOfWork, step: Step, reason: str) -> None:
    """O7: nothing is on the ledger; the escrow is discarded and the order goes back to FUNDS_RESERVED."""
    escrow = escrows_db.get(uow.conn, step.subject_id, for_update=True)
    assert escrow is not None
    escrows_db.set_status(uow.conn, escrow.id, expected=escrow.status, status=DISCARDED)
    order = orders_db.get(uow.conn, escrow.order_id, for_update=True)
    assert order is not None
    orders_db.set_status(uow.conn, order.id, expected=_S.ESCROW_CREATING, status=_S.FUNDS_RESERVED)
    _operation_failed(uow, order, "escrow_create", reason, status=_S.FUNDS_RESERVED)
    chain_steps.finish_flow(uow, step, failed={
        "code": "PROVIDER_ERROR", "message": f"Escrow deploy failed: {reason}",
        "details": {"provider": "trustless_work", "reason": reason}})


def _build_fund(ctx: ChainContext, step: Step, account: AccountState | None) -> TransactionEnvelope:
    with session.reading(ctx.engine) as conn:
        escrow = escrows_db.get(conn, step.subject_id)
    assert escrow is not None
    xdr = ctx.trustless.fund(contract_id=step.params["contractId"], signer=step.source_account, amount=escrow.amount)
    return _tw_envelope(ctx, step, account, xdr, contract_id=step.params["contractId"])


def _funded(uow: UnitOfWork, step: Step, record: dict[str, Any] | None) -> None:
    """O9: the USDC is in the contract; the order passes through ESCROW_FUNDED into IN_PROGRESS."""
    escrow = escrows_db.get(uow.conn, step.subject_id, for_update=True)
    assert escrow is not None
    funded_at = now()
    escrows_db.set_status(uow.conn, escrow.id, expected=E.FUNDING, status=E.FUNDED, funded_at=funded_at)
    order = orders_db.get(uow.conn, escrow.order_id, for_update=True)
    assert order is not None
    orders_db.set_status(uow.conn, order.id, expected=_S.ESCROW_FUNDING, status=_S.ESCROW_FUNDED)
    orders_db.set_status(uow.conn, order.id, expected=_S.ESCROW_FUNDED, status=_S.IN_PROGRESS)
    tx_hash, amount = (record or {}).get("hash"), amounts.format_amount(escrow.amount)
    contract = escrow.trustless_contract_id
    uow.emit("escrow.funded", escrow.id, {"escrowId": escrow.id, "orderId": order.id, "trustlessContractId": contract,
                                          "amount": amount, "fundedAt": iso(funded_at), "transactionHash": tx_hash},
             user_id=order.buyer_id)
    uow.emit("order.escrow_funded", order.id, {"orderId": order.id, "escrowId": escrow.id,
                                               "trustlessContractId": contract, "contractId": contract,
                                               "amount": amount, "fundedAt": iso(funded_at)}, user_id=order.buyer_id)
    uow.emit("order.in_progress", order.id, {"orderId": order.id, "escrowId": escrow.id}, user_id=order.buyer_id)
    chain_steps.finish_flow(uow, step)


def _fund_failed(uow: UnitOfWork, step: Step, reason: str) -> None:
    """O10: nothing moved on the ledger: the reservation comes back, the escrow is CREATED again."""
    escrow = escrows_db.get(uow.conn, step.subject_id, for_update=True)
    assert escrow is not None
    escrows_db.set_status(uow.conn, escrow.id, expected=E.FUNDING, status=E.CREATED)
    order = orders_db.get(uow.conn, escrow.order_id, for_update=True)
    assert order is not None
    orders_db.set_status(uow.conn, order.id, expected=_S.ESCROW_FUNDING, status=_S.ESCROW_CREATING)
    ledger.post(uow, kind="escrow_funding_failed", reference=order.id, legs=[
        (ESCROW_ACCOUNT.format(order_id=order.id), -escrow.amount),
        (user_account(order.buyer_id, RESERVED), escrow.amount), *_pool_legs(escrow, "buyer", escrow.amount)])
    _operation_failed(uow, order, "escrow_fund", reason, status=_S.ESCROW_CREATING)
    chain_steps.finish_flow(uow, step, failed={
        "code": "ESCROW_FUNDING_FAILED", "message": f"Escrow funding failed: {reason}",
        "details": {"reason": reason}})


def _operation_failed(uow: UnitOfWork, order: orders_db.Order, operation: str, reason: str, *, status: str,
                      retrying: bool = False) -> None:
    uow.emit("order.operation_failed", order.id, {
        "orderId": order.id, "operation": operation, "fromStatus": order.status, "status": status,
        "reason": reason, "errorCode": "PROVIDER_ERROR", "retrying": retrying}, user_id=order.buyer_id)


STEP_KINDS: dict[str, StepKind] = {
    "tw_deploy": StepKind(build=_build_deploy, confirmed=_deployed, failed=_deploy_failed,
                          submit=tw_submit.submit, landed=tw_submit.landed, derive=tw_submit.derive),
    "tw_find_contract": StepKind(build=None, act=_find_contract, confirmed=_contract_found, failed=_deploy_failed),
    "tw_fund": StepKind(build=_build_fund, confirmed=_funded, failed=_fund_failed,
                        submit=tw_submit.submit, landed=tw_submit.landed),
}


# --- release, refund and dispute resolution: ledger steps in a row, then the book follows the contract ---

#: The chain steps of each payout plan, in order, and who signs each (a role of the order).
PAYOUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "release": (("tw_change_status", "seller"), ("tw_approve", "buyer"), ("tw_release", "buyer")),
    "refund": (("tw_dispute", "buyer"), ("tw_resolve", "platform")),
    "dispute": (("tw_dispute", "buyer"), ("tw_resolve", "platform")),
}
#: The outside journal account the Trustless Work fee goes to.
TRUSTLESS_FEES = "world:trustless_fee"
#: A payout step failing after an earlier one landed is tried again without end, backing off from 1 s
#: to this (the money is in the contract and can only go to the parties); ``PAYOUT_STUCK_AFTER``
#: failures in a row report it stuck (an event, the operator's ``check``, an error in the log).
MAX_PAYOUT_BACKOFF_MS = 300_000


def payout_backoff_ms(retries: int) -> int:
    """The wait before retry number ``retries`` (1, 2, 3 …): 1 s, 2 s, 4 s … at most 5 minutes."""
    return min(1000 * 2 ** min(retries - 1, 20), MAX_PAYOUT_BACKOFF_MS)


@dataclass(frozen=True)
class ReleaseOrder(Payload):
    """``POST /orders/{id}/resolution/release``."""

    order_id: str
    requested_by: str | None = None
    reason: str | None = None


def release(uow: UnitOfWork, command: ReleaseOrder) -> Result:
    """O11: the seller marks the milestone done, the buyer approves and releases (three transactions)."""
    order, escrow = _payout_ready(uow, command.order_id, "release")
    open_refs = orders_db.open_milestone_refs(uow.conn, order.id)
    if open_refs:
        raise InvalidStateTransition(resource="Order", id=order.id, current=order.status, action="release",
                                     allowed=[_S.IN_PROGRESS], details={"incompleteMilestones": open_refs})
    start_payout(uow, order, escrow, "release", shares={"seller": order.amount}, escrow_status=E.RELEASING,
                 requested_by=command.requested_by, reason=command.reason)
    return Result(200, "order", order.id, {"flow": True})


@dataclass(frozen=True)
class RefundOrder(Payload):
    """``POST /orders/{id}/resolution/refund``."""

    order_id: str
    requested_by: str | None = None
    reason: str | None = None


def refund(uow: UnitOfWork, command: RefundOrder) -> Result:
    """O14: the buyer disputes the escrow and the platform resolves it wholly to the buyer."""
    order, escrow = _payout_ready(uow, command.order_id, "refund")
    start_payout(uow, order, escrow, "refund", shares={"buyer": order.amount}, escrow_status=E.REFUNDING,
                 requested_by=command.requested_by, reason=command.reason)
    return Result(200, "order", order.id, {"flow": True})


def _payout_ready(uow: UnitOfWork, order_id: str, action: str) -> tuple[orders_db.Order, escrows_db.Escrow]:
    order = orders.load(uow, order_id)
    if order.status == _S.DISPUTED:
        raise Conflict("A dispute is open on this order", code="DISPUTE_ALREADY_OPEN",
                       details={"orderId": order.id, "currentState": order.status})
    orders.guard(order, action)
    escrow = escrows_db.live_for_order(uow.conn, order.id, for_update=True)
    if escrow is None or escrow.status != E.FUNDED:
        raise Conflict("The escrow is not funded", code="ESCROW_NOT_READY",
                       details={"reason": "ESCROW_NOT_FUNDED", "currentState": escrow.status if escrow else None})
    return order, escrow


def start_payout(uow: UnitOfWork, order: orders_db.Order, escrow: escrows_db.Escrow, plan: str, *,
                 shares: dict[str, Decimal], escrow_status: Status | None, requested_by: str | None,
                 reason: str | None, dispute_id: str | None = None) -> None:
    """Move the order to *_REQUESTED and start the plan's steps; the command's flow runs until settled."""
    action = plan if plan != "dispute" else ("resolve_release" if "seller" in shares else "resolve_refund")
    target = orders.ACTIONS[action][1]
    orders.move(uow, order, action)
    if escrow_status is not None:
        escrows_db.set_status(uow.conn, escrow.id, expected=escrow.status, status=escrow_status)
    event = "order.release_requested" if target == _S.RELEASE_REQUESTED else "order.refund_requested"
    uow.emit(event, order.id, {"orderId": order.id, "requestedBy": requested_by or order.buyer_id,
                               "requestedAt": iso(now()), "reason": reason}, user_id=order.buyer_id)
    if uow.context.command_id:
        commands_db.start_flow(uow.conn, uow.context.command_id)
    _next_payout_step(uow, escrow.id, {
        "orderId": order.id, "flow": uow.context.command_id, "plan": plan, "index": 0,
        "contractId": escrow.trustless_contract_id, "disputeId": dispute_id,
        "shares": {role: amounts.format_amount(amount) for role, amount in shares.items()}})


def _party_key(conn: Any, order: orders_db.Order, role: str, settings: Any) -> str:
    """The account in ``role``'s place in the contract: the party's wallet, or the pool's for an AIRTM-backed
    party (the escrow's treasury account for the buyer, the settlement account for the seller)."""
    if role == "platform":
        return platform.public_key(conn, settings)
    if role == "buyer" and order.funding_mode == treasury.TREASURY:
        escrow = escrows_db.live_for_order(conn, order.id)
        assert escrow is not None
        assert escrow.treasury_account is not None
        return escrow.treasury_account
    user_id = order.buyer_id if role == "buyer" else order.seller_id
    if role == "seller" and users_db.backings(conn, [user_id])[user_id].backing == "AIRTM":
        return wallets_db.pool(conn, platform.SETTLEMENT)[0].public_key
    wallet = wallets_db.of_user_now(conn, user_id)
    assert wallet is not None
    return wallet.public_key


def _next_payout_step(uow: UnitOfWork, escrow_id: str, params: dict[str, Any], *, delay_ms: int = 0) -> None:
    """Create the plan's step at ``params["index"]``, or the settlement once every transaction landed."""
    steps = PAYOUTS[params["plan"]]
    order = orders_db.get(uow.conn, params["orderId"])
    assert order is not None
    if params["index"] < len(steps):
        kind, role = steps[params["index"]]
        signer = _party_key(uow.conn, order, role, uow.settings)
        chain_steps.create(uow, step_id=ids.new_id("step"), kind=kind, subject_type="escrow", subject_id=escrow_id,
                           source=signer, signers=[signer], params=params, delay_ms=delay_ms)
    else:
        chain_steps.create(uow, step_id=ids.new_id("step"), kind="tw_settle", subject_type="escrow",
                           subject_id=escrow_id, source=_party_key(uow.conn, order, "platform", uow.settings),
                           signers=[], params=params, delay_ms=delay_ms)


def _payout_step_done(uow: UnitOfWork, step: Step, record: dict[str, Any] | None) -> None:
    _next_payout_step(uow, step.subject_id, {**step.params, "index": step.params["index"] + 1, "retries": 0,
                                             "lastFailure": None, "lastHash": (record or {}).get("hash")})


def _payout_step_failed(uow: UnitOfWork, step: Step, reason: str) -> None:
    """Before anything landed the order goes back (O13/O16/O22); afterwards it never rolls back: the
    step is tried again from scratch and the failure is reported with ``retrying: true``."""
    escrow = escrows_db.get(uow.conn, step.subject_id, for_update=True)
    order = orders_db.get(uow.conn, step.params["orderId"], for_update=True)
    assert escrow is not None
    assert order is not None
    plan = step.params["plan"]
    operation = "dispute_resolution" if plan == "dispute" else plan
    if step.params["index"] > 0:  # money already moved on the ledger: never roll back, try again later
        retries = int(step.params.get("retries", 0)) + 1
        stuck_after = uow.config.payout_stuck_after
        if retries in (1, stuck_after):  # the first failure, and once more when it is stuck
            stuck = f"stuck after {retries} failed attempts, still retrying: " if retries == stuck_after else ""
            _operation_failed(uow, order, operation, stuck + reason, status=order.status, retrying=True)
        if retries >= stuck_after:
            log.error("The %s of order %s is stuck (%d failures in a row, step %s): %s", operation, order.id,
                      retries, step.kind, reason)
        _next_payout_step(uow, escrow.id, {**step.params, "retries": retries, "lastFailure": reason[:500]},
                          delay_ms=payout_backoff_ms(retries))
        return
    back = _S.DISPUTED if plan == "dispute" else _S.IN_PROGRESS
    if plan != "dispute":
        escrows_db.set_status(uow.conn, escrow.id, expected=escrow.status, status=E.FUNDED)
    else:
        dispute_outcomes.clear_decision(uow, step.params["disputeId"])
    orders_db.set_status(uow.conn, order.id, expected=order.status, status=back)
    _operation_failed(uow, order, operation, reason, status=back)
    chain_steps.finish_flow(uow, step, failed={
        "code": "PROVIDER_ERROR", "message": f"The {operation} failed: {reason}",
        "details": {"provider": "trustless_work", "reason": reason}})


def _build_payout_step(ctx: ChainContext, step: Step, account: AccountState | None) -> TransactionEnvelope:
    from orchestrator.providers.trustless import Distribution

    contract, signer = step.params["contractId"], step.source_account
    tw = ctx.trustless
    if step.kind == "tw_change_status":
        xdr = tw.change_milestone_status(contract_id=contract, service_provider=signer, evidence="delivered")
    elif step.kind == "tw_approve":
        xdr = tw.approve_milestone(contract_id=contract, approver=signer)
    elif step.kind == "tw_release":
        xdr = tw.release_funds(contract_id=contract, release_signer=signer)
    elif step.kind == "tw_dispute":
        xdr = tw.dispute(contract_id=contract, signer=signer)
    else:
        with session.reading(ctx.engine) as conn:
            order = orders_db.get(conn, step.params["orderId"])
            assert order is not None
            shares = [Distribution(_party_key(conn, order, role, ctx.settings), Decimal(amount))
                      for role, amount in step.params["shares"].items()]
        xdr = tw.resolve_dispute(contract_id=contract, dispute_resolver=signer, distributions=shares)
    return _tw_envelope(ctx, step, account, xdr, contract_id=contract)


def _read_payout(ctx: ChainContext, step: Step) -> dict[str, Any]:
    """What the contract actually paid, read from the confirmed transaction (decision 1)."""
    from orchestrator.escrow.tw_fees import usdc_received

    records = ctx.horizon.operations(step.params["lastHash"])
    if records is None:
        raise StepNotFinished("the payout transaction is not in history yet")
    received = usdc_received(records, asset_code=ctx.settings.usdc_asset_code, asset_issuer=ctx.settings.usdc_issuer,
                             contract_id=step.params["contractId"])
    return {"received": {address: str(amount) for address, amount in received.items()}}


def _settled(uow: UnitOfWork, step: Step, record: dict[str, Any] | None) -> None:
    """O12/O15/O20/O21: each receiving party is credited the net the contract paid it; each fee is an entry."""
    escrow = escrows_db.get(uow.conn, step.subject_id, for_update=True)
    order = orders_db.get(uow.conn, step.params["orderId"], for_update=True)
    platform_user = platform.find(uow.conn, uow.config)
    assert escrow is not None
    assert order is not None
    assert platform_user is not None
    received = {a: Decimal(v) for a, v in ((record or {}).get("received") or {}).items()}
    platform_key = _party_key(uow.conn, order, "platform", uow.settings)
    parties = {role: (order.seller_id if role == "seller" else order.buyer_id,
                      received.get(_party_key(uow.conn, order, role, uow.settings), Decimal(0)), Decimal(gross))
               for role, gross in step.params["shares"].items()}
    platform_fee = received.get(platform_key, Decimal(0))
    trustless_fee = escrow.amount - sum(net for _, net, _ in parties.values()) - platform_fee
    seller_backing = users_db.backings(uow.conn, [order.seller_id])[order.seller_id].backing
    legs = [(ESCROW_ACCOUNT.format(order_id=order.id), -escrow.amount),
            (user_account(platform_user.user_id, AVAILABLE), platform_fee), (TRUSTLESS_FEES, trustless_fee),
            *[(user_account(user_id, AVAILABLE), net) for user_id, net, _ in parties.values()],
            *[leg for role, (_, net, _) in parties.items()
              for leg in _pool_legs(escrow, role, net, seller_backing=seller_backing)]]
    changes = ledger.post(uow, kind=f"escrow_{step.params['plan']}", legs=legs, reference=order.id)
    released = "seller" in parties
    moment = now()
    escrows_db.set_status(uow.conn, escrow.id, expected=escrow.status, status=E.RELEASED if released else E.REFUNDED,
                          **({"released_at": moment} if released else {"refunded_at": moment}))
    passed = _S.RELEASED if released else _S.REFUNDED
    orders_db.set_status(uow.conn, order.id, expected=order.status, status=passed)
    fees = {"grossAmount": amounts.format_amount(escrow.amount), "trustlessFee": amounts.format_balance(trustless_fee),
            "platformFee": amounts.format_balance(platform_fee)}
    settlement = {**fees, "netAmount": amounts.format_balance(sum((net for _, net, _ in parties.values()), Decimal(0))),
                  "distributions": [{"userId": user_id, "role": role, "grossAmount": amounts.format_amount(gross),
                                     "netAmount": amounts.format_balance(net)}
                                    for role, (user_id, net, gross) in parties.items()]}
    orders_db.set_status(uow.conn, order.id, expected=passed, status=_S.CLOSED, final_status=str(passed),
                         closed_at=moment, settlement=settlement)
    _payout_events(uow, order, escrow, step.params, parties, changes, moment, fees)
    chain_steps.finish_flow(uow, step)


def _payout_events(uow: UnitOfWork, order: orders_db.Order, escrow: escrows_db.Escrow, params: dict[str, Any],
                   parties: dict[str, tuple[str, Decimal, Decimal]], changes: dict[str, Any], moment: Any,
                   fees: dict[str, str]) -> None:
    """The events of events.md §4 for release, refund and each dispute decision, in their order."""
    released = "seller" in parties
    source = {"release": "escrow_release", "refund": "escrow_refund"}.get(params["plan"], "dispute_resolution")
    distributions = [{"userId": user_id, "role": role, "amount": amounts.format_balance(net),
                      "grossAmount": amounts.format_amount(gross)} for role, (user_id, net, gross) in parties.items()]
    stamp = "releasedAt" if released else "refundedAt"
    uow.emit("escrow.released" if released else "escrow.refunded", escrow.id, {
        "escrowId": escrow.id, "orderId": order.id, "amount": amounts.format_amount(escrow.amount), stamp: iso(moment),
        "distributions": distributions, **fees}, user_id=order.buyer_id)
    for role in ("seller", "buyer"):
        if role in parties:
            user_id, net, _ = parties[role]
            balances.emit_credited(uow, changes[user_id], net, source=source, source_id=order.id)
    if released:
        seller_id, net, _ = parties["seller"]
        uow.emit("order.released", order.id, {
            "orderId": order.id, "sellerId": seller_id, "amount": amounts.format_balance(net), "currency": "USD",
            "releasedAt": iso(moment), "newSellerBalance": amounts.format_balance(changes[seller_id].available),
            "netAmount": amounts.format_balance(net), **fees}, user_id=order.buyer_id)
    else:
        buyer_id, net, _ = parties["buyer"]
        uow.emit("order.refunded", order.id, {
            "orderId": order.id, "buyerId": buyer_id, "amount": amounts.format_balance(net), "currency": "USD",
            "refundedAt": iso(moment), "newBuyerBalance": amounts.format_balance(changes[buyer_id].available),
            "netAmount": amounts.format_balance(net), **fees}, user_id=order.buyer_id)
    uow.emit("order.closed", order.id, {"orderId": order.id, "finalStatus": "RELEASED" if released else "REFUNDED",
                                        "closedAt": iso(moment)}, user_id=order.buyer_id)
    if params.get("disputeId"):
        dispute_outcomes.resolved(uow, params["disputeId"], parties, moment, fees)


def _settle_failed(uow: UnitOfWork, step: Step, reason: str) -> None:
    """The payout landed but could not be read back: try again (never roll back money that moved)."""
    _payout_step_failed(uow, step, reason)


def _effect_present(ctx: ChainContext, step: Step) -> bool:
    """The contract's flags show this step's effect (a milestone marked or approved, a dispute opened).
    Money-moving steps never qualify: their payout must be read from their own transaction."""
    checks = {"tw_change_status": lambda e: e.milestone_completed(0), "tw_approve": lambda e: e.milestone_approved(0),
              "tw_dispute": lambda e: e.disputed}
    if step.kind not in checks:
        return False
    state = ctx.trustless.get_escrow(step.params["contractId"], validate_on_chain=True)
    return state is not None and bool(checks[step.kind](state))


_PAYOUT_STEP = StepKind(build=_build_payout_step, confirmed=_payout_step_done, failed=_payout_step_failed,
                        already_applied=_effect_present, submit=tw_submit.submit, landed=tw_submit.landed)
STEP_KINDS.update({
    "tw_change_status": _PAYOUT_STEP, "tw_approve": _PAYOUT_STEP, "tw_release": _PAYOUT_STEP,
    "tw_dispute": _PAYOUT_STEP, "tw_resolve": _PAYOUT_STEP,
    "tw_settle": StepKind(build=None, act=_read_payout, confirmed=_settled, failed=_settle_failed),
})
