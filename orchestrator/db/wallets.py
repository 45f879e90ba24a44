"""Wallet rows (the sealed secret never leaves this module and wallets.signing_keypair)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, insert, select, update

from orchestrator.db.prepared import Query
from orchestrator.db.tables import wallets


@dataclass(frozen=True)
class Wallet:
    id: str
    user_id: str
    public_key: str
    type: str
    status: str
    funded: bool
    trustline_ready: bool
    activation_tx_hash: str | None
    activated_at: datetime | None
    created_at: datetime

    def __repr__(self) -> str:
        return f"Wallet({self.id}, {self.public_key}, {self.status})"


_PUBLIC = (wallets.c.id, wallets.c.user_id, wallets.c.public_key, wallets.c.type, wallets.c.status,
           wallets.c.funded, wallets.c.trustline_ready, wallets.c.activation_tx_hash, wallets.c.activated_at,
           wallets.c.created_at)


def to_wallet(row: Any) -> Wallet:
    return Wallet(*(row._mapping[c.name] for c in _PUBLIC))


def of_user(user_id: str) -> Select:
    return select(*_PUBLIC).where(wallets.c.user_id == user_id)


def by_id(wallet_id: str) -> Select:
    return select(*_PUBLIC).where(wallets.c.id == wallet_id)


def get(conn: Connection, wallet_id: str, *, for_update: bool = False) -> Wallet | None:
    stmt = by_id(wallet_id).with_for_update() if for_update else by_id(wallet_id)
    row = conn.execute(stmt).first()
    return to_wallet(row) if row else None


_OF_USER = Query(select(*_PUBLIC).where(wallets.c.user_id == bindparam("user_id")))
_SEALED = Query(select(wallets.c.sealed_secret, wallets.c.nonce, wallets.c.key_version)
                .where(wallets.c.public_key == bindparam("public_key")))


def of_user_now(conn: Connection, user_id: str) -> Wallet | None:
    row = _OF_USER.run(conn, user_id=user_id).fetchone()
    return to_wallet(row) if row else None


def by_public_key(conn: Connection, public_key: str) -> Wallet | None:
    """A user's own wallet by its key; the pool's treasury and settlement accounts are not users' wallets
    (their USDC is never a deposit: the monitor asks here)."""
    row = conn.execute(select(*_PUBLIC).where(wallets.c.public_key == public_key,
                                              wallets.c.purpose.is_(None))).first()
    return to_wallet(row) if row else None


def create(conn: Connection, *, id: str, user_id: str, public_key: str, ciphertext: str,
           nonce: str, key_version: str) -> None:
    conn.execute(insert(wallets).values(id=id, user_id=user_id, public_key=public_key, sealed_secret=ciphertext,
                                        nonce=nonce, key_version=key_version))


def sealed(conn: Connection, public_key: str) -> tuple[str, str, str] | None:
    """(ciphertext, nonce, key version) of a wallet's secret."""
    row = _SEALED.run(conn, public_key=public_key).fetchone()
    return (row.sealed_secret, row.nonce, row.key_version) if row else None


def sealed_page(conn: Connection, *, after: str, limit: int) -> list[tuple[str, str, str, str, str]]:
    """(id, public key, ciphertext, nonce, version) in id order, for key rotation."""
    rows = conn.execute(select(wallets.c.id, wallets.c.public_key, wallets.c.sealed_secret, wallets.c.nonce,
                               wallets.c.key_version).where(wallets.c.id > after)
                        .order_by(wallets.c.id).limit(limit).with_for_update()).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def reseal(conn: Connection, wallet_id: str, *, ciphertext: str, nonce: str, key_version: str) -> None:
    conn.execute(update(wallets).where(wallets.c.id == wallet_id).values(
        sealed_secret=ciphertext, nonce=nonce, key_version=key_version, updated_at=func.now()))


def mark(conn: Connection, wallet_id: str, **values: Any) -> None:
    conn.execute(update(wallets).where(wallets.c.id == wallet_id).values(updated_at=func.now(), **values))


def activate(conn: Connection, wallet_id: str, *, tx_hash: str | None) -> None:
    conn.execute(update(wallets).where(wallets.c.id == wallet_id).values(
        status="ACTIVE", funded=True, trustline_ready=True, activation_tx_hash=tx_hash, activated_at=func.now(),
        updated_at=func.now()))


def watched(conn: Connection) -> dict[str, tuple[str, str]]:
    """Every wallet the monitor watches: public key -> (wallet id, user id)."""
    rows = conn.execute(select(wallets.c.public_key, wallets.c.id, wallets.c.user_id)
                        .where(wallets.c.purpose.is_(None))).all()
    return {r.public_key: (r.id, r.user_id) for r in rows}


def active_keys_of_users(conn: Connection, user_ids: list[str]) -> list[str]:
    """The public keys of those users' ACTIVE wallets."""
    if not user_ids:
        return []
    return list(conn.execute(select(wallets.c.public_key).where(wallets.c.user_id.in_(user_ids),
                                                                wallets.c.status == "ACTIVE")
                             .order_by(wallets.c.public_key)).scalars())


@dataclass(frozen=True)
class PoolAccount:
    """A platform-held treasury or settlement account (DESIGN decision 25)."""

    public_key: str
    purpose: str
    status: str


def pool(conn: Connection, purpose: str | None = None) -> list[PoolAccount]:
    """The treasury accounts and the settlement account (or those of one ``purpose``), by key."""
    stmt = (select(wallets.c.public_key, wallets.c.purpose, wallets.c.status).where(wallets.c.purpose.is_not(None))
            .order_by(wallets.c.public_key))
    if purpose is not None:
        stmt = stmt.where(wallets.c.purpose == purpose)
    return [PoolAccount(r.public_key, r.purpose, r.status) for r in conn.execute(stmt).all()]
