"""Trustless Work (escrow) over HTTP: the only module that talks to TW (spec providers.md §1).

TW builds unsigned envelopes (T1 to T7), relays signed ones (T8) and serves contract state (T9, T10).
Build calls never touch the ledger, so every error there is safe to retry; T8 is different: a lost
or 5xx answer may hide an applied transaction, so its outcome is reported as ``ambiguous`` and the
caller looks the hash up instead of guessing (§1.8).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests

from orchestrator.amounts import quantize
from orchestrator.errors import NotFound, ProviderFailure, Unavailable
from orchestrator.providers import http
from orchestrator.providers.rate_budget import RateBudget
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

PROVIDER = "trustless_work"
#: Contract-rule messages of §1.5; a 400 naming one is a refusal by the contract, not a bug of ours.
CONTRACT_RULES = (
    "Amount cannot be zero", "The platform fee cannot exceed 99%", "between 1 and 50 milestones",
    "The signer has insufficient funds to fund the escrow", "Escrow not found",
    "Only the service provider can change milestone status", "Invalid milestone index",
    "Only the approver can change milestone flag",
    "You cannot approve a milestone that has already been approved previously",
    "The escrow funds have been released", "This escrow is already resolved",
    "Only the release signer can release the escrow earnings", "The escrow must be completed to release earnings",
    "Escrow has been opened for dispute resolution", "The escrow balance", "Escrow already in dispute",
    "You are not authorized to change the dispute flag", "The dispute resolver cannot dispute the escrow",
    "Only the dispute resolver can execute this function", "Escrow not in dispute",
    "The sum of distributions must equal the current escrow balance",
)
#: Texts with which TW says a submitted transaction's result is not known yet (§1.8): ambiguous, not failed.
NOT_YET_MARKERS = ("resultmetaxdr", "not be complete yet", "not available yet")
#: Retry-After when TW's 429 carries none: its window is a minute.
DEFAULT_RETRY_AFTER = 60


class TrustlessRefused(ProviderFailure):
    """Raised when TW answers ``400 {status: "FAILED", message}``: it refused the request as sent.

    Permanent (providers.md §1.11): the same request gets the same answer, so a step fails at once with
    TW's message instead of spending its attempts; a contract rule is handled apart (below).
    """

    permanent = True

    def __init__(self, message: str, *, status: int, path: str) -> None:
        self.status = status
        self.path = path
        self.rule = next((rule for rule in CONTRACT_RULES if rule.lower() in message.lower()), None)
        super().__init__(message, details={"provider": PROVIDER, "originalStatus": status, "message": message})


class ContractRuleRefused(TrustlessRefused):
    """Raised when the refusal names a contract rule (§1.5): re-read the contract before failing the step."""

    permanent = False


class TrustlessRejected(ProviderFailure):
    """Raised for 401/403 (the API key) and a 404 route: nothing a retry could change (§1.11)."""

    permanent = True


class EscrowUnknown(NotFound):
    """Raised for a 404 from TW: a route TW does not serve, or an escrow it does not know."""

    permanent = True


@dataclass(frozen=True)
class EscrowRoles:
    """The six roles of a single-release escrow (§1.4), as account ids."""

    approver: str
    service_provider: str
    platform_address: str
    release_signer: str
    dispute_resolver: str
    receiver: str

    def as_json(self) -> dict[str, str]:
        return {"approver": self.approver, "serviceProvider": self.service_provider,
                "platformAddress": self.platform_address, "releaseSigner": self.release_signer,
                "disputeResolver": self.dispute_resolver, "receiver": self.receiver}


@dataclass(frozen=True)
class Distribution:
    """One share of a dispute resolution, gross (the contract takes its fees from it)."""

    address: str
    amount: Decimal


@dataclass(frozen=True)
class Milestone:
    description: str
    status: str
    evidence: str
    approved: bool


@dataclass(frozen=True)
class EscrowState:
    """The contract's flags and milestones (§1.6), the checkpoint for resuming a flow.

    Amounts are deliberately absent: TW's pages disagree on their unit, and money is read from the ledger.
    """

    contract_id: str
    engagement_id: str
    roles: Mapping[str, str]
    milestones: tuple[Milestone, ...]
    disputed: bool
    released: bool
    resolved: bool
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> EscrowState:
        flags = raw.get("flags") or {}
        milestones = tuple(Milestone(str(m.get("description", "")), str(m.get("status", "")),
                                     str(m.get("evidence", "")), bool(m.get("approved")))
                           for m in raw.get("milestones") or ())
        return cls(str(raw.get("contractId", "")), str(raw.get("engagementId", "")), dict(raw.get("roles") or {}),
                   milestones, bool(flags.get("disputed")), bool(flags.get("released")),
                   bool(flags.get("resolved")), raw)

    def milestone_completed(self, index: int = 0) -> bool:
        return index < len(self.milestones) and self.milestones[index].status == "completed"

    def milestone_approved(self, index: int = 0) -> bool:
        return index < len(self.milestones) and self.milestones[index].approved


@dataclass(frozen=True)
class Sent:
    """T8's outcome: ``applied``, ``failed`` (``refusal`` says why) or ``ambiguous`` (look the hash up)."""

    outcome: str
    message: str
    contract_id: str | None = None
    escrow: EscrowState | None = None
    refusal: TrustlessRefused | None = None


class TrustlessClient:
    """A synchronous TW client for the chain actors; ``budget`` (shared through Redis) paces every call."""

    def __init__(self, settings: Settings, *, timeout_ms: int = 60_000, budget: RateBudget | None = None,
                 session: requests.Session | None = None) -> None:
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be positive")
        self.base_url = settings.trustless_api_url.rstrip("/")
        self.trustline = {"address": settings.usdc_issuer, "symbol": settings.usdc_asset_code}
        self.timeout = timeout_ms / 1000
        self.budget = budget
        self.http = session or http.session()
        self.http.headers.update({"x-api-key": settings.trustless_api_key or "",
                                  "Content-Type": "application/json", "Accept": "application/json"})

    # T1 to T7: each answers an unsigned envelope (base64 XDR) whose source is the named signer.

    def deploy(self, *, signer: str, engagement_id: str, title: str, description: str, roles: EscrowRoles,
               amount: Decimal | str, platform_fee_percent: Decimal | str,
               milestones: Sequence[str] = ("Order delivered",)) -> str:
        """T1: deploy a single-release escrow (§1.4); signed by the platform wallet."""
        body = {"signer": signer, "engagementId": engagement_id, "title": title[:100],
                "description": description[:500], "roles": roles.as_json(), "amount": _amount(amount),
                "platformFee": Decimal(str(platform_fee_percent)),
                "milestones": [{"description": text} for text in milestones], "trustline": dict(self.trustline)}
        return self._build("/deployer/single-release", body)

    def fund(self, *, contract_id: str, signer: str, amount: Decimal | str) -> str:
        """T2: move ``amount`` USDC from the buyer's wallet into the contract."""
        return self._build("/escrow/single-release/fund-escrow",
                           {"contractId": contract_id, "signer": signer, "amount": _amount(amount)})

    def change_milestone_status(self, *, contract_id: str, service_provider: str, milestone_index: int = 0,
                                new_status: str = "completed", evidence: str = "") -> str:
        """T3: the seller marks the work done."""
        return self._build("/escrow/single-release/change-milestone-status",
                           {"contractId": contract_id, "milestoneIndex": str(milestone_index),
                            "newStatus": new_status, "newEvidence": evidence, "serviceProvider": service_provider})

    def approve_milestone(self, *, contract_id: str, approver: str, milestone_index: int = 0) -> str:
        """T4: the buyer approves the milestone."""
        return self._build("/escrow/single-release/approve-milestone",
                           {"contractId": contract_id, "milestoneIndex": str(milestone_index), "approver": approver})

    def release_funds(self, *, contract_id: str, release_signer: str) -> str:
        """T5: pay the receiver (minus fees)."""
        return self._build("/escrow/single-release/release-funds",
                           {"contractId": contract_id, "releaseSigner": release_signer})

    def dispute(self, *, contract_id: str, signer: str) -> str:
        """T6: open a dispute (any role except the resolver)."""
        return self._build("/escrow/single-release/dispute-escrow", {"contractId": contract_id, "signer": signer})

    def resolve_dispute(self, *, contract_id: str, dispute_resolver: str,
                        distributions: Sequence[Distribution]) -> str:
        """T7: split the contract's current balance; the amounts must sum to it exactly."""
        shares = [{"address": d.address, "amount": _amount(d.amount)} for d in distributions]
        return self._build("/escrow/single-release/resolve-dispute",
                           {"contractId": contract_id, "disputeResolver": dispute_resolver, "distributions": shares})

    # T8: the one call with a ledger effect.

    def send_transaction(self, signed_xdr: str) -> Sent:
        """T8: relay a signed envelope. Never raises for the envelope's fate: that is ``Sent.outcome``.

        Raises only when TW certainly did not take the envelope (429, 401/403, 404 route).
        """
        path = "/helper/send-transaction"
        try:
            response = self._send("POST", path, body={"signedXdr": signed_xdr})
        except requests.RequestException as error:
            return Sent("ambiguous", f"no answer from Trustless Work ({type(error).__name__})")
        payload, message = _payload(response)
        if response.status_code in {401, 403, 404, 429}:
            raise self._error(response, path, message)
        if response.status_code >= 500 or any(m in message.lower() for m in NOT_YET_MARKERS):
            return Sent("ambiguous", message or f"HTTP {response.status_code}")
        if response.ok and isinstance(payload, dict) and payload.get("status") != "FAILED":
            escrow = payload.get("escrow")
            return Sent("applied", message, contract_id=payload.get("contractId"),
                        escrow=EscrowState.from_json(escrow) if isinstance(escrow, dict) else None)
        return Sent("failed", message, refusal=_refusal(message, response.status_code, path))

    def register(self, tx_hash: str) -> EscrowState | None:
        """Tell TW's database about a transaction sent straight to Horizon, as its V1 docs require
        (``PUT /indexer/update-from-txhash {txHash}``; answer ``{status, message, savedEscrow}``), so that
        its helper reads and the builds that need its stored escrow (fund) know the result."""
        payload = self._call("PUT", "/indexer/update-from-txhash", body={"txHash": tx_hash})
        saved = payload.get("savedEscrow") if isinstance(payload, dict) else None
        return EscrowState.from_json(saved) if isinstance(saved, dict) else None

    # T9, T10: reads of TW's indexer.

    def get_escrow(self, contract_id: str, *, validate_on_chain: bool = True) -> EscrowState | None:
        """T9: the contract's state, ``None`` when TW does not know it."""
        found = self._read("/helper/get-escrow-by-contract-ids",
                           {"contractIds": contract_id, "validateOnChain": str(validate_on_chain).lower()})
        return next((escrow for escrow in found if escrow.contract_id == contract_id), None)

    def escrows_by_signer(self, signer: str, *, engagement_id: str | None = None) -> list[EscrowState]:
        """T10: escrows a signer deployed (or holds a role in); recovers a deploy whose answer was lost."""
        params = {"signer": signer} | ({"engagementId": engagement_id} if engagement_id else {})
        return self._read("/helper/get-escrows-by-signer", params)

    def escrows_by_role(self, role: str, address: str, *, engagement_id: str | None = None) -> list[EscrowState]:
        """T10 by role (e.g. ``platformAddress``)."""
        params = {"role": role, "roleAddress": address} | ({"engagementId": engagement_id} if engagement_id else {})
        return self._read("/helper/get-escrows-by-role", params)

    def escrow_balances(self, contract_ids: Sequence[str]) -> dict[str, Decimal]:
        """T11: each known contract's USDC balance (reconciliation only: TW's unit is unverified, so the
        figure is compared, never used to move money)."""
        if not contract_ids:
            return {}
        payload = self._call("GET", "/helper/get-multiple-escrow-balance", params={"addresses": list(contract_ids)})
        if not isinstance(payload, list):
            raise ProviderFailure("Trustless Work answered a balance read with something other than a list",
                                  details={"provider": PROVIDER, "path": "/helper/get-multiple-escrow-balance"})
        return {str(item["address"]): Decimal(str(item["balance"])) for item in payload
                if isinstance(item, dict) and "address" in item and "balance" in item}

    # plumbing

    def _build(self, path: str, body: dict[str, Any]) -> str:
        payload = self._call("POST", path, body=body)
        xdr = payload.get("unsignedTransaction") if isinstance(payload, dict) else None
        if not isinstance(xdr, str) or not xdr:
            raise ProviderFailure("Trustless Work answered without an unsigned transaction",
                                  details={"provider": PROVIDER, "path": path})
        return xdr

    def _read(self, path: str, params: dict[str, str]) -> list[EscrowState]:
        payload = self._call("GET", path, params=params)
        if not isinstance(payload, list):
            raise ProviderFailure("Trustless Work answered a read with something other than a list",
                                  details={"provider": PROVIDER, "path": path})
        return [EscrowState.from_json(item) for item in payload if isinstance(item, dict)]

    def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._send(method, path, body=body, params=params)
        except requests.Timeout as error:
            raise ProviderFailure("Trustless Work did not answer in time", code="PROVIDER_TIMEOUT",
                                  details={"provider": PROVIDER, "path": path}) from error
        except requests.RequestException as error:
            raise ProviderFailure(f"Trustless Work unreachable ({type(error).__name__})",
                                  details={"provider": PROVIDER, "path": path}) from error
        payload, message = _payload(response)
        if response.ok:
            return payload
        raise self._error(response, path, message)

    def _send(self, method: str, path: str, *, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> requests.Response:
        if self.budget is not None:
            self.budget.take()
        data = _json(body) if body is not None else None
        return self.http.request(method, self.base_url + path, data=data, params=params, timeout=self.timeout)

    def _error(self, response: requests.Response, path: str, message: str) -> Exception:
        status = response.status_code
        details = {"provider": PROVIDER, "originalStatus": status, "message": message, "path": path}
        if status == 429:
            if self.budget is not None:
                self.budget.exhaust(_retry_after(response))
            return ProviderFailure("Trustless Work rate limit reached", code="PROVIDER_RATE_LIMITED",
                                   details={**details, "retryAfter": _retry_after(response)})
        if status == 400:
            return _refusal(message, status, path)
        if status == 404:
            return EscrowUnknown(message or "Escrow not found", code="ESCROW_NOT_FOUND", details=details)
        if status == 503:
            return Unavailable("Trustless Work is unavailable", details=details)
        if status == 504:
            return ProviderFailure("Trustless Work timed out", code="PROVIDER_TIMEOUT", details=details)
        if status in {401, 403}:
            log.error("Trustless Work refused our API key (HTTP %s): %s", status, message)
            return TrustlessRejected(f"Trustless Work refused our API key (HTTP {status}): {message}",
                                     details=details)
        return ProviderFailure(f"Trustless Work answered HTTP {status}: {message}" if message
                               else f"Trustless Work answered HTTP {status}", details=details)


def _refusal(message: str, status: int, path: str) -> TrustlessRefused:
    refused = TrustlessRefused(message, status=status, path=path)
    if refused.rule is not None:
        return ContractRuleRefused(message, status=status, path=path)
    return refused


def _payload(response: requests.Response) -> tuple[Any, str]:
    """The JSON body (or None) and TW's message, which may be a string or a list of strings (§1.11)."""
    try:
        payload = response.json()
    except ValueError:
        return None, response.text[:300]
    message = payload.get("message", "") if isinstance(payload, dict) else ""
    if isinstance(message, list):
        message = "; ".join(str(part) for part in message)
    return payload, str(message)


def _retry_after(response: requests.Response) -> int:
    try:
        return max(1, int(response.headers.get("Retry-After", DEFAULT_RETRY_AFTER)))
    except ValueError:
        return DEFAULT_RETRY_AFTER


def _amount(value: Decimal | str) -> Decimal:
    """USDC units as an exact Decimal (floats refused: §1.3 forbids binary floats for amounts)."""
    if isinstance(value, float):
        raise TypeError("amounts are Decimal or str, never float")
    amount = Decimal(value)
    quantize(amount)  # refuses more than the ledger's 7 places instead of rounding
    return amount


def _json(value: Any) -> str:
    """JSON with every Decimal written as a number literal from its string form (§1.3), never via float."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("amounts must be finite")
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return json.dumps(value)
