"""Shared plumbing of the one-command benchmarks (``scripts/bench_api.py``, ``scripts/bench_deposits.py``).

Child processes stopped as groups by id, scratch PostgreSQL databases, RabbitMQ queues and Redis keys
of one run, CPU accounting from ``/proc``, percentiles and progress lines. Only the standard library
is imported at module level, so a script can import this before re-executing itself under the
project's virtualenv (``reexec_in_venv``); psycopg, pika and redis are imported where they are used.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def reexec_in_venv(script: str) -> None:
    """Run ``script`` under the project's virtualenv (psycopg, aiohttp, pika, redis live there)."""
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), script, *sys.argv[1:]])


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
