"""Outbound webhooks: endpoints, deliveries and attempts (issue 17, DESIGN decisions 18, 28, 36)

One delivery row per (event, endpoint), created in the relay pass that positions the event, so an
event is never skipped or sent twice by our bookkeeping; many attempt rows per delivery.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, *, nullable: bool = False, now: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable,
                     server_default=sa.func.now() if now else None)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("lock_key", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("description", sa.String(500)),
        sa.Column("event_types", postgresql.ARRAY(sa.String(64)), nullable=False, server_default="{}"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("disabled_reason", sa.String(200)),
        sa.Column("secret", postgresql.JSONB, nullable=False),
        sa.Column("previous_secret", postgresql.JSONB),
        _time("previous_expires_at", nullable=True, now=False),
        _time("failing_since", nullable=True, now=False),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
        sa.UniqueConstraint("lock_key", name="uq_webhook_endpoints_lock_key"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("position", sa.BigInteger),
        sa.Column("body", postgresql.JSONB),
        sa.Column("status", sa.String(16), nullable=False, server_default="PENDING"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _time("next_attempt_at", nullable=True),
        _time("retry_from"),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"], ondelete="CASCADE",
                                name="fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_id"),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["endpoint_id", "next_attempt_at"],
                    postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index("ix_webhook_deliveries_page", "webhook_deliveries", ["endpoint_id", "created_at", "id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        _time("attempted_at"),
        sa.Column("status_code", sa.Integer),
        sa.Column("succeeded", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.String(500)),
        sa.Column("response_excerpt", sa.Text),
        _time("next_attempt_at", nullable=True, now=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_attempts"),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"], ondelete="CASCADE",
                                name="fk_webhook_attempts_delivery_id_webhook_deliveries"),
    )
    op.create_index("ix_webhook_attempts_delivery", "webhook_attempts", ["delivery_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
