"""AirTM's Enterprise API v2 over HTTP: the only module that talks to AirTM (spec providers.md §3).

Creates are keyed by ``code`` (our ``topup_…``/``wd_…`` id), so a create whose answer was lost is
found again by ``GET …/by-code/{code}`` instead of being sent twice (§3.4, §3.5): ``ensure_payin`` and
``ensure_payout`` create only after AirTM has said the code is unknown. Errors follow §3.7: AirTM's
reason code decides, and an answer that may hide an applied change is ``ambiguous``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests

from orchestrator.errors import BusinessRuleViolation, OrchestratorError, ProviderFailure, ValidationFailed
from orchestrator.providers import http
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

PROVIDER = "airtm"
# Reason codes as AirTM's own API description gives them (Enterprise API v2 1.87.0, "Reason Codes",
# kept at OFFER-HUB/offer-hub docs/airtm/documentation.json); it wins over providers.md §3.7 (DESIGN 24).
#: Refusals that say the recipient cannot be paid, with the ``failureReason`` the API reports.
RECIPIENT_CODES = {
    "415059": "USER_NOT_FOUND",  # "Recipient not found"
    "415009": "USER_INACTIVE",  # "Recipient address inactive - Contact recipient"
    "415010": "USER_BANNED",  # "User deleted or banned - User must contact support"
    "415060": "PAYOUTS_NOT_ALLOWED",  # "Recipient cannot receive payouts - Contact recipient"
    "415061": "RESTRICTED_TERRITORY",  # "Recipient from restricted territory"
    "415062": "PAYMENT_METHOD_INVALID",  # "Invalid recipient payment method - Recipient must reconfigure"
    "415064": "PAYMENT_METHOD_INVALID",  # (the same text as 415062)
    "415065": "AML_REJECTED",  # "User has violated the AML policy"
}
#: "Recipient address not active - Retry later": nothing was made and nothing is final; try again later.
RETRY_LATER_CODES = frozenset({"415008"})
AMOUNT_CODES = frozenset({"415035", "415057", "415058"})
CODE_EXISTS = frozenset({"415029", "415056"})
#: "Item not found", "Payout not found", "Payin not found": a read of something that does not exist,
#: whatever HTTP status comes with it (the description gives none per code).
NOT_FOUND_CODES = frozenset({"415902", "415005", "415031"})
#: Idempotent reads are retried this many times on a 5xx or a time-out (§3.2).
READ_RETRIES = 3


class AirtmFailure(ProviderFailure):
    """Raised when AirTM refuses or does not answer; ``ambiguous`` when the change may have happened."""

    def __init__(self, message: str, *, code: str = "PROVIDER_ERROR", reason_code: str | None = None,
                 http_status: int | None = None, ambiguous: bool = False) -> None:
        self.reason_code, self.http_status, self.ambiguous = reason_code, http_status, ambiguous
        #: AirTM asked to retry later: not a final refusal, even though nothing was made.
        self.retry_later = reason_code in RETRY_LATER_CODES
        details: dict[str, Any] = {"provider": PROVIDER}
        if http_status is not None:
            details["originalStatus"] = http_status
        if reason_code is not None:
            details["reasonCode"] = reason_code
        super().__init__(message, code=code, details=details)

    def public(self) -> OrchestratorError:
        """The error the API answers with (§3.7): recipient and amount refusals are the caller's; a
        retry-later stays this ``PROVIDER_ERROR`` (502, retryable)."""
        if self.reason_code in RECIPIENT_CODES:
            return BusinessRuleViolation(
                f"The AirTM account cannot receive this payment: {self.message}", code="AIRTM_USER_INVALID",
                details={"failureReason": RECIPIENT_CODES[self.reason_code], "reasonCode": self.reason_code})
        if self.reason_code in AMOUNT_CODES:
            return ValidationFailed.field("amount", "AMOUNT_OUT_OF_RANGE", f"refused by AirTM: {self.message}")
        return self


def _error(response: requests.Response, method: str, path: str) -> AirtmFailure:
    try:
        body = response.json()
    except ValueError:
        body = {}
    reason = str(body.get("code")) if isinstance(body, dict) and body.get("code") is not None else None
    text = (body.get("message") if isinstance(body, dict) else None) or response.reason or "error"
    status = response.status_code
    message = f"AirTM {method} {path} answered {status}: {text}"
    if status == 429:
        return AirtmFailure(message, code="PROVIDER_RATE_LIMITED", reason_code=reason, http_status=status)
    if status in (408, 504):
        return AirtmFailure(message, code="PROVIDER_TIMEOUT", reason_code=reason, http_status=status,
                            ambiguous=True)
    return AirtmFailure(message, reason_code=reason, http_status=status, ambiguous=status >= 500)


def amount_of(value: Any) -> Decimal:
    """An AirTM JSON number as an exact two-decimal amount."""
    return Decimal(str(value)).quantize(Decimal("0.01"))


class AirtmClient:
    """One synchronous client per process or request; HTTP Basic with the API key and secret."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        if not settings.airtm_configured:
            raise BusinessRuleViolation("AirTM is not configured on this instance", code="PROVIDER_NOT_ENABLED",
                                        details={"provider": PROVIDER})
        self.base = settings.airtm_api_url.rstrip("/")
        self.timeout = settings.airtm_timeout_ms / 1000
        self.http = session or http.session()
        self.http.auth = (settings.airtm_api_key or "", settings.airtm_api_secret or "")
        self.http.trust_env = False

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AirtmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Transport

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One request; the parsed JSON (``None`` for an empty body) or an ``AirtmFailure``."""
        data = json_text(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            response = self.http.request(method, self.base + path, data=data, headers=headers,
                                         timeout=self.timeout)
        except requests.Timeout as error:
            raise AirtmFailure(f"AirTM {method} {path} timed out", code="PROVIDER_TIMEOUT",
                               ambiguous=True) from error
        except requests.RequestException as error:
            raise AirtmFailure(f"AirTM {method} {path} gave no answer ({type(error).__name__})",
                               code="PROVIDER_TIMEOUT", ambiguous=True) from error
        if response.status_code >= 400:
            raise _error(response, method, path)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError as error:
            raise AirtmFailure(f"AirTM {method} {path} answered a body that is not JSON",
                               ambiguous=True) from error

    def _read(self, path: str) -> dict[str, Any] | None:
        """An idempotent GET, retried on 5xx and time-outs; ``None`` when AirTM says it does not exist."""
        for attempt in range(READ_RETRIES + 1):
            try:
                return self._call("GET", path)
            except AirtmFailure as failure:
                if failure.http_status == 404 or failure.reason_code in NOT_FOUND_CODES:
                    return None
                retryable = failure.ambiguous or failure.code == "PROVIDER_RATE_LIMITED"
                if not retryable or attempt == READ_RETRIES:
                    raise
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
        raise AssertionError("unreachable")

    # Enterprise and users (§3.3)

    def balance(self) -> dict[str, Decimal]:
        raw = self._call("GET", "/me/balance") or {}
        return {"available": amount_of(raw.get("available", 0)), "pending": amount_of(raw.get("pending", 0))}

    def user(self, email: str) -> dict[str, Any] | None:
        return self._read(f"/users/{quote(email, safe='')}")

    # Pay-ins (§3.4)

    def payin(self, payin_id: str) -> dict[str, Any] | None:
        return self._read(f"/payins/{quote(payin_id, safe='')}")

    def payin_by_code(self, code: str) -> dict[str, Any] | None:
        return self._read(f"/payins/by-code/{quote(code, safe='')}")

    def cancel_payin(self, payin_id: str) -> dict[str, Any] | None:
        return self._call("DELETE", f"/payins/{quote(payin_id, safe='')}")

    def ensure_payin(self, *, code: str, amount: Decimal, description: str, callback_url: str) -> dict[str, Any]:
        """The pay-in with this ``code``: created once, adopted when a lost answer had created it."""
        body = {"code": code, "amount": amount, "description": description[:250],
                "items": [{"description": description[:250], "amount": amount, "quantity": 1}],
                "confirmationUri": callback_url, "cancelUri": callback_url}
        return self._ensure("/payins", body, lambda: self.payin_by_code(code))

    # Payouts (§3.5)

    def payout(self, payout_id: str) -> dict[str, Any] | None:
        return self._read(f"/payouts/{quote(payout_id, safe='')}")

    def payout_by_code(self, code: str) -> dict[str, Any] | None:
        return self._read(f"/payouts/by-code/{quote(code, safe='')}")

    def commit_payout(self, payout_id: str) -> dict[str, Any]:
        """Commit, then read the status; ``415027`` (already processed) or a lost answer reads too."""
        try:
            self._call("POST", f"/payouts/{quote(payout_id, safe='')}/commit")
        except AirtmFailure as failure:
            if not (failure.ambiguous or failure.reason_code == "415027"):
                raise
        found = self.payout(payout_id)
        if found is None:
            raise AirtmFailure(f"AirTM payout {payout_id} disappeared", reason_code="415005")
        return found

    def cancel_payout(self, payout_id: str) -> dict[str, Any] | None:
        return self._call("DELETE", f"/payouts/{quote(payout_id, safe='')}")

    def ensure_payout(self, *, code: str, email: str, amount: Decimal, notes: str, commit: bool,
                      internal_note: str | None) -> dict[str, Any]:
        """The payout with this ``code``: created once, adopted when a lost answer had created it."""
        body: dict[str, Any] = {"airtmUserEmail": email, "amount": amount, "notes": notes[:500], "code": code,
                                "commit": commit}
        if internal_note:
            body["internalNote"] = internal_note[:500]
        return self._ensure("/payouts", body, lambda: self.payout_by_code(code))

    def _ensure(self, path: str, body: Mapping[str, Any], by_code: Any) -> dict[str, Any]:
        """Look up by code after any unclear answer; create again only when the code is unknown."""
        for _ in range(3):
            try:
                created = self._call("POST", path, body)
            except AirtmFailure as failure:
                if not (failure.ambiguous or failure.reason_code in CODE_EXISTS):
                    raise
                log.warning("AirTM create %s %s was unclear (%s); reading it by code", path, body["code"],
                            failure.message)
                found = by_code()
                if found is not None:
                    return dict(found)
                if failure.reason_code in CODE_EXISTS:
                    raise AirtmFailure(f"AirTM says code {body['code']} exists but cannot find it",
                                       ambiguous=True) from failure
                continue  # AirTM says the code is unknown: the create did not happen, send it again
            if not isinstance(created, dict):
                raise AirtmFailure(f"AirTM POST {path} answered no object", ambiguous=True)
            return created
        raise AirtmFailure(f"AirTM POST {path} kept failing for code {body['code']}", ambiguous=True)


#: The significant digits a JSON number keeps when its reader holds it as a double (DBL_DIG).
EXACT_DIGITS = 15


def json_text(value: Any) -> str:
    """A request body as JSON, written as ``json.dumps`` writes it except that a ``Decimal`` becomes a
    number token of its own digits: AirTM types amounts as JSON numbers, and ``json`` writes numbers from
    floats only, so money never passes through one here. An amount of more than 15 significant digits
    (none the API admits) is refused rather than sent: a reader holding it as a double would round it."""
    if isinstance(value, Decimal):
        if not value.is_finite() or len(value.normalize().as_tuple().digits) > EXACT_DIGITS:
            raise ValueError(f"{value} cannot be sent to AirTM as a JSON number without rounding")
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(json_text(v) for v in value) + "]"
    return json.dumps(value)
