"""Trustless Work subset (spec providers.md §1.5, §4.3): build real unsigned envelopes, submit, read.

Build endpoints validate the payload only; the contract rules run when the network applies the call
(`escrow.py`), so a refused call fails on submit with `{status: "FAILED", message}`.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from stellar_sdk import Account, SorobanDataBuilder, StrKey, TransactionBuilder, scval
from stellar_sdk import xdr as sx

from scripts.sandbox import faults as fl
from scripts.sandbox.config import SandboxConfig
from scripts.sandbox.escrow import DEPLOY_FUNCTION, escrow_json
from scripts.sandbox.horizon import FAULTS, NODE, pre_apply_for
from scripts.sandbox.ledger import ContractEntry, fmt_amount
from scripts.sandbox.node import Node, SubmitTimeoutError
from scripts.sandbox.transactions import MalformedError, decode

#: TW's envelope fee and validity window (providers.md §5: sandbox 100 000 stroops / 300 s).
ENVELOPE_FEE = 100_000
ENVELOPE_WINDOW = 300
_RESOURCE_FEE = ENVELOPE_FEE - 100
_SUBMIT_ACTIONS = fl.GENERIC_ACTIONS | {
    "apply_then_drop",
    "apply_then_error",
    "bad_seq",
    "drain_xlm",
    "contract_reject",
}
_NOT_YET = (
    "The transaction was sent, but its result is not available yet (no resultMetaXdr): it may not be complete yet"
)
LIMITER = web.AppKey("tw_limiter", collections.deque)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """Raised when a body fails validation; answered `400 {status: "FAILED", message}`."""


def failed(status: int, message: str) -> web.Response:
    return web.json_response({"status": "FAILED", "message": message}, status=status)


def setup(app: web.Application, config: SandboxConfig) -> None:
    app[LIMITER] = collections.deque()
    routes: dict[str, Handler] = {
        "/deployer/single-release": deploy,
        "/escrow/single-release/fund-escrow": fund,
        "/escrow/single-release/change-milestone-status": change_status,
        "/escrow/single-release/approve-milestone": approve,
        "/escrow/single-release/release-funds": release,
        "/escrow/single-release/dispute-escrow": dispute,
        "/escrow/single-release/resolve-dispute": resolve,
        "/helper/send-transaction": send_transaction,
    }
    for path, handler in routes.items():
        app.router.add_post("/trustless" + path, _guarded(config, handler))
    reads: dict[str, Handler] = {
        "/helper/get-escrow-by-contract-ids": get_by_ids,
        "/helper/get-escrows-by-signer": get_by_signer,
        "/helper/get-escrows-by-role": get_by_role,
        "/helper/get-multiple-escrow-balance": get_balances,
    }
    for path, handler in reads.items():
        app.router.add_get("/trustless" + path, _guarded(config, handler))


def _guarded(config: SandboxConfig, handler: Handler) -> Handler:
    """API key, rate limit and generic faults, in that order."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-api-key") != config.trustless_api_key:
            return failed(401, "Unauthorized: missing or invalid x-api-key")
        limited = _rate_limited(request.app[LIMITER], config.tw_requests_per_minute)
        if limited is not None:
            response = failed(429, "ThrottlerException: Too Many Requests")
            response.headers["Retry-After"] = str(limited)
            return response
        body = await _body(request) if request.method == "POST" else dict(request.query)
        if body is None:
            return failed(400, "The body must be a JSON object")
        path = request.path.removeprefix("/trustless")
        rule = request.app[FAULTS].match("trustless", request.method, path, body, actions=_SUBMIT_ACTIONS)
        if rule is not None and rule.action in fl.GENERIC_ACTIONS:
            early = await fl.apply_generic(rule, request, failed)
            if early is not None:
                return early
        request["tw_body"], request["tw_rule"] = body, rule
        try:
            return await handler(request)
        except BadRequest as exc:
            return failed(400, str(exc))

    return wrapper


def _rate_limited(window: collections.deque, per_minute: int) -> int | None:
    """Rolling 60 s window; returns the seconds to wait when the budget is spent."""
    if per_minute <= 0:
        return None
    now = time.monotonic()
    while window and now - window[0] >= 60:
        window.popleft()
    if len(window) >= per_minute:
        return max(1, int(60 - (now - window[0])) + 1)
    window.append(now)
    return None


async def _body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.text() or "{}", parse_float=Decimal)
    except json.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _g(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not StrKey.is_valid_ed25519_public_key(value):
        raise BadRequest(f"{key} must be a valid Stellar address")
    return value


def _c(body: dict[str, Any]) -> str:
    value = body.get("contractId")
    if not isinstance(value, str) or not StrKey.is_valid_contract(value):
        raise BadRequest("contractId must be a valid contract id")
    return value


def _s(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def _stroops(value: Any, key: str = "amount") -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise BadRequest(f"{key} must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise BadRequest(f"{key} must be a number") from exc
    stroops = amount * 10_000_000
    if stroops != stroops.to_integral_value():
        raise BadRequest(f"{key} has more than 7 decimals")
    if stroops <= 0:
        raise BadRequest("Amount cannot be zero")
    return int(stroops)


def _map(entries: dict[str, sx.SCVal]) -> sx.SCVal:
    return scval.to_map({scval.to_symbol(k): entries[k] for k in sorted(entries)})


def _envelope(node: Node, signer: str, contract_id: str, function: str, args: list[sx.SCVal]) -> web.Response:
    """A real unsigned envelope: source = signer, next sequence, one contract call, 300 s window."""
    account = node.ledger.accounts.get(signer)
    if account is None:
        raise BadRequest(f"Account not found: {signer}")
    now = int(node.clock.time())
    builder = TransactionBuilder(
        Account(signer, account.seq), node.config.network_passphrase, ENVELOPE_FEE - _RESOURCE_FEE
    )
    builder.add_time_bounds(now, now + ENVELOPE_WINDOW)
    builder.set_soroban_data(SorobanDataBuilder().set_resource_fee(_RESOURCE_FEE).build())
    builder.append_invoke_contract_function_op(contract_id, function, args)
    xdr = builder.build().to_xdr()
    return web.json_response({"status": "SUCCESS", "unsignedTransaction": xdr}, status=201)


async def deploy(request: web.Request) -> web.Response:
    body, node = request["tw_body"], request.app[NODE]
    signer = _g(body, "signer")
    roles = body.get("roles")
    if not isinstance(roles, dict):
        raise BadRequest("roles must be an object")
    role_names = ("approver", "serviceProvider", "platformAddress", "releaseSigner", "disputeResolver", "receiver")
    role_args = {name: scval.to_address(_g(roles, name)) for name in role_names}
    fee = Decimal(str(body.get("platformFee", 0)))
    if fee > 99:
        raise BadRequest("The platform fee cannot exceed 99%")
    if fee < 0 or fee * 100 != (fee * 100).to_integral_value():
        raise BadRequest("platformFee must be a percentage with at most two decimals")
    milestones = body.get("milestones")
    if not isinstance(milestones, list) or not 1 <= len(milestones) <= 50:
        raise BadRequest("milestones must hold between 1 and 50 entries")
    if any(not isinstance(m, dict) or {"status", "approved", "flags"} & set(m) for m in milestones):
        raise BadRequest("milestones take only a description at deploy (no status, approved or flags)")
    trustline = body.get("trustline")
    if not isinstance(trustline, dict):
        raise BadRequest("trustline must be an object")
    escrow = {
        "amount": scval.to_int128(_stroops(body.get("amount"))),
        "description": scval.to_string(_s(body, "description")),
        "engagement_id": scval.to_string(_s(body, "engagementId")),
        "milestones": scval.to_vec([_map({"description": scval.to_string(_s(m, "description"))}) for m in milestones]),
        "platform_fee": scval.to_uint32(int(fee * 100)),
        "roles": _map(role_args),
        "title": scval.to_string(_s(body, "title")),
        "trustline": _map(
            {
                "address": scval.to_address(_g(trustline, "address")),
                "symbol": scval.to_string(_s(trustline, "symbol", "USDC")),
            }
        ),
    }
    args = [scval.to_address(signer), scval.to_bytes(os.urandom(32)), _map(escrow)]
    return _envelope(node, signer, node.deployer_id, DEPLOY_FUNCTION, args)


async def fund(request: web.Request) -> web.Response:
    body = request["tw_body"]
    signer = _g(body, "signer")
    args = [scval.to_address(signer), scval.to_int128(_stroops(body.get("amount")))]
    return _envelope(request.app[NODE], signer, _c(body), "fund_escrow", args)


async def change_status(request: web.Request) -> web.Response:
    body = request["tw_body"]
    provider = _g(body, "serviceProvider")
    args = [
        scval.to_string(_s(body, "milestoneIndex")),
        scval.to_string(_s(body, "newStatus")),
        scval.to_string(_s(body, "newEvidence", "")),
        scval.to_address(provider),
    ]
    return _envelope(request.app[NODE], provider, _c(body), "change_milestone_status", args)


async def approve(request: web.Request) -> web.Response:
    body = request["tw_body"]
    approver = _g(body, "approver")
    args = [scval.to_string(_s(body, "milestoneIndex")), scval.to_address(approver)]
    return _envelope(request.app[NODE], approver, _c(body), "approve_milestone", args)


async def release(request: web.Request) -> web.Response:
    body = request["tw_body"]
    signer = _g(body, "releaseSigner")
    return _envelope(request.app[NODE], signer, _c(body), "release_funds", [scval.to_address(signer)])


async def dispute(request: web.Request) -> web.Response:
    body = request["tw_body"]
    signer = _g(body, "signer")
    return _envelope(request.app[NODE], signer, _c(body), "dispute_escrow", [scval.to_address(signer)])


async def resolve(request: web.Request) -> web.Response:
    body = request["tw_body"]
    resolver = _g(body, "disputeResolver")
    distributions = body.get("distributions")
    if not isinstance(distributions, list) or not distributions:
        raise BadRequest("distributions must be a non-empty list")
    shares: dict[str, int] = {}
    for item in distributions:
        if not isinstance(item, dict):
            raise BadRequest("each distribution is {address, amount}")
        address = _g(item, "address")
        if address in shares:
            raise BadRequest("Distributions cannot repeat an address")
        shares[address] = _stroops(item.get("amount"))
    entries = sorted(
        ((scval.to_address(a), scval.to_int128(v)) for a, v in shares.items()), key=lambda kv: kv[0].to_xdr_bytes()
    )
    args = [scval.to_address(resolver), scval.to_map(dict(entries))]
    return _envelope(request.app[NODE], resolver, _c(body), "resolve_dispute", args)


async def send_transaction(request: web.Request) -> web.StreamResponse:
    """T8: verify and apply exactly as Horizon's submit (same code path)."""
    body, rule, node = request["tw_body"], request["tw_rule"], request.app[NODE]
    signed = _s(body, "signedXdr")
    try:
        outcome = await node.submit(signed, pre_apply_for(rule))
    except MalformedError:
        return failed(400, "The signed transaction could not be decoded")
    except SubmitTimeoutError:
        return failed(500, _NOT_YET)
    if rule is not None:
        late = await fl.answer_after_apply(rule, request, failed, _NOT_YET)
        if late is not None:
            return late
    if outcome.record is None or not outcome.record.successful:
        message = outcome.trap or f"Transaction failed: {outcome.tx_code} {' '.join(outcome.op_codes)}".strip()
        return failed(400, message)
    answer: dict[str, Any] = {
        "status": "SUCCESS",
        "message": "The transaction has been successfully sent to the Stellar network",
    }
    contract = _deployed(node, signed)
    if contract is not None:
        answer["contractId"], answer["escrow"] = contract.id, escrow_json(contract)
    return web.json_response(answer)


def _deployed(node: Node, envelope: str) -> ContractEntry | None:
    op = decode(envelope, node.network_id).tx.operations[0].body.invoke_host_function_op
    call = op.host_function.invoke_contract if op is not None else None
    if call is None or call.function_name.sc_symbol.decode() != DEPLOY_FUNCTION:
        return None
    deployer, salt = scval.from_address(call.args[0]).address, scval.from_bytes(call.args[1])
    return node.ledger.contracts.get(node.contracts.contract_id_for(deployer, salt))


def _visible(request: web.Request, contracts: list[ContractEntry], on_chain: bool) -> list[ContractEntry]:
    """Indexer lag: contracts younger than the injected lag are hidden unless read on chain."""
    faults = request.app[FAULTS]
    rules = faults.rules_for("trustless", "indexer_lag")
    lag = max((float(r.params.get("seconds", 0)) for r in rules), default=0.0)
    if not lag or on_chain:
        return contracts
    now = request.app[NODE].clock.time()
    shown = [c for c in contracts if now - c.created_at >= lag]
    if len(shown) < len(contracts):
        faults.fire(rules[0], {"method": request.method, "path": request.path, "hidden": len(contracts) - len(shown)})
    return shown


def _query_list(request: web.Request, name: str) -> list[str]:
    return request.query.getall(name, []) + request.query.getall(f"{name}[]", [])


async def get_by_ids(request: web.Request) -> web.Response:
    node = request.app[NODE]
    found = [c for cid in _query_list(request, "contractIds") if (c := node.ledger.contracts.get(cid))]
    on_chain = request.query.get("validateOnChain") == "true"
    return web.json_response([escrow_json(c) for c in _visible(request, found, on_chain)])


async def get_by_signer(request: web.Request) -> web.Response:
    signer = request.query.get("signer", "")
    return _search(request, lambda s: s["signer"] == signer or signer in s["roles"].values())


async def get_by_role(request: web.Request) -> web.Response:
    role, address = request.query.get("role", ""), request.query.get("roleAddress", "")
    return _search(request, lambda s: s["roles"].get(role) == address)


def _search(request: web.Request, wanted: Callable[[dict[str, Any]], bool]) -> web.Response:
    engagement = request.query.get("engagementId")
    contracts = [
        c
        for c in request.app[NODE].ledger.contracts.values()
        if wanted(c.state) and (engagement is None or c.state["engagement_id"] == engagement)
    ]
    return web.json_response([escrow_json(c) for c in _visible(request, contracts, False)])


async def get_balances(request: web.Request) -> web.Response:
    contracts = request.app[NODE].ledger.contracts
    answer = [
        {"address": cid, "balance": float(fmt_amount(contracts[cid].balance))}
        for cid in _query_list(request, "addresses")
        if cid in contracts
    ]
    return web.json_response(answer)
