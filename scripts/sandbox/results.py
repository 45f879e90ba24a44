"""Real `TransactionResult` XDR for the result codes the sandbox produces (Horizon's `result_xdr`)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from stellar_sdk import xdr as sx

#: Horizon's transaction code strings and their XDR codes.
TX_CODES: dict[str, sx.TransactionResultCode] = {
    "tx_success": sx.TransactionResultCode.txSUCCESS,
    "tx_failed": sx.TransactionResultCode.txFAILED,
    "tx_too_early": sx.TransactionResultCode.txTOO_EARLY,
    "tx_too_late": sx.TransactionResultCode.txTOO_LATE,
    "tx_missing_operation": sx.TransactionResultCode.txMISSING_OPERATION,
    "tx_bad_seq": sx.TransactionResultCode.txBAD_SEQ,
    "tx_bad_auth": sx.TransactionResultCode.txBAD_AUTH,
    "tx_insufficient_balance": sx.TransactionResultCode.txINSUFFICIENT_BALANCE,
    "tx_no_source_account": sx.TransactionResultCode.txNO_ACCOUNT,
    "tx_insufficient_fee": sx.TransactionResultCode.txINSUFFICIENT_FEE,
    "tx_bad_auth_extra": sx.TransactionResultCode.txBAD_AUTH_EXTRA,
    "tx_internal_error": sx.TransactionResultCode.txINTERNAL_ERROR,
    "tx_not_supported": sx.TransactionResultCode.txNOT_SUPPORTED,
    "tx_malformed": sx.TransactionResultCode.txMALFORMED,
    "tx_soroban_invalid": sx.TransactionResultCode.txSOROBAN_INVALID,
}

#: Operation code strings -> suffix of the per-type XDR enum member.
_OP_SUFFIX = {
    "op_success": "SUCCESS",
    "op_malformed": "MALFORMED",
    "op_underfunded": "UNDERFUNDED",
    "op_low_reserve": "LOW_RESERVE",
    "op_already_exists": "ALREADY_EXIST",
    "op_src_no_trust": "SRC_NO_TRUST",
    "op_no_destination": "NO_DESTINATION",
    "op_no_trust": "NO_TRUST",
    "op_line_full": "LINE_FULL",
    "op_no_issuer": "NO_ISSUER",
    "op_invalid_limit": "INVALID_LIMIT",
    "op_too_few_offers": "TOO_FEW_OFFERS",
    "op_under_dest_min": "UNDER_DESTMIN",
    "op_over_source_max": "OVER_SENDMAX",
    "function_trapped": "TRAPPED",
    "op_bad_seq": "BAD_SEQ",
}

_OUTER = {
    "op_bad_auth": sx.OperationResultCode.opBAD_AUTH,
    "op_no_source_account": sx.OperationResultCode.opNO_ACCOUNT,
    "op_not_supported": sx.OperationResultCode.opNOT_SUPPORTED,
}

#: Per operation type: (result class, code enum, enum prefix, OperationResultTr attribute).
_TYPES: dict[int, tuple[Any, Any, str, str]] = {
    0: (sx.CreateAccountResult, sx.CreateAccountResultCode, "CREATE_ACCOUNT_", "create_account_result"),
    1: (sx.PaymentResult, sx.PaymentResultCode, "PAYMENT_", "payment_result"),
    2: (
        sx.PathPaymentStrictReceiveResult,
        sx.PathPaymentStrictReceiveResultCode,
        "PATH_PAYMENT_STRICT_RECEIVE_",
        "path_payment_strict_receive_result",
    ),
    6: (sx.ChangeTrustResult, sx.ChangeTrustResultCode, "CHANGE_TRUST_", "change_trust_result"),
    11: (sx.BumpSequenceResult, sx.BumpSequenceResultCode, "BUMP_SEQUENCE_", "bump_seq_result"),
    13: (
        sx.PathPaymentStrictSendResult,
        sx.PathPaymentStrictSendResultCode,
        "PATH_PAYMENT_STRICT_SEND_",
        "path_payment_strict_send_result",
    ),
    24: (
        sx.InvokeHostFunctionResult,
        sx.InvokeHostFunctionResultCode,
        "INVOKE_HOST_FUNCTION_",
        "invoke_host_function_result",
    ),
}


def operation_result(type_i: int, code: str, op: Any = None) -> sx.OperationResult:
    """One operation's result; `op` (the XDR op body) supplies a path payment's success details."""
    if code in _OUTER:
        return sx.OperationResult(_OUTER[code])
    cls, enum, prefix, attr = _TYPES[type_i]
    member = getattr(enum, prefix + _OP_SUFFIX[code])
    kwargs: dict[str, Any] = {}
    if code == "op_success" and type_i in (2, 13):
        amount = op.send_amount if type_i == 13 else op.dest_amount
        last = sx.SimplePaymentResult(sx.AccountID(_pk(op.destination)), op.dest_asset, amount)
        success_cls = (
            sx.PathPaymentStrictSendResultSuccess if type_i == 13 else sx.PathPaymentStrictReceiveResultSuccess
        )
        kwargs["success"] = success_cls([], last)
    elif code == "op_success" and type_i == 24:
        kwargs["success"] = sx.Hash(hashlib.sha256(b"sandbox:void").digest())
    tr = sx.OperationResultTr(sx.OperationType(type_i), **{attr: cls(member, **kwargs)})
    return sx.OperationResult(sx.OperationResultCode.opINNER, tr)


def _pk(dest: sx.MuxedAccount) -> sx.PublicKey:
    raw = dest.ed25519 if dest.ed25519 is not None else dest.med25519.ed25519
    return sx.PublicKey(sx.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, raw)


def transaction_result(fee: int, tx_code: str, ops: list[sx.OperationResult] | None = None) -> str:
    """Base64 `TransactionResult`; `ops` only for tx_success / tx_failed."""
    code = TX_CODES[tx_code]
    results = ops if code in (sx.TransactionResultCode.txSUCCESS, sx.TransactionResultCode.txFAILED) else None
    result = sx.TransactionResult(
        sx.Int64(fee), sx.TransactionResultResult(code, results=results), sx.TransactionResultExt(0)
    )
    return result.to_xdr()


@lru_cache(maxsize=256)
def simple_result(fee: int, tx_code: str, ops: tuple[tuple[int, str], ...]) -> str:
    """Cached result for operations whose results carry no details (the common, fast path)."""
    return transaction_result(fee, tx_code, [operation_result(t, c) for t, c in ops])
