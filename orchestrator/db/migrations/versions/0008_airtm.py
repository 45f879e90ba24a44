"""AirTM links, top-ups and AirTM withdrawals (issue 7)

Top-ups (api.md §8), the webhook messages received from AirTM (deduplicated on ``svix-id``,
providers.md §3.8), and on withdrawals whether the creator asked for an immediate commit (so a sweep
that re-drives a create sends the same request). Partial indexes keep the periodic refresh's scan
of open records small.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_TOPUP = "status IN ('TOPUP_CREATED', 'TOPUP_AWAITING_USER_CONFIRMATION', 'TOPUP_PROCESSING')"
_OPEN_AIRTM_WITHDRAWAL = ("destination_type <> 'crypto' AND status IN ('WITHDRAWAL_CREATED', "
                          "'WITHDRAWAL_COMMITTED', 'WITHDRAWAL_PENDING', 'WITHDRAWAL_PENDING_USER_ACTION')")


def upgrade() -> None:
    op.create_table(
        "topups",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=7), nullable=False),
        sa.Column("currency", sa.String(length=3), server_default="USD", nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("airtm_payin_id", sa.String(length=255), nullable=True),
        sa.Column("confirmation_uri", sa.String(length=2000), nullable=True),
        sa.Column("return_url", sa.String(length=2000), nullable=False),
        sa.Column("cancel_url", sa.String(length=2000), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_topups_amount_positive")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_topups_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topups")),
    )
    op.create_index("ix_topups_created", "topups", ["created_at", "id"], unique=False)
    op.create_index(op.f("ix_topups_user_id"), "topups", ["user_id"], unique=False)
    op.create_index("ix_topups_airtm_payin_id", "topups", ["airtm_payin_id"], unique=True)
    op.create_index("ix_topups_open", "topups", ["updated_at"], unique=False,
                    postgresql_where=sa.text(_OPEN_TOPUP))
    op.add_column("withdrawals", sa.Column("commit_requested", sa.Boolean(), server_default=sa.text("false"),
                                           nullable=False))
    op.create_index("ix_withdrawals_airtm_payout_id", "withdrawals", ["airtm_payout_id"], unique=True)
    op.create_index("ix_withdrawals_airtm_open", "withdrawals", ["updated_at"], unique=False,
                    postgresql_where=sa.text(_OPEN_AIRTM_WITHDRAWAL))
    op.create_table(
        "airtm_webhooks",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="PENDING", nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_airtm_webhooks")),
    )
    op.create_index("ix_airtm_webhooks_pending", "airtm_webhooks", ["received_at"], unique=False,
                    postgresql_where=sa.text("status = 'PENDING'"))


def downgrade() -> None:
    op.drop_index("ix_airtm_webhooks_pending", table_name="airtm_webhooks")
    op.drop_table("airtm_webhooks")
    op.drop_index("ix_withdrawals_airtm_open", table_name="withdrawals")
    op.drop_index("ix_withdrawals_airtm_payout_id", table_name="withdrawals")
    op.drop_column("withdrawals", "commit_requested")
    op.drop_index("ix_topups_open", table_name="topups")
    op.drop_index("ix_topups_airtm_payin_id", table_name="topups")
    op.drop_index(op.f("ix_topups_user_id"), table_name="topups")
    op.drop_index("ix_topups_created", table_name="topups")
    op.drop_table("topups")
