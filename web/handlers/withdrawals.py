"""Withdrawals (spec api.md §12): crypto withdrawals from the user's wallet; read and list."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from stellar_sdk import StrKey

from orchestrator.airtm.withdrawals import PAYOUT_STATUS, TERMINAL
from orchestrator.commands import Kind
from orchestrator.db import withdrawals as withdrawals_db
from orchestrator.errors import (
    BusinessRuleViolation,
    Conflict,
    InvalidStateTransition,
    NotFound,
    ProviderFailure,
    RateLimited,
    ValidationFailed,
)
from orchestrator.payments.withdrawal_states import TRANSITIONS, Status
from orchestrator.providers.airtm import AirtmClient, AirtmFailure
from orchestrator.providers.horizon_reads import HorizonReader
from schemas import queries
from schemas.base import NoBody, load
from schemas.common import check_enums, page_limit, reject_unknown
from schemas.withdrawals import DESTINATION_TYPES, WITHDRAWAL_OUT, CreateWithdrawal, WithdrawalOut
from web import airtm, enqueue, ratelimit, render
from web.apidoc import doc
from web.auth import requires
from web.handlers import airtm as airtm_routes
from web.keys import ENGINE, REDIS, SETTINGS
from web.request_state import BODY
from web.responses import envelope, jsonable, page

#: api.md §1.11: five withdrawals a minute per user (when rate limiting is on).
PER_USER_PER_MINUTE = 5
STATUSES = [str(s) for s in TRANSITIONS]


@doc("Withdraw from a user's balance to a Stellar account", body=CreateWithdrawal, response=WithdrawalOut,
     status=201, command=True, provider=True,
     errors=("USER_NOT_FOUND", "WALLET_NOT_FOUND", "INSUFFICIENT_FUNDS", "WITHDRAWAL_DESTINATION_INVALID",
             "PROVIDER_NOT_ENABLED", "AIRTM_USER_NOT_LINKED", "AIRTM_USER_INVALID"),
     example={"userId": "usr_seller456", "amount": "50.00", "destinationType": "crypto",
              "destinationRef": "GDWXCMJ4Z2QW3BMSX6FAG7LPEUP2NYTV6EOVZVRNTW3XWS4OYXKQ2QCS"})
@requires("write")
async def create_withdrawal(request: web.Request) -> web.Response:
    body = load(CreateWithdrawal, request[BODY])
    settings = request.app[SETTINGS]
    limits = settings.limits["withdrawal"]
    if not limits.min <= body["amount"] <= limits.max:
        raise ValidationFailed.field("amount", "AMOUNT_OUT_OF_RANGE", "outside this instance's withdrawal limits",
                                     min=f"{limits.min:.2f}", max=f"{limits.max:.2f}")
    user = await render.load_user(request, body["userId"])
    # a user's withdrawals follow its own backing, whatever PAYMENT_PROVIDER says now (DESIGN decision 26)
    if body["destinationType"] != "crypto":
        airtm.require_backed(request, user)
        await airtm_routes.eligible_link(request, body["userId"])
    elif user.backing != "WALLET":
        raise BusinessRuleViolation("This user's balance is backed by AirTM: it withdraws through AirTM, not to "
                                    "a Stellar account", code="PROVIDER_NOT_ENABLED",
                                    details={"provider": "crypto", "backing": user.backing})
    else:
        await _check_destination(request, body["destinationRef"])
    await _limit_per_user(request, body["userId"])
    state = await enqueue.run(request, Kind.CREATE_WITHDRAWAL, jsonable(body))
    return await enqueue.respond(request, state)


async def _check_destination(request: web.Request, destination: str) -> None:
    """A valid account on the ledger with a USDC trustline and no SEP-29 memo requirement."""
    def invalid(reason: str) -> BusinessRuleViolation:
        return BusinessRuleViolation("The destination cannot receive this withdrawal",
                                     code="WITHDRAWAL_DESTINATION_INVALID", details={"reason": reason})

    if not StrKey.is_valid_ed25519_public_key(destination):
        raise invalid("invalid_address")
    async with HorizonReader(request.app[SETTINGS]) as horizon:
        account = await horizon.account(destination)
    if account is None:
        raise invalid("no_account")
    if account.usdc is None:
        raise invalid("no_trustline")
    if account.memo_required:
        raise invalid("memo_required")


async def _limit_per_user(request: web.Request, user_id: str) -> None:
    settings = request.app[SETTINGS]
    if settings.rate_limit_per_minute <= 0:
        return
    window = await ratelimit.hit(request.app[REDIS], settings.redis_prefix, f"withdrawals:{user_id}",
                                 PER_USER_PER_MINUTE)
    if not window.allowed:
        raise RateLimited("Too many withdrawals for this user", details={
            "limit": PER_USER_PER_MINUTE, "windowSeconds": ratelimit.WINDOW, "retryAfter": ratelimit.WINDOW})


@doc("Read a withdrawal", query=queries.Owner, response=WithdrawalOut, errors=("WITHDRAWAL_NOT_FOUND",))
@requires("read")
async def get_withdrawal(request: web.Request) -> web.Response:
    withdrawal = await _load(request)
    return envelope(request, WITHDRAWAL_OUT.dump(withdrawal))


@doc("List withdrawals", query=queries.ListWithdrawals, response=WithdrawalOut, many=True,
     paginated=True)
@requires("read")
async def list_withdrawals(request: web.Request) -> web.Response:
    query = request.query
    reject_unknown(query, {"userId", "status", "destinationType", "limit", "cursor"})
    check_enums(query, {"status": STATUSES, "destinationType": DESTINATION_TYPES})
    limit, after = page_limit(query), await render.page_after(request, withdrawals_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(withdrawals_db.page(filters=dict(query), after=after, limit=limit))).all()
    found = [withdrawals_db.to_withdrawal(r) for r in rows]
    return page(request, [WITHDRAWAL_OUT.dump(w) for w in found], limit=limit, ids=[w.id for w in found])


async def _load(request: web.Request) -> withdrawals_db.Withdrawal:
    withdrawal_id = render.path_id(request, "withdrawal_id", "withdrawal", "WITHDRAWAL_NOT_FOUND")
    row = await render.fetch_one(request, withdrawals_db.by_id(withdrawal_id))
    owner = request.query.get("userId")
    if row is None or (owner is not None and row.user_id != owner):
        raise NotFound(f"Withdrawal {withdrawal_id} not found", code="WITHDRAWAL_NOT_FOUND")
    return withdrawals_db.to_withdrawal(row)


def _airtm_only(withdrawal: withdrawals_db.Withdrawal) -> bool:
    return withdrawal.destination_type != "crypto"


@doc("Commit an AirTM withdrawal's payout", query=queries.Owner, body=NoBody, response=WithdrawalOut,
     command=True, provider=True,
     errors=("WITHDRAWAL_NOT_FOUND", "WITHDRAWAL_NOT_COMMITTABLE", "PROVIDER_NOT_ENABLED"))
@requires("write")
async def commit_withdrawal(request: web.Request) -> web.Response:
    """The second step of an AirTM withdrawal (api.md §12.4): commit the payout, apply its status."""
    load(NoBody, request[BODY])
    withdrawal = await _load(request)
    if not _airtm_only(withdrawal) or withdrawal.status != Status.CREATED:
        raise Conflict(f"Withdrawal {withdrawal.id} cannot be committed in state {withdrawal.status}",
                       code="WITHDRAWAL_NOT_COMMITTABLE", details={"currentState": withdrawal.status})
    airtm.require_configured(request)
    payout_id = withdrawal.airtm_payout_id
    if payout_id is None:
        raise ProviderFailure("The AirTM payout of this withdrawal is not created yet; retry shortly",
                              details={"provider": "airtm", "withdrawalId": withdrawal.id})
    payout = await airtm.call(request, lambda client: client.commit_payout(payout_id))
    return await airtm_routes.apply_reported(request, "withdrawal", withdrawal.id, payout)


@doc("Re-read an AirTM withdrawal's payout", query=queries.Owner, body=NoBody, response=WithdrawalOut,
     command=True, provider=True, errors=("WITHDRAWAL_NOT_FOUND", "PROVIDER_NOT_ENABLED"))
@requires("read")
async def refresh_withdrawal(request: web.Request) -> web.Response:
    """Re-read an AirTM payout (api.md §12.5); crypto and terminal withdrawals are returned unchanged."""
    load(NoBody, request[BODY])
    withdrawal = await _load(request)
    if not _airtm_only(withdrawal) or withdrawal.status in TERMINAL:
        return envelope(request, WITHDRAWAL_OUT.dump(withdrawal))
    airtm.require_configured(request)

    def read(client: AirtmClient) -> dict[str, Any] | None:
        if withdrawal.airtm_payout_id:
            return client.payout(withdrawal.airtm_payout_id)
        return client.payout_by_code(withdrawal.id)

    payout = await airtm.call(request, read)
    if payout is None:
        return envelope(request, WITHDRAWAL_OUT.dump(withdrawal))
    return await airtm_routes.apply_reported(request, "withdrawal", withdrawal.id, payout)


@doc("Cancel an uncommitted AirTM withdrawal (once AirTM confirms); the amount returns once",
     query=queries.Owner, response=WithdrawalOut, command=True, provider=True,
     errors=("WITHDRAWAL_NOT_FOUND", "INVALID_STATE_TRANSITION", "PROVIDER_NOT_ENABLED"))
@requires("write")
async def cancel_withdrawal(request: web.Request) -> web.Response:
    """Cancel an uncommitted AirTM withdrawal (api.md §12.6): only once AirTM confirms; amount returned once."""
    withdrawal = await _load(request)
    allowed = [Status.CREATED]
    if not _airtm_only(withdrawal) or withdrawal.status != Status.CREATED:
        raise InvalidStateTransition(resource="withdrawal", id=withdrawal.id, current=withdrawal.status,
                                     action="cancel", allowed=allowed)
    airtm.require_configured(request)
    payout_id = withdrawal.airtm_payout_id
    if payout_id is None:
        raise ProviderFailure("The AirTM payout of this withdrawal is not created yet; retry shortly",
                              details={"provider": "airtm", "withdrawalId": withdrawal.id})

    def cancel(client: AirtmClient) -> tuple[dict[str, Any] | None, str | None]:
        try:
            answer = client.cancel_payout(payout_id)
        except AirtmFailure as failure:
            return client.payout(payout_id), failure.message
        return (answer if isinstance(answer, dict) and answer.get("status") else client.payout(payout_id)), None

    record, problem = await airtm.call(request, cancel)
    reported = PAYOUT_STATUS.get(str((record or {}).get("status", "")).upper())
    if reported == Status.CANCELED:
        return await airtm_routes.apply_reported(request, "withdrawal", withdrawal.id, record or {}, canceled_by="user")
    if record is not None and reported is not None and reported != Status.CREATED:
        await airtm_routes.apply_reported(request, "withdrawal", withdrawal.id, record)
        raise InvalidStateTransition(resource="withdrawal", id=withdrawal.id, current=reported, action="cancel",
                                     allowed=allowed)
    raise ProviderFailure(f"AirTM did not confirm the cancel: {problem or 'the payout is still open'}",
                          details={"provider": "airtm"})
