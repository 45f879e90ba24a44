"""Trustless Work subset (spec providers.md §1.5, §4.3): build real unsigned envelopes, submit, read.

Build endpoints validate the payload only; the contract rules run when the network applies the call
(`escrow.py`), so a refused call fails on submit with `{status: "FAILED", message}`.

TW's helper reads (T9, T10, T11) come from TW's own database, not the ledger: it learns of a transaction
only through `/helper/send-transaction` or `PUT /indexer/update-from-txhash`, and the latter only for
transactions TW itself built ("the escrow data associated with this txHash must already exist in the
internal queue": docs.trustlesswork.com, API REST > Indexer > Update From Tx Hash). The node keeps that
database (`Node.tw_index`) and the queue of built transaction hashes (`Node.tw_built`).
"""

from __future__ import annotations

import collections
import copy
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from stellar_sdk import Account, Address, SorobanDataBuilder, StrKey, TransactionBuilder, scval
from stellar_sdk import xdr as sx

from scripts.sandbox import faults as fl
from scripts.sandbox.config import SandboxConfig
from scripts.sandbox.escrow import DEPLOY_FUNCTION, INIT_FUNCTION, escrow_json, escrow_scval
from scripts.sandbox.horizon import FAULTS, NODE, pre_apply_for
from scripts.sandbox.ledger import ContractEntry, fmt_amount
from scripts.sandbox.node import Node, SubmitTimeoutError
from scripts.sandbox.transactions import MalformedError, decode, fault_fields

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
#: A standing switch (a fault rule with `times: 0`): the build endpoints it matches answer envelopes
#: without an upper time bound (`max_time` 0), as TW may build them (nothing public shows its bounds).
UNBOUNDED = "unbounded_envelopes"
_NOT_YET = (
    "The transaction was sent, but its result is not available yet (no resultMetaXdr): it may not be complete yet"
)
LIMITER = web.AppKey("tw_limiter", collections.deque)
#: T8, TW's relay of a signed envelope (V1 docs, API REST > Helpers > Send Transaction).
SEND_PATH = "/helper/send-transaction"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """Raised when TW refuses a request it understood; answered `400 {status: "FAILED", message}`."""


class Invalid(ValueError):
    """Raised when a body fails DTO validation; answered in NestJS's validation shape
    `{message: [...], error: "Bad Request", statusCode: 400}` (TW's API is a NestJS app: its OpenAPI
    operation ids are `IndexerController_updateFromTxHash` and the like)."""


def failed(status: int, message: str) -> web.Response:
    """TW's documented error body (V1 API REST pages: `{status: "FAILED", message}`)."""
    return web.json_response({"status": "FAILED", "message": message}, status=status)


def nest_error(status: int, messages: list[str] | str, error: str) -> web.Response:
    return web.json_response({"message": messages, "error": error, "statusCode": status}, status=status)


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
        SEND_PATH: send_transaction,
    }
    for path, handler in routes.items():
        app.router.add_post("/trustless" + path, _guarded(config, handler))
    # TW V1 docs: `PUT /indexer/update-from-txhash` with `{txHash}` (OpenAPI IndexerController_updateFromTxHash)
    app.router.add_put("/trustless/indexer/update-from-txhash", _guarded(config, update_from_tx_hash))
    reads: dict[str, Handler] = {
        "/helper/get-escrow-by-contract-ids": get_by_ids,
        "/helper/get-escrows-by-signer": get_by_signer,
        "/helper/get-escrows-by-role": get_by_role,
        "/helper/get-multiple-escrow-balance": get_balances,
    }
    for path, handler in reads.items():
        app.router.add_get("/trustless" + path, _guarded(config, handler))
    app.router.add_route("*", "/trustless/{tail:.*}", _guarded(config, no_route))


async def no_route(request: web.Request) -> web.Response:
    """An unknown route, as NestJS answers it: `404 {message: "Cannot POST /x", error, statusCode}`."""
    path = request.path.removeprefix("/trustless")
    return nest_error(404, f"Cannot {request.method} {path}", "Not Found")


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
        body = await _body(request) if request.method in ("POST", "PUT") else dict(request.query)
        if body is None:
            return failed(400, "The body must be a JSON object")
        path = request.path.removeprefix("/trustless")
        matched = _submitted(request, body) if path == SEND_PATH else body
        rule = request.app[FAULTS].match("trustless", request.method, path, matched, actions=_SUBMIT_ACTIONS)
        if rule is not None and rule.action in fl.GENERIC_ACTIONS:
            early = await fl.apply_generic(rule, request, failed)
            if early is not None:
                return early
        request["tw_body"], request["tw_rule"] = body, rule
        try:
            return await handler(request)
        except BadRequest as exc:
            return failed(400, str(exc))
        except Invalid as exc:
            return nest_error(400, [str(exc)], "Bad Request")

    return wrapper


def _submitted(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    """What a fault's `when` can name on a T8 submission, the same fields as on Horizon's `tx` form field
    (`horizon._submitted`): `source`, `operation`, `function` and `hash`, read from `signedXdr`. Decoded only
    while a trustless rule exists, so the fault-free path costs nothing; the body itself stays as sent (the
    fault log keeps `signedXdr` whole, so a test can hash the very envelope it saw)."""
    envelope = body.get("signedXdr")
    if not isinstance(envelope, str) or not request.app[FAULTS].rules_of("trustless"):
        return body
    try:
        decoded = decode(envelope, request.app[NODE].network_id)
    except MalformedError:
        return body
    return {**body, **fault_fields(decoded)}


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
        raise Invalid(f"{key} must be a valid Stellar address")
    return value


def _c(body: dict[str, Any]) -> str:
    value = body.get("contractId")
    if not isinstance(value, str) or not StrKey.is_valid_contract(value):
        raise Invalid("contractId must be a valid contract id")
    return value


def _s(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise Invalid(f"{key} must be a string")
    return value


def _stroops(value: Any, key: str = "amount") -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise Invalid(f"{key} must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise Invalid(f"{key} must be a number") from exc
    stroops = amount * 10_000_000
    if stroops != stroops.to_integral_value():
        raise BadRequest(f"{key} has more than 7 decimals")
    if stroops <= 0:
        raise BadRequest("Amount cannot be zero")
    return int(stroops)


def _map(entries: dict[str, sx.SCVal]) -> sx.SCVal:
    return scval.to_map({scval.to_symbol(k): entries[k] for k in sorted(entries)})


def _instance_key(contract_id: str) -> sx.LedgerKey:
    """The ledger key of a contract's instance entry (what a deploy creates, what a call reads)."""
    return sx.LedgerKey(
        sx.LedgerEntryType.CONTRACT_DATA,
        contract_data=sx.LedgerKeyContractData(
            Address(contract_id).to_xdr_sc_address(),
            sx.SCVal(sx.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
            sx.ContractDataDurability.PERSISTENT,
        ),
    )


def _source_auth(contract_id: str, function: str, args: list[sx.SCVal]) -> sx.SorobanAuthorizationEntry:
    """What simulation yields for a `require_auth` of the transaction's own source: an entry with
    source-account credentials rooted at the call (Stellar docs, "Soroban authorization")."""
    call = sx.InvokeContractArgs(Address(contract_id).to_xdr_sc_address(), sx.SCSymbol(function.encode()), args)
    return sx.SorobanAuthorizationEntry(
        sx.SorobanCredentials(sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT),
        sx.SorobanAuthorizedInvocation(
            sx.SorobanAuthorizedFunction(
                sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN, contract_fn=call
            ),
            [],
        ),
    )


def _envelope(
    request: web.Request, signer: str, contract_id: str, function: str, args: list[sx.SCVal],
    creates: str | None = None,
) -> web.Response:
    """A real unsigned envelope: source = signer, next sequence, one contract call with the source's
    auth entry and `sorobanData` (footprint, resource fee), a 300 s window unless switched unbounded."""
    node = request.app[NODE]
    account = node.ledger.accounts.get(signer)
    if account is None:
        raise BadRequest(f"Account not found: {signer}")
    now = int(node.clock.time())
    builder = TransactionBuilder(
        Account(signer, account.seq), node.config.network_passphrase, ENVELOPE_FEE - _RESOURCE_FEE
    )
    builder.add_time_bounds(now, 0 if _unbounded(request) else now + ENVELOPE_WINDOW)
    written = [_instance_key(creates)] if creates else [_instance_key(contract_id)]
    data = SorobanDataBuilder().set_read_only([_instance_key(contract_id)] if creates else [])
    builder.set_soroban_data(data.set_read_write(written).set_resource_fee(_RESOURCE_FEE).build())
    builder.append_invoke_contract_function_op(
        contract_id, function, args, auth=[_source_auth(contract_id, function, args)]
    )
    envelope = builder.build()
    node.tw_built.add(envelope.hash_hex())  # TW's "internal queue": what update-from-txhash can index
    return web.json_response({"status": "SUCCESS", "unsignedTransaction": envelope.to_xdr()}, status=201)


def _unbounded(request: web.Request) -> bool:
    faults = request.app[FAULTS]
    path = request.path.removeprefix("/trustless")
    for rule in faults.active("trustless", UNBOUNDED):
        if rule.applies_to("trustless", request.method, path, request["tw_body"]):
            faults.fire(rule, {"method": request.method, "path": path}, count=False)
            return True
    return False


async def deploy(request: web.Request) -> web.Response:
    body, node = request["tw_body"], request.app[NODE]
    signer = _g(body, "signer")
    roles = body.get("roles")
    if not isinstance(roles, dict):
        raise Invalid("roles must be an object")
    role_names = ("approver", "serviceProvider", "platformAddress", "releaseSigner", "disputeResolver", "receiver")
    role_args = {name: scval.to_address(_g(roles, name)) for name in role_names}
    fee = Decimal(str(body.get("platformFee", 0)))
    if fee > 99:
        raise BadRequest("The platform fee cannot exceed 99%")
    if fee < 0 or fee * 100 != (fee * 100).to_integral_value():
        raise BadRequest("platformFee must be a percentage with at most two decimals")
    milestones = body.get("milestones")
    if not isinstance(milestones, list) or not 1 <= len(milestones) <= 50:
        raise Invalid("milestones must hold between 1 and 50 entries")
    if any(not isinstance(m, dict) or {"status", "approved", "flags"} & set(m) for m in milestones):
        raise BadRequest("milestones take only a description at deploy (no status, approved or flags)")
    trustline = body.get("trustline")
    if not isinstance(trustline, dict):
        raise Invalid("trustline must be an object")
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
    salt = os.urandom(32)
    args = [
        scval.to_address(signer),
        scval.to_bytes(node.wasm_hash),
        scval.to_bytes(salt),
        scval.to_symbol(INIT_FUNCTION),
        scval.to_vec([_map(escrow)]),
        scval.to_vec([]),
    ]
    creates = node.contracts.contract_id_for(salt)
    return _envelope(request, signer, node.deployer_id, DEPLOY_FUNCTION, args, creates=creates)


async def fund(request: web.Request) -> web.StreamResponse:
    """T2 needs TW's stored copy of the escrow: `fund_escrow` takes it as `expected_escrow` (contract.rs);
    an escrow TW has not indexed is "Escrow not found" (a 500, as TW answers it)."""
    body = request["tw_body"]
    signer, contract_id = _g(body, "signer"), _c(body)
    stored = request.app[NODE].tw_index.get(contract_id)
    if stored is None:
        return failed(500, "Escrow not found")
    args = [scval.to_address(signer), escrow_scval(stored.state), scval.to_int128(_stroops(body.get("amount")))]
    return _envelope(request, signer, contract_id, "fund_escrow", args)


async def change_status(request: web.Request) -> web.Response:
    body = request["tw_body"]
    provider = _g(body, "serviceProvider")
    args = [
        scval.to_string(_s(body, "milestoneIndex")),
        scval.to_string(_s(body, "newStatus")),
        scval.to_string(_s(body, "newEvidence", "")),
        scval.to_address(provider),
    ]
    return _envelope(request, provider, _c(body), "change_milestone_status", args)


async def approve(request: web.Request) -> web.Response:
    body = request["tw_body"]
    approver = _g(body, "approver")
    args = [scval.to_string(_s(body, "milestoneIndex")), scval.to_address(approver)]
    return _envelope(request, approver, _c(body), "approve_milestone", args)


async def release(request: web.Request) -> web.Response:
    body = request["tw_body"]
    signer = _g(body, "releaseSigner")
    return _envelope(request, signer, _c(body), "release_funds", [scval.to_address(signer)])


async def dispute(request: web.Request) -> web.Response:
    body = request["tw_body"]
    signer = _g(body, "signer")
    return _envelope(request, signer, _c(body), "dispute_escrow", [scval.to_address(signer)])


async def resolve(request: web.Request) -> web.Response:
    body = request["tw_body"]
    resolver = _g(body, "disputeResolver")
    distributions = body.get("distributions")
    if not isinstance(distributions, list) or not distributions:
        raise Invalid("distributions must be a non-empty list")
    shares: dict[str, int] = {}
    for item in distributions:
        if not isinstance(item, dict):
            raise Invalid("each distribution is {address, amount}")
        address = _g(item, "address")
        if address in shares:
            raise BadRequest("Distributions cannot repeat an address")
        shares[address] = _stroops(item.get("amount"))
    entries = sorted(
        ((scval.to_address(a), scval.to_int128(v)) for a, v in shares.items()), key=lambda kv: kv[0].to_xdr_bytes()
    )
    args = [scval.to_address(resolver), scval.to_map(dict(entries))]
    return _envelope(request, resolver, _c(body), "resolve_dispute", args)


async def send_transaction(request: web.Request) -> web.StreamResponse:
    """T8: verify and apply exactly as Horizon's submit (same code path), with the submission faults a relay
    can meet, as TW presents them:

    - `delay`, `status`, `timeout` (in `_guarded`, before anything is applied): TW itself slow, answering an
      error (its 429 "ThrottlerException", a 5xx) or never answering;
    - `apply_then_drop`, `apply_then_error`: the network applied the envelope, TW's answer is lost or is its
      500 `{status: "FAILED", message}` (V1 docs, Helpers > Send Transaction, 500 "The transaction could not
      be sent to the Stellar network for some unknown reason. Please try again.": Trustless-Work/Product
      gitbook/developer-resources/api-reference/helpers/send-transaction.md);
    - `bad_seq`, `drain_xlm`, a surge (Horizon's `surge`, network-wide), `contract_reject`: what Horizon
      refuses or the ledger applies as failed, passed on as `400 {status: "FAILED", message}` naming the
      transaction code (TW's V2 errors name each one: STELLAR_TX_BAD_SEQ, STELLAR_TX_INSUFFICIENT_FEE, ...,
      docs.trustlesswork.com/trustless-work/v2-en/api-rest/errors/stellar/) or, for a contract trap, the
      contract's message (TW's helper service maps `HostError: Error(Contract, #n)` to a 400 `{status,
      message}`). A fault's `when` matches `source`, `operation`, `function` and `hash` read from `signedXdr`
      (`_submitted`), as on Horizon's `tx`."""
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
    deployed, contract = _index(node, signed)
    if deployed and contract is not None:
        answer["contractId"], answer["escrow"] = contract.id, escrow_json(contract)
    return web.json_response(answer)


async def update_from_tx_hash(request: web.Request) -> web.Response:
    """`PUT /indexer/update-from-txhash {txHash}` (TW V1 docs): index what a transaction sent straight to
    the network did, if TW built it; answers `{status, message, savedEscrow}`."""
    body, node = request["tw_body"], request.app[NODE]
    tx_hash = body.get("txHash")
    if not isinstance(tx_hash, str) or not tx_hash:
        raise Invalid("txHash must be a string")
    record = node.history.transactions.get(tx_hash)
    if record is None:
        return failed(400, f"Transaction {tx_hash} not found on the network")
    if tx_hash not in node.tw_built:
        return failed(400, "No escrow data associated with this txHash in the internal queue")
    if not record.successful:
        return failed(400, f"Transaction {tx_hash} failed on the network")
    _, contract = _index(node, record.json["envelope_xdr"])
    if contract is None:
        return failed(400, "The transaction did not create or change an escrow")
    return web.json_response(
        {
            "status": "SUCCESS",
            "message": "Escrow saved successfully / The escrow has been correctly indexed in our database.",
            "savedEscrow": escrow_json(contract),
        }
    )


def _index(node: Node, envelope: str) -> tuple[bool, ContractEntry | None]:
    """Record in TW's database the escrow an applied envelope created (a deploy) or called."""
    op = decode(envelope, node.network_id).tx.operations[0].body.invoke_host_function_op
    call = op.host_function.invoke_contract if op is not None else None
    if call is None:
        return False, None
    deploy = call.function_name.sc_symbol.decode() == DEPLOY_FUNCTION
    if deploy:
        contract_id = node.contracts.contract_id_for(scval.from_bytes(call.args[2]))
    else:
        contract_id = StrKey.encode_contract(call.contract_address.contract_id.contract_id.hash)
    live = node.ledger.contracts.get(contract_id)
    if live is None:
        return deploy, None
    known = node.tw_index.get(contract_id)
    node.tw_index[contract_id] = ContractEntry(
        live.id, live.asset, live.balance, copy.deepcopy(live.state),
        known.created_at if known is not None else node.clock.time(),
    )
    return deploy, node.tw_index[contract_id]


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
    """Only escrows TW has indexed; `validateOnChain=true` reads their current state from the ledger."""
    node = request.app[NODE]
    on_chain = request.query.get("validateOnChain") == "true"
    known = [c for cid in _query_list(request, "contractIds") if (c := node.tw_index.get(cid))]
    found = [node.ledger.contracts.get(c.id, c) if on_chain else c for c in known]
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
        for c in request.app[NODE].tw_index.values()
        if wanted(c.state) and (engagement is None or c.state["engagement_id"] == engagement)
    ]
    return web.json_response([escrow_json(c) for c in _visible(request, contracts, False)])


async def get_balances(request: web.Request) -> web.Response:
    node = request.app[NODE]
    contracts = node.ledger.contracts
    answer = [
        {"address": cid, "balance": float(fmt_amount(contracts[cid].balance))}
        for cid in _query_list(request, "addresses")
        if cid in contracts and cid in node.tw_index
    ]
    return web.json_response(answer)
