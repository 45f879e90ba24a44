"""Fixed-shape reads compiled to SQL once and run straight on a psycopg connection.

Why: on the web tier's hot reads SQLAlchemy's async layer cost about twice the statement itself
(py-spy of ``GET balance`` at 200 connections, and a sequential micro-measure on this machine: 1.2 ms of
CPU per read through ``AsyncEngine.connect()`` + ``execute`` against 0.54 ms through a psycopg pool):
building the statement, its cache key, the greenlet hop, the pool checkout and result processing, per
request. A read whose shape never changes (a user by id, an order's parts, a command's status) is
compiled here once, at import, from the same SQLAlchemy statement the rest of the code executes, so the
SQL still lives in one layer (``orchestrator/db``) and cannot drift between the two paths.

Rows come back as ``Row``: a mapping that also answers attribute access and ``_mapping``, so the
``to_*`` converters take either kind of row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import orjson
import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import RowMaker
from psycopg.types.json import Jsonb, JsonBinaryLoader, JsonLoader
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import ColumnElement, Connection, Table, bindparam
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

_DIALECT = psycopg_dialect.dialect()
T = TypeVar("T")


class Row(dict[str, Any]):
    """A result row: ``row["id"]``, ``row.id`` and ``row._mapping["id"]`` all work."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> Row:
        return self


class Fetched(Protocol):
    """What ``Query.run`` returns: a psycopg cursor, or SQLAlchemy's result where it ran the statement."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...


class Query:
    """One statement with named ``bindparam``s, compiled for psycopg once.

    ``statement`` stays available for SQLAlchemy connections (``Query.bind`` fills its parameters), so
    the worker and the operator commands run the very same SQL.
    """

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))
        self.sql = str(compiled)
        if "POSTCOMPILE" in self.sql:  # an expanding IN is rendered per execution: not a fixed statement
            raise ValueError("a Query cannot take an expanding IN; compare with = ANY(:array) instead")
        #: The named ``bindparam``s a call must give; the statement's literals are bound with their values.
        self.required = frozenset(name for name, bind in compiled.binds.items() if bind.required)
        self.literals = {name: value for name, value in compiled.params.items() if name not in self.required}
        #: Parameters bound as JSON: psycopg takes a dict or list there only wrapped (SQLAlchemy's JSON
        #: type wraps it on its own path), serialised as SQLAlchemy's would be (``json.dumps``; None too,
        #: as JSON ``null``, which is what SQLAlchemy's JSON type stores for it).
        self.json = frozenset(name for name, bind in compiled.binds.items()
                              if isinstance(bind.type, sqltypes.JSON))
        #: The result's column names, taken from the first result (a compiled shape never changes them).
        self.names: tuple[str, ...] | None = None
        #: How often this process ran it on a psycopg connection (what a request reads is countable: the
        #: order list's tests check it reads each related table once per page, never once per order).
        self.executions = 0

    def _rows(self, cursor: AsyncCursor[Any] | psycopg.Cursor[Any]) -> RowMaker[Row]:
        names = self.names
        if names is None:
            names = self.names = tuple(column.name for column in cursor.description or ())
        return lambda values: Row(zip(names, values))  # noqa: B905 - both come from the same description

    def bind(self, **params: Any) -> Any:
        """The SQLAlchemy statement with these values, for ``Connection.execute``."""
        return self.statement.params(**params)

    def values(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters of one execution (every psycopg execution takes them here, and is counted)."""
        self.executions += 1
        if params.keys() != self.required:
            raise TypeError(f"the query takes {sorted(self.required)}, not {sorted(params)}")
        if self.json:
            params = {**params, **{name: Jsonb(params[name]) for name in self.json if name in params}}
        return {**self.literals, **params} if self.literals else params

    # --- on a SQLAlchemy connection's own psycopg connection, inside its transaction -------------------

    def run(self, conn: Connection, **params: Any) -> Fetched:
        """Execute in ``conn``'s transaction, straight on its psycopg connection; the cursor holds the
        rows (``fetchone``/``fetchall``).

        Why: a command's transaction runs about ten fixed statements, and SQLAlchemy's execute path
        (cache key, parameter processing, execution context, result wrapping) cost as much CPU as psycopg
        sending them (issue 16: py-spy of the workers taking credits, ``Connection.execute`` 47 % of
        the samples, psycopg's own execute 21 %). Errors come out as SQLAlchemy's, as from
        ``Connection.execute``, and a connection that broke is invalidated, so the pool drops it.

        A synchronous connection over an asynchronous driver (the web tier's ``run_sync``) has no
        psycopg connection to call: there the statement goes through SQLAlchemy, with the same result.
        """
        raw = conn.connection.driver_connection
        if not isinstance(raw, psycopg.Connection):
            return conn.execute(self.statement, params)  # type: ignore[call-overload, no-any-return]
        cursor: psycopg.Cursor[Row] = raw.cursor(row_factory=self._rows)
        try:
            cursor.execute(self.sql, self.values(params), prepare=True)
        except psycopg.Error as error:
            raise self._wrapped(conn, raw, error, params) from error
        return cursor

    def run_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Execute once per parameter set, in one pipeline (psycopg's ``executemany``)."""
        raw = conn.connection.driver_connection
        if not isinstance(raw, psycopg.Connection):
            conn.execute(self.statement, list(rows))  # type: ignore[call-overload]
            return
        try:
            raw.cursor().executemany(self.sql, [self.values(row) for row in rows])
        except psycopg.Error as error:
            raise self._wrapped(conn, raw, error, rows) from error

    def _wrapped(self, conn: Connection, raw: psycopg.Connection[Any], error: psycopg.Error,
                 params: Any) -> Exception:
        broken = raw.broken or raw.closed
        if broken:
            conn.invalidate(error)
        return sa_exc.DBAPIError.instance(self.sql, params, error, psycopg.Error,
                                          connection_invalidated=broken)

    async def one_or_none(self, conn: AsyncConnection[Any], **params: Any) -> Row | None:
        cursor = conn.cursor(row_factory=self._rows)
        await cursor.execute(self.sql, self.values(params), prepare=True)
        return await cursor.fetchone()

    async def all(self, conn: AsyncConnection[Any], **params: Any) -> list[Row]:
        cursor = conn.cursor(row_factory=self._rows)
        await cursor.execute(self.sql, self.values(params), prepare=True)
        return await cursor.fetchall()

    async def all_made(self, conn: AsyncConnection[Any], make: Callable[[Sequence[Any]], T],
                       **params: Any) -> list[T]:
        """Every row, each made by ``make`` from its values in column order (no mapping per row: for reads
        of many rows, such as the SSE replay)."""
        cursor = conn.cursor(row_factory=lambda _cursor: make)
        await cursor.execute(self.sql, self.values(params), prepare=True)
        return await cursor.fetchall()


def insert_of(table: Table, names: Sequence[str], *returning: ColumnElement[Any]) -> Query:
    """``INSERT`` of these columns of ``table``, each bound by its name with its column's type (so a JSON
    column's value is wrapped for psycopg), returning ``returning``."""
    statement = table.insert().values({name: bindparam(name, type_=table.c[name].type) for name in names})
    return Query(statement.returning(*returning) if returning else statement)


#: Connections for a web process's hot reads and its commands' inserts (the read skeleton of
#: ``scripts/bench/skeletons.py`` gets as many), beside its engine's ten; opened on demand, and a
#: statement holds one for its round trip only.
READ_POOL = 20


def open_pool(url: str, *, name: str, max_size: int = READ_POOL) -> AsyncConnectionPool:
    """An autocommit pool for ``Query`` reads (opened by the caller with ``await pool.open()``).

    ``prepare=True`` on every read makes each connection parse a shape once and then only bind and
    execute it; autocommit, because a single read needs no transaction around it. Values of type
    ``json`` (not ``jsonb``) are parsed by orjson (``_configure``).
    """
    return AsyncConnectionPool(url, min_size=1, max_size=max_size, name=name, open=False,
                               kwargs={"autocommit": True}, configure=_configure)


class _OrjsonLoader(JsonLoader):
    _loads = cast(Any, orjson.loads)  # orjson types loads without its argument


class _OrjsonBinaryLoader(JsonBinaryLoader):
    _loads = cast(Any, orjson.loads)  # orjson types loads without its argument


async def _configure(conn: AsyncConnection[Any]) -> None:
    """``json`` values are only ever built by our own statements (an order view's related rows,
    ``orders_db.RELATED``), never stored: they carry amounts as text and small integers, which orjson
    and the standard library parse alike. The standard library's parser (with its encoding detection on
    bytes) was 5 % of an order page's web CPU (py-spy, issue 16). ``jsonb`` columns hold what clients
    wrote (metadata, evidence), where orjson differs (an integer past 64 bits becomes a float, and one
    past a double's range is refused: PostgreSQL writes ``1e400`` as its 401 digits): they keep the
    standard library's parser."""
    conn.adapters.register_loader("json", _OrjsonLoader)
    conn.adapters.register_loader("json", _OrjsonBinaryLoader)


async def fetch_one(pool: AsyncConnectionPool, query: Query, **params: Any) -> Row | None:
    return await _on_connection(pool, lambda conn: query.one_or_none(conn, **params))


async def fetch_all(pool: AsyncConnectionPool, query: Query, **params: Any) -> list[Row]:
    return await _on_connection(pool, lambda conn: query.all(conn, **params))


async def fetch_made(pool: AsyncConnectionPool, query: Query, make: Callable[[Sequence[Any]], T],
                     **params: Any) -> list[T]:
    return await _on_connection(pool, lambda conn: query.all_made(conn, make, **params))


async def _on_connection(pool: AsyncConnectionPool,
                         work: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
    """``work`` on a pooled connection, taken and returned with getconn/putconn (``pool.connection()``'s
    generator context manager per read was 5 % of GET balance); a dead one has the idle ones checked."""
    conn = await pool.getconn()
    try:
        return await work(conn)
    except _DEAD:
        _check_idle(pool)
        raise
    finally:
        await pool.putconn(conn)


_DEAD = (psycopg.OperationalError, psycopg.InterfaceError)
#: Pools whose idle connections are being checked after one of theirs died (one check at a time each).
_CHECKING: dict[AsyncConnectionPool, asyncio.Task[None]] = {}


def _check_idle(pool: AsyncConnectionPool) -> None:
    """A pooled connection turned out dead: check every idle one at once (in the background).

    A database restart or a network reset kills every pooled connection together, and psycopg's pool
    only drops the one that failed (``putconn`` sees it broken): without the check each idle one would
    fail its next request too (SQLAlchemy's pool, which the engines use, invalidates the whole pool on a
    disconnect for the same reason). The failing read itself still answers 503 (``web/errors.py``).
    """
    if pool not in _CHECKING:
        task = asyncio.get_running_loop().create_task(pool.check())
        _CHECKING[pool] = task
        task.add_done_callback(lambda _: _CHECKING.pop(pool, None))
