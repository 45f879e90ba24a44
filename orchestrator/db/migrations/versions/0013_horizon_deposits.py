"""Deposit keys that survive a network reset, and contract transfers (DESIGN decisions 23 and 35)

A deposit was keyed by its operation id (a TOID: ledger, transaction order, operation index). After a
testnet reset ledgers start over, so a new chain's payment can carry the TOID of an old one and would be
taken for it and never credited. The key becomes ``<transaction hash>:<operation index>`` (and
``:<change index>`` for a contract transfer's ``asset_balance_changes`` entry), which is what the
journal's reference already holds; the TOID is kept in ``paging_token``. Existing rows are rewritten, so
a payment seen again after the upgrade still finds its row.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deposits", sa.Column("paging_token", sa.String(32), nullable=True))
    op.add_column("deposits", sa.Column("change_index", sa.Integer(), nullable=True))
    op.alter_column("deposits", "operation_id", type_=sa.String(100), existing_nullable=False)
    op.execute("UPDATE deposits SET paging_token = operation_id, operation_id = tx_hash || ':' || op_index")


def downgrade() -> None:
    op.execute("UPDATE deposits SET operation_id = paging_token WHERE change_index IS NULL")
    op.execute("DELETE FROM deposits WHERE change_index IS NOT NULL")
    op.alter_column("deposits", "operation_id", type_=sa.String(32), existing_nullable=False)
    op.drop_column("deposits", "change_index")
    op.drop_column("deposits", "paging_token")
