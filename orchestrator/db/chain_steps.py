"""Chain step rows: one ledger transaction each, with its signed envelope persisted before submission."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, Engine, bindparam, case, func, insert, null, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB

from orchestrator.db.prepared import Query
from orchestrator.db.tables import chain_steps


@dataclass(frozen=True)
class Step:
    id: str
    kind: str
    subject_type: str
    subject_id: str
    source_account: str
    signers: list[str]
    params: dict[str, Any]
    status: str
    signed_xdr: str | None
    tx_hash: str | None
    sequence: int | None
    max_time: datetime | None
    attempts: int
    last_error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    not_before: datetime | None = None


def to_step(row: Any) -> Step:
    r = row._mapping
    return Step(r["id"], r["kind"], r["subject_type"], r["subject_id"], r["source_account"], list(r["signers"]),
                r["params"], r["status"], r["signed_xdr"], r["tx_hash"], r["sequence"], r["max_time"],
                r["attempts"], r["last_error"], r["result"], r["created_at"], r["updated_at"], r["not_before"])


#: The source account's lock, for an open step of a kind that signs: transaction-scoped, on the key
#: ``hashtext(source_account)``. Two workers of one account always meet; an account whose hash happens to
#: equal another lock's key (the relay's, the treasury pool's) only waits for that holder a moment.
_LOCK_SOURCE = Query(text(
    "SELECT pg_advisory_xact_lock(hashtext(source_account)) FROM chain_steps WHERE id = :step_id "
    "AND status IN ('PENDING', 'SIGNED') AND kind = ANY(:locking)"))


@contextmanager
def source_locked(engine: Engine, step_id: str, locking: Collection[str]) -> Iterator[Step | None]:
    """The step, read after its source account's lock was taken (when it is open and its kind is in
    ``locking``), the lock held until the block ends: one transaction for what took three (read the
    step to learn its account, lock, read it again; issue 16), and PostgreSQL still releases the lock
    if the process dies. The transaction stays open across the block's network calls (a submission may
    take 30 s) but holds nothing else: it writes nothing and takes no row lock, and at READ COMMITTED it
    keeps no snapshot between statements (``pg_stat_activity`` shows no ``backend_xmin``), so it holds
    back no vacuum. The block's writes go through other connections (``engine`` is a pool only lock
    holders use, so a holder never waits for a connection another holder took)."""
    with engine.connect() as conn, conn.begin():
        _LOCK_SOURCE.run(conn, step_id=step_id, locking=list(locking))
        yield get(conn, step_id)


# A step's life runs these: compiled once, executed straight on psycopg (``Query.run``, issue 16).
_OPEN = ("PENDING", "SIGNED")
_GET = Query(select(chain_steps).where(chain_steps.c.id == bindparam("step_id")))
_GET_FOR_UPDATE = Query(select(chain_steps).where(chain_steps.c.id == bindparam("step_id")).with_for_update())
_SIGNED = {"status": "SIGNED", "unsigned_xdr": bindparam("unsigned_xdr"), "signed_xdr": bindparam("signed_xdr"),
           "tx_hash": bindparam("tx_hash"), "sequence": bindparam("sequence"),
           "max_time": bindparam("max_time", type_=chain_steps.c.max_time.type), "updated_at": func.now()}
_SET_SIGNED = Query(update(chain_steps).where(chain_steps.c.id == bindparam("step_id")).values(_SIGNED)
                    .returning(*chain_steps.c))
_SET_SIGNED_MERGING = Query(
    update(chain_steps).where(chain_steps.c.id == bindparam("step_id"))
    .values({**_SIGNED, "params": chain_steps.c.params.op("||")(bindparam("merged", type_=JSONB))})
    .returning(*chain_steps.c))
_RECORD_ATTEMPT = Query(update(chain_steps).where(chain_steps.c.id == bindparam("step_id")).values(
    attempts=chain_steps.c.attempts + 1, last_error=bindparam("error", type_=chain_steps.c.last_error.type),
    updated_at=func.now()))
_DISCARD = Query(update(chain_steps).where(chain_steps.c.id == bindparam("step_id"),
                                           chain_steps.c.status == "SIGNED").values(
    status="PENDING", signed_xdr=None, unsigned_xdr=None, tx_hash=None, sequence=None, max_time=None,
    last_error=bindparam("reason", type_=chain_steps.c.last_error.type), updated_at=func.now()))
_FINISH = Query(update(chain_steps).where(chain_steps.c.id == bindparam("step_id"),
                                          or_(*(chain_steps.c.status == status for status in _OPEN))).values(
    status=bindparam("new_status", type_=chain_steps.c.status.type),
    result=bindparam("new_result", type_=chain_steps.c.result.type),
    last_error=bindparam("error", type_=chain_steps.c.last_error.type), updated_at=func.now(),
    confirmed_at=case((bindparam("confirmed", type_=Boolean), func.now()), else_=null())))


def create(conn: Connection, **values: Any) -> None:
    conn.execute(insert(chain_steps).values(**values))


def get(conn: Connection, step_id: str, *, for_update: bool = False) -> Step | None:
    row = (_GET_FOR_UPDATE if for_update else _GET).run(conn, step_id=step_id).fetchone()
    return to_step(row) if row else None


def set_signed(conn: Connection, step_id: str, *, unsigned_xdr: str | None, signed_xdr: str, tx_hash: str,
               sequence: int, max_time: datetime | None, params: dict[str, Any] | None = None) -> Step:
    """Persist a signed envelope before it is submitted; ``max_time`` None is an unbounded envelope;
    ``params`` are merged into the step's (facts read from the envelope, such as a deploy's contract id).
    Returns the step as it now stands (no second read)."""
    values: dict[str, Any] = {"step_id": step_id, "unsigned_xdr": unsigned_xdr, "signed_xdr": signed_xdr,
                              "tx_hash": tx_hash, "sequence": sequence, "max_time": max_time}
    row = (_SET_SIGNED_MERGING.run(conn, **values, merged=params) if params
           else _SET_SIGNED.run(conn, **values)).fetchone()
    if row is None:
        raise LookupError(f"chain step {step_id} does not exist")
    return to_step(row)


def record_attempt(conn: Connection, step_id: str, error: str | None) -> None:
    _RECORD_ATTEMPT.run(conn, step_id=step_id, error=error)


def discard_envelope(conn: Connection, step_id: str, reason: str) -> None:
    """A proven-dead envelope is dropped so the step can be built again."""
    _DISCARD.run(conn, step_id=step_id, reason=reason)


def finish(conn: Connection, step_id: str, *, status: str, result: dict[str, Any] | None,
           error: str | None = None) -> None:
    _FINISH.run(conn, step_id=step_id, new_status=status, new_result=result, error=error,
                confirmed=status == "CONFIRMED")


def open_of_kind(conn: Connection, kind: str) -> bool:
    """Whether a step of ``kind`` is still open (pending or signed)."""
    return conn.execute(select(chain_steps.c.id).where(chain_steps.c.kind == kind,
                                                      chain_steps.c.status.in_(("PENDING", "SIGNED"))).limit(1)
                        ).first() is not None


def stalled(conn: Connection, *, older_than: datetime, limit: int = 200) -> list[str]:
    """Open steps that have not moved since ``older_than`` (their message may be lost); touched here.
    A step waiting out its retry time (``not_before``) counts from that time, not from its last move."""
    last_move = func.greatest(chain_steps.c.updated_at, func.coalesce(chain_steps.c.not_before,
                                                                      chain_steps.c.updated_at))
    ids = conn.execute(select(chain_steps.c.id).where(chain_steps.c.status.in_(("PENDING", "SIGNED")),
                                                      chain_steps.c.updated_at < older_than,
                                                      last_move < older_than)
                       .order_by(chain_steps.c.updated_at).limit(limit)).scalars().all()
    if ids:
        conn.execute(update(chain_steps).where(chain_steps.c.id.in_(ids)).values(updated_at=func.now()))
    return list(ids)


@dataclass(frozen=True)
class StuckStep:
    id: str
    kind: str
    order_id: str | None
    retries: int
    attempts: int
    last_error: str | None
    since: datetime


def stuck(conn: Connection, *, min_retries: int) -> list[StuckStep]:
    """Open steps retrying a payout that has failed ``min_retries`` times in a row (an operator's list)."""
    retries = chain_steps.c.params["retries"].as_integer()
    failure = func.coalesce(chain_steps.c.last_error, chain_steps.c.params["lastFailure"].as_string())
    rows = conn.execute(select(chain_steps.c.id, chain_steps.c.kind, chain_steps.c.params["orderId"].as_string(),
                               retries, chain_steps.c.attempts, failure, chain_steps.c.created_at)
                        .where(chain_steps.c.status.in_(("PENDING", "SIGNED")), retries >= min_retries)
                        .order_by(chain_steps.c.created_at)).all()
    return [StuckStep(*row) for row in rows]
