"""Benchmark deposits: a USDC payment on the sandbox until its ``balance.credited`` arrives on SSE.

Run it from the repository (it re-executes itself under ``.venv/bin/python`` when needed)::

    python -m scripts.bench.deposits                      # everything, 1,000 deposits per run
    python -m scripts.bench.deposits --deposits 2000 --users 100 --rate 150 --concurrency 64
    python -m scripts.bench.deposits --profile /tmp/prof  # also py-spy monitor, workers and web (raw stacks)

What it starts (and stops again, also on failure or Ctrl-C; everything on 127.0.0.1): a sandbox
(``python -m scripts.sandbox --port 0`` with a random ``SANDBOX_SEED`` and its rate limits off), a scratch
database ``offerhub_bench_<random>`` migrated with ``orchestrator.db.migrate.upgrade``, then
``python -m orchestrator bootstrap`` and the Procfile's processes: web, worker (2 x 8 threads), chain
(1 x 16), monitor and scheduler, with ``SANDBOX_URL``/``SANDBOX_SEED`` of that sandbox (so the USDC
issuer matches), a random ``WALLET_ENCRYPTION_KEY`` and ``OFFERHUB_MASTER_KEY``,
``RATE_LIMIT_PER_MINUTE=0``, a unique ``QUEUE_PREFIX``/``REDIS_PREFIX`` and ``LOG_LEVEL=WARNING``. At the
end it drops the database and deletes its queues and Redis keys.

What it measures:

0. the sandbox's own raw payment rate, before any Orchestrator process exists (nobody watches the
   Horizon stream): ``--deposits`` issuer payments through ``POST /_sandbox/stellar/pay`` into one
   external account, ``--concurrency`` in flight, sent by the same sender as the runs below.
1. ``--users`` users created through ``POST /api/v1/users``; their wallets are polled in the ``wallets``
   table until ``status = 'ACTIVE'``. One SSE connection ``GET /api/v1/events?types=balance.credited``
   (master key) is opened and read by this process.
2. latency run: ``--deposits`` issuer payments (``"from": "issuer"``, a real signed payment that mints
   USDC into the wallet), round-robin over the wallets, open loop at ``--rate`` per second.
3. throughput run: ``--deposits`` more, closed loop as fast as the sandbox accepts them
   (``--concurrency`` in flight).

The payments are sent by a subprocess of this script (so sending never delays the SSE reader); each
``balance.credited`` is matched to its payment by ``payload.transactionHash`` (the pay call returns
the hash). Latency runs from the payment's send time (its scheduled time in the open loop) to the
moment its event line is read off the stream; both processes use the same monotonic clock. Credited
per second = payments credited / (last event - first send). Database timestamps split the latency
into stages (Horizon stream and monitor, RabbitMQ and worker, relay, SSE). Then it checks that each
payment was credited exactly once (events per hash, ``deposits`` rows) and that every user's available
balance equals what was paid to the wallet, and prints one table with the core count, the CPU each
process group used, and the targets (p50 <= 200 ms, p99 <= 1 s, >= 200 deposits/s) met or not met.
Figures are noisy on a shared 2-core machine: the sandbox, the sender and this reader compete with
the Orchestrator for the same cores (the CPU table shows how much).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from scripts.bench.common import (  # standard library only: safe before the re-exec
    CpuMeter,
    Rig,
    call,
    create_users,
    percentile,
    record,
    reexec_in_venv,
    run_on_rig,
    say,
    start_profiles,
    start_system,
    stop_profiles,
    tail,
    wait_healthy,
    wait_wallets_active,
)

reexec_in_venv()

import aiohttp  # noqa: E402  (after the re-exec into the virtualenv)
import psycopg  # noqa: E402

P50_TARGET_MS = 200.0
P99_TARGET_MS = 1000.0
RATE_TARGET = 200.0
EVENT_TYPE = "balance.credited"
PROCESS_GROUPS = ("sandbox", "sender", "web", "workers", "chain", "monitor", "scheduler", "postgres", "rabbitmq",
                  "load generator", "other")

# --------------------------------------------------------------------------------------------------
# The sender (a subprocess of this script: ``--send SPEC OUT``)


@dataclass
class Sent:
    """One payment: its hash (None when the pay call failed), wallet index and monotonic times."""

    hash: str | None
    wallet: int
    sent: float
    acked: float
    status: str


async def send_payments(spec: dict[str, Any]) -> list[Sent]:
    """Issuer payments through ``/_sandbox/stellar/pay``: open loop at ``rate`` (latency counted from each
    payment's scheduled time, so a stall is never hidden) or, with rate 0, ``concurrency`` back-to-back."""
    url = spec["url"].rstrip("/") + "/_sandbox/stellar/pay"
    destinations: list[str] = spec["destinations"]
    count, rate, concurrency, amount = spec["count"], spec["rate"], spec["concurrency"], spec["amount"]
    results: list[Sent | None] = [None] * count
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(i: int, sent: float) -> None:
            wallet = i % len(destinations)
            body = {"from": "issuer", "to": destinations[wallet], "amount": amount, "asset": "USDC"}
            tx_hash, status = None, ""
            try:
                async with session.post(url, json=body) as response:
                    data = await response.json(content_type=None)
                    status = str(response.status)
                    if response.status == 200:
                        tx_hash = str(data["hash"])
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as error:
                status = type(error).__name__
            results[i] = Sent(tx_hash, wallet, sent, time.perf_counter(), status)

        if rate > 0:
            start = time.perf_counter() + 0.05
            tasks = []
            for i in range(count):
                scheduled = start + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, scheduled)))
            await asyncio.gather(*tasks)
        else:
            queue = iter(range(count))

            async def worker() -> None:
                for i in queue:
                    await one(i, time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


def sender_main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    results = asyncio.run(send_payments(spec))
    Path(out_path).write_text(json.dumps({"cpu": time.process_time(), "sent": [r.__dict__ for r in results]}))


async def run_sender(rig: Rig, name: str, *, destinations: list[str], count: int, rate: float,
                     concurrency: int, amount: str) -> tuple[list[Sent], float]:
    """Start the sender subprocess and wait for it (checking the system stays up meanwhile); returns
    the payments and the CPU seconds the sender used (an exited process escapes the CPU meter)."""
    spec = rig.log_dir / f"{name}.spec.json"
    out = rig.log_dir / f"{name}.out.json"
    spec.write_text(json.dumps({"url": rig.sandbox_url, "destinations": destinations, "count": count,
                                "rate": rate, "concurrency": concurrency, "amount": amount}))
    child = rig.processes.start(name, [sys.executable, "-m", "scripts.bench.deposits", "--send", str(spec), str(out)],
                                rig.env)
    while child.process.poll() is None:
        rig.processes.check_alive(ignore=child)
        await asyncio.sleep(0.05)
    if child.process.returncode != 0:
        raise RuntimeError(f"the sender failed ({child.process.returncode}):\n{tail(child.log)}")
    rig.processes.forget(child)
    data = json.loads(out.read_text())
    return [Sent(**row) for row in data["sent"]], float(data["cpu"])


# --------------------------------------------------------------------------------------------------
# Set-up through the API and the database


async def create_external_account(session: aiohttp.ClientSession, rig: Rig) -> str:
    async with session.post(f"{rig.sandbox_url}/_sandbox/stellar/accounts", json={"usdcTrustline": True}) as reply:
        data = await reply.json(content_type=None)
        if reply.status >= 300:
            raise RuntimeError(f"the sandbox could not create an account: {reply.status} {data}")
        return str(data["publicKey"])


# --------------------------------------------------------------------------------------------------
# The SSE reader


class EventReader:
    """Reads ``balance.credited`` off one SSE connection; records when each transaction hash arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.sources: Counter[str] = Counter()
        self.events = 0
        self.connected = asyncio.Event()
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self, session: aiohttp.ClientSession, rig: Rig) -> None:
        headers = {"Authorization": f"Bearer {rig.master_key}", "Accept": "text/event-stream"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with session.get(f"{rig.api}/events", params={"types": EVENT_TYPE}, headers=headers,
                               timeout=timeout) as response:
            if response.status != 200:
                raise RuntimeError(f"GET /events answered {response.status}: {await response.text()}")
            self.connected.set()
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                now = time.perf_counter()
                event = json.loads(line[6:])
                if event.get("eventType") != EVENT_TYPE:
                    continue
                payload = event.get("payload") or {}
                self.events += 1
                self.sources[str(payload.get("source"))] += 1
                tx_hash = payload.get("transactionHash")
                if tx_hash:
                    self.arrivals[str(tx_hash)].append(now)
                self.changed.set()

    async def start(self, session: aiohttp.ClientSession, rig: Rig) -> None:
        self.task = asyncio.create_task(self.run(session, rig))
        done, _ = await asyncio.wait({self.task, asyncio.create_task(self.connected.wait())}, timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            self.task.result()
            raise RuntimeError("the SSE stream ended at once")
        if not self.connected.is_set():
            raise RuntimeError("the SSE stream did not open within 30 s")

    async def wait_for(self, hashes: list[str], rig: Rig, quiet_limit: float) -> None:
        """Until every hash has arrived, or nothing new arrived for ``quiet_limit`` seconds."""
        last_progress = time.monotonic()
        while any(h not in self.arrivals for h in hashes):
            rig.processes.check_alive()
            if self.task is not None and self.task.done():
                self.task.result()
                raise RuntimeError("the SSE stream closed")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)
                last_progress = time.monotonic()
            if time.monotonic() - last_progress > quiet_limit:
                return


# --------------------------------------------------------------------------------------------------
# Runs and the report


STAGES = ("send->ack (sandbox applies)", "ack->recorded (stream+monitor)", "recorded->credit tx (mq+worker)",
          "credit tx->relayed", "relayed->SSE read")


@dataclass
class RunResult:
    name: str
    sent: list[Sent]
    latencies_ms: list[float] = field(default_factory=list)
    credited: int = 0
    credited_rate: float = 0.0
    accept_rate: float = 0.0
    send_seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    db_xacts: int = 0
    stages_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ok(self) -> list[Sent]:
        return [s for s in self.sent if s.hash]

    def failures(self) -> str:
        bad = Counter(s.status for s in self.sent if not s.hash)
        return ", ".join(f"{k}x{v}" for k, v in sorted(bad.items())) or "-"


def summarise(name: str, sent: list[Sent], reader: EventReader) -> RunResult:
    result = RunResult(name, sent)
    ok = result.ok
    if not ok:
        return result
    arrived = [(s, reader.arrivals[s.hash][0]) for s in ok if s.hash in reader.arrivals]
    result.credited = len(arrived)
    result.latencies_ms = [(t - s.sent) * 1000 for s, t in arrived]
    first_send = min(s.sent for s in sent)
    result.send_seconds = max(s.acked for s in sent) - first_send
    result.accept_rate = len(ok) / result.send_seconds if result.send_seconds > 0 else 0.0
    if arrived:
        span = max(t for _, t in arrived) - first_send
        result.credited_rate = len(arrived) / span if span > 0 else 0.0
    return result


async def measured_run(name: str, rig: Rig, reader: EventReader, wallets: list[str], args: argparse.Namespace,
                       rate: float) -> RunResult:
    say(f"run: {name}: {args.deposits} deposits over {len(wallets)} wallets")
    meter = CpuMeter(rig.groups, rig.database)
    meter.start()
    sent, sender_cpu = await run_sender(rig, name.split(maxsplit=1)[0], destinations=wallets,
                                        count=args.deposits, rate=rate, concurrency=args.concurrency,
                                        amount=args.amount)
    await reader.wait_for([s.hash for s in sent if s.hash], rig, args.settle)
    cpu = meter.stop()
    cpu["sender"] = sender_cpu / max(time.perf_counter() - meter.started, 1e-9)
    result = summarise(name, sent, reader)
    result.cpu, result.db_xacts = cpu, meter.xacts
    return result


async def add_stages(rig: Rig, runs: list[RunResult], reader: EventReader) -> None:
    """Split each credited deposit's latency with the database's timestamps (``now()`` of each
    transaction: the monitor's batch, the credit, the relay); same machine, same clock."""
    offset = time.time() - time.perf_counter()  # wall clock of perf_counter 0 (CLOCK_MONOTONIC)
    async with await psycopg.AsyncConnection.connect(rig.database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT d.tx_hash, extract(epoch FROM d.created_at), extract(epoch FROM d.credited_at), "
            "extract(epoch FROM o.relayed_at) FROM deposits d JOIN outbox o ON o.event_type = %s "
            "AND o.payload->>'transactionHash' = d.tx_hash", (EVENT_TYPE,))
        rows = {r[0]: (float(r[1]), float(r[2] or 0), float(r[3] or 0)) for r in await cursor.fetchall()}
    for run in runs:
        stages: dict[str, list[float]] = {s: [] for s in STAGES}
        for s in run.ok:
            if s.hash not in rows or s.hash not in reader.arrivals:
                continue
            recorded, credit, relayed = rows[s.hash]
            points = [s.sent, s.acked, recorded - offset, credit - offset, relayed - offset,
                      reader.arrivals[s.hash][0]]
            for stage, (a, b) in zip(STAGES, itertools.pairwise(points), strict=True):
                stages[stage].append((b - a) * 1000)
        run.stages_ms = stages


@dataclass
class Checks:
    exactly_once: str = ""
    deposits_rows: str = ""
    balances: str = ""
    ok: bool = True


async def verify(session: aiohttp.ClientSession, rig: Rig, users: list[str], runs: list[RunResult],
                 reader: EventReader, amount: Decimal) -> Checks:
    checks = Checks()
    ours = [s for run in runs for s in run.ok]
    per_hash = Counter(len(reader.arrivals.get(s.hash or "", [])) for s in ours)
    foreign = sum(len(v) for h, v in reader.arrivals.items() if h not in {s.hash for s in ours})
    exact = per_hash.get(1, 0) == len(ours) and not foreign
    checks.exactly_once = (f"Exactly once (SSE): {len(ours)} paid; events per hash: "
                           + ", ".join(f"{k} event(s) x{v}" for k, v in sorted(per_hash.items()))
                           + f"; events for other hashes: {foreign}; sources: {dict(reader.sources)} -> "
                           + ("ok" if exact else "MISMATCH"))
    async with await psycopg.AsyncConnection.connect(rig.database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT status, count(*), count(DISTINCT tx_hash) FROM deposits "
                                    "WHERE user_id = ANY(%s) GROUP BY status", (users,))
        rows = await cursor.fetchall()
    statuses = {r[0]: (int(r[1]), int(r[2])) for r in rows}
    rows_ok = set(statuses) == {"CREDITED"} and statuses["CREDITED"] == (len(ours), len(ours))
    found = ", ".join(f"{k} {v[0]} ({v[1]} distinct hashes)" for k, v in statuses.items()) or "no rows"
    checks.deposits_rows = (f"Deposits table: {found} for {len(ours)} payments -> "
                            f"{'ok' if rows_ok else 'MISMATCH'}")
    paid = Counter(s.wallet for s in ours)
    wrong = []

    async def balance(i: int, user_id: str) -> None:
        data = (await call(session, rig, "GET", f"/users/{user_id}/balance"))["data"]
        if Decimal(str(data["available"])) != amount * paid[i]:
            wrong.append(f"{user_id}: {data['available']} != {amount * paid[i]}")

    for chunk in range(0, len(users), 16):
        await asyncio.gather(*(balance(i, u) for i, u in enumerate(users) if chunk <= i < chunk + 16))
    checks.balances = (f"Balances: {len(users) - len(wrong)} of {len(users)} users' available = what was paid "
                       f"to their wallet ({amount * len(ours)} USDC in all)"
                       + (f" -> MISMATCH: {'; '.join(wrong[:5])}" if wrong else " -> ok"))
    checks.ok = exact and rows_ok and not wrong
    return checks


def fmt(value: float) -> str:
    return f"{value:.1f}" if value == value else "n/a"


def print_report(args: argparse.Namespace, raw: RunResult, runs: list[RunResult], checks: Checks,
                 setup: str) -> None:
    line = "-" * 116
    print()
    print(f"Orchestrator deposit benchmark: {os.cpu_count()} CPU cores "
          f"({platform.processor() or platform.machine()}), {args.users} wallets, {args.deposits} deposits per run "
          f"of {args.amount} USDC, workers {args.workers} proc x {args.threads} threads")
    print(setup)
    print(line)
    submit = [(s.acked - s.sent) * 1000 for s in raw.ok]
    print(f"Sandbox raw payment rate (POST /_sandbox/stellar/pay, nobody watching, {args.concurrency} in flight): "
          f"{raw.accept_rate:.0f} payments/s ({len(raw.ok)} in {raw.send_seconds:.2f} s; call p50 "
          f"{fmt(percentile(submit, 50))} ms, p99 {fmt(percentile(submit, 99))} ms; failures {raw.failures()})")
    print(line)
    print(f"{'run':<34}{'paid':>6}{'paid/s':>8}{'credited':>9}{'cred/s':>8}{'p50 ms':>9}{'p90 ms':>9}"
          f"{'p99 ms':>9}{'max ms':>9}  failed sends")
    for r in runs:
        print(f"{r.name:<34}{len(r.ok):>6}{r.accept_rate:>8.0f}{r.credited:>9}{r.credited_rate:>8.0f}"
              f"{fmt(percentile(r.latencies_ms, 50)):>9}{fmt(percentile(r.latencies_ms, 90)):>9}"
              f"{fmt(percentile(r.latencies_ms, 99)):>9}{fmt(max(r.latencies_ms, default=float('nan'))):>9}"
              f"  {r.failures()}")
    print(line)
    print("Where the latency goes, p50 / p99 ms per stage (database now() of each transaction; see docstring):")
    print(f"{'run':<34}" + "".join(f"{s:>34}" for s in STAGES[:3]))
    for r in runs:
        print(f"{r.name:<34}" + "".join(f"{_pair(r.stages_ms.get(s, [])):>34}" for s in STAGES[:3]))
    print(f"{'':<34}" + "".join(f"{s:>34}" for s in STAGES[3:]))
    for r in runs:
        print(f"{r.name:<34}" + "".join(f"{_pair(r.stages_ms.get(s, [])):>34}" for s in STAGES[3:]))
    print(line)
    groups = [g for g in PROCESS_GROUPS if any(r.cpu.get(g, 0) >= 0.005 for r in runs)]
    print(f"{'CPU cores used (/proc)':<34}" + "".join(f"{g[:10]:>11}" for g in groups) + "   DB xacts/deposit")
    for r in runs:
        per = r.db_xacts / len(r.ok) if r.ok else 0.0
        print(f"{r.name:<34}" + "".join(f"{r.cpu.get(g, 0.0):>11.2f}" for g in groups) + f"{per:>12.1f}")
    print(line)
    print(checks.exactly_once)
    print(checks.deposits_rows)
    print(checks.balances)
    print("Targets:")
    latency = next((r for r in runs if r.name.startswith("latency")), None)
    throughput = next((r for r in runs if r.name.startswith("throughput")), None)
    if latency is not None:
        record("deposit -> balance.credited on SSE, p50", percentile(latency.latencies_ms, 50), "ms", kind="latency")
        record("deposit -> balance.credited on SSE, p99", percentile(latency.latencies_ms, 99), "ms", kind="latency")
    if throughput is not None:
        record("deposits credited", throughput.credited_rate, "deposits/s")
    if latency is not None:
        p50, p99 = percentile(latency.latencies_ms, 50), percentile(latency.latencies_ms, 99)
        complete = latency.credited == len(latency.ok) and latency.ok
        print(f"  p50 deposit -> balance.credited <= {P50_TARGET_MS:.0f} ms ({latency.name}): {fmt(p50)} ms -> "
              f"{'met' if complete and p50 <= P50_TARGET_MS else 'NOT MET'}")
        print(f"  p99 deposit -> balance.credited <= {P99_TARGET_MS:.0f} ms ({latency.name}): {fmt(p99)} ms -> "
              f"{'met' if complete and p99 <= P99_TARGET_MS else 'NOT MET'}"
              + ("" if complete else f" ({len(latency.ok) - latency.credited} never credited)"))
    if throughput is not None:
        met = throughput.credited_rate >= RATE_TARGET and throughput.credited == len(throughput.ok)
        print(f"  >= {RATE_TARGET:.0f} deposits credited/s ({throughput.name}): {throughput.credited_rate:.0f}/s -> "
              f"{'met' if met else 'NOT MET'}")
        ceiling = raw.accept_rate
        watched = throughput.accept_rate
        side = ("the Orchestrator (it credited slower than the sandbox accepted payments)"
                if throughput.credited_rate < 0.9 * watched else
                "the sandbox / sender (credits kept up with the payments it accepted)")
        print(f"    sandbox alone: {ceiling:.0f} payments/s; during this run it accepted {watched:.0f}/s while "
              f"the Orchestrator credited {throughput.credited_rate:.0f}/s -> limiting side: {side}")


def _pair(values: list[float]) -> str:
    return f"{fmt(percentile(values, 50))} / {fmt(percentile(values, 99))}"


# --------------------------------------------------------------------------------------------------
# The run


async def bench(args: argparse.Namespace, rig: Rig) -> tuple[RunResult, list[RunResult], Checks, str]:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        say(f"sandbox at {rig.sandbox_url}; measuring its raw payment rate (nobody watching)")
        sink = await create_external_account(session, rig)
        raw_sent, _ = await run_sender(rig, "raw", destinations=[sink], count=args.deposits, rate=0,
                                       concurrency=args.concurrency, amount=args.amount)
        raw = summarise("raw", raw_sent, EventReader())

        start_system(rig, rig.env["SANDBOX_SEED"], args)
        await wait_healthy(session, rig, 60)
        say(f"system up at {rig.api}; creating {args.users} users and waiting for their wallets")
        started = time.perf_counter()
        users = await create_users(session, rig, args.users)
        wallets = await wait_wallets_active(rig, users, args.activation_timeout)
        setup = (f"Set-up: {args.users} users created and their wallets ACTIVE in "
                 f"{time.perf_counter() - started:.1f} s; sandbox {rig.sandbox_url}, web {rig.api}")

        reader = EventReader()
        await reader.start(session, rig)
        runs: list[RunResult] = []
        try:
            if not args.skip_latency:
                runs.append(await measured_run(f"latency @{args.rate:g}/s open loop", rig, reader, wallets,
                                               args, args.rate))
            if not args.skip_throughput:
                spies = start_profiles(rig, Path(args.profile)) if args.profile else []
                try:
                    runs.append(await measured_run(f"throughput ({args.concurrency} in flight)", rig, reader,
                                                   wallets, args, 0.0))
                finally:
                    stop_profiles(spies)
            await asyncio.sleep(args.linger)  # late duplicates would show up in the exactly-once check
            await add_stages(rig, runs, reader)
            checks = await verify(session, rig, users, runs, reader, Decimal(args.amount))
        finally:
            if reader.task is not None:
                reader.task.cancel()
                await asyncio.gather(reader.task, return_exceptions=True)
    return raw, runs, checks, setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.deposits",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--deposits", type=int, default=1000, help="deposits per run (default 1000)")
    parser.add_argument("--users", type=int, default=50, help="users (wallets) the deposits go to (default 50)")
    parser.add_argument("--rate", type=float, default=100.0, help="deposits per second of the latency run (100)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="pay calls in flight in the throughput and raw runs (default 32)")
    parser.add_argument("--amount", default="1", help="USDC per deposit (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="dramatiq worker processes (default 2, as the Procfile)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="after sending, give up waiting for missing events after this many quiet seconds")
    parser.add_argument("--linger", type=float, default=2.0, help="seconds to keep listening before the checks")
    parser.add_argument("--activation-timeout", type=float, default=180.0, help="longest wait for the wallets")
    parser.add_argument("--skip-latency", action="store_true", help="skip the fixed-rate latency run")
    parser.add_argument("--skip-throughput", action="store_true", help="skip the as-fast-as-possible run")
    parser.add_argument("--profile", metavar="DIR", help="py-spy monitor, workers, web and sandbox during the "
                                                         "throughput run (collapsed stacks in DIR)")
    parser.add_argument("--send", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.deposits < 1 or args.users < 1 or args.rate <= 0 or args.concurrency < 1:
        parser.error("--deposits, --users, --rate and --concurrency must be positive")
    if Decimal(args.amount) <= 0:
        parser.error("--amount must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.send:
        sender_main(*args.send)
        return 0

    outcome = run_on_rig(args, lambda rig: bench(args, rig))
    if isinstance(outcome, int):
        return outcome
    raw, runs, checks, setup = outcome
    print_report(args, raw, runs, checks, setup)
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
