"""Horizon subset (spec providers.md §4.2) and friendbot, over the shared node."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web
from stellar_sdk import StrKey

from scripts.sandbox import faults as fl
from scripts.sandbox.budget import Budget
from scripts.sandbox.history import TxRecord, toid
from scripts.sandbox.node import Node, PreApply, SubmitTimeoutError
from scripts.sandbox.records import account_json, page, problem, shaped
from scripts.sandbox.transactions import MalformedError, Outcome

NODE = web.AppKey("node", Node)
FAULTS = web.AppKey("faults", fl.Faults)
STREAMS = web.AppKey("streams", set)
BUDGET = web.AppKey("budget", Budget)
#: Records a stream sends per connection unless `limit` says otherwise: Horizon's default page size
#: (stellar/go `support/db` `DefaultPageSize`), the `limit` `ServeStream` counts down before its "byebye".
STREAM_LIMIT = 10

#: Actions a submit interprets.
SUBMIT_ACTIONS = fl.GENERIC_ACTIONS | {
    "apply_then_drop",
    "apply_then_error",
    "bad_seq",
    "drain_xlm",
    "contract_reject",
}
#: Actions a read interprets (streams add their own).
READ_ACTIONS = fl.GENERIC_ACTIONS
STREAM_ACTIONS = fl.GENERIC_ACTIONS | {"stream_disconnect"}
_TX_FAILED_DETAIL = (
    "The transaction failed when submitted to the stellar network. The `extras.result_codes` field on this "
    "response contains further details."
)


def setup(app: web.Application) -> None:
    app[STREAMS] = set()
    config = app[NODE].config
    app[BUDGET] = Budget(config.horizon_requests_per_hour, config.horizon_burst)
    app.middlewares.append(request_budget)
    app.router.add_post("/_sandbox/reset-network", reset_network)
    app.router.add_get("/_sandbox/horizon/budget", get_budget)
    app.router.add_post("/_sandbox/horizon/budget", set_budget)
    app.router.add_post("/_sandbox/stellar/contract-transfer", contract_transfer)
    app.router.add_get("/horizon", root)
    app.router.add_get("/horizon/", root)
    app.router.add_get("/horizon/accounts/{account_id}", get_account)
    app.router.add_get("/horizon/accounts/{account_id}/payments", payments)
    app.router.add_post("/horizon/transactions", submit)
    app.router.add_post("/horizon/transactions_async", submit_async)
    app.router.add_get("/horizon/transactions/{tx_hash}", get_transaction)
    app.router.add_get("/horizon/transactions/{tx_hash}/operations", transaction_operations)
    app.router.add_get("/horizon/payments", payments)
    app.router.add_get("/horizon/operations", payments)
    app.router.add_get("/horizon/ledgers", ledgers)
    app.router.add_get("/horizon/fee_stats", fee_stats)
    app.router.add_get("/friendbot", friendbot)
    app.router.add_get("/friendbot/", friendbot)


def _streaming(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


@web.middleware
async def request_budget(request: web.Request, handler: Any) -> web.StreamResponse:
    """Horizon's per-IP budget for every request but streams (charged per pass in `_stream`); see budget.py."""
    if not request.path.startswith("/horizon") or _streaming(request):
        return await handler(request)
    verdict = request.app[BUDGET].charge(request.remote or "")
    if verdict is None:
        return await handler(request)
    if verdict.limited:
        # Horizon's `hProblem.RateLimitExceeded` (stellar/go services/horizon/internal/render/problem)
        response = problem(
            429,
            "The rate limit for the requesting IP address is over its alloted limit.  The allowed limit and "
            "requests left per time period are communicated to clients via the http response headers "
            "'X-RateLimit-*' headers.",
        )
        response.headers.update(verdict.headers())
        return response
    response = await handler(request)
    if not response.prepared:
        response.headers.update(verdict.headers())
    return response


async def reset_network(request: web.Request) -> web.Response:
    """`POST /_sandbox/reset-network {passphrase?}`: a new chain under a running system (DESIGN decision 27)."""
    body = await request.json() if request.can_read_body else {}
    passphrase = body.get("passphrase") if isinstance(body, dict) else None
    if passphrase is not None and (not isinstance(passphrase, str) or not passphrase):
        return web.json_response({"error": "passphrase must be a non-empty string"}, status=400)
    node = request.app[NODE]
    async with node.ledger.lock:
        node.new_chain(passphrase)
    return web.json_response({"ok": True, "network_passphrase": node.config.network_passphrase,
                              "ledger": node.ledger.sequence})


async def get_budget(request: web.Request) -> web.Response:
    budget = request.app[BUDGET]
    return web.json_response({"requestsPerHour": budget.per_hour, "burst": budget.burst, "charged": budget.charged})


async def set_budget(request: web.Request) -> web.Response:
    """`{requestsPerHour, burst?}`: turn the per-IP budget on (or off with 0) at run time; buckets start full."""
    try:
        body = await request.json()
        request.app[BUDGET].configure(int(body.get("requestsPerHour", 0)), int(body.get("burst", 100)))
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return await get_budget(request)


async def contract_transfer(request: web.Request) -> web.Response:
    """`{from, to, amount}`: a real signed `invoke_host_function` calling the USDC SAC's `transfer` (how a
    Soroban wallet or any account pays through a contract); `from` is `issuer`, a secret or a key the
    sandbox holds. Answers the hash and the operation record, as Horizon lists it among the payments."""
    from decimal import Decimal

    from stellar_sdk import SorobanDataBuilder, TransactionBuilder, scval

    node = request.app[NODE]
    try:
        body = await request.json()
        signer = node.keypair_for(str(body["from"]))
        stroops = int(Decimal(str(body["amount"])) * 10_000_000)
        args = [scval.to_address(signer.public_key), scval.to_address(str(body["to"])), scval.to_int128(stroops)]
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        return web.json_response({"error": f"invalid transfer: {exc}"}, status=400)
    sac = node.usdc.contract_id(node.config.network_passphrase)

    def build(builder: TransactionBuilder) -> None:
        builder.append_invoke_contract_function_op(sac, "transfer", args)
        builder.set_soroban_data(SorobanDataBuilder().set_resource_fee(50_000).build())

    try:
        outcome = await node.sign_and_submit(signer, build)
    except SubmitTimeoutError:
        return web.json_response({"error": "the ledger did not close in time"}, status=504)
    if outcome.record is None or not outcome.record.successful:
        return web.json_response({"error": "transfer failed", "hash": outcome.hash,
                                  "result_codes": {"transaction": outcome.tx_code, "operations": outcome.op_codes}},
                                 status=400)
    return web.json_response({"hash": outcome.hash, "record": outcome.record.operations[0]})


def elder_ledger(app: web.Application) -> int:
    """The oldest ledger Horizon still keeps: 1, or past every `before_history` mark (its `ledger`, or the
    ledger of its `cursor`). Horizon prunes whole ledgers from every history table, so one elder holds for
    every history endpoint (stellar/go `services/horizon/internal/ledger`, `HistoryElder`)."""
    elder = 1
    for rule in app[FAULTS].active("horizon", "before_history"):
        mark = int(rule.params["ledger"]) if "ledger" in rule.params else int(rule.params.get("cursor", 0)) >> 32
        elder = max(elder, mark)
    return elder


def _floor(app: web.Application) -> int:
    """The oldest paging token kept (0: nothing pruned)."""
    elder = elder_ledger(app)
    return toid(elder, 0, 0) if elder > 1 else 0


async def _generic(
    request: web.Request, service: str, actions: frozenset[str] | set[str], body: dict[str, Any] | None = None
) -> tuple[fl.FaultRule | None, web.StreamResponse | None]:
    path = request.path.removeprefix("/horizon") or "/"
    rule = request.app[FAULTS].match(service, request.method, path, body, actions=actions)
    if rule is None or rule.action not in fl.GENERIC_ACTIONS:
        return rule, None
    return rule, await fl.apply_generic(rule, request, shaped)


async def root(request: web.Request) -> web.StreamResponse:
    _, early = await _generic(request, "horizon", READ_ACTIONS)
    if early is not None:
        return early
    # the fields of stellar/go services/horizon/internal/resourceadapter/root.go the monitor compares with
    # its cursor: network_passphrase, history_elder_ledger, history_latest_ledger, core_latest_ledger
    node = request.app[NODE]
    latest = node.history.ledgers[-1]
    return web.json_response(
        {
            "_links": {"account": {"href": "/accounts/{account_id}", "templated": True}},
            "horizon_version": "offerhub-sandbox",
            "core_version": "offerhub-sandbox",
            "ingest_latest_ledger": latest.sequence,
            "history_latest_ledger": latest.sequence,
            "history_latest_ledger_closed_at": latest.closed_at,
            "history_elder_ledger": elder_ledger(request.app),
            "core_latest_ledger": latest.sequence,
            "network_passphrase": node.config.network_passphrase,
            "current_protocol_version": 22,
            "supported_protocol_version": 22,
            "core_supported_protocol_version": 22,
        }
    )


async def get_account(request: web.Request) -> web.StreamResponse:
    _, early = await _generic(request, "horizon", READ_ACTIONS)
    if early is not None:
        return early
    account_id = request.match_info["account_id"]
    if not StrKey.is_valid_ed25519_public_key(account_id):
        return problem(
            400, "The account_id parameter is not a valid account id.", extras={"invalid_field": "account_id"}
        )
    account = request.app[NODE].ledger.accounts.get(account_id)
    if account is None:
        return problem(404, "The resource at the url requested was not found.")
    return web.json_response(account_json(account))


def _failed(outcome: Outcome, envelope: str) -> web.Response:
    codes: dict[str, Any] = {"transaction": outcome.tx_code}
    if outcome.op_codes:
        codes["operations"] = outcome.op_codes
    extras = {
        "envelope_xdr": envelope,
        "result_codes": codes,
        "result_xdr": outcome.result_xdr,
        "hash": outcome.hash,
    }
    return problem(400, _TX_FAILED_DETAIL, "transaction_failed", "Transaction Failed", extras)


def outcome_response(outcome: Outcome, envelope: str) -> web.Response:
    if outcome.record is not None and outcome.record.successful:
        return web.json_response(outcome.record.json)
    return _failed(outcome, envelope)


def pre_apply_for(rule: fl.FaultRule | None) -> PreApply:
    """Fault effects that happen inside the ledger lock, right before apply."""
    if rule is None:
        return PreApply()
    return PreApply(
        bad_seq=rule.action == "bad_seq",
        drain_xlm=rule if rule.action == "drain_xlm" else None,
        reject=str(rule.params.get("message", "function_trapped")) if rule.action == "contract_reject" else None,
    )


async def submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    envelope = form.get("tx")
    if not isinstance(envelope, str) or not envelope:
        return problem(400, "The tx parameter is required.", extras={"invalid_field": "tx"})
    rule, early = await _generic(request, "horizon", SUBMIT_ACTIONS, _submitted(request, envelope))
    if early is not None:
        return early
    try:
        outcome = await request.app[NODE].submit(envelope, pre_apply_for(rule))
    except MalformedError:
        return problem(
            400,
            "Horizon could not decode the transaction envelope in this request.",
            "transaction_malformed",
            "Transaction Malformed",
            {"envelope_xdr": envelope},
        )
    except SubmitTimeoutError:
        return problem(504, "Your request timed out before completing. Please resubmit the same transaction.")
    if rule is not None:
        late = await fl.answer_after_apply(rule, request, shaped, "Internal server error")
        if late is not None:
            return late
    return outcome_response(outcome, envelope)


async def submit_async(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    envelope = form.get("tx")
    if not isinstance(envelope, str) or not envelope:
        return problem(400, "The tx parameter is required.", extras={"invalid_field": "tx"})
    rule, early = await _generic(request, "horizon", SUBMIT_ACTIONS, _submitted(request, envelope))
    if early is not None:
        return early
    node = request.app[NODE]
    try:
        from scripts.sandbox.transactions import decode

        tx_hash = decode(envelope, node.network_id).hash_hex
        if tx_hash in node.history.transactions:
            return web.json_response({"tx_status": "DUPLICATE", "hash": tx_hash}, status=409)
        outcome = await node.submit(envelope, pre_apply_for(rule), wait=False)
    except MalformedError:
        return problem(
            400,
            "Horizon could not decode the transaction envelope in this request.",
            "transaction_malformed",
            "Transaction Malformed",
            {"envelope_xdr": envelope},
        )
    if outcome.kind == "rejected":
        body = {"tx_status": "ERROR", "hash": outcome.hash, "error_result_xdr": outcome.result_xdr}
        return web.json_response(body, status=400)
    if rule is not None:
        late = await fl.answer_after_apply(rule, request, shaped, "Internal server error")
        if late is not None:
            return late
    return web.json_response({"tx_status": "PENDING", "hash": outcome.hash}, status=201)


def _submitted(request: web.Request, envelope: str) -> dict[str, Any] | None:
    """What a fault's `when` can name on a submission: `source` (the transaction's source account),
    `operation` (its first operation's type, e.g. `payment`, `change_trust`, `invoke_host_function`),
    `function` (the contract function it calls, e.g. `fund_escrow`) and `hash`. Decoded only while a
    horizon rule exists, so the fault-free path costs nothing."""
    if not request.app[FAULTS].rules_of("horizon"):
        return None
    from scripts.sandbox.transactions import decode, fault_fields

    try:
        decoded = decode(envelope, request.app[NODE].network_id)
    except MalformedError:
        return None
    return fault_fields(decoded)


def _tx(request: web.Request) -> TxRecord | None:
    """The transaction, unless unknown or pruned (before the elder ledger Horizon answers 404)."""
    record = request.app[NODE].history.transactions.get(request.match_info["tx_hash"].lower())
    return None if record is None or record.ledger < elder_ledger(request.app) else record


async def get_transaction(request: web.Request) -> web.StreamResponse:
    _, early = await _generic(request, "horizon", READ_ACTIONS)
    if early is not None:
        return early
    record = _tx(request)
    if record is None:
        return problem(404, "The resource at the url requested was not found.")
    return web.json_response(record.json)


async def transaction_operations(request: web.Request) -> web.StreamResponse:
    _, early = await _generic(request, "horizon", READ_ACTIONS)
    if early is not None:
        return early
    record = _tx(request)
    if record is None:
        return problem(404, "The resource at the url requested was not found.")
    return page(request, list(record.operations), "asc", 200)


def _cursor(request: web.Request, node: Node) -> int | None:
    raw = request.query.get("cursor") or request.headers.get("Last-Event-ID")
    if raw is None or raw == "":
        return None
    if raw == "now":
        return node.history.op_ids[-1] if node.history.op_ids else 0
    if not raw.isdigit():
        raise ValueError("cursor")
    return int(raw)


async def payments(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    streaming = _streaming(request)
    rule, early = await _generic(request, "horizon", STREAM_ACTIONS if streaming else READ_ACTIONS)
    if early is not None:
        return early
    if rule is not None and rule.action == "stream_disconnect":
        return shaped(int(rule.params.get("status", 503)), "stream unavailable")
    try:
        cursor = _cursor(request, node)
        limit = int(request.query.get("limit", str(STREAM_LIMIT)))
        order = request.query.get("order", "asc")
        if not 1 <= limit <= 200 or order not in ("asc", "desc"):
            raise ValueError("limit")
    except ValueError as exc:
        return problem(400, f"The request has an invalid parameter: {exc}.", extras={"invalid_field": str(exc)})
    floor = _floor(request.app)
    if order == "desc" and floor and cursor is not None and cursor <= floor:
        # only a descending query is ever refused (stellar/go services/horizon/internal/actions/helpers.go,
        # validateAndAdjustCursor / validateCursorWithinHistory); an ascending one before history starts at
        # the elder ledger, and one beyond the newest record gets an empty page
        return problem(
            410,
            "The data requested is older than the oldest ledger this server keeps.",
            "before_history",
            "Data Requested Is Before Recorded History",
        )
    account = request.match_info.get("account_id")
    kind = "operations" if request.path.endswith("/operations") else "payments"
    include_failed = request.query.get("include_failed") == "true"
    join = request.query.get("join") == "transactions"
    if streaming:
        return await _stream(request, kind, account, cursor, include_failed, join, limit)
    records = node.history.page(kind, account, cursor, order, limit, include_failed, floor)
    return page(request, [_joined(node, r, join) for r in records], order, limit)


def _joined(node: Node, record: dict[str, Any], join: bool) -> dict[str, Any]:
    if not join:
        return record
    tx = node.history.transactions.get(record["transaction_hash"])
    return {**record, "transaction": tx.json if tx else None}


async def _stream(
    request: web.Request,
    kind: str,
    account: str | None,
    cursor: int | None,
    include_failed: bool,
    join: bool,
    limit: int,
) -> web.StreamResponse:
    """SSE as stellar/go `render/sse` writes it: the "hello" preamble (`retry: 1000`), each record as `id:`/
    `data:`, and after `limit` records a "byebye" (`event: close`, `retry: 10`) that ends the connection so
    the client resumes from its last id (`stream_handler.go` counts `limit` down across passes). Each pass
    (the first, then one per wake-up for new records) costs one unit of the per-IP budget: refused before
    the preamble it is a plain 429 problem without rate-limit headers, refused later an `event: error`
    that ends the stream (`stream.go`, `Stream.Err`)."""
    node, budget, key = request.app[NODE], request.app[BUDGET], request.remote or ""
    verdict = budget.charge(key)
    if verdict is not None and verdict.limited:
        return problem(429, "Rate limit exceeded")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(b'retry: 1000\nevent: open\ndata: "hello"\n\n')
    handle = _StreamHandle(request)
    request.app[STREAMS].add(handle)
    generation, history = node.generation, node.history
    remaining, first = limit, True
    try:
        while not handle.closed and node.generation == generation:
            if not first:
                verdict = budget.charge(key)
                if verdict is not None and verdict.limited:
                    await response.write(b"event: error\ndata: Rate limit exceeded\n\n")
                    break
            first = False
            records = history.page(kind, account, cursor, "asc", remaining, include_failed, _floor(request.app))
            chunks = []
            for record in records:
                cursor = int(record["paging_token"])
                data = json.dumps(_joined(node, record, join))
                chunks.append(f"id: {record['paging_token']}\ndata: {data}\n\n")
            remaining -= len(records)
            if chunks:
                await response.write("".join(chunks).encode())
            if remaining <= 0:
                await response.write(b'retry: 10\nevent: close\ndata: "byebye"\n\n')
                break
            waited = asyncio.get_running_loop().time()
            await history.wait(15)
            if asyncio.get_running_loop().time() - waited >= 15:
                await response.write(b": heartbeat\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        request.app[STREAMS].discard(handle)
    if handle.abrupt and request.transport is not None:
        request.transport.close()
        return response
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


class _StreamHandle:
    """An open stream the `stream_disconnect` fault can end."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.closed = False
        self.abrupt = False


def disconnect_streams(app: web.Application, rule: fl.FaultRule) -> None:
    """`stream_disconnect`: end every open stream now; the rule then answers reconnects if it has a status."""
    handles = list(app[STREAMS])
    for handle in handles:
        handle.closed = True
        handle.abrupt = bool(rule.params.get("abrupt", False))
    app[NODE].history.notify()
    app[FAULTS].fire(rule, {"effect": f"closed {len(handles)} open streams"}, count=False)
    if "status" not in rule.params:
        rule.fired = max(rule.fired, rule.times)


async def ledgers(request: web.Request) -> web.StreamResponse:
    _, early = await _generic(request, "horizon", READ_ACTIONS)
    if early is not None:
        return early
    node = request.app[NODE]
    order = request.query.get("order", "asc")
    limit = min(int(request.query.get("limit", "10") or 10), 200)
    headers = node.history.ledgers[::-1] if order == "desc" else node.history.ledgers
    records = [
        {
            "id": str(h.sequence),
            "paging_token": str(h.sequence << 32),
            "sequence": h.sequence,
            "hash": f"{h.sequence:064x}",
            "closed_at": h.closed_at,
            "successful_transaction_count": h.successful,
            "failed_transaction_count": h.failed,
            "operation_count": h.operations,
            "base_fee_in_stroops": node.engine.base_fee() if h is node.history.ledgers[-1] else h.base_fee,
            "base_reserve_in_stroops": 5_000_000,
            "max_tx_set_size": 1000,
            "protocol_version": 22,
        }
        for h in headers[:limit]
    ]
    return page(request, records, order, limit)


async def fee_stats(request: web.Request) -> web.StreamResponse:
    _, early = await _generic(request, "horizon", READ_ACTIONS)
    if early is not None:
        return early
    node = request.app[NODE]
    fee = str(node.engine.base_fee())
    names = ("p10", "p20", "p30", "p40", "p50", "p60", "p70", "p80", "p90", "p95", "p99")
    percentiles = dict.fromkeys(names, fee)
    return web.json_response(
        {
            "last_ledger": str(node.ledger.sequence),
            "last_ledger_base_fee": fee,
            "ledger_capacity_usage": "0.01",
            "fee_charged": {"max": fee, "min": fee, "mode": fee, **percentiles},
            "max_fee": {"max": fee, "min": fee, "mode": fee, **percentiles},
        }
    )


async def friendbot(request: web.Request) -> web.StreamResponse:
    """Create the account with 10,000 XLM; `400` if it exists (friendbot's answer)."""
    address = request.query.get("addr", "")
    path = request.path.removeprefix("/friendbot") or "/"
    rule = request.app[FAULTS].match("friendbot", request.method, path, dict(request.query))
    if rule is not None and rule.action in fl.GENERIC_ACTIONS:
        early = await fl.apply_generic(rule, request, shaped)
        if early is not None:
            return early
    if not StrKey.is_valid_ed25519_public_key(address):
        return problem(400, "The addr parameter is not a valid account id.", extras={"invalid_field": "addr"})
    node = request.app[NODE]
    if address in node.ledger.accounts:
        return problem(
            400,
            "createAccountAlreadyExist (AAAAAAAAAGT/////AAAAAQAAAAAAAAAA/////AAAAAA=)",
            "transaction_failed",
            "Transaction Failed",
            {"result_codes": {"transaction": "tx_failed", "operations": ["op_already_exists"]}},
        )
    try:
        outcome = await node.friendbot(address)
    except SubmitTimeoutError:
        return problem(504, "Your request timed out before completing.")
    if rule is not None:
        late = await fl.answer_after_apply(rule, request, shaped)
        if late is not None:
            return late
    return outcome_response(outcome, "")
