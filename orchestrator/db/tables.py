"""The one SQLAlchemy Core ``MetaData``; Alembic migrations are generated from it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from orchestrator.amounts import PLACES

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def Money(**kwargs: object) -> Column:  # noqa: N802 - reads as a column type
    """A money column: NUMERIC(20,7), Stellar's seven decimals, declared once."""
    return Column(Numeric(20, PLACES, asdecimal=True), nullable=False, **kwargs)  # type: ignore[arg-type]


def Timestamp(name: str, *, nullable: bool = False, default_now: bool = True) -> Column:  # noqa: N802
    return Column(name, DateTime(timezone=True), nullable=nullable,
                  server_default=func.now() if default_now else None)


api_keys = Table(
    "api_keys", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("owner_label", String(255)),
    Column("salt", String(64), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("masked_key", String(40), nullable=False),
    Column("status", String(16), nullable=False, server_default="ACTIVE"),
    Timestamp("last_used_at", nullable=True, default_now=False),
    Timestamp("created_at"),
    Timestamp("revoked_at", nullable=True, default_now=False),
)

users = Table(
    "users", metadata,
    Column("id", String(64), primary_key=True),
    Column("external_user_id", String(255), nullable=False, unique=True),
    Column("email", String(254)),
    Column("type", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("airtm_user_id", String(255)),
    Column("airtm_email", String(254)),
    Timestamp("airtm_linked_at", nullable=True, default_now=False),
    Column("metadata", JSONB),
    Timestamp("created_at"),
    Timestamp("updated_at"),
    Index("ix_users_created", "created_at", "id"),
)

balances = Table(
    "balances", metadata,
    Column("user_id", String(64), ForeignKey("users.id"), primary_key=True),
    Money(name="available", server_default=text("0")),
    Money(name="reserved", server_default=text("0")),
    Timestamp("updated_at"),
    CheckConstraint("available >= 0", name="available_not_negative"),
    CheckConstraint("reserved >= 0", name="reserved_not_negative"),
)

journal_transactions = Table(
    "journal_transactions", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("reference", String(255)),
    Column("command_id", String(64)),
    Column("description", String(500)),
    Timestamp("created_at"),
)

journal_entries = Table(
    "journal_entries", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("transaction_id", BigInteger, ForeignKey("journal_transactions.id"), nullable=False, index=True),
    Column("account", String(128), nullable=False),
    Column("user_id", String(64), index=True),
    Money(name="amount"),
    CheckConstraint("amount <> 0", name="amount_not_zero"),
)

commands = Table(
    "commands", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("status", String(16), nullable=False, server_default="PENDING"),
    Column("result", JSONB),
    Column("error", JSONB),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64)),
    Column("request_id", String(128)),
    Column("idempotency_key", String(64)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # A command that starts ledger work (escrow deploy, funding …) stays RUNNING here until its chain
    # steps finish; the waiting request answers 200 then, or 202 while it runs.
    Column("flow_status", String(16)),
    Column("flow_error", JSONB),
    Timestamp("created_at"),
    Timestamp("published_at", nullable=True, default_now=False),
    Timestamp("completed_at", nullable=True, default_now=False),
    Index("ix_commands_pending", "created_at", postgresql_where=text("status = 'PENDING'")),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", String(64), nullable=False),
    Column("key", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("command_id", String(64)),
    Column("response_status", Integer),
    Column("response_body", JSONB),
    Timestamp("created_at"),
    Timestamp("completed_at", nullable=True, default_now=False),
    PrimaryKeyConstraint("scope", "key"),
)

outbox = Table(
    "outbox", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("position", BigInteger, unique=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("event_type", String(64), nullable=False),
    Column("aggregate_type", String(32), nullable=False),
    Column("aggregate_id", String(64), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Timestamp("occurred_at"),
    Timestamp("relayed_at", nullable=True, default_now=False),
    Index("ix_outbox_unrelayed", "id", postgresql_where=text("position IS NULL")),
    Index("ix_outbox_relayed_at", "relayed_at"),
)

relay_state = Table(
    "relay_state", metadata,
    Column("name", String(32), primary_key=True),
    Column("last_position", BigInteger, nullable=False, server_default=text("0")),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", String(64), primary_key=True),
    Timestamp("occurred_at"),
    Column("action", String(64), nullable=False),
    Column("resource_type", String(32), nullable=False),
    Column("resource_id", String(64)),
    Column("user_id", String(64)),
    Column("payload_before", JSONB),
    Column("payload_after", JSONB),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64)),
    Column("result", String(16), nullable=False, server_default="SUCCESS"),
    Column("error", JSONB),
    Column("idempotency_key", String(64)),
    Column("correlation_id", String(128)),
    Index("ix_audit_log_occurred", "occurred_at", "id"),
)

maintenance = Table(
    "maintenance", metadata,
    Column("id", Integer, primary_key=True),
    Column("enabled", Boolean, nullable=False, server_default=text("false")),
    Column("message", String(500)),
    Timestamp("enabled_at", nullable=True, default_now=False),
    Column("enabled_by", String(64)),
    CheckConstraint("id = 1", name="singleton"),
)

cursors = Table(
    "cursors", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
    Timestamp("updated_at"),
)

wallets = Table(
    "wallets", metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=False, unique=True),
    Column("public_key", String(56), nullable=False, unique=True),
    Column("sealed_secret", Text, nullable=False),
    Column("nonce", String(32), nullable=False),
    Column("key_version", String(16), nullable=False),
    Column("type", String(16), nullable=False, server_default="INVISIBLE"),
    Column("status", String(16), nullable=False, server_default="CREATED"),
    Column("funded", Boolean, nullable=False, server_default=text("false")),
    Column("trustline_ready", Boolean, nullable=False, server_default=text("false")),
    Column("activation_tx_hash", String(64)),
    Timestamp("activated_at", nullable=True, default_now=False),
    Timestamp("created_at"),
    Timestamp("updated_at"),
)

chain_steps = Table(
    "chain_steps", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(48), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("source_account", String(56), nullable=False),
    Column("signers", ARRAY(Text), nullable=False),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", String(16), nullable=False, server_default="PENDING"),
    Column("unsigned_xdr", Text),
    Column("signed_xdr", Text),
    Column("tx_hash", String(64)),
    Column("sequence", BigInteger),
    Timestamp("max_time", nullable=True, default_now=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("result", JSONB),
    Timestamp("created_at"),
    Timestamp("updated_at"),
    Timestamp("confirmed_at", nullable=True, default_now=False),
    # a step retrying failed work runs no earlier than this (migration 0010)
    Timestamp("not_before", nullable=True, default_now=False),
    Index("ix_chain_steps_subject", "subject_type", "subject_id"),
    Index("ix_chain_steps_open", "updated_at", postgresql_where=text("status IN ('PENDING', 'SIGNED')")),
)

deposits = Table(
    "deposits", metadata,
    # the deposit's key: "<tx hash>:<op index>" or, for a contract transfer, "<tx hash>:<op index>:<change>"
    Column("operation_id", String(100), primary_key=True),
    Column("tx_hash", String(64), nullable=False),
    Column("op_index", Integer, nullable=False),
    Column("change_index", Integer),
    Column("paging_token", String(32)),
    Column("wallet_id", String(64), ForeignKey("wallets.id"), nullable=False),
    Column("user_id", String(64), nullable=False, index=True),
    Money(name="amount"),
    Column("from_account", String(69)),
    Column("source", String(32), nullable=False, server_default="stellar_deposit"),
    Column("status", String(16), nullable=False, server_default="PENDING"),
    Timestamp("ledger_time", nullable=True, default_now=False),
    Timestamp("created_at"),
    Timestamp("credited_at", nullable=True, default_now=False),
    Index("ix_deposits_pending", "created_at", postgresql_where=text("status = 'PENDING'")),
)

orders = Table(
    "orders", metadata,
    Column("id", String(64), primary_key=True),
    Column("client_order_ref", String(100), unique=True),
    Column("buyer_id", String(64), ForeignKey("users.id"), nullable=False, index=True),
    Column("seller_id", String(64), ForeignKey("users.id"), nullable=False, index=True),
    Money(name="amount"),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("status", String(32), nullable=False),
    Column("final_status", String(16)),
    Column("title", String(255), nullable=False),
    Column("description", String(2000)),
    Column("metadata", JSONB),
    Column("canceled_by", String(100)),
    Column("cancel_reason", String(500)),
    # what the contract actually paid, once settled: gross, each fee, and each party's net (decision 1)
    Column("settlement", JSONB),
    Timestamp("created_at"),
    Timestamp("updated_at"),
    Timestamp("closed_at", nullable=True, default_now=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    Index("ix_orders_created", "created_at", "id"),
)

milestones = Table(
    "milestones", metadata,
    Column("id", String(64), primary_key=True),
    Column("order_id", String(64), ForeignKey("orders.id"), nullable=False),
    Column("milestone_ref", String(100), nullable=False),
    Column("position", Integer, nullable=False),
    Column("title", String(255), nullable=False),
    Money(name="amount"),
    Column("status", String(16), nullable=False, server_default="OPEN"),
    Timestamp("completed_at", nullable=True, default_now=False),
    Timestamp("created_at"),
    UniqueConstraint("order_id", "milestone_ref", name="uq_milestones_order_ref"),
)

escrows = Table(
    "escrows", metadata,
    Column("id", String(64), primary_key=True),
    Column("order_id", String(64), ForeignKey("orders.id"), nullable=False),
    Column("trustless_contract_id", String(56)),
    Column("status", String(16), nullable=False),
    Money(name="amount"),
    Column("deploy_tx_hash", String(64)),
    Timestamp("funded_at", nullable=True, default_now=False),
    Timestamp("released_at", nullable=True, default_now=False),
    Timestamp("refunded_at", nullable=True, default_now=False),
    Timestamp("created_at"),
    Timestamp("updated_at"),
    Index("ix_escrows_live_order", "order_id", unique=True, postgresql_where=text("status <> 'DISCARDED'")),
)

disputes = Table(
    "disputes", metadata,
    Column("id", String(64), primary_key=True),
    Column("order_id", String(64), ForeignKey("orders.id"), nullable=False, unique=True),
    Column("opened_by", String(16), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("evidence", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("status", String(16), nullable=False),
    Column("assigned_to", String(255)),
    Column("assignment_notes", String(2000)),
    Column("resolution_decision", String(16)),
    Column("release_amount", Numeric(20, PLACES, asdecimal=True)),
    Column("refund_amount", Numeric(20, PLACES, asdecimal=True)),
    Column("decision_note", String(2000)),
    Column("resolved_by", String(255)),
    Timestamp("resolved_at", nullable=True, default_now=False),
    Timestamp("created_at"),
    Timestamp("updated_at"),
    Index("ix_disputes_created", "created_at", "id"),
)

withdrawals = Table(
    "withdrawals", metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=False, index=True),
    Money(name="amount"),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("status", String(40), nullable=False),
    Column("destination_type", String(16), nullable=False),
    Column("destination_ref", String(255), nullable=False),
    Column("committed", Boolean, nullable=False, server_default=text("false")),
    Column("transaction_hash", String(64)),
    Column("airtm_payout_id", String(255)),
    Column("fee", Numeric(20, PLACES, asdecimal=True)),
    Column("failure_reason", String(500)),
    Column("description", String(500)),
    Timestamp("created_at"),
    Timestamp("updated_at"),
    Timestamp("completed_at", nullable=True, default_now=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    Index("ix_withdrawals_created", "created_at", "id"),
)

# --- AirTM (issue 7): top-ups, webhook messages, and the commit a withdrawal's creator asked for ---

OPEN_TOPUP_STATUSES = ("TOPUP_CREATED", "TOPUP_AWAITING_USER_CONFIRMATION", "TOPUP_PROCESSING")
OPEN_WITHDRAWAL_STATUSES = ("WITHDRAWAL_CREATED", "WITHDRAWAL_COMMITTED", "WITHDRAWAL_PENDING",
                            "WITHDRAWAL_PENDING_USER_ACTION")

topups = Table(
    "topups", metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=False, index=True),
    Money(name="amount"),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("status", String(40), nullable=False),
    Column("airtm_payin_id", String(255)),
    Column("confirmation_uri", String(2000)),
    Column("return_url", String(2000), nullable=False),
    Column("cancel_url", String(2000), nullable=False),
    Timestamp("expires_at", nullable=True, default_now=False),
    Column("failure_reason", String(500)),
    Column("description", String(500)),
    Column("metadata", JSONB),
    Timestamp("created_at"),
    Timestamp("updated_at"),
    CheckConstraint("amount > 0", name="amount_positive"),
    Index("ix_topups_created", "created_at", "id"),
    Index("ix_topups_airtm_payin_id", "airtm_payin_id", unique=True),
    Index("ix_topups_open", "updated_at",
          postgresql_where=text("status IN ('TOPUP_CREATED', 'TOPUP_AWAITING_USER_CONFIRMATION', "
                                "'TOPUP_PROCESSING')")),
)

withdrawals.append_column(Column("commit_requested", Boolean, nullable=False, server_default=text("false")))
Index("ix_withdrawals_airtm_payout_id", withdrawals.c.airtm_payout_id, unique=True)
Index("ix_withdrawals_airtm_open", withdrawals.c.updated_at,
      postgresql_where=text("destination_type <> 'crypto' AND status IN ('WITHDRAWAL_CREATED', "
                            "'WITHDRAWAL_COMMITTED', 'WITHDRAWAL_PENDING', 'WITHDRAWAL_PENDING_USER_ACTION')"))

airtm_webhooks = Table(
    "airtm_webhooks", metadata,
    Column("message_id", String(128), primary_key=True),
    Column("event_type", String(64), nullable=False),
    Column("body", JSONB, nullable=False),
    Column("status", String(16), nullable=False, server_default="PENDING"),
    Column("outcome", String(200)),
    Timestamp("received_at"),
    Timestamp("processed_at", nullable=True, default_now=False),
    Index("ix_airtm_webhooks_pending", "received_at", postgresql_where=text("status = 'PENDING'")),
)

# --- audit chain and reconciliation (issue 10; migration 0009) ---------------------------------------
# The chain columns are appended to ``audit_log`` here so this block stays self-contained.
for _column in (
    Column("seq", BigInteger, Identity(), nullable=False),  # insertion order: ties inside one relay pass
    Column("request_id", String(128)),
    Column("position", BigInteger, unique=True),  # the relay's commit-ordered chain position
    Column("prev_hash", String(64)),
    Column("entry_hash", String(64)),
    Column("chained_at", DateTime(timezone=True)),
):
    audit_log.append_column(_column)
audit_log.c.result.type = String(32)  # SUCCESS | FAILURE | DISCREPANCY_FOUND (api.md §6.3)
Index("ix_audit_log_unchained", audit_log.c.seq, postgresql_where=text("position IS NULL"))
Index("ix_audit_log_resource", audit_log.c.resource_id)
Index("ix_audit_log_user", audit_log.c.user_id)

reconciliation_reports = Table(
    "reconciliation_reports", metadata,
    Column("id", String(64), primary_key=True),
    Timestamp("created_at"),
    Column("trigger", String(16), nullable=False),  # cli | scheduler
    Column("status", String(16), nullable=False),  # OK | DIFFERENCES
    Column("summary", JSONB, nullable=False),
    Column("differences", JSONB, nullable=False),
    Column("problems", JSONB, nullable=False),
    Index("ix_reconciliation_reports_created", "created_at"),
)

# --- operations (issue 9): figures the scheduler measures for /metrics and /health/detailed ---

#: One row per figure (e.g. ``reconciliation``): the latest measurement and when it was taken.
operation_figures = Table(
    "operation_figures", metadata,
    Column("name", String(64), primary_key=True),
    Column("figures", JSONB, nullable=False),
    Column("measured_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- AirTM fees and settled flows (issue 7 follow-up, migration 0012) ---

#: The fee AirTM reported for the pay-in; NULL until reported (the platform's expense, journaled once).
topups.append_column(Column("airtm_fee", Numeric(20, PLACES, asdecimal=True)))
Index("ix_journal_entries_airtm", journal_entries.c.account, postgresql_include=["amount"],
      postgresql_where=text("account IN ('world:airtm', 'platform:airtm_fees')"))
Index("ix_commands_running_flow", commands.c.result["id"].astext, postgresql_where=text("flow_status = 'RUNNING'"))

# --- outbound webhooks (issue 17, DESIGN decisions 18, 28, 36; migration 0014) ---

#: A marketplace's webhook endpoint. Secrets are sealed like wallet secrets (orchestrator/crypto.py, the
#: endpoint id as associated data); ``previous_secret`` still signs until ``previous_expires_at``.
#: ``lock_key`` numbers the endpoint's advisory lock: one worker drains an endpoint at a time.
webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("id", String(64), primary_key=True),
    Column("lock_key", BigInteger, Identity(), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("description", String(500)),
    Column("event_types", ARRAY(String(64)), nullable=False, server_default="{}"),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("disabled_reason", String(200)),
    Column("secret", JSONB, nullable=False),
    Column("previous_secret", JSONB),
    Timestamp("previous_expires_at", nullable=True, default_now=False),
    Timestamp("failing_since", nullable=True, default_now=False),
    Timestamp("created_at"),
    Timestamp("updated_at"),
)

#: One row per (event, endpoint), created in the relay pass that positions the event (or by a replay);
#: ``body`` is set only for ``webhook.test``, which never enters the outbox.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", String(64), primary_key=True),
    Column("endpoint_id", String(64), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("position", BigInteger),
    Column("body", JSONB),
    Column("status", String(16), nullable=False, server_default="PENDING"),  # PENDING | SUCCEEDED | FAILED
    Column("attempts", Integer, nullable=False, server_default="0"),
    Timestamp("next_attempt_at", nullable=True, default_now=True),
    Timestamp("retry_from"),  # when this round of tries began (creation, a manual retry, a replay)
    Timestamp("created_at"),
    Timestamp("updated_at"),
    UniqueConstraint("endpoint_id", "event_id"),
    Index("ix_webhook_deliveries_due", "endpoint_id", "next_attempt_at", postgresql_where=text("status = 'PENDING'")),
    Index("ix_webhook_deliveries_page", "endpoint_id", "created_at", "id"),
)

#: Every HTTP attempt of a delivery: outcome, latency, the first 4 KB of the answer, the next try.
webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("delivery_id", String(64), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False),
    Timestamp("attempted_at"),
    Column("status_code", Integer),
    Column("succeeded", Boolean, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("error", String(500)),
    Column("response_excerpt", Text),
    Timestamp("next_attempt_at", nullable=True, default_now=False),
    Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)

# --- treasury-backed escrow (DESIGN decisions 25 and 26, migration 0015) ---

#: What a user's balance is a claim on: its own wallet (WALLET) or the AirTM enterprise account (AIRTM).
users.append_column(Column("backing", String(8), nullable=False, server_default="WALLET"))
users.append_constraint(CheckConstraint("backing IN ('WALLET', 'AIRTM')", name="backing"))
#: TREASURY | SETTLEMENT for the platform-held pool accounts; NULL for a user's own wallet.
wallets.append_column(Column("purpose", String(16)))
for _table in (orders, escrows):
    _table.append_column(Column("funding_mode", String(8), nullable=False, server_default="WALLET"))
    _table.append_constraint(CheckConstraint("funding_mode IN ('WALLET', 'TREASURY')",
                                             name="funding_mode"))
#: The treasury account in a treasury-funded escrow's roles, and the one whose USDC funded it.
escrows.append_column(Column("treasury_account", String(56)))
escrows.append_column(Column("funder_account", String(56)))
Index("ix_escrows_funding", escrows.c.funder_account, postgresql_where=text("status = 'FUNDING'"))
Index("ix_journal_entries_pool", journal_entries.c.account, postgresql_include=["amount"],
      postgresql_where=text("account IN ('platform:treasury', 'platform:settlement')"))
