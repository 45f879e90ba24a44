"""Treasury-backed escrow: each user's backing, platform-held wallets, each order's funding mode (decisions 25, 26)

``users.backing`` says what a user's balance is a claim on: its own wallet (``WALLET``) or the marketplace's
AirTM enterprise account (``AIRTM``). It is fixed when the user is created; existing users are decided from
the data: crypto mode has always given every user a wallet at creation and AirTM mode never did, so a user
with a wallet is ``WALLET``-backed and a user without one was created in AirTM mode and is ``AIRTM``-backed
(linked to AirTM or not yet). The platform user and the deployers have wallets, so they stay ``WALLET``.

``wallets.purpose`` marks the platform-held treasury and settlement accounts (``TREASURY`` | ``SETTLEMENT``;
NULL for a user's own wallet): their USDC is the pool's, not a user's, so they are neither watched for
deposits nor compared with a user's book. Orders and escrows record how the escrow is funded
(``WALLET`` | ``TREASURY``); a treasury-funded escrow records the treasury account in its roles
(``treasury_account``) and the one whose USDC funded it (``funder_account``, for the headroom).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("backing", sa.String(8), nullable=False, server_default="WALLET"))
    op.execute("UPDATE users SET backing = 'AIRTM' WHERE NOT EXISTS "
               "(SELECT 1 FROM wallets WHERE wallets.user_id = users.id)")
    op.create_check_constraint(op.f("ck_users_backing"), "users", "backing IN ('WALLET', 'AIRTM')")
    op.add_column("wallets", sa.Column("purpose", sa.String(16), nullable=True))
    for table in ("orders", "escrows"):
        op.add_column(table, sa.Column("funding_mode", sa.String(8), nullable=False, server_default="WALLET"))
        op.create_check_constraint(op.f(f"ck_{table}_funding_mode"), table, "funding_mode IN ('WALLET', 'TREASURY')")
    # an order's funding follows its buyer's backing (orders of AIRTM-backed buyers never had an escrow)
    op.execute("UPDATE orders SET funding_mode = 'TREASURY' FROM users "
               "WHERE users.id = orders.buyer_id AND users.backing = 'AIRTM'")
    op.add_column("escrows", sa.Column("treasury_account", sa.String(56), nullable=True))
    op.add_column("escrows", sa.Column("funder_account", sa.String(56), nullable=True))
    # the headroom query: treasury-funded escrows whose funding has not landed yet, per funder
    op.create_index("ix_escrows_funding", "escrows", ["funder_account"], postgresql_where=sa.text("status = 'FUNDING'"))
    # the pool's journal accounts are summed by /health/detailed and `check`, like world:airtm
    op.create_index("ix_journal_entries_pool", "journal_entries", ["account"], postgresql_include=["amount"],
                    postgresql_where=sa.text("account IN ('platform:treasury', 'platform:settlement')"))


def downgrade() -> None:
    op.drop_index("ix_journal_entries_pool", table_name="journal_entries")
    op.drop_index("ix_escrows_funding", table_name="escrows")
    op.drop_column("escrows", "funder_account")
    op.drop_column("escrows", "treasury_account")
    for table in ("orders", "escrows"):
        op.drop_constraint(f"ck_{table}_funding_mode", table, type_="check")
        op.drop_column(table, "funding_mode")
    op.drop_column("wallets", "purpose")
    op.drop_constraint("ck_users_backing", "users", type_="check")
    op.drop_column("users", "backing")
