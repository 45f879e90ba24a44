"""User rows, read together with their balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select, tuple_
from sqlalchemy.dialects.postgresql import insert

from orchestrator.db.prepared import Query
from orchestrator.db.tables import balances, users


@dataclass(frozen=True)
class User:
    id: str
    external_user_id: str
    email: str | None
    type: str
    status: str
    airtm_user_id: str | None
    airtm_linked_at: datetime | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    available: Decimal
    reserved: Decimal
    balance_updated_at: datetime
    #: WALLET: a claim on the user's own wallet; AIRTM: on the AirTM enterprise account (decision 26).
    backing: str = "WALLET"


def _select() -> Select:
    return (select(users, balances.c.available, balances.c.reserved,
                   balances.c.updated_at.label("balance_updated_at"))
            .join(balances, balances.c.user_id == users.c.id))


def to_user(row: Any) -> User:
    r = row._mapping
    return User(r["id"], r["external_user_id"], r["email"], r["type"], r["status"], r["airtm_user_id"],
                r["airtm_linked_at"], r["metadata"], r["created_at"], r["updated_at"], r["available"],
                r["reserved"], r["balance_updated_at"], r["backing"])


#: A user with its balance: the web tier's hottest read (``GET /users/{id}/balance``), compiled once.
BY_ID = Query(_select().where(users.c.id == bindparam("user_id")))


def by_id(user_id: str) -> Select:
    return BY_ID.bind(user_id=user_id)  # type: ignore[no-any-return]


def subject() -> Select:
    """A user with its balance by the id bound as ``subject_id``: what a command on a user is recorded on
    (``commands.insert_on``)."""
    return _select().where(users.c.id == bindparam("subject_id"))


def exists(user_id: str) -> Select:
    return select(users.c.id).where(users.c.id == user_id)


def page(*, filters: dict[str, str], after: tuple[datetime, str] | None, limit: int) -> Select:
    """Newest first; ``after`` is the (created_at, id) of the cursor user."""
    stmt = _select()
    for name, column in (("type", users.c.type), ("status", users.c.status),
                         ("externalUserId", users.c.external_user_id), ("email", users.c.email)):
        if filters.get(name) is not None:
            stmt = stmt.where(column == filters[name])
    if after is not None:
        stmt = stmt.where(tuple_(users.c.created_at, users.c.id) < tuple_(*after))
    return stmt.order_by(users.c.created_at.desc(), users.c.id.desc()).limit(limit + 1)


def cursor_of(user_id: str) -> Select:
    return select(users.c.created_at, users.c.id).where(users.c.id == user_id)


def create(conn: Connection, *, id: str, external_user_id: str, email: str | None,
           type: str, metadata: dict[str, Any] | None, backing: str = "WALLET") -> bool:
    """Insert unless ``external_user_id`` exists; True when this call created the user."""
    created = conn.execute(insert(users).values(
        id=id, external_user_id=external_user_id, email=email, type=type, status="ACTIVE",
        metadata=metadata, backing=backing).on_conflict_do_nothing(index_elements=["external_user_id"])
        .returning(users.c.id)).first()
    return created is not None


def id_for_external(conn: Connection, external_user_id: str) -> str | None:
    return conn.execute(select(users.c.id).where(users.c.external_user_id == external_user_id)).scalar()


def ids_for_externals(conn: Connection, external_user_ids: list[str]) -> list[str]:
    return list(conn.execute(select(users.c.id).where(users.c.external_user_id.in_(external_user_ids))).scalars())


@dataclass(frozen=True)
class Backing:
    """What a user's balance is a claim on, and its AirTM link (``None`` when not linked)."""

    user_id: str
    backing: str
    airtm_user_id: str | None


def backings(conn: Connection, user_ids: list[str]) -> dict[str, Backing]:
    """Each user's backing and AirTM link, by id (unknown ids are absent)."""
    rows = conn.execute(select(users.c.id, users.c.backing, users.c.airtm_user_id)
                        .where(users.c.id.in_(user_ids))).all()
    return {r.id: Backing(r.id, r.backing, r.airtm_user_id) for r in rows}


def any_backed(conn: Connection, backing: str) -> bool:
    """Whether any user is backed by ``backing`` (after a switch, the other mode's users remain)."""
    return conn.execute(select(users.c.id).where(users.c.backing == backing).limit(1)).first() is not None
