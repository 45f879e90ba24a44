"""AirTM's rules over the sandbox's records: unique codes, the enterprise balance, status moves.

Every method is synchronous, so each change happens between two awaits of the event loop and is
atomic. A terminal pay-in or payout never changes. Status changes that AirTM announces (§3.8) are
handed to `notify(type, data)`; the others are only seen by reads, as on AirTM.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from scripts.sandbox.airtm_records import (
    CENT,
    PAYIN_EVENTS,
    PAYOUT_EVENTS,
    AirtmError,
    PayIn,
    Payout,
    User,
    iso,
    money,
    new_uuid,
)
from scripts.sandbox.airtm_settings import AirtmSettings
from scripts.sandbox.clock import Clock

#: The enterprise account's balance after start and after a reset.
INITIAL_ENTERPRISE_BALANCE = Decimal("100000.00")

#: Control-plane payout actions and the statuses they may leave (terminal ones never).
PAYOUT_ACTIONS: dict[str, frozenset[str]] = {
    "complete": frozenset({"COMMITTED", "PENDING", "ERROR"}),
    "fail": frozenset({"COMMITTED", "PENDING", "ERROR"}),
    "pending": frozenset({"COMMITTED", "ERROR"}),
    "error": frozenset({"COMMITTED", "PENDING"}),
    "cancel": frozenset({"CREATED", "COMMITTED", "PENDING", "ERROR"}),
}
_ACTION_STATUS = {
    "complete": "COMPLETED",
    "fail": "FAILED",
    "pending": "PENDING",
    "error": "ERROR",
    "cancel": "CANCELED",
}

Notify = Callable[[str, dict[str, Any]], None]


#: Reason codes of AirTM's API description 1.87.0, "Reason Codes" (OFFER-HUB/offer-hub,
#: docs/airtm/documentation.json): which code AirTM gives when something is missing or refused.
ITEM_NOT_FOUND = "415902"  # "Item not found - Verify resource ID" (users: the description names no other)
PAYOUT_NOT_FOUND = "415005"  # "Payout not found - Verify payout ID"
PAYIN_NOT_FOUND = "415031"  # "Payin not found - Verify payin ID"
RECIPIENT_INACTIVE = "415009"  # "Recipient address inactive - Contact recipient" (a user whose status is inactive)
# 415008 "Recipient address not active - Retry later" is transient: script it with `payoutRejectCode`.


def _not_found(what: str, key: str, code: str = ITEM_NOT_FOUND) -> AirtmError:
    # HTTP 404 is our pick: the description gives every error as `default` with no status
    return AirtmError(404, code, f"{what} {key} not found")


class AirtmStore:
    """Users, pay-ins, payouts and the enterprise account of one sandbox process."""

    def __init__(self, settings: AirtmSettings, clock: Clock, notify: Notify) -> None:
        self.settings = settings
        self.clock = clock
        self.notify = notify
        #: Called when `tick` changed a record (no request is there to have it written; see `state.py`).
        self.on_change: Callable[[], None] = lambda: None
        self.version = 0
        self.enterprise_id = new_uuid()
        self.reset()

    def reset(self) -> None:
        self.users: dict[str, User] = {}
        self.payins: dict[str, PayIn] = {}
        self.payouts: dict[str, Payout] = {}
        self.scripts: list[dict[str, Any]] = []
        self.available = INITIAL_ENTERPRISE_BALANCE

    def to_state(self) -> dict[str, Any]:
        return {
            "enterpriseId": self.enterprise_id,
            "available": str(self.available),
            "users": [user.to_state() for user in self.users.values()],
            "payins": [payin.to_state() for payin in self.payins.values()],
            "payouts": [payout.to_state() for payout in self.payouts.values()],
            "scripts": list(self.scripts),
        }

    def from_state(self, state: dict[str, Any]) -> None:
        self.enterprise_id = state["enterpriseId"]
        self.available = Decimal(state["available"])
        self.users = {u["email"].lower(): User.from_state(u) for u in state["users"]}
        self.payins = {p["id"]: PayIn.from_state(p) for p in state["payins"]}
        self.payouts = {p["id"]: Payout.from_state(p) for p in state["payouts"]}
        self.scripts = list(state["scripts"])

    # Users

    def seed_user(self, user: User) -> User:
        """Add or replace a user (keeping its id); a newly verified user unblocks its pending payouts."""
        old = self.users.get(user.email.lower())
        if old is not None:
            user.id = old.id
        self.users[user.email.lower()] = user
        if user.is_verified and user.status.lower() == "active":
            for payout in self.payouts.values():
                if payout.airtm_user_id == user.id and payout.status == "PENDING" and payout.outcome is None:
                    payout.due_at = self.clock.time() + self.settings.payout_delay_seconds
        return user

    def user(self, email: str) -> User:
        user = self.users.get(email.lower())
        if user is None:
            raise _not_found("user", email)
        return user

    # Pay-ins

    def create_payin(
        self,
        *,
        code: str,
        amount: Decimal,
        description: str,
        items: list[dict[str, Any]],
        confirmation_uri: str,
        cancel_uri: str,
    ) -> PayIn:
        if any(p.code == code for p in self.payins.values()):
            raise AirtmError(409, "415029", f"a pay-in with code {code} already exists")
        total = sum((item["amount"] * item["quantity"] for item in items), Decimal(0))
        if total != amount:
            raise AirtmError(400, "415901", f"items sum to {total}, not to the amount {amount}")
        now = self.clock.now()
        payin = PayIn(
            code=code,
            amount=amount,
            airtm_fee=self._fee(amount),
            description=description,
            items=[item | {"id": new_uuid()} for item in items],
            confirmation_uri=confirmation_uri,
            cancel_uri=cancel_uri,
            created_at=now,
            expires_at=self.clock.time() + self.settings.payin_expiry_seconds,
        )
        self.payins[payin.id] = payin
        self.notify(PAYIN_EVENTS["CREATED"], payin.to_json())
        return payin

    def payin(self, payin_id: str, code: str = PAYIN_NOT_FOUND) -> PayIn:
        payin = self.payins.get(payin_id)
        if payin is None:
            raise _not_found("pay-in", payin_id, code)
        return payin

    def payin_by_code(self, code: str) -> PayIn:
        for payin in self.payins.values():
            if payin.code == code:
                return payin
        raise _not_found("pay-in with code", code, PAYIN_NOT_FOUND)

    def cancel_payin(self, payin_id: str) -> PayIn:
        """`DELETE /payins/{id}` and the buyer's cancel: only a `CREATED` pay-in can be canceled."""
        payin = self.payin(payin_id)
        if payin.status == "CONFIRMED":
            raise AirtmError(409, "415032", f"pay-in {payin_id} is already completed")
        if payin.status != "CREATED":
            raise AirtmError(409, "415030", f"pay-in {payin_id} is {payin.status} and cannot be canceled")
        self._payin_to(payin, "CANCELED")
        return payin

    def confirm_payin(self, payin_id: str, email: str) -> PayIn:
        """The buyer logs in as a seeded user and pays: `PROCESSING`, then `CONFIRMED` after the delay."""
        payin = self._payin_waiting(payin_id)
        user = self.user(email)
        if user.status.lower() != "active":
            raise AirtmError(409, RECIPIENT_INACTIVE, f"user {email} is {user.status}")
        payin.airtm_user_id, payin.airtm_user_email = user.id, user.email
        if (user.country or "").upper() in ("USA", "US"):
            self._payin_to(payin, "FAILED", failure_reason="415053: US users cannot make pay-ins")
            return payin
        self._payin_to(payin, "PROCESSING")
        payin.confirm_due = self.clock.time() + self.settings.payin_confirm_delay_seconds
        self.tick()
        return payin

    def fail_payin(self, payin_id: str, reason: str) -> PayIn:
        payin = self.payin(payin_id)
        if payin.terminal:
            raise AirtmError(409, "415032", f"pay-in {payin_id} is already {payin.status}")
        self._payin_to(payin, "FAILED", failure_reason=reason)
        return payin

    def _payin_waiting(self, payin_id: str) -> PayIn:
        payin = self.payin(payin_id)
        if payin.status != "CREATED":
            raise AirtmError(409, "415032", f"pay-in {payin_id} is {payin.status}, not waiting for the buyer")
        return payin

    def _payin_to(self, payin: PayIn, status: str, failure_reason: str | None = None) -> None:
        assert not payin.terminal, "a terminal pay-in never changes"
        self.version += 1
        payin.status, payin.updated_at = status, self.clock.now()
        if failure_reason is not None:
            payin.failure_reason = failure_reason
        if status == "CONFIRMED":
            self.available += payin.net_amount
        if status in PAYIN_EVENTS:
            self.notify(PAYIN_EVENTS[status], payin.to_json())

    # Payouts

    def create_payout(
        self,
        *,
        email: str,
        gross_amount: Decimal,
        notes: str,
        code: str | None = None,
        commit: bool = False,
        internal_note: str | None = None,
        enterprise_fee: Decimal = Decimal(0),
        require_id_verified: bool = False,
    ) -> Payout:
        if code is not None and any(p.code == code for p in self.payouts.values()):
            raise AirtmError(409, "415056", f"a payout with code {code} already exists")
        if gross_amount < CENT:
            raise AirtmError(400, "415035", "the amount must be at least 0.01")
        if enterprise_fee > gross_amount:
            raise AirtmError(400, "415901", "enterpriseFee cannot exceed the amount")
        user = self.users.get(email.lower())
        if user is None:
            raise AirtmError(422, "415059", f"recipient {email} not found")
        if user.payout_reject_code:
            raise AirtmError(422, user.payout_reject_code, f"recipient {email} cannot receive payouts")
        if user.status.lower() != "active":
            raise AirtmError(422, RECIPIENT_INACTIVE, f"recipient {email} is {user.status}")
        payout = Payout(
            airtm_user_id=user.id,
            airtm_user_email=user.email,
            gross_amount=gross_amount,
            enterprise_fee=enterprise_fee,
            airtm_fee=self._fee(gross_amount),
            notes=notes,
            created_at=self.clock.now(),
            code=code,
            internal_note=internal_note,
            require_id_verified=require_id_verified,
        )
        if payout.amount > self.available:
            raise AirtmError(422, "415016", "the enterprise balance is too low for this payout")
        self.available -= payout.amount
        self.payouts[payout.id] = payout
        self._payout_event(payout, None, "CREATED", "CREATED", "payout created")
        self.notify(PAYOUT_EVENTS["CREATED"], payout.to_json())
        if commit:
            self.commit_payout(payout.id)
        return payout

    def payout(self, payout_id: str) -> Payout:
        payout = self.payouts.get(payout_id)
        if payout is None:
            raise _not_found("payout", payout_id, PAYOUT_NOT_FOUND)
        return payout

    def payout_by_code(self, code: str) -> Payout:
        for payout in self.payouts.values():
            if payout.code == code:
                return payout
        raise _not_found("payout with code", code, PAYOUT_NOT_FOUND)

    def commit_payout(self, payout_id: str) -> Payout:
        payout = self.payout(payout_id)
        if payout.status != "CREATED":
            raise AirtmError(409, "415027", f"payout {payout_id} is already processed ({payout.status})")
        payout.outcome = self._take_script(payout)
        payout.due_at = self.clock.time() + self.settings.payout_delay_seconds
        self._payout_to(payout, "COMMITTED", "COMMITTED", "payout committed")
        self.tick()
        return payout

    def cancel_payout(self, payout_id: str) -> Payout:
        """`DELETE /payouts/{id}`: only before commit, or while waiting for the recipient."""
        payout = self.payout(payout_id)
        if payout.status not in ("CREATED", "PENDING"):
            raise AirtmError(409, "415055", f"payout {payout_id} is {payout.status} and cannot be canceled")
        self._payout_to(payout, "CANCELED", "CANCELED_BY_ENTERPRISE", "canceled by the enterprise")
        return payout

    def drive_payout(self, payout_id: str, action: str, reason_code: str | None, reason: str | None) -> Payout:
        """What AirTM's side does to a payout, on the control plane's word."""
        payout = self.payout(payout_id)
        if payout.terminal:
            raise AirtmError(409, "415027", f"payout {payout_id} is already {payout.status}")
        if payout.status not in PAYOUT_ACTIONS[action]:
            raise AirtmError(409, "415901", f"cannot {action} a payout that is {payout.status}")
        self._settle(payout, {"outcome": action, "reasonCode": reason_code, "reasonDescription": reason})
        return payout

    def add_script(self, script: dict[str, Any]) -> None:
        """Queue the outcome of the next commit of a payout matching `code` and/or `airtmUserEmail`."""
        self.scripts.append(script)

    def _take_script(self, payout: Payout) -> dict[str, Any] | None:
        for script in self.scripts:
            if script.get("code") not in (None, payout.code):
                continue
            email = script.get("airtmUserEmail")
            if email is not None and email.lower() != payout.airtm_user_email.lower():
                continue
            self.scripts.remove(script)
            return script
        user = self.users.get(payout.airtm_user_email.lower())
        if user is not None and user.payout_outcome:
            return {"outcome": user.payout_outcome}
        return None

    def _settle(self, payout: Payout, outcome: dict[str, Any]) -> None:
        action = outcome["outcome"]
        status = _ACTION_STATUS[action]
        if status in ("FAILED", "ERROR") or outcome.get("reasonCode"):
            payout.reason_code = outcome.get("reasonCode") or ("415073" if status == "FAILED" else "415998")
            payout.reason_description = outcome.get("reasonDescription") or f"payout {status.lower()}"
        payout.due_at = None
        self._payout_to(payout, status, payout.reason_code or status, payout.reason_description or action)

    def _payout_to(self, payout: Payout, status: str, transition: str, message: str) -> None:
        assert not payout.terminal, "a terminal payout never changes"
        self.version += 1
        previous, payout.status, payout.updated_at = payout.status, status, self.clock.now()
        if status in ("FAILED", "CANCELED"):
            self.available += payout.amount
        if payout.terminal:
            payout.due_at = None
        payout.pending_since = self.clock.time() if status == "PENDING" else None
        self._payout_event(payout, previous, status, transition, message)
        if status in PAYOUT_EVENTS:
            self.notify(PAYOUT_EVENTS[status], payout.to_json())

    def _payout_event(self, payout: Payout, previous: str | None, new: str, code: str, text: str) -> None:
        payout.events.append(
            {
                "previousStatus": previous,
                "newStatus": new,
                "eventType": "STATUS_CHANGED",
                "metadata": {"transitionCode": code, "transitionMessage": text},
                "createdAt": iso(self.clock.now()),
            }
        )

    # Time and money

    def tick(self) -> None:
        """Apply whatever the sandbox clock has made due: expiries, confirmations, settlements."""
        now, before = self.clock.time(), self.version
        for payin in self.payins.values():
            if payin.status == "CREATED" and now >= payin.expires_at:
                self._payin_to(payin, "CANCELED")
            elif payin.status == "PROCESSING" and payin.confirm_due is not None and now >= payin.confirm_due:
                self._payin_to(payin, "CONFIRMED")
        pending_limit = self.settings.cancel_pending_after_days * 86400.0
        for payout in self.payouts.values():
            if payout.terminal:
                continue
            if payout.due_at is not None and now >= payout.due_at:
                self._settle(payout, payout.outcome or {"outcome": self._default_outcome(payout)})
            elif payout.status == "PENDING" and now - (payout.pending_since or now) >= pending_limit:
                self._payout_to(payout, "CANCELED", "PENDING_EXPIRED", "pending payout canceled automatically")
        if self.version != before:
            self.on_change()

    def _default_outcome(self, payout: Payout) -> str:
        user = self.users.get(payout.airtm_user_email.lower())
        ready = user is not None and user.is_verified and user.status.lower() == "active"
        return "complete" if ready else "pending"

    def _fee(self, amount: Decimal) -> Decimal:
        return (amount * self.settings.fee_percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)

    def balance(self) -> dict[str, float]:
        """`available` to pay out; `pending`: held by payouts that have not finished."""
        held = sum((p.amount for p in self.payouts.values() if not p.terminal), Decimal(0))
        return {"available": money(self.available), "pending": money(held)}

    def state(self) -> dict[str, Any]:
        return {
            "users": [user.to_state() for user in self.users.values()],
            "payins": [payin.to_json() for payin in self.payins.values()],
            "payouts": [payout.to_json() for payout in self.payouts.values()],
            "payoutScripts": list(self.scripts),
            "enterpriseBalance": self.balance(),
        }
