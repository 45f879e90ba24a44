"""Sandbox configuration, read once from the environment at start-up."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass

#: The sandbox's network passphrase: distinct, so a sandbox signature is never valid elsewhere.
NETWORK_PASSPHRASE = "OFFER-HUB Sandbox Network ; 2026"

_DEFAULT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"sandbox-airtm-webhook-secret!!").decode()


@dataclass(frozen=True)
class SandboxConfig:
    """Every knob of the sandbox; `from_env` is the only place that reads the environment."""

    port: int = 4100
    host: str = "127.0.0.1"
    seed: str = "offerhub-sandbox"
    ledger_mode: str = "instant"
    ledger_interval_seconds: float = 5.0
    trustless_api_key: str = "sandbox-tw-key"
    tw_requests_per_minute: int = 50
    airtm_api_key: str = "sandbox-airtm-key"
    airtm_api_secret: str = "sandbox-airtm-secret"
    airtm_webhook_url: str | None = None
    airtm_webhook_secret: str = _DEFAULT_WEBHOOK_SECRET
    airtm_requests_per_second: int = 10
    webhook_time_scale: float = 0.001
    airtm_fee_percent: str = "0"
    public_url: str = "http://127.0.0.1:4100"
    network_passphrase: str = NETWORK_PASSPHRASE
    #: Horizon's per-IP budget (0 = off, as tests, chaos and benchmarks need; DESIGN decision 27) and burst.
    horizon_requests_per_hour: int = 0
    horizon_burst: int = 100
    #: Where the whole world is kept between runs (`state.py`); empty keeps it in memory only, as tests, chaos
    #: runs and benchmarks need (DESIGN decision 27).
    state_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxConfig:
        """Build the configuration; unknown values fail here, not at the first request."""
        env = os.environ if environ is None else environ
        port = int(env.get("SANDBOX_PORT", "4100"))
        mode = env.get("SANDBOX_LEDGER_MODE", "instant")
        if mode not in ("instant", "interval"):
            raise ValueError(f"SANDBOX_LEDGER_MODE must be instant or interval, not {mode!r}")
        return cls(
            port=port,
            host=env.get("SANDBOX_HOST", "127.0.0.1"),
            seed=env.get("SANDBOX_SEED", "offerhub-sandbox"),
            ledger_mode=mode,
            ledger_interval_seconds=float(env.get("SANDBOX_LEDGER_INTERVAL_SECONDS", "5")),
            trustless_api_key=env.get("TRUSTLESS_API_KEY", "sandbox-tw-key"),
            tw_requests_per_minute=int(env.get("SANDBOX_TW_REQUESTS_PER_MINUTE", "50")),
            airtm_api_key=env.get("AIRTM_API_KEY", "sandbox-airtm-key"),
            airtm_api_secret=env.get("AIRTM_API_SECRET", "sandbox-airtm-secret"),
            airtm_webhook_url=env.get("SANDBOX_AIRTM_WEBHOOK_URL") or None,
            airtm_webhook_secret=env.get("AIRTM_WEBHOOK_SECRET", _DEFAULT_WEBHOOK_SECRET),
            airtm_requests_per_second=int(env.get("SANDBOX_AIRTM_REQUESTS_PER_SECOND", "10")),
            webhook_time_scale=float(env.get("SANDBOX_WEBHOOK_TIME_SCALE", "0.001")),
            airtm_fee_percent=env.get("SANDBOX_AIRTM_FEE_PERCENT", "0"),
            public_url=env.get("SANDBOX_URL", f"http://127.0.0.1:{port}"),
            horizon_requests_per_hour=int(env.get("SANDBOX_HORIZON_REQUESTS_PER_HOUR", "0")),
            horizon_burst=int(env.get("SANDBOX_HORIZON_BURST", "100")),
            state_file=env.get("SANDBOX_STATE_FILE", "").strip(),
        )
