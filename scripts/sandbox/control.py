"""Control plane (spec providers.md §4.5): reset, state, clock, external accounts, payments, faults."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from stellar_sdk import Asset, Keypair, TransactionBuilder

from scripts.sandbox.clock import Clock
from scripts.sandbox.faults import Faults
from scripts.sandbox.horizon import FAULTS, NODE, disconnect_streams
from scripts.sandbox.node import Node, SubmitTimeoutError
from scripts.sandbox.transactions import Outcome

CLOCK = web.AppKey("clock", Clock)
#: Callbacks run on reset (other simulators register theirs).
RESETTERS = web.AppKey("resetters", list)
#: Callbacks contributing to `GET /_sandbox/state`, by key.
STATE_PARTS = web.AppKey("state_parts", dict)


def setup(app: web.Application) -> None:
    app[RESETTERS] = []
    app[STATE_PARTS] = {}
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_get("/_sandbox/state", state)
    app.router.add_post("/_sandbox/clock", advance_clock)
    app.router.add_post("/_sandbox/ledger", ledger_mode)
    app.router.add_post("/_sandbox/stellar/accounts", create_account)
    app.router.add_post("/_sandbox/stellar/pay", pay)
    app.router.add_get("/_sandbox/faults", list_faults)
    app.router.add_post("/_sandbox/faults", add_fault)
    app.router.add_delete("/_sandbox/faults", clear_faults)
    node, faults = app[NODE], app[FAULTS]
    faults.on_add(node.on_fault_added)
    faults.on_add(lambda rule: _on_add(app, rule))


def _on_add(app: web.Application, rule: Any) -> None:
    if rule.service == "horizon" and rule.action == "stream_disconnect":
        disconnect_streams(app, rule)
    if rule.service == "horizon" and rule.action == "before_history":
        # prune history: by default everything closed so far (the elder becomes the next ledger)
        if "cursor" not in rule.params and "ledger" not in rule.params:
            rule.params["ledger"] = app[NODE].ledger.sequence + 1
        app[FAULTS].fire(rule, {"effect": "history pruned"}, count=False)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


async def reset(request: web.Request) -> web.Response:
    app = request.app
    async with app[NODE].ledger.lock:
        app[NODE].reset()
    app[FAULTS].reset()
    app[CLOCK].reset()
    for resetter in app[RESETTERS]:
        resetter()
    return web.json_response({"ok": True, "issuer": app[NODE].issuer.public_key})


async def state(request: web.Request) -> web.Response:
    app = request.app
    body = app[NODE].state()
    body["faults"] = {"rules": app[FAULTS].list(), "log": app[FAULTS].log}
    for key, part in app[STATE_PARTS].items():
        body[key] = part()
    return web.json_response(body, dumps=_dumps)


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str)


async def advance_clock(request: web.Request) -> web.Response:
    try:
        body = await _json(request)
        request.app[CLOCK].advance(float(body.get("advanceSeconds", 0)))
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc))
    clock = request.app[CLOCK]
    return web.json_response({"now": clock.now().isoformat(), "offsetSeconds": clock.offset})


async def ledger_mode(request: web.Request) -> web.Response:
    """`{mode: instant|interval, intervalSeconds?}`: how ledgers close from now on (SANDBOX_LEDGER_MODE at
    run time, so one running sandbox can serve both kinds of test)."""
    node = request.app[NODE]
    try:
        body = await _json(request)
        await node.set_ledger_mode(str(body.get("mode")), body.get("intervalSeconds"))
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc))
    return web.json_response({"mode": node.config.ledger_mode,
                              "intervalSeconds": node.config.ledger_interval_seconds})


def _stroops(value: Any) -> int:
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"invalid amount {value!r}") from exc
    if amount != amount.quantize(Decimal("0.0000001")) or amount < 0:
        raise ValueError(f"invalid amount {value!r}")
    return int(amount * 10_000_000)


def _problem_of(outcome: Outcome) -> dict[str, Any] | None:
    if outcome.record is not None and outcome.record.successful:
        return None
    return {"transaction": outcome.tx_code, "operations": outcome.op_codes}


async def create_account(request: web.Request) -> web.Response:
    """An external funded account (optionally with a USDC trustline and USDC); returns its keys."""
    node: Node = request.app[NODE]
    try:
        body = await _json(request)
        xlm = _stroops(body.get("xlm", "100"))
        usdc = _stroops(body.get("usdc", "0"))
    except ValueError as exc:
        return _error(400, str(exc))
    keypair = Keypair.random()
    node.secrets[keypair.public_key] = keypair.secret
    try:
        failed = _problem_of(await node.friendbot(keypair.public_key, xlm))
        if failed is None and (body.get("usdcTrustline", True) or usdc):
            failed = _problem_of(
                await node.sign_and_submit(keypair, lambda b: b.append_change_trust_op(node.usdc))
            )
        if failed is None and usdc:
            failed = _problem_of(await _payment(node, node.issuer, keypair.public_key, node.usdc, usdc))
    except SubmitTimeoutError:
        return _error(504, "the ledger did not close in time")
    if failed is not None:
        return web.json_response({"error": "account setup failed", "result_codes": failed}, status=400)
    return web.json_response({"publicKey": keypair.public_key, "secret": keypair.secret}, status=201)


def _asset(node: Node, name: str) -> Asset:
    if name in ("XLM", "native"):
        return Asset.native()
    if name == "USDC":
        return node.usdc
    code, _, issuer = name.partition(":")
    return Asset(code, issuer)


async def _payment(node: Node, signer: Keypair, to: str, asset: Asset, stroops: int) -> Outcome:
    amount = f"{stroops // 10_000_000}.{stroops % 10_000_000:07d}"

    def build(b: TransactionBuilder) -> None:
        b.append_payment_op(to, asset, amount)

    return await node.sign_and_submit(signer, build)


async def pay(request: web.Request) -> web.Response:
    """A real signed payment from the issuer (mints) or an account whose key the sandbox has or is given."""
    node: Node = request.app[NODE]
    try:
        body = await _json(request)
        signer = node.keypair_for(str(body["from"]))
        asset = _asset(node, str(body.get("asset", "USDC")))
        stroops = _stroops(body["amount"])
        outcome = await _payment(node, signer, str(body["to"]), asset, stroops)
    except (KeyError, ValueError) as exc:
        return _error(400, f"invalid payment: {exc}")
    except SubmitTimeoutError:
        return _error(504, "the ledger did not close in time")
    failed = _problem_of(outcome)
    if failed is not None:
        return web.json_response(
            {"error": "payment failed", "hash": outcome.hash, "result_codes": failed}, status=400
        )
    record = outcome.record
    assert record is not None
    return web.json_response(
        {"hash": outcome.hash, "ledger": record.ledger, "operationId": record.operations[0]["id"]}
    )


async def list_faults(request: web.Request) -> web.Response:
    faults: Faults = request.app[FAULTS]
    return web.json_response({"rules": faults.list(), "log": faults.log}, dumps=_dumps)


async def add_fault(request: web.Request) -> web.Response:
    try:
        body = await _json(request)
        specs = body if isinstance(body, list) else [body]
        rules = [request.app[FAULTS].add(spec) for spec in specs]
    except ValueError as exc:
        return _error(400, str(exc))
    from dataclasses import asdict

    return web.json_response(asdict(rules[0]), status=201)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].clear()
    return web.json_response({"ok": True})
