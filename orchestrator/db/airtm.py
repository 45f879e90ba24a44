"""AirTM links on user rows, AirTM withdrawals' work list, and the webhook messages received."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Insert, Interval, Select, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from orchestrator.db.tables import (
    OPEN_WITHDRAWAL_STATUSES,
    airtm_webhooks,
    balances,
    journal_entries,
    users,
    withdrawals,
)

#: The journal's AirTM accounts (orchestrator/airtm/topups.py, orchestrator/money/ledger.py; literal here: the db
#: layer imports nothing above it).
WORLD_AIRTM, AIRTM_FEES = "world:airtm", "platform:airtm_fees"


@dataclass(frozen=True)
class Link:
    user_id: str
    airtm_user_id: str | None
    email: str | None
    linked_at: datetime | None


def link_of(user_id: str) -> Select:
    return select(users.c.id, users.c.airtm_user_id, users.c.airtm_email, users.c.airtm_linked_at).where(
        users.c.id == user_id)


def to_link(row: Any) -> Link:
    return Link(row.id, row.airtm_user_id, row.airtm_email, row.airtm_linked_at)


def lock_link(conn: Connection, user_id: str) -> Link | None:
    row = conn.execute(link_of(user_id).with_for_update()).first()
    return to_link(row) if row else None


def store_link(conn: Connection, user_id: str, *, airtm_user_id: str, email: str, linked_at: datetime) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(
        airtm_user_id=airtm_user_id, airtm_email=email, airtm_linked_at=linked_at, updated_at=func.now()))


def open_withdrawals(conn: Connection, *, period: timedelta, limit: int = 200) -> list[str]:
    """Open AirTM withdrawals not updated for ``period`` (or a tenth of their age if longer): the
    periodic refresh's work list."""
    # a custom "/": SQLAlchemy's Interval type has no division (a deprecation warning, an error later)
    age = (func.now() - withdrawals.c.created_at).self_group()
    quiet = func.greatest(period, age.op("/", return_type=Interval())(10))
    return list(conn.execute(select(withdrawals.c.id).where(
        withdrawals.c.destination_type != "crypto", withdrawals.c.status.in_(OPEN_WITHDRAWAL_STATUSES),
        withdrawals.c.updated_at < func.now() - quiet).order_by(withdrawals.c.updated_at).limit(limit)).scalars())


def touch_withdrawals(conn: Connection, ids: list[str]) -> None:
    if ids:
        conn.execute(update(withdrawals).where(withdrawals.c.id.in_(ids)).values(updated_at=func.now()))


def withdrawal_for_payout(conn: Connection, payout_id: str) -> str | None:
    return conn.execute(select(withdrawals.c.id).where(withdrawals.c.airtm_payout_id == payout_id)).scalar()


# Webhook messages (providers.md §3.8): recorded once per svix-id, processed by an actor.

def record_webhook(message_id: str, event_type: str, body: dict[str, Any]) -> Insert:
    """Insert the message unless its ``svix-id`` is known; ``RETURNING`` tells a new one from a duplicate."""
    return (pg_insert(airtm_webhooks).values(message_id=message_id, event_type=event_type, body=body)
            .on_conflict_do_nothing(index_elements=[airtm_webhooks.c.message_id])
            .returning(airtm_webhooks.c.message_id))


@dataclass(frozen=True)
class WebhookMessage:
    message_id: str
    event_type: str
    body: dict[str, Any]
    status: str


def lock_webhook(conn: Connection, message_id: str) -> WebhookMessage | None:
    row = conn.execute(select(airtm_webhooks).where(airtm_webhooks.c.message_id == message_id)
                       .with_for_update()).first()
    return WebhookMessage(row.message_id, row.event_type, row.body, row.status) if row else None


def finish_webhook(conn: Connection, message_id: str, *, status: str, outcome: str) -> None:
    conn.execute(update(airtm_webhooks).where(airtm_webhooks.c.message_id == message_id).values(
        status=status, outcome=outcome[:200], processed_at=func.now()))


def pending_webhooks(conn: Connection, *, older_than: datetime, limit: int = 500) -> list[str]:
    """Recorded but unprocessed messages whose actor message may have been lost; each is marked (in
    ``processed_at``, still PENDING) so the next sweep waits another period before sending it again."""
    last_try = func.coalesce(airtm_webhooks.c.processed_at, airtm_webhooks.c.received_at)
    ids = list(conn.execute(select(airtm_webhooks.c.message_id).where(
        airtm_webhooks.c.status == "PENDING", last_try < older_than)
        .order_by(airtm_webhooks.c.received_at).limit(limit)).scalars())
    if ids:
        conn.execute(update(airtm_webhooks).where(airtm_webhooks.c.message_id.in_(ids))
                     .values(processed_at=func.now()))
    return ids


def claims_query() -> Select:
    """What the book says about the enterprise account, in one statement (one snapshot):

    ``owed``: users' ``available + reserved``; ``flight``: open AirTM withdrawals' amounts;
    ``unsent``: those of them whose payout AirTM has not created yet (debited here, still in the
    enterprise's ``available`` there); ``book``: what the journal says the flows through AirTM left in
    the enterprise account (minus ``world:airtm`` and the pool's accounts); ``fees``: AirTM fees the
    platform has paid."""
    # only AIRTM-backed users' balances are claims on the enterprise account (decision 26); a WALLET-backed
    # user's (the platform's fees among them) is held by its wallet on the ledger
    owed = (select(func.coalesce(func.sum(balances.c.available + balances.c.reserved), 0))
            .select_from(balances.join(users, users.c.id == balances.c.user_id))
            .where(users.c.backing == "AIRTM").scalar_subquery())
    open_airtm = (withdrawals.c.destination_type != "crypto", withdrawals.c.status.in_(OPEN_WITHDRAWAL_STATUSES))
    flight = select(func.coalesce(func.sum(withdrawals.c.amount), 0)).where(*open_airtm).scalar_subquery()
    unsent = (select(func.coalesce(func.sum(withdrawals.c.amount), 0))
              .where(*open_airtm, withdrawals.c.airtm_payout_id.is_(None)).scalar_subquery())

    def minus_sum(account: str) -> Any:  # the partial index ix_journal_entries_airtm answers these (a
        # literal, our own constant, so the planner can match the index's predicate)
        return (select(-func.coalesce(func.sum(journal_entries.c.amount), 0))
                .where(journal_entries.c.account == literal_column(f"'{account}'")).scalar_subquery())

    # a claim that went into escrow through the treasury pool leaves world:airtm for the pool's accounts
    # (orchestrator.accounts.treasury): the three together are what the flows through AirTM left at AirTM
    book = minus_sum(WORLD_AIRTM) + minus_sum("platform:treasury") + minus_sum("platform:settlement")
    return select(owed.label("owed"), flight.label("flight"), unsent.label("unsent"),
                  book.label("book"), minus_sum(AIRTM_FEES).label("fees"))
