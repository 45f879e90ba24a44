"""A withdrawal's states and its command's payload, both paths (spec states.md §7.2, api.md §12).

Apart from ``withdrawals`` because the AirTM path (``airtm_withdrawals``) shares them and is itself
called by ``withdrawals``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from orchestrator.payloads import Payload


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


@dataclass(frozen=True)
class CreateWithdrawal(Payload):
    """``POST /withdrawals``: ``crypto`` pays from the user's wallet, any other destination through AirTM
    (``commit`` asks AirTM to commit the payout at once)."""

    user_id: str
    amount: str
    destination_type: str
    destination_ref: str
    currency: str | None = None
    commit: bool | None = None
    description: str | None = None
