"""Decode, verify and apply envelopes in the order of spec providers.md §2.9 / §4.2.

`Engine.apply` is synchronous and must run under the ledger lock: no await happens between the checks
and the commit, so an apply is atomic. A transaction whose operations fail still consumes its sequence
number and pays its fee; a transaction-level rejection changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stellar_sdk import Keypair
from stellar_sdk import xdr as sx
from stellar_sdk.exceptions import BadSignatureError

from scripts.sandbox import ops, results
from scripts.sandbox.clock import Clock
from scripts.sandbox.history import History, LedgerHeader, TxRecord, toid
from scripts.sandbox.ledger import BASE_FEE, Ledger, Scratch

_ENVELOPE_TX = 2
_MEMO_TYPES = {0: "none", 1: "text", 2: "id", 3: "hash", 4: "return"}


class MalformedError(ValueError):
    """Raised when an envelope cannot be decoded (Horizon's `transaction_malformed`)."""


@dataclass
class Decoded:
    """An envelope decoded once, with its hash under the sandbox passphrase."""

    xdr: str
    tx: sx.Transaction
    signatures: list[sx.DecoratedSignature]
    hash: bytes
    hash_hex: str
    source: str
    seq: int
    fee: int

    @property
    def is_soroban(self) -> bool:
        return any(op.body.type == sx.OperationType.INVOKE_HOST_FUNCTION for op in self.tx.operations)

    @property
    def resource_fee(self) -> int:
        """The part of `fee` a Soroban transaction sets aside for its resources (`sorobanData.resourceFee`)."""
        data = self.tx.ext.soroban_data if self.tx.ext.v == 1 else None
        return data.resource_fee.int64 if data is not None else 0


@dataclass
class Outcome:
    """What a submit came to: `applied` (in a ledger, maybe failed) or `rejected` (nothing changed)."""

    kind: str
    hash: str
    tx_code: str
    op_codes: list[str] = field(default_factory=list)
    result_xdr: str = ""
    record: TxRecord | None = None
    trap: str | None = None


def decode(envelope: str, network_id: bytes) -> Decoded:
    """Decode a base64 `TransactionEnvelope` (v1); raise `MalformedError` for anything else."""
    try:
        raw = base64.b64decode(envelope, validate=True)
        env = sx.TransactionEnvelope.from_xdr_bytes(raw)
    except (binascii.Error, ValueError, IndexError, TypeError) as exc:
        raise MalformedError(str(exc)) from exc
    except Exception as exc:  # the XDR unpacker raises assorted errors on garbage
        raise MalformedError(str(exc)) from exc
    if env.type.value != _ENVELOPE_TX or env.v1 is None:
        raise MalformedError("only v1 transaction envelopes are supported by the sandbox")
    sigs = env.v1.signatures
    sig_len = 4 + sum(8 + (len(s.signature.signature) + 3) // 4 * 4 for s in sigs)
    tx_bytes = raw[4 : len(raw) - sig_len]
    digest = hashlib.sha256(network_id + raw[:4] + tx_bytes).digest()
    tx = env.v1.tx
    return Decoded(
        xdr=envelope,
        tx=tx,
        signatures=sigs,
        hash=digest,
        hash_hex=digest.hex(),
        source=ops.muxed_id(tx.source_account),
        seq=tx.seq_num.sequence_number.int64,
        fee=tx.fee.uint32,
    )


class Engine:
    """Applies transactions to the ledger and writes history; ledgers close per transaction or on a timer."""

    def __init__(self, ledger: Ledger, history: History, clock: Clock, passphrase: str, host: ops.ContractHost):
        self.ledger = ledger
        self.history = history
        self.clock = clock
        self.network_id = hashlib.sha256(passphrase.encode()).digest()
        self.host = host
        self.surge_fee = 0
        self.surge_until = 0
        self.surge_ends_at: float | None = None
        self._keys: dict[str, Keypair] = {}
        self._open: list[TxRecord] = []
        #: Called when a ledger has closed, before streams wake: what they are about to send is kept first.
        self.on_close: Callable[[], None] = lambda: None

    def base_fee(self) -> int:
        """The per-operation price now: 100 stroops unless a surge is injected."""
        over = self.surge_ends_at is not None and self.clock.time() >= self.surge_ends_at
        if self.surge_fee and self.ledger.sequence < self.surge_until and not over:
            return self.surge_fee
        return BASE_FEE

    def precheck(self, d: Decoded, pending_seq: int = 0) -> str | None:
        """Transaction-level checks in Horizon's order; a code means reject with nothing changed."""
        tx = d.tx
        if not tx.operations:
            return "tx_missing_operation"
        if d.is_soroban and (len(tx.operations) != 1 or tx.ext.v != 1):
            return "tx_malformed" if len(tx.operations) != 1 else "tx_soroban_invalid"
        account = self.ledger.accounts.get(d.source)
        if account is None:
            return "tx_no_source_account"
        bounds = tx.cond.time_bounds if tx.cond.type == sx.PreconditionType.PRECOND_TIME else None
        if tx.cond.type == sx.PreconditionType.PRECOND_V2:
            return "tx_not_supported"
        now = self.clock.time()
        if bounds is not None:
            if bounds.min_time.time_point.uint64 > now:
                return "tx_too_early"
            max_time = bounds.max_time.time_point.uint64
            if max_time and max_time < now:
                return "tx_too_late"
        if d.seq != account.seq + pending_seq + 1:
            return "tx_bad_seq"
        # surge pricing compares the inclusion fee: "defined as `tx.fee - resourceFee`" (Stellar-transaction.x,
        # SorobanTransactionData; developers.stellar.org/docs/learn/fundamentals/fees-resource-limits-metering)
        if d.fee - d.resource_fee < self.base_fee() * len(tx.operations):
            return "tx_insufficient_fee"
        auth = self._check_signatures(d)
        if auth is not None:
            return auth
        if d.fee > account.spendable:
            return "tx_insufficient_balance"
        return None

    def _check_signatures(self, d: Decoded) -> str | None:
        needed = {d.source}
        needed.update(ops.muxed_id(op.source_account) for op in d.tx.operations if op.source_account)
        signed: set[str] = set()
        unmatched = 0
        for sig in d.signatures:
            match = self._signer_of(sig, needed - signed, d.hash)
            if match is None:
                unmatched += 1
            else:
                signed.add(match)
        if not needed <= signed:
            return "tx_bad_auth"
        return "tx_bad_auth_extra" if unmatched else None

    def _signer_of(self, sig: sx.DecoratedSignature, candidates: set[str], digest: bytes) -> str | None:
        hint = sig.hint.signature_hint
        for signer in candidates:
            key = self._keypair(signer)
            if key.raw_public_key()[-4:] != hint:
                continue
            try:
                key.verify(digest, sig.signature.signature)
            except BadSignatureError:
                continue
            return signer
        return None

    def _keypair(self, account_id: str) -> Keypair:
        key = self._keys.get(account_id)
        if key is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            key = self._keys[account_id] = Keypair.from_public_key(account_id)
        return key

    def apply(self, d: Decoded, tx_order: int, reject: str | None = None) -> Outcome:
        """Check and apply one transaction into the open ledger (caller holds the lock)."""
        stored = self.history.transactions.get(d.hash_hex) or self._pending(d.hash_hex)
        if stored is not None:
            return self.stored_outcome(stored)
        code = self.precheck(d)
        if code is not None:
            return Outcome("rejected", d.hash_hex, code, result_xdr=results.transaction_result(0, code))
        fee = d.fee if d.is_soroban else self.base_fee() * len(d.tx.operations)
        charge = Scratch(self.ledger)
        source = charge.account(d.source)
        assert source is not None
        source.seq = d.seq
        source.xlm -= fee
        charge.fees = fee
        self.ledger.commit(charge)
        scratch = Scratch(self.ledger)
        op_results = [self._apply_op(scratch, d, op, reject) for op in d.tx.operations]
        ok = all(r.code == ops.OK for r in op_results)
        if ok:
            self.ledger.commit(scratch)
        return self._record(d, tx_order, fee, op_results, ok)

    def _apply_op(self, scratch: Scratch, d: Decoded, op: sx.Operation, reject: str | None) -> ops.OpResult:
        source = ops.muxed_id(op.source_account) if op.source_account else d.source
        kind = op.body.type
        if scratch.account(source) is None:
            return ops.OpResult("op_no_source_account", kind.name.lower(), kind.value)
        if kind == sx.OperationType.INVOKE_HOST_FUNCTION:
            return ops.invoke_host_function(scratch, source, op.body.invoke_host_function_op, self.host, reject)
        entry = ops.CLASSIC.get(kind)
        if entry is None:
            return ops.OpResult("op_not_supported", kind.name.lower(), kind.value)
        attr, applier = entry
        return applier(scratch, source, getattr(op.body, attr))

    def _record(self, d: Decoded, tx_order: int, fee: int, op_results: list[ops.OpResult], ok: bool) -> Outcome:
        ledger_seq = self.ledger.sequence + 1
        codes = [r.code for r in op_results]
        tx_code = "tx_success" if ok else "tx_failed"
        result_xdr = self._result_xdr(d, fee, tx_code, op_results)
        tx_json = self._tx_json(d, ledger_seq, tx_order, fee, ok, result_xdr)
        record = TxRecord(d.hash_hex, ledger_seq, ok, tx_json, {"transaction": tx_code, "operations": codes})
        for index, (op, res) in enumerate(zip(d.tx.operations, op_results, strict=True), start=1):
            source = ops.muxed_id(op.source_account) if op.source_account else d.source
            op_id = str(toid(ledger_seq, tx_order, index))
            record.operations.append(
                {
                    "_links": _links(f"operations/{op_id}", d.hash_hex),
                    "id": op_id,
                    "paging_token": op_id,
                    "transaction_successful": ok,
                    "source_account": source,
                    "type": res.type,
                    "type_i": res.type_i,
                    "created_at": "",
                    "transaction_hash": d.hash_hex,
                    **res.details,
                }
            )
        self._open.append(record)
        trap = next((r.details.get("trap") for r in op_results if r.code == "function_trapped"), None)
        return Outcome("applied", d.hash_hex, tx_code, codes, result_xdr, record, trap)

    def _result_xdr(self, d: Decoded, fee: int, tx_code: str, op_results: list[ops.OpResult]) -> str:
        simple = all(r.type_i in (0, 1, 6, 11) or r.code != ops.OK for r in op_results)
        if simple:
            return results.simple_result(fee, tx_code, tuple((r.type_i, r.code) for r in op_results))
        op_xdr = [
            results.operation_result(r.type_i, r.code, getattr(op.body, _BODY_ATTR.get(r.type_i, "type")))
            for op, r in zip(d.tx.operations, op_results, strict=True)
        ]
        return results.transaction_result(fee, tx_code, op_xdr)

    def _tx_json(self, d: Decoded, ledger_seq: int, order: int, fee: int, ok: bool, result_xdr: str) -> dict:
        tx = d.tx
        bounds = tx.cond.time_bounds
        memo_type = _MEMO_TYPES[tx.memo.type.value]
        body: dict[str, Any] = {
            "_links": _links(f"transactions/{d.hash_hex}", d.hash_hex),
            "id": d.hash_hex,
            "paging_token": str(toid(ledger_seq, order)),
            "successful": ok,
            "hash": d.hash_hex,
            "ledger": ledger_seq,
            "created_at": "",
            "source_account": d.source,
            "source_account_sequence": str(d.seq),
            "fee_account": d.source,
            "fee_charged": str(fee),
            "max_fee": str(d.fee),
            "operation_count": len(tx.operations),
            "envelope_xdr": d.xdr,
            "result_xdr": result_xdr,
            "result_meta_xdr": "",
            "fee_meta_xdr": "",
            "memo_type": memo_type,
            "signatures": [base64.b64encode(s.signature.signature).decode() for s in d.signatures],
        }
        if memo_type != "none":
            body["memo"] = _memo(tx.memo)
        if bounds is not None:
            min_t, max_t = bounds.min_time.time_point.uint64, bounds.max_time.time_point.uint64
            body["valid_after"] = _iso(self.clock, min_t)
            if max_t:
                body["valid_before"] = _iso(self.clock, max_t)
            body["preconditions"] = {"timebounds": {"min_time": str(min_t), "max_time": str(max_t)}}
        return body

    def open_state(self) -> list[dict[str, Any]]:
        """Records applied to the ledger but not yet in a closed ledger (a `drain_xlm` in interval mode)."""
        return [record.to_state() for record in self._open]

    def load_open(self, records: list[dict[str, Any]]) -> None:
        self._open = [TxRecord.from_state(record) for record in records]

    def _pending(self, tx_hash: str) -> TxRecord | None:
        return next((r for r in self._open if r.hash == tx_hash), None)

    def stored_outcome(self, record: TxRecord) -> Outcome:
        codes = record.result_codes
        return Outcome(
            "applied",
            record.hash,
            codes["transaction"],
            list(codes["operations"]),
            record.json["result_xdr"],
            record,
        )

    def close_ledger(self) -> list[TxRecord]:
        """Close the open ledger: its transactions become history and streams wake."""
        self.ledger.sequence += 1
        closed_at = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        header = LedgerHeader(self.ledger.sequence, closed_at, self.base_fee())
        records, self._open = self._open, []
        for record in records:
            record.json["created_at"] = closed_at
            for op in record.operations:
                op["created_at"] = closed_at
            header.successful += record.successful
            header.failed += not record.successful
            header.operations += len(record.operations)
            self.history.add_transaction(record)
        self.history.add_ledger(header)
        self.ledger.applied_count += len(records)
        self.on_close()
        self.history.notify()
        return records

    def system_payment(self, source: str, dest: str, asset: str, amount: int, reason: str) -> TxRecord:
        """A recorded transfer made by the sandbox itself (`drain_xlm`): money never moves unseen."""
        scratch = Scratch(self.ledger)
        code = ops.move(scratch, source, dest, asset, amount)
        if code != ops.OK:
            raise ValueError(f"sandbox transfer failed: {code}")
        self.ledger.commit(scratch)
        ledger_seq, digest = (
            self.ledger.sequence + 1,
            hashlib.sha256(f"{reason}:{self.clock.time()}".encode()),
        )
        tx_hash = digest.hexdigest()
        op_id = str(toid(ledger_seq, len(self._open) + 1, 1))
        details = {**ops.asset_fields(asset), "from": source, "to": dest, "amount": ops.fmt_amount(amount)}
        tx_json = {
            "id": tx_hash,
            "hash": tx_hash,
            "ledger": ledger_seq,
            "successful": True,
            "memo_type": "text",
            "memo": reason,
            "source_account": source,
            "fee_charged": "0",
            "operation_count": 1,
            "paging_token": str(toid(ledger_seq, len(self._open) + 1)),
            "created_at": "",
            "envelope_xdr": "",
            "result_xdr": "",
            "sandbox_fault": reason,
        }
        record = TxRecord(tx_hash, ledger_seq, True, tx_json, {"transaction": "tx_success", "operations": [ops.OK]})
        record.operations.append(
            {
                "id": op_id,
                "paging_token": op_id,
                "transaction_successful": True,
                "source_account": source,
                "type": "payment",
                "type_i": 1,
                "created_at": "",
                "transaction_hash": tx_hash,
                **details,
            }
        )
        self._open.append(record)
        return record


_BODY_ATTR = {
    2: "path_payment_strict_receive_op",
    13: "path_payment_strict_send_op",
    24: "invoke_host_function_op",
}


def _links(path: str, tx_hash: str) -> dict[str, Any]:
    return {"self": {"href": f"/{path}"}, "transaction": {"href": f"/transactions/{tx_hash}"}}


def _iso(clock: Clock, seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(min(seconds, 253402300799), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _memo(memo: sx.Memo) -> str:
    if memo.text is not None:
        return memo.text.decode(errors="replace")
    if memo.id is not None:
        return str(memo.id.uint64)
    raw = memo.hash or memo.ret_hash
    return base64.b64encode(raw.hash).decode() if raw is not None else ""


def fault_fields(decoded: Decoded) -> dict[str, Any]:
    """What a fault rule's ``when`` matches a submission on (Horizon's ``tx`` and TW's T8 ``signedXdr`` alike):
    its source, hash, first operation and, for a contract call, the function."""
    fields: dict[str, Any] = {"source": decoded.source, "hash": decoded.hash_hex}
    operations = decoded.tx.operations
    if operations:
        first = operations[0].body
        fields["operation"] = first.type.name.lower()
        call = first.invoke_host_function_op.host_function.invoke_contract if first.invoke_host_function_op else None
        if call is not None:
            fields["function"] = call.function_name.sc_symbol.decode()
    return fields
