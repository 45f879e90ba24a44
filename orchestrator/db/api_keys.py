"""API key rows (secrets stored only as salted hashes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, Update, bindparam, func, insert, select, tuple_, update

from orchestrator.db.prepared import Query
from orchestrator.db.tables import api_keys


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: list[str]
    owner_label: str | None
    salt: str
    key_hash: str
    masked_key: str
    status: str
    last_used_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None


def to_key(row: Any) -> ApiKey:
    r = row._mapping
    return ApiKey(r["id"], r["name"], list(r["scopes"]), r["owner_label"], r["salt"], r["key_hash"],
                  r["masked_key"], r["status"], r["last_used_at"], r["created_at"], r["revoked_at"])


#: Read on an authentication cache miss (``web/auth.py``).
BY_ID = Query(select(api_keys).where(api_keys.c.id == bindparam("key_id")))


def by_id(key_id: str) -> Select:
    return BY_ID.bind(key_id=key_id)  # type: ignore[no-any-return]


def get(conn: Connection, key_id: str, *, for_update: bool = False) -> ApiKey | None:
    stmt = by_id(key_id).with_for_update() if for_update else by_id(key_id)
    row = conn.execute(stmt).first()
    return to_key(row) if row else None


def create(conn: Connection, **values: Any) -> None:
    conn.execute(insert(api_keys).values(**values))


def revoke(conn: Connection, key_id: str) -> None:
    conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.status == "ACTIVE")
                 .values(status="REVOKED", revoked_at=func.now()))


def touch(key_id: str, *, now: datetime) -> Update:
    """Record use at most once a minute, so authentication rarely writes."""
    return (update(api_keys).where(api_keys.c.id == key_id,
                                   (api_keys.c.last_used_at.is_(None))
                                   | (api_keys.c.last_used_at < now - timedelta(minutes=1)))
            .values(last_used_at=now))


def page(*, owner_label: str | None, status: str | None, after: tuple[datetime, str] | None,
         limit: int) -> Select:
    stmt = select(api_keys)
    if owner_label is not None:
        stmt = stmt.where(api_keys.c.owner_label == owner_label)
    if status is not None:
        stmt = stmt.where(api_keys.c.status == status)
    if after is not None:
        stmt = stmt.where(tuple_(api_keys.c.created_at, api_keys.c.id) < tuple_(*after))
    return stmt.order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc()).limit(limit + 1)


def cursor_of(key_id: str) -> Select:
    return select(api_keys.c.created_at, api_keys.c.id).where(api_keys.c.id == key_id)
