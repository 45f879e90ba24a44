"""Typed settings read once from the environment; every entrypoint builds one and passes it down.

No other module reads ``os.environ``. ``Settings.from_env`` reads the environment over the working
directory's ``.env`` (``orchestrator.dotenv``: the environment wins), collects every problem and raises a
single ``ConfigError`` listing them all, so an operator fixes a configuration in one pass.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import urlsplit

from orchestrator import dotenv
from orchestrator.crypto import decode_key
from orchestrator.errors import ConfigError

T = TypeVar("T")

NETWORKS = ("sandbox", "testnet", "mainnet")
PROVIDERS = ("crypto", "airtm")

#: Passphrases per network; the sandbox's is distinct so its signatures are valid nowhere else.
PASSPHRASES = {
    "sandbox": "OFFER-HUB Sandbox Network ; 2026",
    "testnet": "Test SDF Network ; September 2015",
    "mainnet": "Public Global Stellar Network ; September 2015",
}
#: USDC issuers of the public networks (spec providers.md §2.1); the sandbox's is derived from its seed.
USDC_ISSUERS = {
    "testnet": "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5",
    "mainnet": "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN",
}
HORIZON_URLS = {"testnet": "https://horizon-testnet.stellar.org", "mainnet": "https://horizon.stellar.org"}
TRUSTLESS_URLS = {"testnet": "https://dev.api.trustlesswork.com", "mainnet": "https://api.trustlesswork.com"}
#: The URL variables checked at start-up: the setting each fills, and the schemes it accepts (the first one
#: is suggested).
_HTTP = ("http", "https")
URL_SCHEMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "DATABASE_URL": ("database_url", ("postgresql", "postgres", "postgresql+psycopg")),
    "REDIS_URL": ("redis_url", ("redis", "rediss", "unix")), "RABBITMQ_URL": ("rabbitmq_url", ("amqp", "amqps")),
    "SANDBOX_URL": ("sandbox_url", _HTTP), "PUBLIC_BASE_URL": ("public_base_url", _HTTP),
    "STELLAR_HORIZON_URL": ("horizon_url", _HTTP), "TRUSTLESS_API_URL": ("trustless_api_url", _HTTP),
    "AIRTM_API_URL": ("airtm_api_url", _HTTP),
}
AIRTM_URLS = {"sandbox": "https://api.stg.enterprise.airtm.com/v2", "production": "https://api.enterprise.airtm.com/v2"}
#: AirTM's hosted pay-in page per AIRTM_ENV (DESIGN decision 24): production from AirTM's description
#: (docs/airtm/documentation.json, "Create a Payin" > Redirection); staging's app host from the original
#: repository's guide (docs/providers/airtm.md), as AirTM's description names none.
AIRTM_CHECKOUT_URLS = {"sandbox": "https://app.stg.airtm.io/payin/", "production": "https://app.airtm.com/payin/"}


@dataclass(frozen=True)
class AmountLimits:
    """Per-instance minimum and maximum of one kind of amount (spec api.md §1.4)."""

    min: Decimal
    max: Decimal


@dataclass(frozen=True)
class Settings:
    """Every setting the processes read; see ``.env.example`` for each variable and its default."""

    database_url: str
    redis_url: str
    rabbitmq_url: str
    master_key: str
    jwt_secret: str
    port: int = 4000
    payment_provider: str = "crypto"
    stellar_network: str = "sandbox"
    network_passphrase: str = PASSPHRASES["sandbox"]
    horizon_url: str = ""
    friendbot_url: str | None = None
    usdc_asset_code: str = "USDC"
    usdc_issuer: str = ""
    trustless_api_url: str = ""
    trustless_api_key: str | None = None
    airtm_api_url: str = ""
    airtm_api_key: str | None = None
    airtm_api_secret: str | None = None
    airtm_webhook_secret: str | None = None
    airtm_checkout_base_url: str = "https://app.airtm.com/payin/"
    airtm_timeout_ms: int = 30_000
    airtm_refresh_seconds: float = 60.0
    public_base_url: str = "http://localhost:4000"
    topup_success_redirect_url: str | None = None
    topup_cancel_redirect_url: str | None = None
    trustless_webhook_secret: str | None = None
    wallet_encryption_key: str | None = None
    wallet_encryption_key_previous: str | None = None
    platform_user_id: str | None = None
    wallet_starting_xlm: str = "5"
    trustless_platform_fee_percent: Decimal = Decimal(0)
    trustless_requests_per_minute: int = 45
    #: How signed TW envelopes reach the network (providers.md §1.8): ``trustless`` through TW's
    #: ``/helper/send-transaction``, ``horizon`` straight to Horizon and then registered with TW's
    #: ``PUT /indexer/update-from-txhash``. Either way Horizon's record of the hash decides.
    trustless_submit_via: str = "trustless"
    #: Sign TW envelopes without an upper time bound (``max_time`` 0); such an envelope is dead only once
    #: its source's sequence has passed it, so a rebuild first consumes it (DESIGN decision 22).
    trustless_accept_unbounded: bool = True
    stellar_max_fee_stroops: int = 10_000
    sandbox_url: str = "http://127.0.0.1:4100"
    sandbox_port: int = 4100
    sandbox_seed: str = "offerhub-sandbox"
    sandbox_ledger_mode: str = "instant"
    command_wait_seconds: float = 30.0
    command_sweep_seconds: float = 10.0
    #: An open chain step untouched this long (past its retry time) has lost its message: the scheduler
    #: sends it again.
    chain_stall_seconds: float = 60.0
    #: A payout step failing after an earlier one landed is retried without end (the money is in the
    #: contract); after this many failures in a row the payout is reported stuck to operators.
    payout_stuck_after: int = 5
    #: Platform-held accounts that sign escrow deploys in turn, so deploys do not queue on the platform
    #: account's sequence numbers (the platform wallet stays the dispute resolver and fee receiver).
    deployer_accounts: int = 0
    #: The treasury pool of decision 25: platform-held accounts that fund escrows for AIRTM-backed buyers,
    #: and the pool's free USDC under which ``treasury.low`` is emitted (once per crossing).
    treasury_accounts: int = 4
    treasury_low_watermark: Decimal = Decimal("100")
    #: How often the scheduler sweeps the settlement account's USDC back to the treasury pool (0: never).
    settlement_sweep_seconds: float = 30.0
    #: How often the scheduler measures the treasury pool (USDC, headroom, ``treasury.low``); 0 = never.
    treasury_watch_seconds: float = 30.0
    event_retention_days: int = 30
    reconcile_interval_hours: float = 24.0  # the scheduler's reconciliation report (0: off)
    sse_heartbeat_seconds: float = 15.0
    rate_limit_per_minute: int = 100
    admin_balance_operations: bool = True
    queue_prefix: str = ""
    redis_prefix: str = "offerhub:"
    log_level: str = "INFO"
    web_metrics_dir: str = ""
    health_command_age_seconds: float = 60.0
    health_chain_step_age_seconds: float = 300.0
    health_monitor_lag_seconds: float = 60.0
    #: /metrics and /health/detailed read Horizon at most this often per web process (decision 12).
    horizon_read_cache_seconds: float = 10.0
    #: How the monitor follows Horizon: ``stream`` (the network's payment stream) or ``accounts`` (each
    #: wallet's own payments, polled), which spends far less of a public Horizon's per-IP budget on mainnet.
    horizon_follow_mode: str = "stream"
    horizon_poll_seconds: float = 10.0
    horizon_check_seconds: float = 60.0
    reconcile_seconds: float = 300.0
    #: Outbound webhooks (DESIGN decision 28): private, loopback and link-local destinations are refused
    #: unless allowed (the sandbox and tests allow them); at most this many endpoints; the answer wait.
    webhooks_allow_private: bool = False
    webhooks_max_endpoints: int = 16
    webhook_timeout_seconds: float = 10.0
    #: Seconds before each retry after a failed attempt; the last repeats until the window ends (Svix's
    #: schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h ...).
    webhook_retry_schedule: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    #: A delivery is given up, and an endpoint failing without a success is disabled, after this long.
    webhook_retry_window_seconds: float = 259_200.0
    limits: Mapping[str, AmountLimits] = field(default_factory=dict)

    @property
    def is_mainnet(self) -> bool:
        return self.stellar_network == "mainnet"

    @property
    def trustless_configured(self) -> bool:
        return bool(self.trustless_api_key and self.trustless_api_url)

    @property
    def airtm_configured(self) -> bool:
        return bool(self.airtm_api_key and self.airtm_api_secret and self.airtm_api_url)

    @property
    def airtm_enabled(self) -> bool:
        """AirTM mode with credentials: top-ups, AirTM withdrawals and links are served (api.md §8)."""
        return self.payment_provider == "airtm" and self.airtm_configured

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read, coerce and cross-check every variable; raise one ``ConfigError`` naming every problem."""
        reader = _Reader(dotenv.merged() if environ is None else environ)
        return reader.build()


def variables_read(environ: Mapping[str, str]) -> tuple[dict[str, str | None], list[str]]:
    """Every variable ``Settings`` reads with its default (``None``: none), and the problems found."""
    reader = _Reader(environ)
    with contextlib.suppress(ConfigError):  # reader.problems holds them
        reader.build()
    return reader.read, reader.problems


def sandbox_usdc_issuer(seed: str) -> str:
    """The sandbox derives its USDC issuer from its seed (DESIGN decision 11); so do we."""
    from stellar_sdk import Keypair  # here, not at the top: the CLI's HTTP commands start without stellar-sdk

    raw = hashlib.sha256(f"{seed}:usdc-issuer".encode()).digest()
    return Keypair.from_raw_ed25519_seed(raw).public_key


class _Reader:
    """Coerces environment strings and records problems instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.problems: list[str] = []
        #: Each variable read and its default as text, for ``offerhub settings``.
        self.read: dict[str, str | None] = {}

    def raw(self, name: str, default: str | None = None) -> str | None:
        if self.read.get(name) is None:
            self.read[name] = default
        value = self.env.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    def coerce(self, name: str, default: T, convert: Callable[[str], T]) -> T:
        if self.read.get(name) is None and default is not None:
            self.read[name] = str(default)
        value = self.raw(name)
        if value is None:
            return default
        try:
            return convert(value)
        except (ValueError, InvalidOperation):
            self.problems.append(f"{name}={value!r} is not a valid value")
            return default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.raw(name, default) or default
        if value not in allowed:
            self.problems.append(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
            return default
        return value

    def limits(self) -> dict[str, AmountLimits]:
        defaults = {"order": ("1.00", "50000.00"), "topup": ("1.00", "10000.00"),
                    "withdrawal": ("10.00", "5000.00")}
        out = {}
        for kind, (lo, hi) in defaults.items():
            low = self.coerce(f"LIMIT_{kind.upper()}_MIN", Decimal(lo), Decimal)
            high = self.coerce(f"LIMIT_{kind.upper()}_MAX", Decimal(hi), Decimal)
            if low <= 0 or high < low:
                self.problems.append(f"LIMIT_{kind.upper()}_MIN/MAX must satisfy 0 < min <= max")
            out[kind] = AmountLimits(low, high)
        return out

    def build(self) -> Settings:
        network = self.choice("STELLAR_NETWORK", "sandbox", NETWORKS)
        sandbox_port = self.coerce("SANDBOX_PORT", 4100, int)
        sandbox_url = (self.raw("SANDBOX_URL") or f"http://127.0.0.1:{sandbox_port}").rstrip("/")
        seed = self.raw("SANDBOX_SEED", "offerhub-sandbox") or "offerhub-sandbox"
        master_key = self.raw("OFFERHUB_MASTER_KEY")
        if not master_key:
            self.problems.append("OFFERHUB_MASTER_KEY is required (the credential that creates API keys)")
        elif len(master_key) < 16:
            self.problems.append("OFFERHUB_MASTER_KEY must be at least 16 characters")
        jwt_secret = self.raw("OFFERHUB_JWT_SECRET")
        if not jwt_secret and network != "sandbox":
            self.problems.append("OFFERHUB_JWT_SECRET is required outside the sandbox (it signs short-lived tokens)")
        if not jwt_secret:
            jwt_secret = hashlib.sha256(f"jwt:{master_key}".encode()).hexdigest()
        values: dict[str, Any] = {
            "database_url": self.raw("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/offerhub"),
            "redis_url": self.raw("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "rabbitmq_url": self.raw("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
            "master_key": master_key or "",
            "jwt_secret": jwt_secret,
            "port": self.coerce("PORT", 4000, int),
            "payment_provider": self.choice("PAYMENT_PROVIDER", "crypto", PROVIDERS),
            "stellar_network": network,
            "network_passphrase": PASSPHRASES[network],
            "usdc_asset_code": self.raw("STELLAR_USDC_ASSET_CODE", "USDC"),
            "sandbox_url": sandbox_url,
            "sandbox_port": sandbox_port,
            "sandbox_seed": seed,
            "sandbox_ledger_mode": self.choice("SANDBOX_LEDGER_MODE", "instant", ("instant", "interval")),
            "command_wait_seconds": self.coerce("COMMAND_WAIT_SECONDS", 30.0, float),
            "command_sweep_seconds": self.coerce("COMMAND_SWEEP_SECONDS", 10.0, float),
            "chain_stall_seconds": self.coerce("CHAIN_STALL_SECONDS", 60.0, float),
            "payout_stuck_after": self.coerce("PAYOUT_STUCK_AFTER", 5, int),
            "deployer_accounts": self.coerce("DEPLOYER_ACCOUNTS", 0 if network == "mainnet" else 8, int),
            "treasury_accounts": self.coerce("TREASURY_ACCOUNTS", 4, int),
            "treasury_low_watermark": self.coerce("TREASURY_LOW_WATERMARK", Decimal("100"), Decimal),
            "settlement_sweep_seconds": self.coerce("SETTLEMENT_SWEEP_SECONDS", 30.0, float),
            "treasury_watch_seconds": self.coerce("TREASURY_WATCH_SECONDS", 30.0, float),
            "event_retention_days": self.coerce("EVENT_RETENTION_DAYS", 30, int),
            "sse_heartbeat_seconds": self.coerce("SSE_HEARTBEAT_SECONDS", 15.0, float),
            "rate_limit_per_minute": self.coerce("RATE_LIMIT_PER_MINUTE", 100, int),
            "admin_balance_operations": self.coerce(
                "ADMIN_BALANCE_OPERATIONS", network != "mainnet", _boolean),
            "queue_prefix": self.raw("QUEUE_PREFIX", "") or "",
            "redis_prefix": self.raw("REDIS_PREFIX", "offerhub:") or "",
            "log_level": (self.raw("LOG_LEVEL", "INFO") or "INFO").upper(),
            "web_metrics_dir": self.raw("WEB_METRICS_DIR", "") or "",
            "health_command_age_seconds": self.coerce("HEALTH_COMMAND_AGE_SECONDS", 60.0, float),
            "health_chain_step_age_seconds": self.coerce("HEALTH_CHAIN_STEP_AGE_SECONDS", 300.0, float),
            "health_monitor_lag_seconds": self.coerce("HEALTH_MONITOR_LAG_SECONDS", 60.0, float),
            "horizon_read_cache_seconds": self.coerce("HORIZON_READ_CACHE_SECONDS", 10.0, float),
            "horizon_follow_mode": self.choice("HORIZON_FOLLOW_MODE", "accounts" if network == "mainnet" else "stream",
                                               ("stream", "accounts")),
            "horizon_poll_seconds": self.coerce("HORIZON_POLL_SECONDS", 10.0, float),
            "horizon_check_seconds": self.coerce("HORIZON_CHECK_SECONDS", 60.0, float),
            "reconcile_seconds": self.coerce("RECONCILE_SECONDS", 300.0, float),
            "webhooks_allow_private": self.coerce("WEBHOOKS_ALLOW_PRIVATE", False, _boolean),
            "webhooks_max_endpoints": self.coerce("WEBHOOKS_MAX_ENDPOINTS", 16, int),
            "webhook_timeout_seconds": self.coerce("WEBHOOK_TIMEOUT_SECONDS", 10.0, float),
            "webhook_retry_schedule": self.coerce("WEBHOOK_RETRY_SCHEDULE", Settings.webhook_retry_schedule,
                                                  _seconds_list),
            "webhook_retry_window_seconds": self.coerce("WEBHOOK_RETRY_WINDOW_SECONDS", 259_200.0, float),
            "wallet_encryption_key": self.raw("WALLET_ENCRYPTION_KEY"),
            "wallet_encryption_key_previous": self.raw("WALLET_ENCRYPTION_KEY_PREVIOUS"),
            "platform_user_id": self.raw("PLATFORM_USER_ID"),
            "wallet_starting_xlm": self.raw("WALLET_STARTING_XLM", "5") or "5",
            "trustless_platform_fee_percent": self.coerce("TRUSTLESS_PLATFORM_FEE_PERCENT", Decimal(0), Decimal),
            "trustless_requests_per_minute": self.coerce("TRUSTLESS_REQUESTS_PER_MINUTE", 45, int),
            "trustless_submit_via": self.choice("TRUSTLESS_SUBMIT_VIA", "trustless", ("trustless", "horizon")),
            "trustless_accept_unbounded": self.coerce("TRUSTLESS_ACCEPT_UNBOUNDED", True, _boolean),
            "reconcile_interval_hours": self.coerce("RECONCILE_INTERVAL_HOURS", 24.0, float),
            "stellar_max_fee_stroops": self.coerce("STELLAR_MAX_FEE_STROOPS", 10_000, int),
            "trustless_api_key": self.raw("TRUSTLESS_API_KEY"),
            "trustless_webhook_secret": self.raw("TRUSTLESS_WEBHOOK_SECRET"),
            "airtm_api_key": self.raw("AIRTM_API_KEY"),
            "airtm_api_secret": self.raw("AIRTM_API_SECRET"),
            "airtm_webhook_secret": self.raw("AIRTM_WEBHOOK_SECRET"),
            "airtm_timeout_ms": self.coerce("AIRTM_TIMEOUT_MS", 30_000, int),
            "airtm_refresh_seconds": self.coerce("AIRTM_REFRESH_SECONDS", 60.0, float),
            "public_base_url": (self.raw("PUBLIC_BASE_URL")
                                or f"http://localhost:{self.coerce('PORT', 4000, int)}").rstrip("/"),
            "topup_success_redirect_url": self.raw("TOPUP_SUCCESS_REDIRECT_URL"),
            "topup_cancel_redirect_url": self.raw("TOPUP_CANCEL_REDIRECT_URL"),
            "limits": self.limits(),
        }
        values.update(self.endpoints(network, sandbox_url, seed))
        self.check_ranges(values)
        self.check_urls(values)
        self.check_wallet_key(values)
        if self.problems:
            raise ConfigError(self.problems)
        return Settings(**values)

    def endpoints(self, network: str, sandbox_url: str, seed: str) -> dict[str, Any]:
        """Provider URLs default per network; the sandbox serves all three under one base URL."""
        friendbot: str | None
        if network == "sandbox":
            horizon, friendbot = f"{sandbox_url}/horizon", f"{sandbox_url}/friendbot"
            trustless, airtm = f"{sandbox_url}/trustless", f"{sandbox_url}/airtm/v2"
            checkout = f"{sandbox_url}/airtm/checkout/payin/"
            issuer = sandbox_usdc_issuer(seed)
        else:
            horizon, trustless = HORIZON_URLS[network], TRUSTLESS_URLS[network]
            friendbot = "https://friendbot.stellar.org" if network == "testnet" else None
            airtm_env = self.choice("AIRTM_ENV", "sandbox", ("sandbox", "production", "prod"))
            airtm_key = "sandbox" if airtm_env == "sandbox" else "production"
            airtm, checkout = AIRTM_URLS[airtm_key], AIRTM_CHECKOUT_URLS[airtm_key]
            issuer = USDC_ISSUERS[network]
        out: dict[str, Any] = {
            "horizon_url": (self.raw("STELLAR_HORIZON_URL") or horizon).rstrip("/"),
            "friendbot_url": self.raw("STELLAR_FRIENDBOT_URL") or friendbot,
            "trustless_api_url": (self.raw("TRUSTLESS_API_URL") or trustless).rstrip("/"),
            "airtm_api_url": (self.raw("AIRTM_API_URL") or airtm).rstrip("/"),
            "airtm_checkout_base_url": self.raw("AIRTM_CHECKOUT_BASE_URL") or checkout,
            "usdc_issuer": self.raw("STELLAR_USDC_ISSUER") or issuer,
        }
        if not _is_account_id(out["usdc_issuer"]):
            self.problems.append("STELLAR_USDC_ISSUER must be a Stellar account id (G…)")
        if network == "mainnet":
            urls = " ".join(str(v) for v in out.values())
            if out["friendbot_url"]:
                self.problems.append("mainnet has no friendbot: unset STELLAR_FRIENDBOT_URL")
            if sandbox_url in urls or "127.0.0.1" in urls or "localhost" in urls:
                self.problems.append("mainnet cannot point at sandbox or loopback URLs")
            if not self.raw("TRUSTLESS_API_KEY"):
                self.problems.append("TRUSTLESS_API_KEY is required on mainnet")
        return out

    def check_wallet_key(self, values: Mapping[str, Any]) -> None:
        """Crypto mode seals every wallet secret, so it cannot start without a usable key."""
        for name in ("wallet_encryption_key", "wallet_encryption_key_previous"):
            if values[name]:
                try:
                    decode_key(values[name])
                except ValueError as error:
                    self.problems.append(f"{name.upper()}: {error}")
        if values["payment_provider"] == "crypto" and not values["wallet_encryption_key"]:
            self.problems.append("WALLET_ENCRYPTION_KEY is required in crypto mode (base64 of 32 random bytes)")

    def check_urls(self, values: Mapping[str, Any]) -> None:
        """A malformed URL names its variable at start-up instead of failing at the first connection."""
        for name, (setting, schemes) in URL_SCHEMES.items():
            value = values.get(setting)
            if value is None:
                continue
            parts = urlsplit(value)
            if parts.scheme not in schemes or not (parts.netloc or parts.path):
                self.problems.append(f"{name}={_masked_url(value)!r} is not a URL of the form "
                                     f"{schemes[0]}://host/…")

    def check_ranges(self, values: Mapping[str, Any]) -> None:
        self.problems.extend(message for holds, message in RANGE_RULES if not holds(values))


#: Each setting's allowed range, as (holds for these values, the operator's message when it does not).
RANGE_RULES: tuple[tuple[Callable[[Mapping[str, Any]], bool], str], ...] = (
    (lambda v: 15 <= v["sse_heartbeat_seconds"] <= 30, "SSE_HEARTBEAT_SECONDS must be between 15 and 30"),
    (lambda v: v["command_wait_seconds"] >= 0 and v["command_sweep_seconds"] > 0,
     "COMMAND_WAIT_SECONDS must be >= 0 and COMMAND_SWEEP_SECONDS > 0"),
    (lambda v: v["treasury_accounts"] >= 1 and v["treasury_low_watermark"] >= 0,
     "TREASURY_ACCOUNTS must be at least 1 and TREASURY_LOW_WATERMARK at least 0"),
    (lambda v: v["event_retention_days"] >= 1, "EVENT_RETENTION_DAYS must be at least 1"),
    (lambda v: 0 <= v["trustless_platform_fee_percent"] <= 99,
     "TRUSTLESS_PLATFORM_FEE_PERCENT is a percent from 0 to 99"),
    (lambda v: v["reconcile_interval_hours"] >= 0,
     "RECONCILE_INTERVAL_HOURS must be >= 0 (0 turns the scheduled report off)"),
    (lambda v: 1_000 <= v["airtm_timeout_ms"] <= 120_000 and v["airtm_refresh_seconds"] > 0,
     "AIRTM_TIMEOUT_MS must be 1000-120000 and AIRTM_REFRESH_SECONDS > 0"),
    (lambda v: min(v["health_command_age_seconds"], v["health_chain_step_age_seconds"],
                   v["health_monitor_lag_seconds"], v["reconcile_seconds"]) > 0,
     "HEALTH_*_SECONDS and RECONCILE_SECONDS must be > 0"),
    (lambda v: min(v["horizon_poll_seconds"], v["horizon_check_seconds"]) > 0,
     "HORIZON_POLL_SECONDS and HORIZON_CHECK_SECONDS must be > 0"),
    (lambda v: v["horizon_read_cache_seconds"] >= 0,
     "HORIZON_READ_CACHE_SECONDS must be >= 0 (0 reads Horizon on every scrape)"),
    (lambda v: v["webhooks_max_endpoints"] >= 0 and 0 < v["webhook_timeout_seconds"] <= 60,
     "WEBHOOKS_MAX_ENDPOINTS must be >= 0 and WEBHOOK_TIMEOUT_SECONDS 0-60"),
    (lambda v: v["webhook_retry_window_seconds"] > 0, "WEBHOOK_RETRY_WINDOW_SECONDS must be > 0"),
    (lambda v: v["rate_limit_per_minute"] >= 0, "RATE_LIMIT_PER_MINUTE must be >= 0 (0 turns limiting off)"),
)


def _masked_url(value: str) -> str:
    """``value`` without the password of a ``user:password@`` part, so a refused URL can be printed."""
    head, at, tail = value.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return value
    return f"{head.rsplit(':', 1)[0]}:****@{tail}"


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _seconds_list(value: str) -> tuple[float, ...]:
    """``5,300,1800``: comma-separated non-negative seconds, at least one."""
    seconds = tuple(float(part) for part in value.split(",") if part.strip())
    if not seconds or min(seconds) < 0:
        raise ValueError(value)
    return seconds


def _is_account_id(value: str) -> bool:
    from stellar_sdk import Keypair

    try:
        Keypair.from_public_key(value)
    except Exception:
        return False
    return True
