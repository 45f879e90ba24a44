"""Horizon (the Stellar ledger's HTTP API) and friendbot: the only module that talks to them.

Submissions are classified into applied, failed (with the result codes of providers.md §2.9) or
ambiguous (time-outs, 5xx, lost answers), because an ambiguous submission may still land and must
be looked up by hash before anything else is decided.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from stellar_sdk import Asset, Server
from stellar_sdk.client.requests_client import RequestsClient
from stellar_sdk.exceptions import BadRequestError, BadResponseError, BaseHorizonError, NotFoundError
from stellar_sdk.exceptions import ConnectionError as StellarConnectionError

from orchestrator.providers import http
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

#: Transaction codes after which the same envelope can never land.
FINAL_TX_CODES = frozenset({"tx_bad_auth", "tx_bad_auth_extra", "tx_missing_operation", "tx_malformed",
                            "tx_soroban_invalid", "tx_not_supported", "tx_bad_sponsorship",
                            "tx_bad_minseq_age_or_gap"})


#: The longest single wait for Horizon's per-IP budget, and how many waits one call accepts.
MAX_RATE_WAIT = 30.0
RATE_ATTEMPTS = 4


def patiently(call: Callable[[], Any]) -> Any:
    """Run a Horizon call, waiting as a ``429`` asks (``Retry-After``; Horizon's limiter writes it on every
    refusal: stellar/go services/horizon/internal/httpx/rate_limiter.go with throttled's HTTPLimiter) and
    trying again. A refused request was never handled, so repeating it (a submission too: the same
    envelope) is safe."""
    for attempt in range(RATE_ATTEMPTS):
        try:
            return call()
        except BaseHorizonError as error:
            if error.status != 429 or attempt == RATE_ATTEMPTS - 1:
                raise
            response = error.args[0] if error.args else None
            headers = getattr(response, "headers", None) or {}
            try:
                wait = float(headers.get("Retry-After") or headers.get("retry-after") or 2 ** attempt)  # not money
            except ValueError:
                wait = 2.0 ** attempt
            log.warning("Horizon's request budget is spent; waiting %.1f s as it asks", min(wait, MAX_RATE_WAIT))
            time.sleep(min(wait, MAX_RATE_WAIT))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Submission:
    """``applied``, ``failed`` (the envelope did not apply; codes say why) or ``ambiguous``."""

    outcome: str
    record: dict[str, Any] | None = None
    tx_code: str | None = None
    op_codes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class AccountState:
    account_id: str
    sequence: int
    xlm: Decimal
    usdc: Decimal | None  # None: no USDC trustline
    data: dict[str, str]
    subentries: int


class Horizon:
    """A synchronous Horizon client for the chain actors (one per process, thread-safe sessions)."""

    def __init__(self, settings: Settings, *, timeout: float = 35.0) -> None:
        self.settings = settings
        self.usdc = Asset(settings.usdc_asset_code, settings.usdc_issuer)
        client = RequestsClient(pool_size=http.POOL_SIZE, num_retries=0, request_timeout=int(timeout),
                                post_timeout=timeout)
        self.server = Server(settings.horizon_url, client=client)
        self.http = http.session()
        self.timeout = timeout

    def account(self, account_id: str) -> AccountState | None:
        """The account as the ledger holds it, or ``None`` when it does not exist."""
        try:
            raw = patiently(self.server.accounts().account_id(account_id).call)
        except NotFoundError:
            return None
        xlm, usdc = Decimal(0), None
        for balance in raw.get("balances", []):
            if balance.get("asset_type") == "native":
                xlm = Decimal(balance["balance"])
            elif (balance.get("asset_code") == self.usdc.code
                  and balance.get("asset_issuer") == self.usdc.issuer):
                usdc = Decimal(balance["balance"])
        return AccountState(raw["account_id"], int(raw["sequence"]), xlm, usdc, raw.get("data") or {},
                            int(raw.get("subentry_count", 0)))

    def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        """The transaction record if it is in the ledger's history (applied or failed), else ``None``."""
        try:
            return patiently(self.server.transactions().transaction(tx_hash).call)
        except NotFoundError:
            return None

    def operations(self, tx_hash: str) -> list[dict[str, Any]] | None:
        """A transaction's operation records (a TW payout's ``asset_balance_changes``); ``None`` if not in history."""
        try:
            page = patiently(self.server.operations().for_transaction(tx_hash).limit(200).call)
        except NotFoundError:
            return None
        return page["_embedded"]["records"]

    def submit(self, envelope_xdr: str) -> Submission:
        try:
            record = patiently(lambda: self.server.submit_transaction(envelope_xdr, skip_memo_required_check=True))
        except BadRequestError as error:
            codes = (error.extras or {}).get("result_codes") or {}
            if error.status == 400 and codes:
                return Submission("failed", tx_code=codes.get("transaction"),
                                  op_codes=list(codes.get("operations") or []), error=error.title)
            if error.status == 400:
                return Submission("failed", tx_code="tx_malformed", error=error.title)
            return Submission("ambiguous", error=f"HTTP {error.status}")
        except (BadResponseError, StellarConnectionError, requests.RequestException) as error:
            return Submission("ambiguous", error=type(error).__name__)
        return Submission("applied", record=record)

    def fund_with_friendbot(self, account_id: str) -> None:
        """Create and fund an account on testnet or the sandbox; an existing account is fine."""
        if not self.settings.friendbot_url:
            raise RuntimeError("no friendbot on this network")
        response = self.http.get(self.settings.friendbot_url, params={"addr": account_id}, timeout=self.timeout)
        if response.status_code >= 400 and self.account(account_id) is None:
            raise RuntimeError(f"friendbot answered {response.status_code}")

    def base_fee(self) -> int:
        try:
            return int(self.server.fetch_base_fee())
        except Exception:
            return 100

    def payments(self, account_id: str, *, cursor: str | None, limit: int = 200) -> list[dict[str, Any]]:
        """One page of an account's payments in ascending order (reconciliation)."""
        call = self.server.payments().for_account(account_id).order(desc=False).limit(limit)
        if cursor:
            call = call.cursor(cursor)
        return patiently(call.call)["_embedded"]["records"]
