"""The AirTM simulator's knobs: start from `SandboxConfig`, changeable at run time by the control plane."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from scripts.sandbox.config import SandboxConfig

#: Svix's schedule (§3.8): the first attempt at once, then each wait after the previous failure.
SVIX_SCHEDULE_SECONDS = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)

#: An unconfirmed pay-in expires after 15 days (§3.4).
PAYIN_EXPIRY_SECONDS = 15 * 24 * 3600.0

#: Control-plane name → (attribute, parser).
_FIELDS: dict[str, tuple[str, str]] = {
    "webhookUrl": ("webhook_url", "url"),
    "webhookSecret": ("webhook_secret", "secret"),
    "webhookFormat": ("webhook_format", "format"),
    "webhookTimeScale": ("webhook_time_scale", "seconds"),
    "requestsPerSecond": ("requests_per_second", "count"),
    "feePercent": ("fee_percent", "decimal"),
    "payinExpirySeconds": ("payin_expiry_seconds", "seconds"),
    "payinConfirmDelaySeconds": ("payin_confirm_delay_seconds", "seconds"),
    "payoutDelaySeconds": ("payout_delay_seconds", "seconds"),
    "cancelPendingPayoutsAfterDays": ("cancel_pending_after_days", "count"),
}


@dataclass
class AirtmSettings:
    """Mutable on purpose: tests point webhooks at their own receiver without restarting the process."""

    api_key: str
    api_secret: str
    webhook_url: str | None
    webhook_secret: str
    webhook_format: str = "svix"
    webhook_time_scale: float = 0.001
    requests_per_second: int = 10
    fee_percent: Decimal = Decimal("0")
    payin_expiry_seconds: float = PAYIN_EXPIRY_SECONDS
    payin_confirm_delay_seconds: float = 0.0
    payout_delay_seconds: float = 1.0
    cancel_pending_after_days: int = 90

    @classmethod
    def from_config(cls, config: SandboxConfig) -> AirtmSettings:
        return cls(
            api_key=config.airtm_api_key,
            api_secret=config.airtm_api_secret,
            webhook_url=config.airtm_webhook_url,
            webhook_secret=config.airtm_webhook_secret,
            webhook_time_scale=config.webhook_time_scale,
            requests_per_second=config.airtm_requests_per_second,
            fee_percent=_decimal(config.airtm_fee_percent),
        )

    def update(self, changes: dict[str, Any]) -> None:
        """Apply control-plane changes all or nothing; raises ValueError naming the bad field."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(_FIELDS)}")
        parsed = {_FIELDS[name][0]: _parse(name, _FIELDS[name][1], value) for name, value in changes.items()}
        for attribute, value in parsed.items():
            setattr(self, attribute, value)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (attribute, _kind) in _FIELDS.items():
            value = getattr(self, attribute)
            out[name] = str(value) if isinstance(value, Decimal) else value
        return out


def _decimal(value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation as error:
        raise ValueError(f"{value!r} is not a number") from error
    if not number.is_finite() or number < 0:
        raise ValueError(f"{value!r} must be a number >= 0")
    return number


def _parse(name: str, kind: str, value: Any) -> Any:
    if kind == "url":
        if value is not None and not (isinstance(value, str) and value.startswith(("http://", "https://"))):
            raise ValueError(f"{name} must be an http(s) URL or null")
        return value
    if kind == "secret":
        if not (isinstance(value, str) and value.startswith("whsec_")):
            raise ValueError(f"{name} must be a whsec_… secret")
        return value
    if kind == "format":
        if value not in ("svix", "legacy"):
            raise ValueError(f"{name} must be svix or legacy")
        return value
    if kind == "count":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0")
        return value
    if kind == "seconds":
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a number >= 0")
        return float(value)
    try:
        return _decimal(value)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from error
