"""Operation rules (spec providers.md §2.9): each applier mutates a Scratch and returns a result code.

Appliers work on the XDR objects straight from the envelope (no SDK model objects) to keep the apply path
lean. `details` is the type-specific part of the Horizon operation record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stellar_sdk import StrKey
from stellar_sdk import xdr as sx

from scripts.sandbox.ledger import BASE_RESERVE, NATIVE, ONE, Scratch, Trustline, fmt_amount

OK = "op_success"


class ContractHost(Protocol):
    """The contract model behind `invoke_host_function` (the escrow contracts)."""

    def invoke(
        self, scratch: Scratch, caller: str, contract_id: str, function: str, args: list[sx.SCVal]
    ) -> list[dict[str, Any]]:
        """Run a call; return asset balance changes; raise `Trap` to refuse it."""
        ...


class Trap(Exception):
    """Raised by the contract model to refuse a call (`function_trapped`)."""


@dataclass
class OpResult:
    code: str
    type: str
    type_i: int
    details: dict[str, Any] = field(default_factory=dict)


def account_id(acc: sx.AccountID) -> str:
    return StrKey.encode_ed25519_public_key(acc.account_id.ed25519.uint256)


def muxed_id(acc: sx.MuxedAccount) -> str:
    raw = acc.ed25519 if acc.ed25519 is not None else acc.med25519.ed25519
    return StrKey.encode_ed25519_public_key(raw.uint256)


def asset_key(asset: sx.Asset | sx.ChangeTrustAsset) -> str:
    if asset.type == sx.AssetType.ASSET_TYPE_NATIVE:
        return NATIVE
    if asset.type == sx.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4:
        code, issuer = asset.alpha_num4.asset_code.asset_code4, asset.alpha_num4.issuer
    elif asset.type == sx.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12:
        code, issuer = asset.alpha_num12.asset_code.asset_code12, asset.alpha_num12.issuer
    else:
        raise ValueError("liquidity pool assets are not supported")
    return code.rstrip(b"\x00").decode() + ":" + account_id(issuer)


def asset_fields(asset: str, prefix: str = "") -> dict[str, Any]:
    """Horizon's asset_type/asset_code/asset_issuer triple."""
    if asset == NATIVE:
        return {f"{prefix}asset_type": "native"}
    code, issuer = asset.split(":", 1)
    kind = "credit_alphanum4" if len(code) <= 4 else "credit_alphanum12"
    return {f"{prefix}asset_type": kind, f"{prefix}asset_code": code, f"{prefix}asset_issuer": issuer}


def move(scratch: Scratch, source: str, dest: str, asset: str, amount: int) -> str:
    """Move `amount` of `asset` between accounts; issuers mint and burn. Returns a result code."""
    src = scratch.account(source)
    dst = scratch.account(dest)
    if src is None:
        return "op_underfunded"
    if dst is None:
        return "op_no_destination"
    if asset == NATIVE:
        if src.spendable < amount:
            return "op_underfunded"
        src.xlm -= amount
        dst.xlm += amount
        return OK
    issuer = asset.split(":", 1)[1]
    if source != issuer:
        line = src.trustlines.get(asset)
        if line is None:
            return "op_src_no_trust"
        if line.balance < amount:
            return "op_underfunded"
    if dest != issuer:
        dline = dst.trustlines.get(asset)
        if dline is None:
            return "op_no_trust"
        if dline.balance + amount > dline.limit:
            return "op_line_full"
    if source == dest:
        return OK
    if source == issuer:
        scratch.issue(asset, amount)
    else:
        src.trustlines[asset].balance -= amount
    if dest == issuer:
        scratch.issue(asset, -amount)
    else:
        dst.trustlines[asset].balance += amount
    return OK


def create_account(scratch: Scratch, source: str, op: sx.CreateAccountOp) -> OpResult:
    dest, amount = account_id(op.destination), op.starting_balance.int64
    details = {"funder": source, "account": dest, "starting_balance": fmt_amount(amount)}
    result = OpResult(OK, "create_account", 0, details)
    if amount <= 0:
        result.code = "op_malformed"
    elif scratch.account(dest) is not None:
        result.code = "op_already_exists"
    elif amount < 2 * BASE_RESERVE:
        result.code = "op_low_reserve"
    else:
        src = scratch.account(source)
        if src is None or src.spendable < amount:
            result.code = "op_underfunded"
        else:
            src.xlm -= amount
            scratch.create_account(dest, amount)
    return result


def payment(scratch: Scratch, source: str, op: sx.PaymentOp) -> OpResult:
    dest, asset, amount = muxed_id(op.destination), asset_key(op.asset), op.amount.int64
    details = {**asset_fields(asset), "from": source, "to": dest, "amount": fmt_amount(amount)}
    code = "op_malformed" if amount <= 0 else move(scratch, source, dest, asset, amount)
    return OpResult(code, "payment", 1, details)


def path_payment_strict_send(scratch: Scratch, source: str, op: sx.PathPaymentStrictSendOp) -> OpResult:
    send, dest_asset = asset_key(op.send_asset), asset_key(op.dest_asset)
    amount, dest = op.send_amount.int64, muxed_id(op.destination)
    details = {
        **asset_fields(dest_asset),
        **asset_fields(send, "source_"),
        "from": source,
        "to": dest,
        "amount": fmt_amount(amount),
        "source_amount": fmt_amount(amount),
        "path": [],
        "destination_min": fmt_amount(op.dest_min.int64),
    }
    result = OpResult(OK, "path_payment_strict_send", 13, details)
    if amount <= 0 or op.dest_min.int64 <= 0:
        result.code = "op_malformed"
    elif send != dest_asset or op.path:
        result.code = "op_too_few_offers"
    elif amount < op.dest_min.int64:
        result.code = "op_under_dest_min"
    else:
        result.code = move(scratch, source, dest, send, amount)
    return result


def path_payment_strict_receive(scratch: Scratch, source: str, op: sx.PathPaymentStrictReceiveOp) -> OpResult:
    send, dest_asset = asset_key(op.send_asset), asset_key(op.dest_asset)
    amount, dest = op.dest_amount.int64, muxed_id(op.destination)
    details = {
        **asset_fields(dest_asset),
        **asset_fields(send, "source_"),
        "from": source,
        "to": dest,
        "amount": fmt_amount(amount),
        "source_amount": fmt_amount(amount),
        "path": [],
        "source_max": fmt_amount(op.send_max.int64),
    }
    result = OpResult(OK, "path_payment_strict_receive", 2, details)
    if amount <= 0 or op.send_max.int64 <= 0:
        result.code = "op_malformed"
    elif send != dest_asset or op.path:
        result.code = "op_too_few_offers"
    elif amount > op.send_max.int64:
        result.code = "op_over_source_max"
    else:
        result.code = move(scratch, source, dest, send, amount)
    return result


def change_trust(scratch: Scratch, source: str, op: sx.ChangeTrustOp) -> OpResult:
    try:
        asset = asset_key(op.line)
    except ValueError:
        return OpResult("op_not_supported", "change_trust", 6)
    limit = op.limit.int64
    issuer = asset.split(":", 1)[1] if asset != NATIVE else None
    details = {**asset_fields(asset), "limit": fmt_amount(limit), "trustor": source, "trustee": issuer}
    result = OpResult(OK, "change_trust", 6, details)
    account = scratch.account(source)
    if asset == NATIVE or limit < 0 or source == issuer or account is None:
        result.code = "op_malformed"
        return result
    line = account.trustlines.get(asset)
    if line is not None:
        if limit < line.balance:
            result.code = "op_invalid_limit"
        elif limit == 0:
            del account.trustlines[asset]
            account.subentries -= 1
        else:
            line.limit = limit
    elif limit == 0:
        result.code = "op_invalid_limit"
    elif scratch.account(issuer) is None:
        result.code = "op_no_issuer"
    elif account.xlm < account.min_balance + BASE_RESERVE:
        result.code = "op_low_reserve"
    else:
        account.trustlines[asset] = Trustline(0, limit)
        account.subentries += 1
    return result


def bump_sequence(scratch: Scratch, source: str, op: sx.BumpSequenceOp) -> OpResult:
    """Raise the source's sequence to `bump_to` (never lower it): how an account consumes a sequence number
    so that an envelope built for it can never apply (Stellar docs, "List of operations: Bump Sequence";
    DESIGN decision 22 uses it to kill an unbounded TW envelope)."""
    bump_to = op.bump_to.sequence_number.int64
    result = OpResult(OK, "bump_sequence", 11, {"bump_to": str(bump_to)})
    account = scratch.account(source)
    if bump_to < 0 or account is None:
        result.code = "op_bad_seq"
    elif bump_to > account.seq:
        account.seq = bump_to
    return result


def invoke_host_function(
    scratch: Scratch, source: str, op: sx.InvokeHostFunctionOp, host: ContractHost, reject: str | None
) -> OpResult:
    """Route a contract call to the contract model; `reject` is an injected refusal."""
    details: dict[str, Any] = {
        "function": "HostFunctionTypeHostFunctionTypeInvokeContract",
        "address": "",
        "salt": "",
        "parameters": [],
        "asset_balance_changes": [],
    }
    result = OpResult(OK, "invoke_host_function", 24, details)
    call = op.host_function.invoke_contract
    if op.host_function.type != sx.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT or call is None:
        result.code = "op_not_supported"
        return result
    contract = StrKey.encode_contract(call.contract_address.contract_id.contract_id.hash)
    function = call.function_name.sc_symbol.decode()
    details["parameters"] = [
        {"value": v.to_xdr(), "type": v.type.name.removeprefix("SCV_").title()} for v in call.args
    ]
    details["address"] = contract
    if reject is not None:
        result.code = "function_trapped"
        details["trap"] = reject
        return result
    try:
        details["asset_balance_changes"] = host.invoke(scratch, source, contract, function, list(call.args))
    except Trap as trap:
        result.code = "function_trapped"
        details["trap"] = str(trap)
    return result


Applier = Callable[[Scratch, str, Any], OpResult]

#: Classic operations by XDR body attribute.
CLASSIC: dict[sx.OperationType, tuple[str, Applier]] = {
    sx.OperationType.CREATE_ACCOUNT: ("create_account_op", create_account),
    sx.OperationType.PAYMENT: ("payment_op", payment),
    sx.OperationType.CHANGE_TRUST: ("change_trust_op", change_trust),
    sx.OperationType.BUMP_SEQUENCE: ("bump_sequence_op", bump_sequence),
    sx.OperationType.PATH_PAYMENT_STRICT_SEND: ("path_payment_strict_send_op", path_payment_strict_send),
    sx.OperationType.PATH_PAYMENT_STRICT_RECEIVE: (
        "path_payment_strict_receive_op",
        path_payment_strict_receive,
    ),
}

__all__ = ["OK", "ONE", "ContractHost", "OpResult", "Trap", "asset_fields", "asset_key", "move"]
