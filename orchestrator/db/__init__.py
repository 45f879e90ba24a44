"""Engine factories and the database-level helpers every query module shares."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

#: Pooled connections are replaced after this long. No pre-ping: it doubled every transaction's round
#: trips; a connection that died is discarded by the pool on its first error and the work retried.
RECYCLE_SECONDS = 1800


def sqlalchemy_url(database_url: str) -> str:
    """``postgresql://`` (the operators' form) with the psycopg 3 driver SQLAlchemy needs."""
    for scheme in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url[len(scheme):]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def libpq_url(database_url: str) -> str:
    """The plain ``postgresql://`` form psycopg's own connections (LISTEN) take."""
    return "postgresql://" + sqlalchemy_url(database_url)[len("postgresql+psycopg://"):]


def create_sync_engine(database_url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    """The engine actors and operator commands use."""
    return create_engine(sqlalchemy_url(database_url), pool_size=pool_size,
                         max_overflow=pool_size if max_overflow is None else max_overflow,
                         pool_recycle=RECYCLE_SECONDS)


def create_web_engine(database_url: str, *, pool_size: int = 10, autocommit: bool = False) -> AsyncEngine:
    """The web tier's async engines (psycopg 3 async driver): writes and the reads of varying shape.

    A fixed pool and no overflow: under load an overflow connection was opened for a request and closed
    again when it came back (SQLAlchemy keeps only ``pool_size`` idle), so a busy web process spent a
    tenth of its CPU connecting and disconnecting (py-spy of ``GET balance`` at 200 connections). A
    request waits for one of them instead; every statement holds it only for its round trip. The hot
    reads have a pool of their own (``orchestrator.db.prepared``).

    ``autocommit``: a pool of its own whose connections stay in autocommit, rather than one pool switched
    per checkout by ``execution_options(isolation_level=...)``, which set and reset the level on every
    checkout (9 % of a web process taking credits, issue 16 profile).
    """
    return create_async_engine(sqlalchemy_url(database_url), pool_size=pool_size, max_overflow=0,
                               pool_recycle=RECYCLE_SECONDS,
                               **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}))
