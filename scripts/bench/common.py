"""Shared plumbing of the one-command benchmarks (``python -m scripts.bench.api``, ``scripts.bench.deposits``,
``scripts.bench.lifecycle``).

Child processes stopped as groups by id, scratch PostgreSQL databases, RabbitMQ queues and Redis keys
of one run, CPU accounting from ``/proc``, percentiles and progress lines; the rig of a full system
(sandbox, scratch database, bootstrap, the Procfile's processes) with users and active wallets made
through the API; py-spy profiles and the pgbench ceiling. Only the standard library is imported at
module level, so a script can import this before re-executing itself under the project's virtualenv
(``reexec_in_venv``); aiohttp, psycopg, pika and redis are imported where they are used.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import glob
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.dotenv import ENV_FILE_VARIABLE
from scripts.ports import free_port

T = TypeVar("T")

if TYPE_CHECKING:
    import aiohttp

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def reexec_in_venv() -> None:
    """Run this process's ``python -m`` module again under the project's virtualenv (psycopg, aiohttp, pika,
    redis live there), with the same arguments and the repository root on the child's ``PYTHONPATH``."""
    if not VENV_PYTHON.exists() or Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    target = ["-m", spec.name.removesuffix(".__main__")] if spec is not None else [sys.argv[0]]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.execve(VENV_PYTHON, [str(VENV_PYTHON), *target, *sys.argv[1:]], {**os.environ, "PYTHONPATH": path})


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def record(name: str, value: float | None, unit: str, *, kind: str = "rate",
           cpu: dict[str, float] | None = None, xacts: float | None = None) -> None:
    """Hand one figure to ``scripts/bench.py`` (a JSON line in ``$BENCH_FIGURES``; nothing otherwise).

    ``kind`` is ``rate`` (more is better; compared with a throughput ceiling) or ``latency`` (ms).
    ``cpu`` is the CPU seconds per operation of each process group during the phase (``cpu_per_op``) and
    ``xacts`` the database transactions per operation, printed beside the figure so the reader sees
    where the time went.
    """
    target = os.environ.get("BENCH_FIGURES")
    if not target or value is None or (isinstance(value, float) and math.isnan(value)):
        return
    item: dict[str, Any] = {"name": name, "value": value, "unit": unit, "kind": kind}
    if cpu:
        item["cpu"] = cpu
    if xacts is not None and not math.isnan(xacts):
        item["xacts"] = xacts
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(item) + "\n")


def cpu_per_op(cores: dict[str, float], seconds: float, operations: float) -> dict[str, float]:
    """``CpuMeter.stop``'s cores used over ``seconds`` -> CPU seconds per operation, per group."""
    if operations <= 0 or seconds <= 0:
        return {}
    return {group: used * seconds / operations for group, used in cores.items() if used > 0}


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (``nan`` when empty)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# --------------------------------------------------------------------------------------------------
# Where the CPU went: per-group CPU seconds from /proc


def cpu_snapshot(groups: dict[int, str]) -> Counter[str]:
    """CPU seconds so far per group: our processes by process group, PostgreSQL, RabbitMQ, this
    load generator, and everything else on the machine (other people's work: the noise)."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: Counter[str] = Counter()
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        pid, pgrp, used = int(entry.name), int(fields[2]), (int(fields[11]) + int(fields[12])) / ticks
        if pid == me:
            group = "load generator"
        elif pgrp in groups:
            group = groups[pgrp]
        elif comm.startswith("postgres") or comm == "pgbench":
            group = "postgres"
        elif comm.startswith(("beam", "erl")):
            group = "rabbitmq"
        else:
            group = "other"
        totals[group] += used
    return totals


class CpuMeter:
    """Cores used per group between ``start`` and ``stop`` (processes that exit meanwhile are missed)."""

    def __init__(self, groups: dict[int, str], database: str | None = None) -> None:
        self.groups = groups
        self.database = database  # also count its transactions (pg_stat_database) when it is ours alone
        self.before: Counter[str] = Counter()
        self.xacts_before = 0
        self.xacts = 0
        self.started = 0.0  # perf_counter at start; 0 until started

    def _xacts(self) -> int:
        if self.database is None:
            return 0
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                               (self.database,)).fetchone()
        return int(row[0]) if row else 0

    def start(self) -> None:
        self.xacts_before = self._xacts()
        self.before, self.started = cpu_snapshot(self.groups), time.perf_counter()

    def stop(self) -> dict[str, float]:
        after, seconds = cpu_snapshot(self.groups), time.perf_counter() - self.started
        self.xacts = self._xacts() - self.xacts_before
        return {g: max(0.0, after[g] - self.before[g]) / seconds for g in after}


# --------------------------------------------------------------------------------------------------
# Processes and scratch resources


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Processes:
    """Every process this run started; each in its own session so it is stopped as a group, by id."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Child:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{tail(child.log)}")

    def stop(self, child: Child) -> None:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
            try:
                child.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(timeout=5)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)


def tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_queues(rabbitmq_url: str, prefix: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        for base in ("commands", "events", "chain"):
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(queue=f"{prefix}{base}{suffix}")
    finally:
        connection.close()


def delete_redis_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------
# The system under test


class Procs(Processes):
    """``Processes`` that can skip one child in the liveness check and forget one that exited."""

    def check_alive(self, ignore: Child | None = None) -> None:
        for child in self.children:
            if child is not ignore and child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{tail(child.log)}")

    def forget(self, child: Child) -> None:
        if child in self.children:
            self.children.remove(child)


def local_database_url(name: str) -> str:
    """A database on this machine's PostgreSQL (trust auth), as every rig and scratch database is."""
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


class Instance:
    """What a started instance's ``env`` tells a client: where its API listens and its master key.

    Shared by the benchmarks' rigs, the AirTM-mode instance and the chaos rig (each a dataclass with
    an ``env`` field).
    """

    env: dict[str, str]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}/api/v1"

    @property
    def master_key(self) -> str:
        return self.env["OFFERHUB_MASTER_KEY"]


@dataclass
class Rig(Instance):
    run: str
    log_dir: Path
    processes: Procs
    database: str
    sandbox_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)  # process group -> name, for the CPU meter
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return local_database_url(self.database)


def clean_environ() -> dict[str, str]:
    """This environment minus every variable the product or the sandbox reads (``.env.example``), and with
    ``.env`` reading off (the processes run in the checkout, where scripts/dev writes one), so a developer's
    settings never leak into the run."""
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    names |= {"SANDBOX_HOST", "SANDBOX_LEDGER_INTERVAL_SECONDS", "SANDBOX_TW_REQUESTS_PER_MINUTE",
              "SANDBOX_AIRTM_REQUESTS_PER_SECOND", "SANDBOX_AIRTM_WEBHOOK_URL", "WALLET_STARTING_XLM"}
    return {**{k: v for k, v in os.environ.items() if k not in names}, ENV_FILE_VARIABLE: ""}


def start_sandbox(rig: Rig, seed: str) -> None:
    env = {**clean_environ(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "SANDBOX_SEED": seed,
           "SANDBOX_TW_REQUESTS_PER_MINUTE": "0", "SANDBOX_AIRTM_REQUESTS_PER_SECOND": "0",
           "TRUSTLESS_API_KEY": "sandbox-tw-key", "SANDBOX_LEDGER_MODE": "instant"}
    child = rig.processes.start("sandbox", [sys.executable, "-m", "scripts.sandbox", "--port", "0"], env)
    rig.groups[child.process.pid], rig.pids["sandbox"] = "sandbox", child.process.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rig.processes.check_alive()
        found = re.search(r"^SANDBOX_READY (\S+)", child.log.read_text(errors="replace"), re.MULTILINE)
        if found:
            rig.sandbox_url = found.group(1).rstrip("/")
            return
        time.sleep(0.05)
    raise RuntimeError("the sandbox did not print SANDBOX_READY within 30 s")


def start_system(rig: Rig, seed: str, args: argparse.Namespace, *, env: dict[str, str] | None = None,
                 label: str = "") -> dict[str, int]:
    """Migrate, bootstrap, then the Procfile's six processes; returns their pids by role.

    ``env`` starts another instance on the same sandbox (``scripts.bench.airtm``'s AirTM-mode one: its own
    database, queue and Redis prefixes) with the same pools, so the two compare like for like; ``label``
    prefixes its processes' names (their logs), while the CPU meter still counts them by role."""
    python = sys.executable
    env = env if env is not None else rig.env
    say(f"migrating {env['DATABASE_URL'].rsplit('/', 1)[-1]} and bootstrapping the platform user")
    for what, command in (("migration", [python, "-c", "import sys; from orchestrator.db.migrate import upgrade; "
                                                       "upgrade(sys.argv[1])", env["DATABASE_URL"]]),
                          ("bootstrap", [python, "-m", "orchestrator", "bootstrap"])):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    prefix = env["QUEUE_PREFIX"]
    commands = {
        "web": [python, "-m", "web"],
        "workers": [python, "-m", "dramatiq", "actors", "--processes", str(args.workers), "--threads",
                    str(args.threads), "--queues", f"{prefix}commands", f"{prefix}events"],
        "chain": [python, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "16",
                  "--queues", f"{prefix}chain"],
        "monitor": [python, "-m", "orchestrator", "monitor"],
        "scheduler": [python, "-m", "orchestrator", "scheduler"],
        "webhooks": [python, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "8",
                     "--queues", f"{prefix}webhooks"],
    }
    # each dramatiq command serves its Prometheus figures on a port and from a directory of its own
    metrics = {name: {"dramatiq_prom_port": str(free_port()), "dramatiq_prom_host": "127.0.0.1",
                      "dramatiq_prom_db": str(rig.log_dir / f"metrics-{label}{name}")}
               for name in ("workers", "chain", "webhooks")}
    pids: dict[str, int] = {}
    for name, command in commands.items():
        child = rig.processes.start(f"{label}{name}", command, {**env, **metrics.get(name, {})})
        rig.groups[child.process.pid], rig.pids[f"{label}{name}"] = name, child.process.pid
        pids[name] = child.process.pid
    return pids


def stop_system(rig: Rig, pids: dict[str, int]) -> None:
    """Stop an instance's processes (``start_system``'s pids), leaving the sandbox and the rest running."""
    for child in [c for c in rig.processes.children if c.process.pid in pids.values()]:
        rig.processes.stop(child)
        rig.groups.pop(child.process.pid, None)


@contextlib.contextmanager
def rig_environment(args: argparse.Namespace, name: str = "deposits",
                    extra_env: dict[str, str] | None = None) -> Iterator[Rig]:
    """Sandbox, scratch database, queues and Redis keys of one run; all undone on the way out. ``name``
    goes into the log directory and the sandbox seed; ``extra_env`` is added to the Orchestrator's
    environment (not the sandbox's)."""
    run = secrets.token_hex(4)
    log_dir = Path(tempfile.mkdtemp(prefix=f"offerhub-bench-{name}-"))
    rig = Rig(run, log_dir, Procs(log_dir), f"offerhub_bench_{run}")
    rabbitmq_url = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    queue_prefix, redis_prefix = f"bench{run}_", f"offerhub-bench-{run}:"
    seed = f"bench-{name}-{run}"
    database_created = False
    try:
        start_sandbox(rig, seed)
        create_database(rig.database)
        database_created = True
        rig.env = {
            **clean_environ(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "DATABASE_URL": rig.database_url,
            "REDIS_URL": redis_url, "RABBITMQ_URL": rabbitmq_url, "PORT": str(free_port()),
            "OFFERHUB_MASTER_KEY": f"bench-master-{secrets.token_hex(16)}", "STELLAR_NETWORK": "sandbox",
            "SANDBOX_URL": rig.sandbox_url, "SANDBOX_SEED": seed, "SANDBOX_LEDGER_MODE": "instant",
            "WALLET_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "RATE_LIMIT_PER_MINUTE": "0", "QUEUE_PREFIX": queue_prefix, "REDIS_PREFIX": redis_prefix,
            "LOG_LEVEL": "WARNING", "TRUSTLESS_API_KEY": "sandbox-tw-key",
            "WEBHOOKS_ALLOW_PRIVATE": "true",  # the benchmarks' webhook receivers listen on 127.0.0.1
            **(extra_env or {}),
        }
        yield rig
    except BaseException:
        states = [f"{c.name} {'running' if c.process.poll() is None else f'exited {c.process.returncode}'}"
                  for c in rig.processes.children]
        say(f"processes at the failure: {', '.join(states) or 'none'}")
        for log in sorted(log_dir.glob("*.log")):
            if log.stat().st_size:
                say(f"--- {log.name} (last lines) ---\n{tail(log)}")
        raise
    finally:
        say("cleaning up")
        rig.processes.stop_all()
        undo = [("queues", lambda: delete_queues(rabbitmq_url, queue_prefix)),
                ("redis keys", lambda: delete_redis_keys(redis_url, redis_prefix))]
        if database_created:
            undo.insert(0, ("database", lambda: drop_database(rig.database)))
        for what, action in undo:
            try:
                action()
            except Exception as error:  # cleanup must go on
                say(f"could not delete the scratch {what}: {error}")
        shutil.rmtree(log_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Set-up through the API and the database


async def call(session: aiohttp.ClientSession, rig: Rig, method: str, path: str,
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {rig.master_key}", "Content-Type": "application/json"}
    async with session.request(method, rig.api + path, headers=headers,
                               data=json.dumps(body) if body is not None else None) as response:
        payload = await response.json(content_type=None)
        if response.status not in (200, 201):
            raise RuntimeError(f"{method} {path} answered {response.status}: {payload}")
        return payload


async def wait_healthy(session: aiohttp.ClientSession, rig: Rig, seconds: float) -> None:
    import aiohttp

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rig.processes.check_alive()
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(rig.api + "/health") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{rig.api}/health did not answer 200 within {seconds:.0f} s")


async def create_users(session: aiohttp.ClientSession, rig: Rig, count: int, first: int = 0) -> list[str]:
    """``count`` users with external ids ``bench-<run>-<first + i>``; returns their ids."""
    ids = [""] * count
    queue = iter(range(count))

    async def creator() -> None:
        for i in queue:
            body = {"externalUserId": f"bench-{rig.run}-{first + i}"}
            data = (await call(session, rig, "POST", "/users", body))["data"]
            ids[i] = data["id"]

    await asyncio.gather(*(creator() for _ in range(min(8, count))))
    return ids


async def wait_wallets_active(rig: Rig, users: list[str], seconds: float) -> list[str]:
    """Poll the ``wallets`` table until every user's wallet is ACTIVE; returns their public keys."""
    import psycopg

    deadline = time.monotonic() + seconds
    active: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(rig.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            rig.processes.check_alive()
            cursor = await conn.execute("SELECT user_id, public_key FROM wallets WHERE status = 'ACTIVE' "
                                        "AND user_id = ANY(%s)", (users,))
            active = {row[0]: row[1] for row in await cursor.fetchall()}
            if len(active) == len(users):
                return [active[u] for u in users]
            await asyncio.sleep(0.25)
    raise RuntimeError(f"only {len(active)} of {len(users)} wallets became ACTIVE within {seconds:.0f} s")


# --------------------------------------------------------------------------------------------------
# Profiling (optional)


def start_profiles(rig: Rig, directory: Path, names: tuple[str, ...] = ("monitor", "workers", "web", "sandbox")
                   ) -> list[subprocess.Popen[bytes]]:
    """py-spy ``record --format raw`` of the ``names`` processes (and their children) until stopped (SIGINT).

    ``--gil``: only the thread holding the GIL is sampled, so the stacks show where CPU goes; without it,
    threads waiting on PostgreSQL in psycopg's wait were a third of the chain worker's samples."""
    binary = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(binary).exists():
        say("py-spy not found (.venv/bin/pip install py-spy); not profiling")
        return []
    directory.mkdir(parents=True, exist_ok=True)
    spies = []
    for name in names:
        spies.append(subprocess.Popen(
            [binary, "record", "--pid", str(rig.pids[name]), "--format", "raw", "--rate", "200", "--gil",
             "--subprocesses", "--output", str(directory / f"{name}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=(directory / f"{name}.err").open("wb")))
    return spies


def stop_profiles(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        with contextlib.suppress(ProcessLookupError):
            spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()


# --------------------------------------------------------------------------------------------------
# The PostgreSQL ceiling: pgbench (as ``scripts.bench.api``'s ceiling (b))


PGBENCH_SCRIPT = """\\set aid random(1, {accounts})
BEGIN;
UPDATE bench_accounts SET balance = balance + 1 WHERE id = :aid;
INSERT INTO bench_history (aid, delta) VALUES (:aid, 1);
END;
"""


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
                        key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    return candidates[-1] if candidates else None


@dataclass
class PgbenchResult:
    tps: float | None
    latency_ms: float | None
    note: str


def run_pgbench(dsn_parts: dict[str, str], *, accounts: int, duration: float) -> PgbenchResult:
    """``pgbench -c 16 -j 2`` of one ``BEGIN; UPDATE; INSERT; END`` against scratch tables of
    ``dsn_parts["dsn"]`` (keys ``dsn``, ``port``, ``dbname``); the tables are dropped afterwards."""
    import psycopg

    binary = find_pgbench()
    if binary is None:
        return PgbenchResult(None, None, "pgbench not found: sudo apt-get install postgresql-contrib "
                                         "(or postgresql-client-15)")
    with psycopg.connect(dsn_parts["dsn"], autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_history, bench_accounts")
        conn.execute("CREATE TABLE bench_accounts (id integer PRIMARY KEY, balance numeric(20,7) NOT NULL)")
        conn.execute("CREATE TABLE bench_history (id bigserial PRIMARY KEY, aid integer NOT NULL, "
                     "delta numeric(20,7) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO bench_accounts SELECT g, 0 FROM generate_series(1, %s) g", (accounts,))
        conn.execute("VACUUM ANALYZE bench_accounts")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT.format(accounts=accounts))
    try:
        command = [binary, "-n", "-c", "16", "-j", "2", "-T", str(max(1, round(duration))), "-f", script.name,
                   "-h", "127.0.0.1", "-p", dsn_parts["port"], "-U", "postgres", dsn_parts["dbname"]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    finally:
        os.unlink(script.name)
        with psycopg.connect(dsn_parts["dsn"], autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_history, bench_accounts")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    if done.returncode != 0 or tps is None:
        return PgbenchResult(None, None, f"pgbench failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return PgbenchResult(float(tps.group(1)), float(latency.group(1)) if latency else None,
                         "-c 16 -j 2, BEGIN; UPDATE; INSERT; END")


def run_on_rig(args: argparse.Namespace, body: Callable[[Rig], Awaitable[T]], *, name: str = "deposits",
               extra_env: dict[str, str] | None = None) -> T | int:
    """Run ``body`` on a fresh rig; SIGTERM/SIGINT and failures stop and remove everything it started.

    Returns the body's result, or the exit code to use (130 interrupted, 1 failed).
    """
    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)  # also when started in the background (SIGINT ignored)
    try:
        with rig_environment(args, name, extra_env) as rig:
            return asyncio.run(body(rig))
    except KeyboardInterrupt:
        say("interrupted; everything started by this run was stopped and removed")
        return 130
    except Exception as error:
        say(f"failed: {error!r}")
        if os.environ.get("BENCH_TRACEBACK"):
            import traceback

            traceback.print_exc()
        return 1
