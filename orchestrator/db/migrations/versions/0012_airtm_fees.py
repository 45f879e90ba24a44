"""AirTM fees and settled flows (issue 7 follow-up)

``topups.airtm_fee``: the fee AirTM reported for the pay-in (``amount - netAmount``), NULL until
AirTM reports it; the platform's fee expense is journaled once the top-up has succeeded and its fee
is known. A partial index lets the treasury check sum the AirTM accounts of the journal without
reading the rest, and one over the running flows finds the request that created a top-up or
withdrawal when another path (the periodic refresh, a webhook) settles it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 14:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AIRTM_ACCOUNTS = "account IN ('world:airtm', 'platform:airtm_fees')"


def upgrade() -> None:
    op.add_column("topups", sa.Column("airtm_fee", sa.Numeric(20, 7, asdecimal=True), nullable=True))
    op.create_index("ix_journal_entries_airtm", "journal_entries", ["account"], postgresql_include=["amount"],
                    postgresql_where=sa.text(_AIRTM_ACCOUNTS))
    op.create_index("ix_commands_running_flow", "commands", [sa.text("(result ->> 'id')")],
                    postgresql_where=sa.text("flow_status = 'RUNNING'"))


def downgrade() -> None:
    op.drop_index("ix_commands_running_flow", table_name="commands")
    op.drop_index("ix_journal_entries_airtm", table_name="journal_entries")
    op.drop_column("topups", "airtm_fee")
