"""audit hash chain, statements and reconciliation reports (issue 10)

The audit log becomes append-only and tamper-evident:

- ``seq`` (insertion order, only to break ties inside one relay pass), ``request_id``, and the chain
  stamp ``position``/``prev_hash``/``entry_hash``/``chained_at``, which the outbox relay writes once,
  in commit order (DESIGN decisions 14 and 15).
- How "never updated or deleted through the product" is enforced: a trigger, not a role. The app
  connects as the role that owns the schema (a superuser in development and tests), and owners and
  superusers bypass privileges, so a REVOKE alone would protect nothing. The ``audit_log_append_only``
  trigger refuses every DELETE and TRUNCATE and every UPDATE except the relay's one-time chain stamp
  (the four chain columns going from NULL to a value, every other column unchanged). ``REVOKE UPDATE,
  DELETE, TRUNCATE ... FROM PUBLIC`` is added as well, so any other role granted access later starts
  without them. Only a superuser who disables triggers (``session_replication_role = replica``) can
  change a row, and ``offerhub audit verify`` then names the entry.
- ``reconciliation_reports``: each reconciliation run's stored report.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 13:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONTENT = ("id", "occurred_at", "action", "resource_type", "resource_id", "user_id", "payload_before",
            "payload_after", "actor_type", "actor_id", "result", "error", "idempotency_key", "correlation_id",
            "request_id", "seq")
_CHAIN = ("position", "prev_hash", "entry_hash", "chained_at")


def upgrade() -> None:
    # api.md §6.3 writes the result DISCREPANCY_FOUND (17 characters) for a balance sync
    op.alter_column("audit_log", "result", type_=sa.String(length=32), existing_nullable=False)
    op.add_column("audit_log", sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False))
    op.add_column("audit_log", sa.Column("request_id", sa.String(length=128), nullable=True))
    op.add_column("audit_log", sa.Column("position", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("entry_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("chained_at", sa.DateTime(timezone=True), nullable=True))
    op.create_unique_constraint("uq_audit_log_position", "audit_log", ["position"])
    op.create_index("ix_audit_log_unchained", "audit_log", ["seq"], unique=False,
                    postgresql_where=sa.text("position IS NULL"))
    op.create_index("ix_audit_log_resource", "audit_log", ["resource_id"], unique=False)
    op.create_index("ix_audit_log_user", "audit_log", ["user_id"], unique=False)
    op.execute("INSERT INTO relay_state (name, last_position) VALUES ('audit', 0)")
    content_changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _CONTENT)
    stamped_before = " OR ".join(f"OLD.{c} IS NOT NULL" for c in _CHAIN)
    op.execute(f"""
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND NOT ({content_changed}) AND NOT ({stamped_before}) THEN
                RETURN NEW;  -- the relay's one-time chain stamp
            END IF;
            RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
        END $$""")
    op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
               "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
    op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
               "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC")

    op.create_table(
        "reconciliation_reports",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("differences", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("problems", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_reports")),
    )
    op.create_index("ix_reconciliation_reports_created", "reconciliation_reports", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reconciliation_reports_created", table_name="reconciliation_reports")
    op.drop_table("reconciliation_reports")
    op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.execute("DELETE FROM relay_state WHERE name = 'audit'")
    op.drop_index("ix_audit_log_user", table_name="audit_log")
    op.drop_index("ix_audit_log_resource", table_name="audit_log")
    op.drop_index("ix_audit_log_unchained", table_name="audit_log", postgresql_where=sa.text("position IS NULL"))
    op.drop_constraint("uq_audit_log_position", "audit_log", type_="unique")
    op.alter_column("audit_log", "result", type_=sa.String(length=16), existing_nullable=False)
    for column in ("chained_at", "entry_hash", "prev_hash", "position", "request_id", "seq"):
        op.drop_column("audit_log", column)
