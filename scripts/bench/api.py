"""Benchmark the Orchestrator's balance endpoints over HTTP, beside this machine's own ceiling.

Run it from the repository (it re-executes itself under ``.venv/bin/python`` when needed)::

    python -m scripts.bench.api                      # everything: scratch database, own processes, all phases
    python -m scripts.bench.api --duration 15 --workers 2 --threads 8
    python -m scripts.bench.api --url http://127.0.0.1:4000 --master-key "$OFFERHUB_MASTER_KEY"
    python -m scripts.bench.api --profile /tmp/prof  # also py-spy the web process and workers (raw stacks)

By default it creates a scratch database ``offerhub_bench_<random>`` on 127.0.0.1, migrates it,
starts its own ``python -m web``, ``dramatiq actors`` (``--workers`` processes x ``--threads``) and
scheduler with ``RATE_LIMIT_PER_MINUTE=0``, a unique ``QUEUE_PREFIX``/``REDIS_PREFIX``, a random
``OFFERHUB_MASTER_KEY`` and ``LOG_LEVEL=WARNING``, waits for ``/api/v1/health``, creates ``--users``
users and one API key (scopes read + support) through the API, runs the phases, then stops every
process it started, drops the database, deletes its queues and Redis keys (also on Ctrl-C or failure).
With ``--url`` it drives an already running system instead (users and key are created there and the
key is revoked at the end); the ceiling phases then use a scratch database of their own.

What it measures (each phase closed-loop for ``--duration`` seconds after a short warm-up, from this
process, which is separate from every server process; aiohttp client whose connector limit equals the
phase's concurrency; per-request latency with ``time.perf_counter``):

1. ``GET /api/v1/users/{id}/balance`` at ``--concurrency`` (default 200) connections.
2. ceiling (a): a bare aiohttp handler doing one ``SELECT available FROM balances WHERE user_id=$1``
   through a psycopg async pool (same pool size as the web tier, 20), served by a subprocess of this
   script and hammered exactly like phase 1.
3. ``POST /api/v1/users/{id}/balance/credit`` waited (the default: the response comes after the
   worker committed) at ``--post-concurrency`` (default 64, lower than GET because each request holds
   a worker slot and a database connection for its whole life), spread round-robin over the users so
   row locks rarely collide.
4. the same with ``Prefer: respond-async`` (202), then the time the backlog takes to drain (polling
   ``GET /api/v1/health/detailed`` ``backlog.commandsPending`` until 0), and the resulting rate at
   which the workers completed the accepted credits.
5. ceiling (b): ``pgbench -c 16 -j 2 -T <duration>`` of one ``BEGIN; UPDATE bench_accounts …;
   INSERT INTO bench_history …; END;`` against scratch tables, its tps parsed.

Then it checks that the users' balances add up to the credits acknowledged, prints one table with the
core count, and a line per target (GET p99 under 10 ms at 200 connections; credits per second at least
half the pgbench tps) saying met or not met. Everything talks to 127.0.0.1 only. Figures are noisy on a
shared 2-core machine: the load generator itself needs a good part of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scripts.bench.common import (  # standard library only: safe before the re-exec
    LOCAL_HOSTS,
    ROOT,
    CpuMeter,
    PgbenchResult,
    Processes,
    cpu_per_op,
    create_database,
    delete_queues,
    delete_redis_keys,
    drop_database,
    free_port,
    local_database_url,
    record,
    reexec_in_venv,
    run_pgbench,
    say,
    tail,
)

GET_P99_TARGET_MS = 10.0
GET_TARGET_CONCURRENCY = 200
CREDIT_SHARE_OF_PGBENCH = 0.5
BASELINE_POOL = 20  # the web tier's pool_size (orchestrator.db.create_web_engine)

reexec_in_venv()

import aiohttp  # noqa: E402  (after the re-exec into the virtualenv)
import psycopg  # noqa: E402
from aiohttp import web  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Load generation and statistics


@dataclass
class PhaseResult:
    """One closed-loop phase: latencies of the measured window and every status seen."""

    name: str
    concurrency: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    acknowledged: int = 0  # 2xx over the whole phase, warm-up included (for the book check)
    cpu: dict[str, float] = field(default_factory=dict)  # cores used per process group
    db_xacts: int = 0  # transactions the scratch database committed or rolled back meanwhile

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("2"))

    @property
    def errors(self) -> int:
        return sum(self.statuses.values()) - self.ok

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    def error_summary(self) -> str:
        bad = {s: n for s, n in self.statuses.items() if not s.startswith("2")}
        return ", ".join(f"{s}x{n}" for s, n in sorted(bad.items())) or "-"


RequestFactory = Callable[[int], tuple[str, str, dict[str, str], bytes | None]]


async def hammer(name: str, factory: RequestFactory, *, concurrency: int, duration: float,
                 warmup: float, meter: CpuMeter | None = None) -> PhaseResult:
    """Closed loop: ``concurrency`` clients each send the next request as soon as one answers."""
    result = PhaseResult(name, concurrency)
    counter = itertools.count()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=90)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from, stop_at = start + warmup, start + warmup + duration

    async def client(session: aiohttp.ClientSession) -> None:
        while loop.time() < stop_at:
            method, url, headers, body = factory(next(counter))
            began_loop = loop.time()
            t0 = time.perf_counter()
            try:
                async with session.request(method, url, headers=headers, data=body) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                status = type(error).__name__
            elapsed_ms = (time.perf_counter() - t0) * 1000
            if status.startswith("2"):
                result.acknowledged += 1
            if began_loop >= measure_from:
                result.statuses[status] += 1
                result.latencies_ms.append(elapsed_ms)

    async def metered() -> None:
        if meter is not None:
            await asyncio.sleep(warmup)
            meter.start()
            await asyncio.sleep(duration)
            result.cpu = meter.stop()
            result.db_xacts = meter.xacts

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(metered(), *(client(session) for _ in range(concurrency)))
    # the measured window: from the end of the warm-up until the last measured request came back
    result.seconds = max(loop.time(), stop_at) - measure_from
    return result


async def hammer_rate(name: str, factory: RequestFactory, *, concurrency: int, rate: float, duration: float,
                      warmup: float, meter: CpuMeter | None = None) -> PhaseResult:
    """Open loop: requests start at a fixed ``rate`` whatever the answers do, at most ``concurrency``
    in flight (the connector's limit). Latency counts from the scheduled start, so time spent waiting
    for a free connection is included (no coordinated omission)."""
    result = PhaseResult(name, concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    t0 = time.perf_counter()
    measure_from = t0 + warmup
    tasks: set[asyncio.Task[None]] = set()

    async def one(session: aiohttp.ClientSession, i: int, scheduled: float) -> None:
        method, url, headers, body = factory(i)
        try:
            async with session.request(method, url, headers=headers, data=body) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            status = type(error).__name__
        if scheduled >= measure_from:
            result.statuses[status] += 1
            result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=90)) as session:
        for i in range(int(rate * (warmup + duration))):
            scheduled = t0 + i / rate
            if meter is not None and scheduled >= measure_from and not meter.started:
                meter.start()
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(session, i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if meter is not None:
            result.cpu = meter.stop()
            result.db_xacts = meter.xacts
        await asyncio.gather(*tasks)
    result.seconds = duration
    return result


# --------------------------------------------------------------------------------------------------
# The API under test


class Api:
    """A thin client for the set-up calls (users, key, backlog)."""

    def __init__(self, base: str, credential: str) -> None:
        self.base = base.rstrip("/") + "/api/v1"
        self.credential = credential
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session:
            await self.session.close()

    def headers(self, credential: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {credential or self.credential}", "Content-Type": "application/json"}

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                   credential: str | None = None, expect: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.request(method, self.base + path, headers=self.headers(credential),
                                        data=json.dumps(body) if body is not None else None) as response:
            payload = await response.json(content_type=None)
            if response.status not in expect:
                raise RuntimeError(f"{method} {path} answered {response.status}: {payload}")
            return payload

    async def wait_healthy(self, seconds: float, alive: Callable[[], None]) -> None:
        assert self.session is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            alive()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session.get(self.base + "/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.base}/health did not answer 200 within {seconds:.0f} s")

    async def create_users(self, run: str, count: int) -> list[str]:
        ids: list[str] = [""] * count
        queue = iter(range(count))

        async def creator() -> None:
            for i in queue:
                data = (await self.call("POST", "/users", {"externalUserId": f"bench-{run}-{i}"}))["data"]
                ids[i] = data["id"]

        await asyncio.gather(*(creator() for _ in range(min(16, count))))
        return ids

    async def backlog(self) -> int | None:
        """``commandsPending`` from ``/health/detailed`` (answers 503 when the sandbox is down; still has it)."""
        data = (await self.call("GET", "/health/detailed", expect=(200, 503)))["data"]
        backlog = data.get("backlog") or {}
        value = backlog.get("commandsPending")
        return int(value) if value is not None else None

    async def wait_drained(self, limit: float) -> float | None:
        """Seconds until no command is pending (``None`` if the limit passed first)."""
        started = time.perf_counter()
        while time.perf_counter() - started < limit:
            pending = await self.backlog()
            if pending is None:
                return None
            if pending == 0:
                return time.perf_counter() - started
            await asyncio.sleep(0.2)
        return None

    async def total_available(self, users: list[str]) -> float:
        async def one(user_id: str) -> float:
            return float((await self.call("GET", f"/users/{user_id}/balance"))["data"]["available"])

        totals = []
        for chunk in range(0, len(users), 32):
            totals += await asyncio.gather(*(one(u) for u in users[chunk:chunk + 32]))
        return sum(totals)


# --------------------------------------------------------------------------------------------------
# Ceiling (a): a bare aiohttp handler doing one SQL query, served in its own process


def serve_baseline(port: int, dsn: str) -> None:
    """``--serve-baseline``: the smallest honest aiohttp + psycopg async pool endpoint."""
    from psycopg_pool import AsyncConnectionPool

    async def balance(request: web.Request) -> web.Response:
        pool: AsyncConnectionPool = request.app["pool"]
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT available FROM balances WHERE user_id = %s",
                                        (request.match_info["user_id"],))
            row = await cursor.fetchone()
        if row is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response({"data": {"userId": request.match_info["user_id"], "available": str(row[0])}})

    async def pool_ctx(app: web.Application) -> Any:
        pool = AsyncConnectionPool(dsn, min_size=BASELINE_POOL, max_size=BASELINE_POOL, open=False)
        await pool.open(wait=True)
        app["pool"] = pool
        yield
        await pool.close()

    app = web.Application()
    app.cleanup_ctx.append(pool_ctx)
    app.add_routes([web.get("/balance/{user_id}", balance), web.get("/health", lambda _: _ok())])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def _ok() -> web.Response:
    return web.Response(text="ok")


# --------------------------------------------------------------------------------------------------
# Ceiling (b): pgbench


# ``run_pgbench`` and ``PgbenchResult`` live in scripts/bench/common.py (shared with scripts.bench.lifecycle).


# --------------------------------------------------------------------------------------------------
# Processes and scratch resources


@dataclass
class Scratch:
    """The scratch database (and, in own mode, the whole system) of one run."""

    run: str
    database: str
    own_system: bool
    env: dict[str, str] = field(default_factory=dict)
    processes: Processes | None = None
    web_pid: int | None = None
    worker_pid: int | None = None
    groups: dict[int, str] = field(default_factory=dict)  # process group -> name, for the CPU meter

    @property
    def database_url(self) -> str:
        return local_database_url(self.database)


@contextlib.contextmanager
def scratch_environment(args: argparse.Namespace, log_dir: Path) -> Iterator[Scratch]:
    """Create the scratch database (and start the system in own mode); undo all of it on the way out."""
    run = secrets.token_hex(4)
    scratch = Scratch(run, f"offerhub_bench_{run}", own_system=args.url is None)
    rabbitmq_url = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    queue_prefix, redis_prefix = f"bench{run}_", f"offerhub-bench-{run}:"
    create_database(scratch.database)
    try:
        if scratch.own_system:
            scratch.env = {
                **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": scratch.database_url,
                "REDIS_URL": redis_url, "RABBITMQ_URL": rabbitmq_url, "PORT": str(free_port()),
                "OFFERHUB_MASTER_KEY": f"bench-master-{secrets.token_hex(16)}", "STELLAR_NETWORK": "sandbox",
                "RATE_LIMIT_PER_MINUTE": "0", "QUEUE_PREFIX": queue_prefix, "REDIS_PREFIX": redis_prefix,
                "LOG_LEVEL": "WARNING", "ADMIN_BALANCE_OPERATIONS": "true", "PYTHONUNBUFFERED": "1",
                "WALLET_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                # no sandbox is started: point its URL at a closed port of our own, never at a
                # developer's sandbox on 4100 (the balance endpoints never call a provider)
                "SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
            }
            say("migrating the scratch database and creating the platform user (bootstrap)")
            migrated = subprocess.run([sys.executable, "-m", "orchestrator", "bootstrap"], cwd=ROOT,
                                      env=scratch.env, capture_output=True, text=True, check=False)
            if migrated.returncode != 0:
                raise RuntimeError(f"migration failed ({migrated.returncode}):\n{migrated.stdout}{migrated.stderr}")
            scratch.processes = Processes(log_dir)
            python = sys.executable
            web_child = scratch.processes.start("web", [python, "-m", "web"], scratch.env)
            worker_child = scratch.processes.start("worker", [
                python, "-m", "dramatiq", "actors", "--processes", str(args.workers), "--threads", str(args.threads),
                "--queues", f"{queue_prefix}commands", f"{queue_prefix}events"],
                {**scratch.env, "dramatiq_prom_port": str(free_port()), "dramatiq_prom_host": "127.0.0.1",
                 "dramatiq_prom_db": str(log_dir / "metrics-worker")})
            scheduler = scratch.processes.start("scheduler", [python, "-m", "orchestrator.cli.main", "scheduler"],
                                                scratch.env)
            scratch.web_pid, scratch.worker_pid = web_child.process.pid, worker_child.process.pid
            scratch.groups = {web_child.process.pid: "web", worker_child.process.pid: "workers",
                              scheduler.process.pid: "scheduler"}
        yield scratch
    finally:
        say("cleaning up")
        if scratch.processes:
            scratch.processes.stop_all()
        for what, undo in (("database", lambda: drop_database(scratch.database)),
                           ("queues", lambda: delete_queues(rabbitmq_url, queue_prefix)),
                           ("redis keys", lambda: delete_redis_keys(redis_url, redis_prefix))):
            if what != "database" and not scratch.own_system:
                continue
            try:
                undo()
            except Exception as error:  # cleanup must go on
                say(f"could not delete the scratch {what}: {error}")


# --------------------------------------------------------------------------------------------------
# Profiling (optional)


def start_profiles(pids: dict[str, int], directory: Path, duration: float) -> list[subprocess.Popen[bytes]]:
    """py-spy ``record --format raw`` of each pid (``--subprocesses`` for dramatiq's forked workers), of the
    thread holding the GIL only (``--gil``): where the CPU goes, not who waits (``common.start_profiles``)."""
    binary = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(binary).exists():
        say("py-spy not found (.venv/bin/pip install py-spy); not profiling")
        return []
    directory.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in pids.items():
        out = directory / f"{name}.txt"  # collapsed stacks: "frame;frame;... count" per line
        spies.append(subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--gil", "--subprocesses",
             "--duration", str(max(1, round(duration))), "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=(directory / f"{name}.err").open("wb")))
    return spies


# --------------------------------------------------------------------------------------------------
# The run


@dataclass
class Report:
    cores: int
    duration: float
    users: int
    workers: str
    phases: list[PhaseResult] = field(default_factory=list)
    pgbench: PgbenchResult | None = None
    drain_seconds: float | None = None
    async_completed_rate: float | None = None
    #: CPU seconds per completed credit by process group, and database transactions per credit, from the
    #: start of the async phase until its backlog drained (the workers finish the work after the load).
    async_cpu: dict[str, float] = field(default_factory=dict)
    async_xacts: float | None = None
    book_check: str = ""

    def phase(self, name: str) -> PhaseResult | None:
        return next((p for p in self.phases if p.name == name), None)


CPU_GROUPS = ("web", "workers", "scheduler", "bare handler", "postgres", "rabbitmq", "load generator", "other")
GET_PHASE = "GET balance"
BASE_PHASE = "GET bare aiohttp+1 SQL"
WAITED_PHASE = "POST credit (waited)"
ASYNC_PHASE = "POST credit (async 202)"


def print_report(report: Report) -> None:
    line = "-" * 110
    print()
    print(f"Orchestrator API benchmark: {report.cores} CPU cores ({platform.processor() or platform.machine()}), "
          f"{report.duration:.0f} s per phase, {report.users} users, workers {report.workers}")
    print(line)
    print(f"{'phase':<32}{'conc':>6}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"  errors/non-2xx")
    print(line)
    for p in report.phases:
        print(f"{p.name:<32}{p.concurrency:>6}{p.ok:>10}{p.rate:>10.0f}{p.percentile(50):>9.1f}"
              f"{p.percentile(99):>9.1f}{max(p.latencies_ms, default=math.nan):>9.1f}  {p.error_summary()}")
    if report.drain_seconds is not None or report.async_completed_rate is not None:
        drain = f"{report.drain_seconds:.1f} s" if report.drain_seconds is not None else "did not drain"
        rate = f"{report.async_completed_rate:.0f}/s" if report.async_completed_rate else "n/a"
        print(f"{'  async backlog drain':<32}{'':>6}{'':>10}{rate:>10}  (completed credits/s over load + "
              f"drain; drain after load: {drain})")
    pg = report.pgbench
    if pg is not None:
        tps = f"{pg.tps:.0f}" if pg.tps is not None else "n/a"
        lat = f"{pg.latency_ms:>9.1f}" if pg.latency_ms is not None else f"{'':>9}"
        print(f"{'pgbench UPDATE+INSERT':<32}{16:>6}{'':>10}{tps:>10}{lat}{'':>18}  ({pg.note}; avg latency)")
    print(line)
    groups = [g for g in CPU_GROUPS if any(p.cpu.get(g) for p in report.phases)]
    if groups:
        print(f"{'CPU cores used (/proc)':<32}" + "".join(f"{g:>15}" for g in groups) + "  DB xacts/req")
        for p in report.phases:
            per = f"{p.db_xacts / (p.rate * p.seconds):>14.1f}" if p.db_xacts and p.rate else f"{'':>14}"
            print(f"{p.name:<32}" + "".join(f"{p.cpu.get(g, 0.0):>15.2f}" for g in groups) + per)
        print(line)
    if report.book_check:
        print(report.book_check)
    print("Targets:")
    for p in report.phases:
        if not p.name.startswith(BASE_PHASE):
            record(f"API {p.name} (c={p.concurrency})", p.rate, "req/s", cpu=cpu_per_op(p.cpu, 1, p.rate),
                   xacts=p.db_xacts / p.ok if p.db_xacts and p.ok else None)
            record(f"API {p.name} p99 (c={p.concurrency})", p.percentile(99), "ms", kind="latency")
    record("API POST credit (async, completed)", report.async_completed_rate, "credits/s", cpu=report.async_cpu,
           xacts=report.async_xacts)
    get, base = report.phase(GET_PHASE), report.phase(BASE_PHASE)
    opened = [p for p in report.phases if p.name.startswith(GET_PHASE + " @")]
    base_opened = [p for p in report.phases if p.name.startswith(BASE_PHASE + " @")]
    for label, phase, ceiling in (("closed loop", get, base),
                                  ("open loop", opened[0] if opened else None,
                                   base_opened[0] if base_opened else None)):
        if phase is None:
            continue
        met = phase.percentile(99) < GET_P99_TARGET_MS and phase.concurrency >= GET_TARGET_CONCURRENCY
        extra = f"; bare handler: p99 {ceiling.percentile(99):.1f} ms at {ceiling.rate:.0f} req/s" if ceiling else ""
        print(f"  GET p99 < {GET_P99_TARGET_MS:.0f} ms at {GET_TARGET_CONCURRENCY} connections ({label}): "
              f"{phase.percentile(99):.1f} ms at {phase.concurrency} ({phase.rate:.0f} req/s) -> "
              f"{'met' if met else 'NOT MET'}{extra}")
    if get is not None:
        print(f"    (closed loop: Little's law gives mean latency = connections / throughput = "
              f"{get.concurrency}/{get.rate:.0f} = {1000 * get.concurrency / max(get.rate, 1e-9):.0f} ms; "
              f"under 10 ms at 200 needs > 20000 req/s)")
    tps = pg.tps if pg is not None else None
    for label, rate in ((WAITED_PHASE, _rate(report.phase(WAITED_PHASE))),
                        ("POST credit (async, completed)", report.async_completed_rate)):
        if rate is None:
            continue
        if not tps:
            print(f"  {label}: {rate:.0f}/s vs half of pgbench: pgbench figure unavailable -> unknown")
            continue
        need = tps * CREDIT_SHARE_OF_PGBENCH
        verdict = "met" if rate >= need else "NOT MET"
        print(f"  {label}: {rate:.0f}/s, needs >= {need:.0f}/s (half of pgbench's {tps:.0f} tps);"
              f" {rate / tps:.0%} of pgbench -> {verdict}")


def _rate(phase: PhaseResult | None) -> float | None:
    return phase.rate if phase is not None else None


async def run_phases(args: argparse.Namespace, scratch: Scratch, report: Report, log_dir: Path) -> None:
    base_url = args.url or f"http://127.0.0.1:{scratch.env['PORT']}"
    master = args.master_key or scratch.env["OFFERHUB_MASTER_KEY"]
    alive = scratch.processes.check_alive if scratch.processes else (lambda: None)
    async with Api(base_url, master) as api:
        await api.wait_healthy(60, alive)
        say(f"system up at {base_url}; creating {args.users} users and an API key")
        key = (await api.call("POST", "/auth/api-keys", {"name": f"bench-{scratch.run}",
                                                         "scopes": ["read", "support"]}))["data"]
        credential = master if args.as_master else key["key"]
        try:
            users = await api.create_users(scratch.run, args.users)
            await measure(args, scratch, report, api, base_url, credential, users, log_dir, alive)
        finally:
            if not scratch.own_system:
                with contextlib.suppress(Exception):
                    await api.call("DELETE", f"/auth/api-keys/{key['id']}")


async def measure(args: argparse.Namespace, scratch: Scratch, report: Report, api: Api, base_url: str,
                  credential: str, users: list[str], log_dir: Path, alive: Callable[[], None]) -> None:
    v1 = base_url.rstrip("/") + "/api/v1"
    auth = {"Authorization": f"Bearer {credential}"}
    post_headers = {**auth, "Content-Type": "application/json"}
    async_headers = {**post_headers, "Prefer": "respond-async"}
    credit_body = json.dumps({"amount": "1.00", "description": "bench"}).encode()
    n = len(users)
    warmup = min(2.0, args.duration / 5)

    def phase(name: str, factory: RequestFactory, concurrency: int) -> Awaitable[PhaseResult]:
        alive()
        say(f"phase: {name} at {concurrency} connections for {args.duration:.0f} s (+{warmup:.0f} s warm-up)")
        return hammer(name, factory, concurrency=concurrency, duration=args.duration, warmup=warmup,
                      meter=CpuMeter(scratch.groups, scratch.database if scratch.own_system else None))

    profiling = bool(args.profile and scratch.own_system)
    spies = start_profiles({"web-get": scratch.web_pid or 0}, Path(args.profile),
                           args.duration + warmup) if profiling else []
    report.phases.append(await phase(
        GET_PHASE, lambda i: ("GET", f"{v1}/users/{users[i % n]}/balance", auth, None), args.concurrency))
    for spy in spies:
        spy.wait(timeout=60)
    closed = report.phases[-1]
    rate = args.get_rate or max(1.0, round(closed.rate * 0.5))
    alive()
    say(f"phase: GET balance open loop at {rate:.0f} req/s over {args.concurrency} connections")
    report.phases.append(await hammer_rate(
        f"{GET_PHASE} @{rate:.0f}/s", lambda i: ("GET", f"{v1}/users/{users[i % n]}/balance", auth, None),
        concurrency=args.concurrency, rate=rate, duration=args.duration, warmup=warmup,
        meter=CpuMeter(scratch.groups, scratch.database if scratch.own_system else None)))

    if not args.skip_ceiling:
        report.phases.extend(await baseline_phase(args, scratch, users, warmup, rate))

    spies = start_profiles({"web-credit": scratch.web_pid or 0, "workers-credit": scratch.worker_pid or 0},
                           Path(args.profile), args.duration + warmup) if profiling else []
    waited = await phase(WAITED_PHASE, lambda i: ("POST", f"{v1}/users/{users[i % n]}/balance/credit",
                                                   post_headers, credit_body), args.post_concurrency)
    report.phases.append(waited)
    for spy in spies:
        spy.wait(timeout=60)
    await api.wait_drained(120)

    span = CpuMeter(scratch.groups, scratch.database if scratch.own_system else None)
    span.start()
    async_phase = await phase(ASYNC_PHASE, lambda i: ("POST", f"{v1}/users/{users[i % n]}/balance/credit",
                                                      async_headers, credit_body), args.post_concurrency)
    load_end = time.perf_counter()
    say("waiting for the async backlog to drain")
    drained = await api.wait_drained(args.drain_limit)
    report.phases.append(async_phase)
    if drained is not None:
        report.drain_seconds = time.perf_counter() - load_end
        # every accepted credit (warm-up included) was completed within warm-up + load + drain
        total_span = async_phase.seconds + warmup + report.drain_seconds
        report.async_completed_rate = async_phase.acknowledged / total_span
        whole = time.perf_counter() - span.started
        report.async_cpu = cpu_per_op(span.stop(), whole, async_phase.acknowledged)
        report.async_xacts = span.xacts / async_phase.acknowledged if span.xacts and async_phase.acknowledged else None

    expected = waited.acknowledged + async_phase.acknowledged
    total = await api.total_available(users)
    status = "ok" if abs(total - expected) < 0.005 else "MISMATCH"
    report.book_check = (f"Book check: sum of the {n} users' available = {total:.2f}; credits acknowledged "
                         f"(200 + 202) = {expected} x 1.00 -> {status}")

    if not args.skip_ceiling:
        say(f"phase: pgbench for {args.duration:.0f} s")
        report.pgbench = run_pgbench({"dsn": scratch.database_url, "port": "5432", "dbname": scratch.database},
                                     accounts=n, duration=args.duration)


async def baseline_phase(args: argparse.Namespace, scratch: Scratch, users: list[str], warmup: float,
                         rate: float) -> list[PhaseResult]:
    """Serve the bare handler from a subprocess of this script and hammer it like the real GET
    (closed loop, then open loop at the same rate as the real GET's open-loop phase)."""
    if not scratch.own_system:  # the scratch database has no users yet: give it a balances table like ours
        with psycopg.connect(scratch.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS balances (user_id varchar(64) PRIMARY KEY, "
                         "available numeric(20,7) NOT NULL DEFAULT 0, reserved numeric(20,7) NOT NULL DEFAULT 0)")
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO balances (user_id) VALUES (%s) ON CONFLICT DO NOTHING",
                                   [(u,) for u in users])
    port = free_port()
    procs = Processes(Path(tempfile.gettempdir()))
    child = procs.start(f"bench-baseline-{scratch.run}", [
        sys.executable, "-m", "scripts.bench.api", "--serve-baseline", str(port),
        "--baseline-dsn", scratch.database_url],
        {**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        async with Api(f"http://127.0.0.1:{port}", "") as probe:
            assert probe.session is not None
            deadline = time.monotonic() + 30
            while True:
                procs.check_alive()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with probe.session.get(f"http://127.0.0.1:{port}/health") as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError("the bare handler did not start")
                await asyncio.sleep(0.1)
        n = len(users)
        say(f"phase: {BASE_PHASE} at {args.concurrency} connections for {args.duration:.0f} s")
        groups = {**scratch.groups, child.process.pid: "bare handler"}

        def factory(i: int) -> tuple[str, str, dict[str, str], bytes | None]:
            return "GET", f"http://127.0.0.1:{port}/balance/{users[i % n]}", {}, None

        closed = await hammer(BASE_PHASE, factory, concurrency=args.concurrency, duration=args.duration,
                              warmup=warmup, meter=CpuMeter(groups, scratch.database))
        say(f"phase: {BASE_PHASE} open loop at {rate:.0f} req/s")
        opened = await hammer_rate(f"{BASE_PHASE} @{rate:.0f}/s", factory, concurrency=args.concurrency,
                                   rate=rate, duration=args.duration, warmup=warmup,
                                   meter=CpuMeter(groups, scratch.database))
        return [closed, opened]
    finally:
        procs.stop_all()
        with contextlib.suppress(OSError):
            child.log.unlink()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.api",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", help="drive an already running system at this base URL (127.0.0.1 only)")
    parser.add_argument("--master-key", help="its OFFERHUB_MASTER_KEY (required with --url)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    parser.add_argument("--concurrency", type=int, default=200,
                        help="connections for the GET phases (default 200, the target's figure)")
    parser.add_argument("--post-concurrency", type=int, default=64,
                        help="connections for the credit phases (default 64: each waited credit holds a "
                             "worker slot and database connections for its whole life)")
    parser.add_argument("--workers", type=int, default=2, help="dramatiq worker processes (default 2, as the Procfile)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    parser.add_argument("--get-rate", type=float, default=0.0,
                        help="request rate of the open-loop GET phases (default: half the closed-loop GET rate)")
    parser.add_argument("--users", type=int, default=200, help="users the requests are spread over (default 200)")
    parser.add_argument("--as-master", action="store_true", help="load with the master key instead of an API key")
    parser.add_argument("--skip-ceiling", action="store_true", help="skip the bare handler and pgbench phases")
    parser.add_argument("--drain-limit", type=float, default=300.0, help="longest wait for the async backlog")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the web process and the workers during the waited credit phase (own mode)")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-dsn", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.url:
        if urlsplit(args.url).hostname not in LOCAL_HOSTS:
            parser.error("--url must point at 127.0.0.1 (this benchmark only talks to this machine)")
        if not args.master_key:
            parser.error("--url needs --master-key")
    if args.duration <= 0 or args.concurrency < 1 or args.post_concurrency < 1 or args.users < 1:
        parser.error("--duration, --concurrency, --post-concurrency and --users must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.baseline_dsn)
        return 0

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)  # also when started in the background (SIGINT ignored)
    report = Report(cores=os.cpu_count() or 0, duration=args.duration, users=args.users,
                    workers="external" if args.url else f"{args.workers} proc x {args.threads} threads")
    log_dir = Path(tempfile.mkdtemp(prefix="offerhub-bench-"))
    try:
        with scratch_environment(args, log_dir) as scratch:
            asyncio.run(run_phases(args, scratch, report, log_dir))
    except KeyboardInterrupt:
        say("interrupted; everything started by this run was stopped and removed")
        return 130
    except Exception as error:
        say(f"failed: {error}")
        for log in sorted(log_dir.glob("*.log")):
            if log.stat().st_size:
                say(f"--- {log.name} (last lines) ---\n{tail(log)}")
        return 1
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
