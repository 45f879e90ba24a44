"""A withdrawal's states, both paths (spec states.md §7.2).

Apart from ``withdrawals`` because the AirTM path (``airtm_withdrawals``) shares them and is itself
called by ``withdrawals``.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    CREATED = "WITHDRAWAL_CREATED"
    COMMITTED = "WITHDRAWAL_COMMITTED"
    PENDING = "WITHDRAWAL_PENDING"
    PENDING_USER_ACTION = "WITHDRAWAL_PENDING_USER_ACTION"
    COMPLETED = "WITHDRAWAL_COMPLETED"
    FAILED = "WITHDRAWAL_FAILED"
    CANCELED = "WITHDRAWAL_CANCELED"


W = Status
#: states.md §7.2 as data (both paths).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    W.CREATED: frozenset({W.COMMITTED, W.CANCELED, W.FAILED}),
    W.COMMITTED: frozenset({W.COMPLETED, W.FAILED, W.PENDING, W.CANCELED}),
    W.PENDING: frozenset({W.PENDING_USER_ACTION, W.COMPLETED, W.FAILED, W.CANCELED}),
    W.PENDING_USER_ACTION: frozenset({W.PENDING, W.FAILED, W.CANCELED}),
    W.COMPLETED: frozenset(),
    W.FAILED: frozenset(),
    W.CANCELED: frozenset(),
}
