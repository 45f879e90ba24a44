"""Horizon subset (spec providers.md §4.2) and friendbot, over the shared node."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web
from stellar_sdk import StrKey

from scripts.sandbox import faults as fl
from scripts.sandbox.history import TxRecord
from scripts.sandbox.node import Node, PreApply, SubmitTimeoutError
from scripts.sandbox.records import account_json, page, problem, shaped
from scripts.sandbox.transactions import MalformedError, Outcome

NODE = web.AppKey("node", Node)
FAULTS = web.AppKey("faults", fl.Faults)
STREAMS = web.AppKey("streams", set)

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
STREAM_ACTIONS = fl.GENERIC_ACTIONS | {"stream_disconnect", "before_history"}
_TX_FAILED_DETAIL = (
    "The transaction failed when submitted to the stellar network. The `extras.result_codes` field on this "
    "response contains further details."
)


def setup(app: web.Application) -> None:
    app[STREAMS] = set()
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
            "history_elder_ledger": 1,
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
    from scripts.sandbox.transactions import decode

    try:
        decoded = decode(envelope, request.app[NODE].network_id)
    except MalformedError:
        return None
    fields: dict[str, Any] = {"source": decoded.source, "hash": decoded.hash_hex}
    operations = decoded.tx.operations
    if operations:
        body = operations[0].body
        fields["operation"] = body.type.name.lower()
        call = body.invoke_host_function_op.host_function.invoke_contract if body.invoke_host_function_op else None
        if call is not None:
            fields["function"] = call.function_name.sc_symbol.decode()
    return fields


def _tx(request: web.Request) -> TxRecord | None:
    return request.app[NODE].history.transactions.get(request.match_info["tx_hash"].lower())


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
    streaming = "text/event-stream" in request.headers.get("Accept", "")
    rule, early = await _generic(request, "horizon", STREAM_ACTIONS if streaming else READ_ACTIONS)
    if early is not None:
        return early
    if rule is not None and rule.action == "stream_disconnect":
        return shaped(int(rule.params.get("status", 503)), "stream unavailable")
    try:
        cursor = _cursor(request, node)
        limit = int(request.query.get("limit", "10"))
        order = request.query.get("order", "asc")
        if not 1 <= limit <= 200 or order not in ("asc", "desc"):
            raise ValueError("limit")
    except ValueError as exc:
        return problem(400, f"The request has an invalid parameter: {exc}.", extras={"invalid_field": str(exc)})
    mark = None if request.query.get("cursor") == "now" else _before_history(request, cursor)
    if mark is not None:
        return mark
    account = request.match_info.get("account_id")
    kind = "operations" if request.path.endswith("/operations") else "payments"
    include_failed = request.query.get("include_failed") == "true"
    join = request.query.get("join") == "transactions"
    if streaming:
        return await _stream(request, kind, account, cursor, include_failed, join)
    records = node.history.page(kind, account, cursor, order, limit, include_failed)
    return page(request, [_joined(node, r, join) for r in records], order, limit)


def _before_history(request: web.Request, cursor: int | None) -> web.Response | None:
    if cursor is None:
        return None
    path = request.path.removeprefix("/horizon")

    def older(rule: fl.FaultRule) -> bool:
        return cursor < int(rule.params.get("cursor", 0))

    rule = request.app[FAULTS].match("horizon", "GET", path, actions={"before_history"}, accept=older)
    if rule is None:
        return None
    return problem(
        410,
        "The requested cursor is older than the history this server keeps.",
        "before_history",
        "Data Requested Is Before Recorded History",
    )


def _joined(node: Node, record: dict[str, Any], join: bool) -> dict[str, Any]:
    if not join:
        return record
    tx = node.history.transactions.get(record["transaction_hash"])
    return {**record, "transaction": tx.json if tx else None}


async def _stream(
    request: web.Request, kind: str, account: str | None, cursor: int | None, include_failed: bool, join: bool
) -> web.StreamResponse:
    """SSE: `retry:`, a "hello" message, then each record from the cursor, then live records."""
    node = request.app[NODE]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(b'retry: 1000\nevent: open\ndata: "hello"\n\n')
    handle = _StreamHandle(request)
    request.app[STREAMS].add(handle)
    generation, history = node.generation, node.history
    try:
        while not handle.closed and node.generation == generation:
            records = history.page(kind, account, cursor, "asc", 200, include_failed)
            chunks = []
            for record in records:
                cursor = int(record["paging_token"])
                data = json.dumps(_joined(node, record, join))
                chunks.append(f"id: {record['paging_token']}\ndata: {data}\n\n")
            if chunks:
                await response.write("".join(chunks).encode())
                continue
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
