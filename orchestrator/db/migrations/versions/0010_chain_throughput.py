"""chain step throughput and retries: a step's earliest next run (issue 6)

``chain_steps.not_before`` holds when a step that retries failed work may run again, so the
scheduler's stall sweep does not mistake a step waiting out its backoff for one whose message is lost.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("chain_steps", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("chain_steps", "not_before")
