"""Response shapes that handlers build as dicts (or compose from several dumps), declared here so the
OpenAPI document (web/openapi.py) describes exactly what each endpoint answers.

Nothing dumps through these classes; the schemathesis test checks live answers against them.
"""

from __future__ import annotations

from marshmallow import fields

from orchestrator.accounts.api_keys import SCOPES
from schemas.api_keys import KeyOut
from schemas.balances import BalanceOut
from schemas.base import BaseSchema
from schemas.common import Time
from schemas.disputes import DisputeOut
from schemas.fields import Amount, Balance
from schemas.orders import EscrowOut, MilestoneOut, OrderOut

#: ``"unknown"`` where the provider could not be read (api.md §6.2, §6.3).
BALANCE_OR_UNKNOWN = {"type": "string", "pattern": r"^(-?[0-9]+\.[0-9]{2,7}|unknown)$"}


class Health(BaseSchema):
    status = fields.String(metadata={"enum": ["healthy"]})
    version = fields.String()
    timestamp = Time()


class DependencyHealth(BaseSchema):
    status = fields.String(required=True, metadata={"enum": ["healthy", "degraded", "unhealthy"]})
    latency = fields.Float(metadata={"description": "milliseconds"})
    error = fields.String()
    measuredAt = Time(metadata={"description": "when it was read (Horizon is probed at most every few seconds)"})
    treasury = fields.Dict(metadata={"description": "AirTM mode: the enterprise balance against the users' "
                                                    "balances (providers.md §3.1)"})


class OperationHealth(BaseSchema):
    """The monitor's lag, or the oldest pending command or open chain step, against its threshold; and
    ``network`` (``critical``) once the monitor has detected a network reset (DESIGN decision 35)."""

    status = fields.String(required=True, metadata={"enum": ["healthy", "degraded", "unhealthy", "critical"]})
    detectedAt = fields.String(metadata={"description": "network: when the reset was detected"})
    previousLedger = fields.Integer(metadata={"description": "network: the ledger of the cursor before the reset"})
    latestLedger = fields.Integer(metadata={"description": "network: the newest ledger of the new chain then"})
    enabled = fields.Boolean()
    thresholdSeconds = fields.Float()
    lagSeconds = fields.Float(allow_none=True)
    unseenPayments = fields.Integer(allow_none=True)
    count = fields.Integer()
    ageSeconds = fields.Float()
    error = fields.String(allow_none=True)
    measuredAt = Time(metadata={"description": "when the monitor's lag was read"})
    treasuryUsdc = fields.String(metadata={"description": "treasury: USDC the treasury accounts hold"})
    settlementUsdc = fields.String(metadata={"description": "treasury: USDC in the settlement account"})
    backedEscrows = fields.Integer(metadata={"description": "treasury: escrows funded from the pool"})
    backedAmount = fields.String(metadata={"description": "treasury: what those escrows hold"})
    headroom = fields.String(metadata={"description": "treasury: USDC free for new escrows"})
    lowWatermark = fields.String(metadata={"description": "treasury: TREASURY_LOW_WATERMARK"})


class Backlog(BaseSchema):
    """Empty when the figures could not be read (the database check says why)."""

    optional = True

    outboxUnrelayed = fields.Integer()
    outboxLagSeconds = fields.Float()
    commandsPending = fields.Integer()
    chainStepsOpen = fields.Integer()
    depositsPending = fields.Integer()


class DetailedHealth(BaseSchema):
    status = fields.String(metadata={"enum": ["healthy", "degraded", "unhealthy", "critical"]})
    version = fields.String()
    timestamp = Time()
    dependencies = fields.Dict(keys=fields.String(), values=fields.Nested(DependencyHealth))
    operations = fields.Dict(keys=fields.String(), values=fields.Nested(OperationHealth))
    backlog = fields.Nested(Backlog)


class Limit(BaseSchema):
    min = Amount()
    max = Amount()


class Limits(BaseSchema):
    order = fields.Nested(Limit)
    topup = fields.Nested(Limit)
    withdrawal = fields.Nested(Limit)


class Features(BaseSchema):
    milestones = fields.Boolean()
    disputes = fields.Boolean()
    sse = fields.Boolean()
    airtm = fields.Boolean()
    trustlessWork = fields.Boolean()
    manualBalanceOps = fields.Boolean()


class Providers(BaseSchema):
    payment = fields.String(metadata={"enum": ["crypto", "airtm"]})
    fiat = fields.String(metadata={"enum": ["airtm"]})
    escrow = fields.String(metadata={"enum": ["trustless_work"]})


class Config(BaseSchema):
    currencies = fields.List(fields.String(metadata={"enum": ["USD"]}))
    limits = fields.Nested(Limits)
    features = fields.Nested(Features)
    providers = fields.Nested(Providers)
    network = fields.String(metadata={"enum": ["sandbox", "testnet", "mainnet"]})
    version = fields.String()


class MaintenanceStatus(BaseSchema):
    enabled = fields.Boolean()
    message = fields.String(allow_none=True)
    enabledAt = Time(allow_none=True)
    enabledBy = fields.String(allow_none=True)


class CreatedKey(KeyOut):
    key = fields.String(metadata={"description": "the secret, shown only in this response"})


class PendingKey(BaseSchema):
    """A key creation answered 202 before it ran: the secret alone, so it is never lost (api.md §1.12)."""

    key = fields.String(required=True)


class Me(BaseSchema):
    type = fields.String(metadata={"enum": ["master", "api_key", "token"]})
    apiKeyId = fields.String()
    apiKeyName = fields.String()
    scopes = fields.List(fields.String(metadata={"enum": list(SCOPES)}))
    expiresAt = Time(allow_none=True)


class Token(BaseSchema):
    token = fields.String(metadata={"pattern": "^ohk_tok_"})
    keyId = fields.String()
    scopes = fields.List(fields.String(metadata={"enum": list(SCOPES)}))
    expiresAt = Time()


class BalancePair(BaseSchema):
    available = Balance()
    reserved = Balance()


class AdjustResult(BaseSchema):
    """An administrative balance operation (api.md §6.4); ``balance`` is the seller's for ``release``."""

    # required: a 202 (api.md §1.12) holds only these two until the operation finishes
    balance = fields.Nested(BalanceOut, required=True)
    operation = fields.String(required=True, metadata={"enum": [
        "credit", "debit", "reserve", "release", "cancel-reservation", "deduct-reserved"]})
    amount = Amount()
    auditLogId = fields.String()
    previousBalance = fields.Nested(BalancePair)
    newBalance = fields.Nested(BalancePair)


class VerifiedBalance(BalanceOut):
    providerVerified = fields.Boolean()
    providerBalance = fields.String(metadata={"openapi": BALANCE_OR_UNKNOWN})
    adjustments = fields.String(metadata={"openapi": BALANCE_OR_UNKNOWN})


class BalanceSync(BaseSchema):
    synced = fields.Boolean()
    localBalance = Balance()
    providerBalance = fields.String(metadata={"openapi": BALANCE_OR_UNKNOWN})
    discrepancy = fields.String(metadata={"openapi": BALANCE_OR_UNKNOWN})
    action = fields.String(metadata={"enum": ["none", "flagged"]})
    adjustments = fields.String(metadata={"openapi": BALANCE_OR_UNKNOWN})


class DisputeSummary(BaseSchema):
    id = fields.String()
    status = fields.String()
    openedBy = fields.String()
    reason = fields.String()
    resolutionDecision = fields.String(allow_none=True)


class OrderView(OrderOut):
    """An order as every order endpoint answers it: with its milestones, escrow and dispute summary."""

    milestones = fields.List(fields.Nested(MilestoneOut))
    escrow = fields.Nested(EscrowOut, allow_none=True)  # type: ignore[assignment]
    dispute = fields.Nested(DisputeSummary, allow_none=True)  # type: ignore[assignment]


class OrderSummary(BaseSchema):
    id = fields.String()
    status = fields.String()
    finalStatus = fields.String(allow_none=True)
    amount = Amount()
    currency = fields.String()
    buyerId = fields.String()
    sellerId = fields.String()


class Distribution(BaseSchema):
    userId = fields.String()
    role = fields.String(metadata={"enum": ["seller", "buyer"]})
    grossAmount = Amount()
    netAmount = Balance()


class Settlement(BaseSchema):
    """What the contract paid (DESIGN decision 1)."""

    grossAmount = Amount()
    trustlessFee = Balance()
    platformFee = Balance()
    netAmount = Balance()
    distributions = fields.List(fields.Nested(Distribution))


class DisputeView(DisputeOut):
    order = fields.Nested(OrderSummary)
    settlement = fields.Nested(Settlement, allow_none=True)


class Asset(BaseSchema):
    code = fields.String()
    issuer = fields.String()


class DepositInstructions(BaseSchema):
    """Crypto mode names the wallet's address and asset; AirTM mode leaves them null (api.md §2.4)."""

    provider = fields.String(metadata={"enum": ["crypto", "airtm"]})
    method = fields.String(metadata={"enum": ["stellar_address", "redirect_uri"]})
    address = fields.String(allow_none=True)
    asset = fields.Nested(Asset, allow_none=True)
    network = fields.String(allow_none=True)
    instructions = fields.String()


class AirtmLink(BaseSchema):
    """A user's AirTM link (api.md §5.4)."""

    userId = fields.String()
    airtmUserId = fields.String(allow_none=True)
    airtmLinkedAt = Time(allow_none=True)
    eligible = fields.Boolean()
    email = fields.String(allow_none=True)


class WebhookReceipt(BaseSchema):
    """What a provider webhook is answered (DESIGN decision 4): recorded, processed by an actor."""

    status = fields.String(required=True, metadata={"enum": ["ok"]})
    received = fields.Boolean(required=True)
    duplicate = fields.Boolean(metadata={"description": "present (true) when the message was already recorded"})


class StatementBalance(BaseSchema):
    available = Balance()
    reserved = Balance()
    total = Balance()


class Movement(BaseSchema):
    transactionId = fields.String()
    occurredAt = Time()
    kind = fields.String()
    orderId = fields.String(allow_none=True)
    withdrawalId = fields.String(allow_none=True)
    depositHash = fields.String(allow_none=True)
    topupId = fields.String(allow_none=True)
    reference = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    availableChange = Balance()
    reservedChange = Balance()
    amount = Balance()
    balanceAfter = fields.Nested(StatementBalance)


class StatementTotals(BaseSchema):
    credits = Balance()
    debits = Balance()
    net = Balance()
    count = fields.Integer()


class Statement(BaseSchema):
    """A user's account statement over a period (JSON; the same lines as CSV with ``Accept: text/csv``)."""

    userId = fields.String()
    currency = fields.String(metadata={"enum": ["USD"]})
    from_ = Time(data_key="from", allow_none=True)
    to = Time(allow_none=True)
    openingBalance = fields.Nested(StatementBalance)
    movements = fields.List(fields.Nested(Movement))
    closingBalance = fields.Nested(StatementBalance)
    totals = fields.Nested(StatementTotals)
    matchesBalance = fields.Boolean(allow_none=True, metadata={"description": "null for a period with an end"})
