"""Closed ledgers, transactions and operation records, in paging-token order, with a live feed."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Operation types that appear in the payments endpoints (`invoke_host_function` only with transfers).
PAYMENT_TYPES = frozenset(
    {
        "create_account",
        "payment",
        "path_payment_strict_receive",
        "path_payment_strict_send",
        "account_merge",
    }
)


def toid(ledger: int, tx_order: int, op_index: int = 0) -> int:
    """Horizon's total order id: ledger << 32 | transaction order << 12 | operation index."""
    return (ledger << 32) | (tx_order << 12) | op_index


@dataclass
class LedgerHeader:
    sequence: int
    closed_at: str
    base_fee: int
    successful: int = 0
    failed: int = 0
    operations: int = 0


@dataclass
class TxRecord:
    """A transaction in history, with its Horizon JSON and its operation records."""

    hash: str
    ledger: int
    successful: bool
    json: dict[str, Any]
    result_codes: dict[str, Any]
    operations: list[dict[str, Any]] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        """Shallow (no copy): the caller encodes it at once, and a closed record never changes."""
        return {"hash": self.hash, "ledger": self.ledger, "successful": self.successful, "json": self.json,
                "result_codes": self.result_codes, "operations": self.operations}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TxRecord:
        return cls(state["hash"], int(state["ledger"]), bool(state["successful"]), state["json"],
                   state["result_codes"], list(state["operations"]))


class History:
    """Append-only history; `changed` wakes every stream when records are appended."""

    def __init__(self) -> None:
        self.ledgers: list[LedgerHeader] = []
        self.transactions: dict[str, TxRecord] = {}
        self.tx_order: list[str] = []
        self.operations: list[dict[str, Any]] = []
        self.op_ids: list[int] = []
        self.payments: list[dict[str, Any]] = []
        self.payment_ids: list[int] = []
        self.by_account: dict[str, list[int]] = {}
        self.oldest_cursor = 0
        self._changed = asyncio.Event()

    def to_state(self) -> dict[str, Any]:
        """Ledger headers and transactions in closing order; the indexes are rebuilt from them."""
        return {
            "ledgers": [dict(vars(header)) for header in self.ledgers],
            "transactions": [self.transactions[tx_hash].to_state() for tx_hash in self.tx_order],
        }

    def from_state(self, state: dict[str, Any]) -> None:
        """Replay a snapshot into this (empty) history, so paging tokens and indexes come out as before."""
        self.ledgers = [LedgerHeader(**header) for header in state["ledgers"]]
        for record in state["transactions"]:
            self.add_transaction(TxRecord.from_state(record))

    def add_ledger(self, header: LedgerHeader) -> None:
        self.ledgers.append(header)

    def add_transaction(self, record: TxRecord) -> None:
        self.transactions[record.hash] = record
        self.tx_order.append(record.hash)
        for op in record.operations:
            op_id = int(op["id"])
            self.operations.append(op)
            self.op_ids.append(op_id)
            if _is_payment(op):
                index = len(self.payments)
                self.payments.append(op)
                self.payment_ids.append(op_id)
                for account in _participants(op):
                    self.by_account.setdefault(account, []).append(index)

    def notify(self) -> None:
        """Wake the streams waiting for new records."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Wait until new records arrive or `seconds` pass."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def latest_payment_token(self) -> int:
        return self.payment_ids[-1] if self.payment_ids else 0

    def page(
        self,
        kind: str,
        account: str | None,
        cursor: int | None,
        order: str,
        limit: int,
        include_failed: bool,
        floor: int = 0,
    ) -> list[dict[str, Any]]:
        """Records strictly after (asc) or before (desc) `cursor`, none older than `floor` (the oldest
        paging token still kept: history before it was pruned)."""
        if order == "asc" and floor and (cursor is None or cursor < floor - 1):
            cursor = floor - 1
        records = list(self._select(kind, account, cursor, order, include_failed, limit, floor))
        return records

    def _select(
        self,
        kind: str,
        account: str | None,
        cursor: int | None,
        order: str,
        include_failed: bool,
        limit: int,
        floor: int = 0,
    ) -> Iterator[dict[str, Any]]:
        source, ids = (
            (self.payments, self.payment_ids) if kind == "payments" else (self.operations, self.op_ids)
        )
        indices: Iterable[int]
        if account is not None:
            if kind != "payments":
                raise ValueError("only payments are indexed by account")
            positions = self.by_account.get(account, [])
            keyed = [ids[i] for i in positions]
            indices = _window(positions, keyed, cursor, order)
        else:
            indices = _window(range(len(ids)), ids, cursor, order)
        count = 0
        for i in indices:
            record = source[i]
            if int(record["id"]) < floor:
                return  # descending past the oldest record kept
            if not include_failed and not record["transaction_successful"]:
                continue
            yield record
            count += 1
            if count >= limit:
                return


def _window(positions: Any, keys: list[int], cursor: int | None, order: str) -> Iterable[int]:
    if order == "asc":
        start = 0 if cursor is None else bisect.bisect_right(keys, cursor)
        return (positions[i] for i in range(start, len(keys)))
    end = len(keys) if cursor is None else bisect.bisect_left(keys, cursor)
    return (positions[i] for i in range(end - 1, -1, -1))


def _is_payment(op: dict[str, Any]) -> bool:
    if op["type"] in PAYMENT_TYPES:
        return True
    return op["type"] == "invoke_host_function" and bool(op.get("asset_balance_changes"))


def _participants(op: dict[str, Any]) -> set[str]:
    found = {op["source_account"]}
    for key in ("from", "to", "funder", "account"):
        if op.get(key):
            found.add(op[key])
    for change in op.get("asset_balance_changes") or ():
        found.update(a for a in (change.get("from"), change.get("to")) if a)
    return found
