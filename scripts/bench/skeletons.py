"""Skeletons of our architecture with nothing else in them: the ceilings ``scripts/bench.py`` divides the
product's figures by (issue 16), each measured in the same run on the same machine.

- **Read skeleton** (``--serve-read``): an aiohttp handler, no authentication, one indexed ``SELECT``
  through psycopg's async pool with the web tier's pool sizes (``web_pool_sizes``), answering JSON.
  Measured closed loop at ``--concurrency`` (req/s), at the order reads' concurrency (p50), and open loop
  at half its own rate (p99: the rate the product's open-loop GET target is measured at).
- **Write skeleton** (``--serve-write`` plus ``dramatiq scripts.bench.skeletons``): the handler INSERTs
  a row, publishes a Dramatiq message with publisher confirms (``RabbitmqBroker(confirm_delivery=True)``,
  as ``actors/broker.py``) from a pool of publishing threads (as ``web/app.py``), the actor (its own
  worker processes, the Procfile's worker ``--processes`` x ``--threads``) UPDATEs the row and NOTIFYs in
  one statement, and the handler, woken through one shared LISTEN connection and a dict of futures,
  answers. Completed writes/s closed loop at the waited credits' concurrency; accepted/s when the
  handler answers right after the publish (202), and the rate at which that backlog completes.
- **Ledger-only lifecycle** (``ledger_lifecycles``, in this process): the envelopes of one escrow
  lifecycle (deploy, fund, change milestone status, approve, release; a refund is dispute + resolve),
  each built by the sandbox's Trustless Work API, signed here with stellar-sdk, relayed through T8
  (``/helper/send-transaction``) and looked up on Horizon, one source account at a time (as
  ``orchestrator/chain_steps.py`` locks it), with the payout read from Horizon's operations at the end
  (as the settle step does). No orchestrator, no database.

Each phase also reports the CPU seconds every process role used (``/proc``) and, where it has a database
of its own, the transactions it committed (``pg_stat_database``). Scratch databases, queues and processes
are removed at the end, also on Ctrl-C. Run alone only as the servers and the worker module above;
``scripts/bench.py --only ceilings`` drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from scripts.bench.common import (  # standard library only: safe before the re-exec
    ROOT,
    CpuMeter,
    Procs,
    Rig,
    cpu_per_op,
    create_database,
    drop_database,
    free_port,
    local_database_url,
    percentile,
    reexec_in_venv,
    say,
    start_sandbox,
)

reexec_in_venv()

import aiohttp  # noqa: E402  (after the re-exec into the virtualenv)
import psycopg  # noqa: E402
from aiohttp import web  # noqa: E402

#: ``web/app.py``'s publishing threads (pika keeps one BlockingConnection per thread).
PUBLISH_THREADS = 8
#: The web tier's read pool when it cannot be read from ``orchestrator.db.prepared.READ_POOL``.
WEB_POOL_FALLBACK = (1, 20)
DONE_CHANNEL = "bench_skeleton_done"
#: Rows of the read skeleton's table (the balance reads spread over 200 users; more rows cost nothing).
READ_ROWS = 1000
#: The sandbox's Trustless Work key (``common.start_sandbox`` sets it).
TW_KEY = "sandbox-tw-key"
#: Environment of the write skeleton's worker and web processes (the actor is declared only with it).
QUEUE_VARIABLE, DSN_VARIABLE, RABBITMQ_VARIABLE = "BENCH_SKELETON_QUEUE", "BENCH_SKELETON_DSN", "BENCH_SKELETON_AMQP"


def rabbitmq_url() -> str:
    return os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def web_pool_sizes() -> tuple[int, int]:
    """(min, max) connections of the pool the web tier's hot reads use (``orchestrator.db.prepared``:
    ``open_pool`` starts with one and grows to ``READ_POOL``), read from the product so the read skeleton
    follows it when it changes."""
    try:
        from orchestrator.db.prepared import READ_POOL

        return 1, int(READ_POOL)
    except Exception as error:  # the product changed shape: fall back to what it was
        say(f"could not read the web tier's read pool size ({error!r}); using {WEB_POOL_FALLBACK}")
        return WEB_POOL_FALLBACK


# --------------------------------------------------------------------------------------------------
# The servers (subprocesses of scripts/bench.py)


async def _health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def _pool_ctx(dsn: str) -> Callable[[web.Application], AsyncIterator[None]]:
    from psycopg_pool import AsyncConnectionPool

    low, high = web_pool_sizes()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(dsn, min_size=low, max_size=high, kwargs={"autocommit": True}, open=False)
        await pool.open(wait=True)
        app["pool"] = pool
        yield
        await pool.close()

    return ctx


def serve_read(port: int, dsn: str) -> None:
    """``--serve-read``: one indexed SELECT per request, JSON out; nothing else."""

    async def item(request: web.Request) -> web.Response:
        async with request.app["pool"].connection() as conn:
            cursor = await conn.execute("SELECT value FROM skel_items WHERE id = %s", (request.match_info["id"],))
            row = await cursor.fetchone()
        if row is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response({"data": {"id": request.match_info["id"], "value": str(row[0])}})

    app = web.Application()
    app.cleanup_ctx.append(_pool_ctx(dsn))
    app.add_routes([web.get("/items/{id}", item), web.get("/health", _health)])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_write(port: int, dsn: str) -> None:
    """``--serve-write``: INSERT, publish with confirms, wait for the actor's NOTIFY (or answer 202)."""
    assert skeleton_write is not None, f"{QUEUE_VARIABLE} is not set"
    send = skeleton_write.send
    waiters: dict[str, asyncio.Future[None]] = {}

    async def listen(app: web.Application) -> AsyncIterator[None]:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await conn.execute(f'LISTEN "{DONE_CHANNEL}"')

        async def dispatch() -> None:
            async for note in conn.notifies():
                future = waiters.pop(note.payload, None)
                if future is not None and not future.done():
                    future.set_result(None)

        task = asyncio.create_task(dispatch())
        app["executor"] = ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="publish")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()
        app["executor"].shutdown(wait=True)

    async def write(request: web.Request) -> web.Response:
        write_id = secrets.token_hex(12)
        async with request.app["pool"].connection() as conn:
            await conn.execute("INSERT INTO skel_writes (id, amount) VALUES (%s, 1)", (write_id,))
        loop = asyncio.get_running_loop()
        if request.query.get("async"):
            await loop.run_in_executor(request.app["executor"], send, write_id)
            return web.json_response({"data": {"id": write_id, "status": "PENDING"}}, status=202)
        future = waiters[write_id] = loop.create_future()  # before the publish: the NOTIFY cannot come first
        try:
            await loop.run_in_executor(request.app["executor"], send, write_id)
            await asyncio.wait_for(future, 30)
        finally:
            waiters.pop(write_id, None)
        return web.json_response({"data": {"id": write_id, "status": "DONE"}})

    app = web.Application()
    app.cleanup_ctx.extend([_pool_ctx(dsn), listen])
    app.add_routes([web.post("/writes", write), web.get("/health", _health)])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# The write skeleton's actor: declared only in its processes (the worker command and the write server),
# where the queue, the database and RabbitMQ come from the environment.
skeleton_write: Any = None
if os.environ.get(QUEUE_VARIABLE):
    import threading

    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    dramatiq.set_broker(RabbitmqBroker(url=os.environ[RABBITMQ_VARIABLE], confirm_delivery=True))
    _pool_lock = threading.Lock()
    _pools: dict[str, Any] = {}

    def _worker_pool() -> Any:
        """This worker process's pool, created on first use (after the fork), one connection per thread."""
        with _pool_lock:
            if "pool" not in _pools:
                from psycopg_pool import ConnectionPool

                threads = int(os.environ.get("BENCH_SKELETON_THREADS", "8"))
                _pools["pool"] = ConnectionPool(os.environ[DSN_VARIABLE], min_size=threads, max_size=threads,
                                                kwargs={"autocommit": True})
            return _pools["pool"]

    @dramatiq.actor(queue_name=os.environ[QUEUE_VARIABLE], max_retries=0)
    def skeleton_write(write_id: str) -> None:
        """UPDATE the row and NOTIFY the waiting handler: one statement, one transaction."""
        with _worker_pool().connection() as conn:
            conn.execute(f"WITH done AS (UPDATE skel_writes SET status = 'DONE', done_at = now() WHERE id = %s "
                         f"RETURNING id) SELECT pg_notify('{DONE_CHANNEL}', id) FROM done", (write_id,))


# --------------------------------------------------------------------------------------------------
# Measuring them (called by scripts/bench.py)


@dataclass
class Phase:
    """One skeleton figure with where its CPU went: seconds per operation by process group."""

    value: float | None
    cpu_per_op: dict[str, float] = field(default_factory=dict)
    xacts_per_op: float | None = None
    note: str = ""


async def _wait_up(procs: Procs, url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while True:
            procs.check_alive()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[tuple[str, str]]:
    """A database of its own (its transactions are then the phase's alone); dropped on the way out."""
    name = f"offerhub_bench_{prefix}_{secrets.token_hex(4)}"
    await asyncio.to_thread(create_database, name)
    try:
        yield name, local_database_url(name)
    finally:
        try:
            await asyncio.to_thread(drop_database, name)
        except Exception as error:  # cleanup must go on
            say(f"could not drop the scratch database {name}: {error}")


@dataclass
class ReadFigures:
    closed: Phase
    p50_ms: Phase  # at the order reads' concurrency
    open_rate: float | None = None
    open_p99_ms: float | None = None


async def read_skeleton(*, log_dir: Path, concurrency: int, p50_concurrency: int, duration: float) -> ReadFigures:
    from scripts.bench.api import hammer, hammer_rate

    async with scratch_database("read") as (database, dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE skel_items (id text PRIMARY KEY, value numeric(20,7) NOT NULL)")
            conn.execute("INSERT INTO skel_items SELECT 'item_' || g, g FROM generate_series(1, %s) g", (READ_ROWS,))
            conn.execute("VACUUM ANALYZE skel_items")
        port, procs = free_port(), Procs(log_dir)
        child = procs.start("read-skeleton", [sys.executable, "-m", "scripts.bench.skeletons",
                                              "--serve-read", str(port), "--dsn", dsn],
                            {**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_up(procs, base + "/health")
            groups = {child.process.pid: "web"}
            rng = secrets.SystemRandom()

            def factory(_: int) -> tuple[str, str, dict[str, str], bytes | None]:
                return "GET", f"{base}/items/item_{rng.randint(1, READ_ROWS)}", {}, None

            warmup = min(2.0, duration / 5)
            say(f"ceiling: read skeleton at {concurrency} connections for {duration:.0f} s")
            closed = await hammer("read skeleton", factory, concurrency=concurrency, duration=duration,
                                  warmup=warmup, meter=CpuMeter(groups, database))
            _no_errors("read skeleton", closed.statuses)
            say(f"ceiling: read skeleton at {p50_concurrency} connections (p50)")
            small = await hammer("read skeleton p50", factory, concurrency=p50_concurrency, duration=duration,
                                 warmup=warmup, meter=CpuMeter(groups, database))
            rate = max(1.0, round(closed.rate / 2))
            say(f"ceiling: read skeleton open loop at {rate:.0f} req/s (half its rate)")
            opened = await hammer_rate("read skeleton open", factory, concurrency=concurrency, rate=rate,
                                       duration=duration, warmup=warmup)
            return ReadFigures(
                Phase(closed.rate, cpu_per_op(closed.cpu, 1, closed.rate), closed.db_xacts / max(1, closed.ok)),
                Phase(small.percentile(50), cpu_per_op(small.cpu, 1, small.rate),
                      note=f"{small.rate:.0f} req/s"),
                rate, opened.percentile(99))
        finally:
            procs.stop_all()


def _no_errors(name: str, statuses: Any) -> None:
    bad = {s: n for s, n in statuses.items() if not s.startswith("2")}
    if bad:
        raise RuntimeError(f"{name} answered {bad}")


@dataclass
class WriteFigures:
    waited: Phase
    accepted: Phase
    completed: Phase  # the accepted writes as the workers completed them (load + drain)


def delete_skeleton_queue(queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url()))
    try:
        channel = connection.channel()
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(queue=f"{queue}{suffix}")
    finally:
        connection.close()


async def write_skeleton(*, log_dir: Path, concurrency: int, duration: float, workers: int, threads: int
                         ) -> WriteFigures:
    from scripts.bench.api import hammer

    queue = f"bench{secrets.token_hex(4)}_skeleton"
    async with scratch_database("write") as (database, dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE skel_writes (id text PRIMARY KEY, amount numeric(20,7) NOT NULL, "
                         "status text NOT NULL DEFAULT 'PENDING', created_at timestamptz NOT NULL DEFAULT now(), "
                         "done_at timestamptz)")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", QUEUE_VARIABLE: queue,
               DSN_VARIABLE: dsn, RABBITMQ_VARIABLE: rabbitmq_url(), "BENCH_SKELETON_THREADS": str(threads)}
        port, procs = free_port(), Procs(log_dir)
        try:
            worker = procs.start("write-skeleton-worker", [
                sys.executable, "-m", "dramatiq", "scripts.bench.skeletons", "--processes", str(workers),
                "--threads", str(threads), "--queues", queue], env)
            server = procs.start("write-skeleton-web", [sys.executable, "-m", "scripts.bench.skeletons",
                                                        "--serve-write", str(port), "--dsn", dsn], env)
            base = f"http://127.0.0.1:{port}"
            await _wait_up(procs, base + "/health")
            groups = {server.process.pid: "web", worker.process.pid: "workers"}
            warmup = min(2.0, duration / 5)
            await asyncio.sleep(1.0)  # the workers' consumers declare and attach to the queue

            def waited(_: int) -> tuple[str, str, dict[str, str], bytes | None]:
                return "POST", f"{base}/writes", {}, None

            def accepted(_: int) -> tuple[str, str, dict[str, str], bytes | None]:
                return "POST", f"{base}/writes?async=1", {}, None

            say(f"ceiling: write skeleton, waited, at {concurrency} connections for {duration:.0f} s")
            done = await hammer("write skeleton", waited, concurrency=concurrency, duration=duration, warmup=warmup,
                                meter=CpuMeter(groups, database))
            _no_errors("write skeleton", done.statuses)
            await _drained(dsn, 60)
            say(f"ceiling: write skeleton, answered after the publish, at {concurrency} connections")
            span = CpuMeter(groups, database)
            span.start()
            started = time.perf_counter()
            quick = await hammer("write skeleton async", accepted, concurrency=concurrency, duration=duration,
                                 warmup=warmup, meter=CpuMeter(groups, database))
            _no_errors("write skeleton async", quick.statuses)
            drained = await _drained(dsn, 120)
            whole = time.perf_counter() - started
            span_cpu = span.stop()
            completed = Phase(quick.acknowledged / whole, cpu_per_op(span_cpu, whole, quick.acknowledged),
                              span.xacts / max(1, quick.acknowledged),
                              note=f"{quick.acknowledged} writes; drained {drained:.1f} s after the load")
            return WriteFigures(
                Phase(done.rate, cpu_per_op(done.cpu, 1, done.rate), done.db_xacts / max(1, done.ok),
                      note=f"p50 {done.percentile(50):.1f} ms"),
                Phase(quick.rate, cpu_per_op(quick.cpu, 1, quick.rate), quick.db_xacts / max(1, quick.ok)),
                completed)
        finally:
            procs.stop_all()
            try:
                await asyncio.to_thread(delete_skeleton_queue, queue)
            except Exception as error:  # cleanup must go on
                say(f"could not delete the skeleton's queue {queue}: {error}")


async def _drained(dsn: str, seconds: float) -> float:
    """Seconds until no write is pending (raises past ``seconds``)."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            cursor = await conn.execute("SELECT count(*) FROM skel_writes WHERE status = 'PENDING'")
            row = await cursor.fetchone()
            if row is not None and row[0] == 0:
                return time.perf_counter() - started
            if time.perf_counter() - started > seconds:
                raise RuntimeError(f"{row[0] if row else '?'} skeleton writes still pending after {seconds:.0f} s")
            await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------------
# The ledger-only lifecycle


@dataclass
class LedgerFigures:
    lifecycles: Phase
    tx_rate: float | None
    p50_s: float | None
    failed: int


class Ledger:
    """The sandbox's Trustless Work API and Horizon, as the chain steps call them, and nothing more."""

    def __init__(self, session: aiohttp.ClientSession, sandbox_url: str, passphrase: str, issuer: str) -> None:
        self.session, self.base = session, sandbox_url
        self.passphrase, self.issuer = passphrase, issuer
        self.headers = {"x-api-key": TW_KEY, "Content-Type": "application/json"}
        self.locks: dict[str, asyncio.Lock] = {}
        self.transactions = 0

    async def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, self.base + path, json=body, headers=self.headers) as response:
            payload = await response.json(content_type=None)
            if response.status >= 300:
                raise RuntimeError(f"{method} {path} answered {response.status}: {str(payload)[:200]}")
            return payload

    async def step(self, path: str, body: dict[str, Any], signer: Any) -> tuple[str, dict[str, Any]]:
        """Build (TW), sign, relay (T8) and look the hash up on Horizon, holding the source's lock as the
        chain steps do (TW builds with the account's next sequence number)."""
        from stellar_sdk import TransactionEnvelope

        source = signer.public_key
        lock = self.locks.setdefault(source, asyncio.Lock())
        async with lock:
            built = await self._json("POST", "/trustless" + path, body)
            envelope = TransactionEnvelope.from_xdr(built["unsignedTransaction"], self.passphrase)
            envelope.sign(signer)
            sent = await self._json("POST", "/trustless/helper/send-transaction", {"signedXdr": envelope.to_xdr()})
            if sent.get("status") != "SUCCESS":
                raise RuntimeError(f"{path}: T8 answered {sent}")
            tx_hash = envelope.hash_hex()
            record = await self._json("GET", f"/horizon/transactions/{tx_hash}")
            if not record.get("successful"):
                raise RuntimeError(f"{path}: {tx_hash} did not succeed")
        self.transactions += 1
        return tx_hash, sent


async def ledger_lifecycles(*, log_dir: Path, lifecycles: int, concurrency: int, refund_share: float,
                            amount: str = "10.00") -> LedgerFigures:
    """``lifecycles`` lifecycles, ``concurrency`` in flight (lane ``w`` runs ``w, w + C, ...`` with buyer
    ``w``, one seller per lifecycle, as ``scripts.bench.lifecycle``), against a sandbox of its own."""
    from stellar_sdk import Keypair

    run = secrets.token_hex(4)
    rig = Rig(run, log_dir, Procs(log_dir), database="")
    try:
        await asyncio.to_thread(start_sandbox, rig, f"bench-skeleton-{run}")
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
            async with session.get(rig.sandbox_url + "/_sandbox/state") as reply:
                state = await reply.json()
            ledger = Ledger(session, rig.sandbox_url, state["network_passphrase"], state["usdc"]["issuer"])
            lanes = min(concurrency, lifecycles)
            share = refund_share
            refunds = [int((i + 1) * share) > int(i * share) for i in range(lifecycles)]
            uses = [sum(1 for i in range(w, lifecycles, lanes)) for w in range(lanes)]
            say(f"ledger-only lifecycles: creating {lanes} buyers, {lifecycles} sellers and the platform account")
            gate = asyncio.Semaphore(16)

            async def account(usdc: Decimal) -> Any:
                async with gate, session.post(rig.sandbox_url + "/_sandbox/stellar/accounts",
                                              json={"xlm": "100", "usdcTrustline": True, "usdc": str(usdc)}) as r:
                    body = await r.json()
                    if r.status != 201:
                        raise RuntimeError(f"the sandbox refused an account: {r.status} {body}")
                    return Keypair.from_secret(body["secret"])

            platform = await account(Decimal(0))
            buyers = await asyncio.gather(*(account(Decimal(amount) * n) for n in uses))
            sellers = await asyncio.gather(*(account(Decimal(0)) for _ in range(lifecycles)))
            took: list[float] = []
            errors: list[str] = []

            async def one(i: int, buyer: Any) -> None:
                began = time.perf_counter()
                try:
                    await run_lifecycle(ledger, platform, buyer, sellers[i], amount, refunds[i], i)
                    took.append(time.perf_counter() - began)
                except Exception as error:
                    errors.append(f"lifecycle {i}: {error}"[:300])

            async def lane(w: int) -> None:
                for i in range(w, lifecycles, lanes):
                    await one(i, buyers[w])

            meter = CpuMeter({rig.pids["sandbox"]: "sandbox"})
            say(f"ledger-only lifecycles: {lifecycles} ({sum(refunds)} refunded), {lanes} in flight")
            meter.start()
            started = time.perf_counter()
            await asyncio.gather(*(lane(w) for w in range(lanes)))
            seconds = time.perf_counter() - started
            # PostgreSQL and RabbitMQ take no part here: what they used was somebody else's work
            cores = {g: used for g, used in meter.stop().items() if g in ("sandbox", "load generator")}
            if errors:
                say(f"{len(errors)} ledger-only lifecycles failed; first: {errors[0]}")
            done = len(took)
            return LedgerFigures(
                Phase(done / seconds, cpu_per_op(cores, seconds, done),
                      note=f"{done} lifecycles, p50 {percentile(took, 50):.2f} s"
                           + (f", {len(errors)} FAILED" if errors else "")),
                ledger.transactions / seconds, percentile(took, 50), len(errors))
    finally:
        rig.processes.stop_all()


async def run_lifecycle(ledger: Ledger, platform: Any, buyer: Any, seller: Any, amount: str, refund: bool,
                        index: int) -> None:
    """Deploy (platform), fund (buyer), then change status (seller), approve and release (buyer); or, for
    a refund, dispute (buyer) and resolve wholly to the buyer (platform). Then the payout's operations."""
    roles = {"approver": buyer.public_key, "serviceProvider": seller.public_key,
             "platformAddress": platform.public_key, "releaseSigner": buyer.public_key,
             "disputeResolver": platform.public_key, "receiver": seller.public_key}
    _, sent = await ledger.step("/deployer/single-release", {
        "signer": platform.public_key, "engagementId": f"skeleton-{index}", "title": f"Skeleton {index}",
        "description": f"Skeleton {index}", "roles": roles, "amount": amount, "platformFee": 0,
        "milestones": [{"description": "Order delivered"}],
        "trustline": {"address": ledger.issuer, "symbol": "USDC"}}, platform)
    contract = sent["contractId"]
    escrow = "/escrow/single-release/"
    await ledger.step(escrow + "fund-escrow", {"contractId": contract, "signer": buyer.public_key,
                                               "amount": amount}, buyer)
    if refund:
        await ledger.step(escrow + "dispute-escrow", {"contractId": contract, "signer": buyer.public_key}, buyer)
        last, _ = await ledger.step(escrow + "resolve-dispute", {
            "contractId": contract, "disputeResolver": platform.public_key,
            "distributions": [{"address": buyer.public_key, "amount": amount}]}, platform)
    else:
        await ledger.step(escrow + "change-milestone-status", {
            "contractId": contract, "milestoneIndex": "0", "newStatus": "completed", "newEvidence": "delivered",
            "serviceProvider": seller.public_key}, seller)
        await ledger.step(escrow + "approve-milestone", {"contractId": contract, "milestoneIndex": "0",
                                                         "approver": buyer.public_key}, buyer)
        last, _ = await ledger.step(escrow + "release-funds", {"contractId": contract,
                                                               "releaseSigner": buyer.public_key}, buyer)
    await ledger._json("GET", f"/horizon/transactions/{last}/operations")


# --------------------------------------------------------------------------------------------------
# Entry point of the server subprocesses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.skeletons",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--serve-read", type=int, metavar="PORT", help="serve the read skeleton")
    parser.add_argument("--serve-write", type=int, metavar="PORT", help=f"serve the write skeleton (${QUEUE_VARIABLE})")
    parser.add_argument("--dsn", required=True, help="its scratch database")
    args = parser.parse_args(argv)
    if args.serve_read:
        serve_read(args.serve_read, args.dsn)
    elif args.serve_write:
        serve_write(args.serve_write, args.dsn)
    else:
        parser.error("--serve-read or --serve-write")
    return 0


if __name__ == "__main__":
    sys.exit(main())

