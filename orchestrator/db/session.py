"""Transactions on the synchronous engine: the one place the core's unit of work touches SQLAlchemy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

#: The connection and engine types, for the core's annotations (the core imports no SQLAlchemy itself).
Conn = Connection
EngineType = Engine
T = TypeVar("T")


#: The first statement of a read-only transaction that must see one moment: every statement in it reads
#: the same snapshot (a statement, an audit-chain walk while relays keep committing).
SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


def first_line(error: sa_exc.DBAPIError) -> str:
    """What PostgreSQL or the driver said, on one line (a "does not answer yet" message quotes it)."""
    return (str(error.orig or error).splitlines() or [type(error).__name__])[0]


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside ``BEGIN``; rolled back unless ``commit`` was called on it."""
    with engine.connect() as conn:
        conn.begin()
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads, its transaction ended with ``COMMIT``.

    Why not the rollback ``engine.connect()`` ends with: psycopg forgets every prepared statement of a
    connection on ``ROLLBACK`` (the transaction may have dropped what they name) and sends ``DEALLOCATE
    ALL``, so the next transaction on that connection parsed and planned its statements again, and the
    ``DEALLOCATE`` counted as a transaction of its own (issue 16: 2.2 per lifecycle, after the chain
    steps' reads). A transaction that only read commits as it would roll back. A block that raises still
    rolls back (``Connection.close``).
    """
    with engine.connect() as conn:
        yield conn
        if conn.in_transaction():
            conn.commit()


def autocommit(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run ``work`` on a connection in autocommit mode: a single statement, no BEGIN/COMMIT round trips."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        return work(conn)


def notify(conn: Connection, channel: str, payload: str) -> None:
    """``NOTIFY`` delivered when (and only if) the surrounding transaction commits."""
    conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})


def advisory_xact_lock(conn: Connection, key: int) -> None:
    """Serialise with every other holder of ``key`` until this transaction ends."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
