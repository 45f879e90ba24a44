"""Benchmark full escrow lifecycles: create -> reserve -> escrow -> fund -> release (a share refunded),
in crypto mode and then the same lifecycles in AirTM mode (escrows funded by the treasury pool), with
crypto withdrawals alongside the crypto ones, then top-ups and AirTM withdrawals on the AirTM-mode instance.

Run it from the repository (``scripts/bench_lifecycle.py`` runs ``python -m scripts.bench.lifecycle``, which
re-executes itself under ``.venv/bin/python`` when needed)::

    scripts/bench_lifecycle.py                        # 600 lifecycles, 32 in flight, 20 % refunded, both modes
    scripts/bench_lifecycle.py --lifecycles 1000 --concurrency 48 --refund-share 0.1
    scripts/bench_lifecycle.py --withdrawals 0 --topups 0 --airtm-withdrawals 0   # lifecycles only
    scripts/bench_lifecycle.py --lifecycles 0         # money in and out only
    scripts/bench_lifecycle.py --profile /tmp/prof    # also py-spy chain, workers, web and sandbox

What it starts (and stops again, also on failure or Ctrl-C; everything on 127.0.0.1): the same rig as
``scripts.bench.deposits`` (``scripts.bench.common``): a sandbox in instant ledger mode with its
Trustless Work limit off (``SANDBOX_TW_REQUESTS_PER_MINUTE=0``), a scratch database
``offerhub_bench_<random>``, ``python -m orchestrator bootstrap`` and the Procfile's five processes (web,
worker 2 x 8 threads, chain 1 x 16, monitor, scheduler) with ``TRUSTLESS_REQUESTS_PER_MINUTE=0``,
``RATE_LIMIT_PER_MINUTE=0`` and a unique queue/Redis prefix. At the end it drops the database and
deletes its queues and Redis keys.

Set-up (not measured): ``--buyers`` buyers (default: one per concurrent lifecycle, so no two lifecycles
in flight share a buyer wallet) and one distinct seller per lifecycle are created through
``POST /api/v1/users``; their wallets are polled until ACTIVE. Each buyer then receives, through the
sandbox (``POST /_sandbox/stellar/pay`` from the USDC issuer), exactly the USDC its lifecycles need; the
monitor credits it, and the script waits until every buyer's ``available`` holds it.

Measured run: ``--lifecycles`` lifecycles, ``--concurrency`` in flight (closed loop; coroutine ``w`` runs
lifecycles ``w, w + C, …`` with buyer ``w mod buyers``). Each lifecycle is ``POST /orders`` (201),
``/orders/{id}/reserve``, ``/orders/{id}/escrow``, ``/orders/{id}/escrow/fund`` and then
``/orders/{id}/resolution/release`` or, for ``--refund-share`` of them, ``/resolution/refund`` with a
reason. The escrow calls wait for their ledger work (the default, no ``Prefer`` header) and answer 200;
should one answer 202 (its wait ran out), the order is polled until it reaches the state the 200 would
have shown, and the step's time includes the polling. Disputes are not built yet, so no lifecycle opens
one. It prints lifecycles/s (completed lifecycles over the run's wall time), ledger transactions/s
(``chain_steps`` CONFIRMED with a tx hash whose ``confirmed_at`` falls in the run, per kind), p50/p90/p99
of each step and of the whole lifecycle, the CPU cores each process group used (``/proc``) and the
database transactions per lifecycle (``pg_stat_database``).

AirTM mode (issue 15; ``--no-airtm`` skips it): after the crypto run and its checks, the crypto instance's
processes stop and a second instance starts on the same sandbox with ``PAYMENT_PROVIDER=airtm``
(``scripts.bench.airtm``: its own database, queue and Redis prefixes, the Procfile's six processes with
the same pools, chain included, so the comparison is like for like; ``--treasury-accounts`` sizes its
treasury pool, default the product's). Set-up, not measured: as many buyers and sellers as the crypto run,
each linked to an AirTM account seeded at the sandbox; each buyer tops up exactly what its lifecycles need
(POST, the buyer's confirmation at the sandbox's AirTM, the webhook's credit); each treasury account is paid
USDC for every escrow of the run by the sandbox's issuer and that float is recorded (``offerhub reconcile
--record-float``). Then the same plan of lifecycles at the same concurrency, timed the same way: the
escrows are funded from the treasury pool and released to its settlement account (refunds back to the
treasury account), while the book moves the users' USD claims as in crypto mode. Its lifecycles/s is
printed beside the crypto figure (target: within 0.8..1.25 of it, the ledger work being the same) with
its own CPU and database-transaction rows. Checks: every order CLOSED as asked; each seller's claim is
the net paid (0 for a refund) and each buyer's its top-up less what it released; the AirTM enterprise
balance did not move during the run; ``python -m orchestrator check`` on that instance exits 0 (the
book, the treasury pool's USDC on the ledger against the journal and the recorded float, the enterprise
balance against the users' claims and the recorded operator funds).

Money in and out (``scripts.bench.airtm``): ``--withdrawals`` extra users, funded in the set-up like the
buyers, each withdraw ``--withdrawal-amount`` to one external account while the crypto lifecycles run
(``--money-concurrency`` in flight; 201 once the ledger payment landed). After the AirTM-mode lifecycles,
the AirTM-mode instance takes ``--topups`` top-ups and then ``--airtm-withdrawals`` AirTM withdrawals with
``commit: true``. Each kind's rate and its latency (the request's answer, and until the final state) are
printed; checks: the destination received exactly the crypto withdrawals, the AirTM enterprise balance
moved by exactly top-ups less payouts, each AirTM user's balance is its top-up less its withdrawal,
``offerhub check`` passes on the AirTM instance.

Then, in the same run, the machine's PostgreSQL ceiling: ``pgbench -c 16 -j 2`` of one
``BEGIN; UPDATE; INSERT; END`` for ``--pgbench-seconds`` against scratch tables of the same database,
with the Orchestrator idle.

Checks at the end: every order CLOSED with finalStatus RELEASED or REFUNDED as asked; each seller's book
(available + reserved) equals its wallet's USDC on the sandbox ledger (Horizon ``/accounts``) and the
net the contract paid (amount less Trustless Work's 0.3 %, 0 for refunded orders); and
``python -m orchestrator check`` (the journal balances, projection = journal, every wallet's book =
its ledger USDC) exits 0. Target: >= 100 complete lifecycles per second on this 2-core machine with the
Procfile's pools. Figures are noisy on a shared 2-core machine: the sandbox and this load generator
compete with the Orchestrator for the same cores (the CPU table shows how much, and "other" is
everybody else's work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from scripts.bench.common import (  # standard library only: safe before the re-exec
    ROOT,
    CpuMeter,
    PgbenchResult,
    Rig,
    cpu_per_op,
    create_users,
    percentile,
    record,
    reexec_in_venv,
    run_on_rig,
    run_pgbench,
    say,
    start_profiles,
    start_system,
    stop_profiles,
    stop_system,
    wait_healthy,
    wait_wallets_active,
)

reexec_in_venv()

import dataclasses  # noqa: E402

import aiohttp  # noqa: E402  (after the re-exec into the virtualenv)
import psycopg  # noqa: E402

from scripts.bench.airtm import (  # noqa: E402
    AirtmRig,
    Flow,
    MoneyResult,
    airtm_mix,
    crypto_withdrawal,
    enterprise_balance,
    fund_pool,
    linked_users,
    orchestrator_check,
    start_airtm,
    stop_airtm,
    top_up_all,
)

RATE_TARGET = 100.0
#: AirTM-mode lifecycles/s over crypto ones of the same run: the ledger work is the same (issue 15).
AIRTM_RATIO = (0.8, 1.25)
TW_FEE = Decimal("0.003")  # Trustless Work keeps 0.3 % of what the contract pays out (decision 1)
STEPS = ("create", "reserve", "escrow", "fund", "release", "refund")
PROCESS_GROUPS = ("sandbox", "web", "workers", "chain", "monitor", "scheduler", "postgres", "rabbitmq",
                  "load generator", "other")
#: the state a waited (200) answer shows; a 202 is polled until the order gets there
DONE_STATE = {"escrow": ("ESCROW_CREATING", "CREATED"), "fund": ("IN_PROGRESS", "FUNDED"),
              "release": ("CLOSED", "RELEASED"), "refund": ("CLOSED", "REFUNDED")}


# --------------------------------------------------------------------------------------------------
# Set-up: buyers with credited USDC, distinct sellers


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_DOWN)


async def fund_buyers(session: aiohttp.ClientSession, rig: Rig, buyers: list[str], wallets: list[str],
                      needs: list[Decimal], seconds: float) -> float:
    """Pay each buyer's wallet what its lifecycles need from the sandbox's USDC issuer, then wait until
    the monitor credited every one of them; returns the seconds it took."""
    started = time.perf_counter()
    url = f"{rig.sandbox_url}/_sandbox/stellar/pay"
    semaphore = asyncio.Semaphore(16)

    async def pay(wallet: str, amount: Decimal) -> None:
        async with semaphore, session.post(url, json={"from": "issuer", "to": wallet, "amount": str(amount),
                                                      "asset": "USDC"}) as reply:
            if reply.status != 200:
                raise RuntimeError(f"the sandbox refused a payment: {reply.status} {await reply.text()}")

    await asyncio.gather(*(pay(w, n) for w, n in zip(wallets, needs, strict=True) if n > 0))
    deadline = time.monotonic() + seconds
    short: list[str] = []
    async with await psycopg.AsyncConnection.connect(rig.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            rig.processes.check_alive()
            cursor = await conn.execute("SELECT user_id, available FROM balances WHERE user_id = ANY(%s)",
                                        (buyers,))
            have = {row[0]: Decimal(row[1]) for row in await cursor.fetchall()}
            short = [b for b, n in zip(buyers, needs, strict=True) if have.get(b, Decimal(0)) < n]
            if not short:
                return time.perf_counter() - started
            await asyncio.sleep(0.25)
    raise RuntimeError(f"{len(short)} of {len(buyers)} buyers were not credited within {seconds:.0f} s")


# --------------------------------------------------------------------------------------------------
# The lifecycles


@dataclass
class Lifecycle:
    index: int
    buyer: str
    seller: str
    refund: bool
    order_id: str = ""
    started: float = 0.0
    finished: float = 0.0
    steps_ms: dict[str, float] = field(default_factory=dict)
    polled: list[str] = field(default_factory=list)  # steps answered 202 and polled to completion
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.finished > 0


class Client:
    """The API as the load generator sees it: one session, the master key, JSON in and out."""

    def __init__(self, session: aiohttp.ClientSession, rig: Rig) -> None:
        self.session = session
        self.base = rig.api
        self.headers = {"Authorization": f"Bearer {rig.master_key}", "Content-Type": "application/json"}

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, headers=self.headers,
                                        data=json.dumps(body) if body is not None else None) as response:
            return response.status, await response.json(content_type=None)


def describe_error(step: str, status: int, payload: Any) -> str:
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return f"{step}: {status} {code or str(payload)[:120]}"


async def poll_until(client: Client, order_id: str, step: str, deadline: float) -> None:
    """After a 202: GET the order until it shows what the waited answer would have shown."""
    want_status, want_escrow = DONE_STATE[step]
    while time.monotonic() < deadline:
        status, payload = await client.request("GET", f"/orders/{order_id}")
        if status == 200:
            order = payload["data"]
            escrow = order.get("escrow") or {}
            if order["status"] == want_status and escrow.get("status") == want_escrow:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{step}: the order did not reach {want_status}/{want_escrow}")


async def run_lifecycle(client: Client, life: Lifecycle, run: str, amount: str, step_timeout: float) -> None:
    life.started = time.perf_counter()
    final = "refund" if life.refund else "release"
    plan: list[tuple[str, str, dict[str, Any] | None, int]] = [
        ("create", "/orders", {"buyerId": life.buyer, "sellerId": life.seller, "amount": amount,
                               "title": f"Bench lifecycle {life.index}",
                               "clientOrderRef": f"bench-{run}-{life.index}"}, 201),
        ("reserve", "/orders/{id}/reserve", None, 200),
        ("escrow", "/orders/{id}/escrow", None, 200),
        ("fund", "/orders/{id}/escrow/fund", None, 200),
        (final, f"/orders/{{id}}/resolution/{final}", {"reason": "Seller cancelled"} if life.refund else None, 200),
    ]
    for step, path, body, expected in plan:
        began = time.perf_counter()
        try:
            status, payload = await client.request("POST", path.format(id=life.order_id), body)
            if status == 202 and step in DONE_STATE:
                life.polled.append(step)
                await poll_until(client, life.order_id, step, time.monotonic() + step_timeout)
            elif status != expected:
                life.error = describe_error(step, status, payload)
                return
            if step == "create":
                life.order_id = payload["data"]["id"]
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as error:
            life.error = f"{step}: {type(error).__name__} {error}"[:200]
            return
        life.steps_ms[step] = (time.perf_counter() - began) * 1000
    life.finished = time.perf_counter()


@dataclass
class RunResult:
    lifecycles: list[Lifecycle]
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    db_xacts: int = 0
    ledger_by_kind: Counter[str] = field(default_factory=Counter)
    withdrawals: list[Flow] = field(default_factory=list)  # crypto withdrawals run alongside the lifecycles
    money: MoneyResult = field(default_factory=MoneyResult)  # top-ups and AirTM withdrawals (second instance)

    @property
    def done(self) -> list[Lifecycle]:
        return [life for life in self.lifecycles if life.ok]

    @property
    def rate(self) -> float:
        return len(self.done) / self.seconds if self.seconds > 0 else 0.0

    @property
    def ledger_txs(self) -> int:
        """The lifecycles' ledger transactions (the withdrawals' payments are counted apart)."""
        return sum(n for kind, n in self.ledger_by_kind.items() if kind != "withdrawal_payment")


async def db_now(conn: psycopg.AsyncConnection[Any]) -> Any:
    cursor = await conn.execute("SELECT clock_timestamp()")
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


def plan(args: argparse.Namespace, buyers: list[str], sellers: list[str]) -> list[Lifecycle]:
    """The run's lifecycles: ``w``-th in flight uses buyer ``w mod buyers``; every ``1/refund-share``-th refunded.
    The crypto and the AirTM-mode runs use the same plan."""
    share = args.refund_share
    return [Lifecycle(i, buyers[i % args.concurrency % len(buyers)], sellers[i],
                      math.floor((i + 1) * share) > math.floor(i * share)) for i in range(args.lifecycles)]


async def measured_run(session: aiohttp.ClientSession, rig: Rig, args: argparse.Namespace, buyers: list[str],
                       sellers: list[str], withdrawers: list[str], destination: str, label: str = "") -> RunResult:
    """The closed loop on ``rig``'s instance (the AirTM-mode one is a view of the rig with its database and
    environment); ``label`` names its profiles' subdirectory."""
    lives = plan(args, buyers, sellers)
    client = Client(session, rig)
    result = RunResult(lives, withdrawals=[Flow("crypto withdrawal") for _ in withdrawers])
    say(f"run{f' ({label})' if label else ''}: {len(lives)} lifecycles ({sum(life.refund for life in lives)} "
        f"refunded), {args.concurrency} in flight, {len(buyers)} buyers, {len(sellers)} sellers")
    async with await psycopg.AsyncConnection.connect(rig.database_url, autocommit=True) as conn:
        meter = CpuMeter(rig.groups, rig.database)
        meter.start()
        spies = (start_profiles(rig, Path(args.profile) / label if label else Path(args.profile),
                                ("chain", "workers", "web", "sandbox")) if args.profile else [])
        window_start = await db_now(conn)
        started = time.perf_counter()
        try:
            async def lane(w: int) -> None:
                for life in lives[w::args.concurrency]:
                    await run_lifecycle(client, life, rig.run, args.amount, args.step_timeout)

            async def watchdog() -> None:
                while True:
                    rig.processes.check_alive()
                    await asyncio.sleep(0.5)

            async def withdrawal_lane(w: int) -> None:
                for i in range(w, len(withdrawers), args.money_concurrency):
                    await crypto_withdrawal(session, rig, withdrawers[i], destination, args.withdrawal_amount,
                                            result.withdrawals[i], args.step_timeout)

            async def all_lanes() -> None:
                await asyncio.gather(*(lane(w) for w in range(args.concurrency)),
                                     *(withdrawal_lane(w) for w in range(min(args.money_concurrency,
                                                                              len(withdrawers)))))

            guard = asyncio.create_task(watchdog())
            lanes = asyncio.create_task(all_lanes())
            done, _ = await asyncio.wait({guard, lanes}, return_when=asyncio.FIRST_COMPLETED)
            guard.cancel()
            if guard in done:
                lanes.cancel()
                guard.result()
            lanes.result()
        finally:
            stop_profiles(spies)
        result.seconds = time.perf_counter() - started
        window_end = await db_now(conn)
        result.cpu = meter.stop()
        result.db_xacts = meter.xacts
        cursor = await conn.execute(
            "SELECT kind, count(*) FROM chain_steps WHERE status = 'CONFIRMED' AND tx_hash IS NOT NULL "
            "AND confirmed_at BETWEEN %s AND %s GROUP BY kind", (window_start, window_end))
        result.ledger_by_kind = Counter({str(k): int(n) for k, n in await cursor.fetchall()})
    return result


# --------------------------------------------------------------------------------------------------
# Checks


@dataclass
class Checks:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def add(self, ok: bool, line: str) -> None:
        self.lines.append(f"{line} -> {'ok' if ok else 'MISMATCH'}")
        self.ok = self.ok and ok


async def ledger_usdc(session: aiohttp.ClientSession, rig: Rig, account: str) -> Decimal | None:
    async with session.get(f"{rig.sandbox_url}/horizon/accounts/{account}") as reply:
        if reply.status != 200:
            return None
        body = await reply.json(content_type=None)
    return next((Decimal(b["balance"]) for b in body["balances"] if b.get("asset_code") == "USDC"), Decimal(0))


async def check_orders(checks: Checks, rig: Rig, run: RunResult, users: list[str],
                       prefix: str = "") -> dict[str, Decimal]:
    """Every lifecycle completed and its order CLOSED with the finalStatus asked; returns the book (available +
    reserved) of each of ``users``."""
    lives = run.lifecycles
    failed = Counter(life.error.split(":")[0] + ": " + life.error.split(":", 1)[-1].strip()[:60]
                     for life in lives if not life.ok)
    checks.add(not failed, f"{prefix}Lifecycles: {len(run.done)} of {len(lives)} completed"
               + (f"; failures: {dict(failed.most_common(5))}" if failed else ""))
    ids = [life.order_id for life in lives if life.order_id]
    async with await psycopg.AsyncConnection.connect(rig.database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT id, status, final_status FROM orders WHERE id = ANY(%s)", (ids,))
        orders = {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}
        cursor = await conn.execute("SELECT user_id, available, reserved FROM balances WHERE user_id = ANY(%s)",
                                    (users,))
        books = {row[0]: Decimal(row[1]) + Decimal(row[2]) for row in await cursor.fetchall()}
    wrong = [f"{life.order_id or f'#{life.index} (never created)'} {orders.get(life.order_id)}" for life in lives
             if orders.get(life.order_id) != ("CLOSED", "REFUNDED" if life.refund else "RELEASED")]
    released = sum(not life.refund for life in lives)
    checks.add(not wrong, f"{prefix}Orders: {len(lives) - len(wrong)} of {len(lives)} CLOSED with the right "
               f"finalStatus ({released} RELEASED, {len(lives) - released} REFUNDED asked)"
               + (f"; wrong: {'; '.join(wrong[:3])}" if wrong else ""))
    return books


async def verify(session: aiohttp.ClientSession, rig: Rig, run: RunResult, sellers: list[str],
                 seller_wallets: list[str], amount: Decimal, destination: str, withdrawal_amount: Decimal) -> Checks:
    checks = Checks()
    if run.withdrawals:
        completed = [f for f in run.withdrawals if not f.error]
        failed_w = Counter(f.error[:80] for f in run.withdrawals if f.error)
        received = await ledger_usdc(session, rig, destination)
        expected_usdc = withdrawal_amount * len(completed)
        checks.add(not failed_w and received == expected_usdc,
                   f"Crypto withdrawals: {len(completed)} of {len(run.withdrawals)} completed; the destination holds "
                   f"{received} USDC = {expected_usdc}" + (f"; failures: {dict(failed_w.most_common(3))}"
                                                           if failed_w else ""))
    lives = run.lifecycles
    books = await check_orders(checks, rig, run, sellers)
    net = cents(amount * (1 - TW_FEE))
    semaphore = asyncio.Semaphore(16)
    differences: list[str] = []

    async def seller(life: Lifecycle) -> None:
        async with semaphore:
            usdc = await ledger_usdc(session, rig, seller_wallets[life.index])
        book = books.get(life.seller, Decimal(0))
        expected = Decimal(0) if life.refund else net
        if usdc is None or book != usdc or book != expected:
            differences.append(f"{life.seller}: book {book}, ledger {usdc}, expected {expected}")

    await asyncio.gather(*(seller(life) for life in lives))
    checks.add(not differences, f"Sellers: {len(lives) - len(differences)} of {len(lives)} books = their wallet's "
               f"USDC on the ledger = the net paid ({net} per release, 0 per refund)"
               + (f"; {'; '.join(differences[:3])}" if differences else ""))
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "orchestrator", "check"], cwd=ROOT,
                                   env=rig.env, capture_output=True, text=True, timeout=600, check=False)
    output = (done.stdout + done.stderr).strip().splitlines()
    problems = [line for line in output if line.startswith(("FAIL", "DIFF"))]
    summary = "; ".join(line for line in output[-2:] if not line.startswith(("FAIL", "DIFF")))
    checks.add(done.returncode == 0, f"python -m orchestrator check: exit {done.returncode} ({summary})"
               + (f"; {'; '.join(problems[:3])}" if problems else ""))
    return checks


async def verify_airtm(checks: Checks, session: aiohttp.ClientSession, rig: Rig, instance: AirtmRig,
                       run: RunResult, buyers: list[str], sellers: list[str], topped_up: list[Decimal],
                       amount: Decimal, enterprise_before: Decimal) -> None:
    """The AirTM-mode run: every order CLOSED as asked; each seller's claim is the net the contract paid (0 for
    a refund) and each buyer's its top-up less what it released and less Trustless Work's fee on what was
    refunded to it (the contract pays the net either way, decision 1); the enterprise balance did not move (escrows
    are on the ledger, paid from the treasury pool); ``offerhub check`` on the instance (the book, the treasury
    pool's USDC on the ledger against the journal and the recorded float, the enterprise against the claims
    and the recorded operator funds) exits 0."""
    books = await check_orders(checks, rig, run, buyers + sellers, "AirTM mode: ")
    net = cents(amount * (1 - TW_FEE))
    spent: dict[str, Decimal] = dict.fromkeys(buyers, Decimal(0))
    for life in run.lifecycles:
        spent[life.buyer] += amount - net if life.refund else amount
    wrong = [f"seller {life.seller}: {books.get(life.seller, Decimal(0))} != {Decimal(0) if life.refund else net}"
             for life in run.lifecycles if books.get(life.seller, Decimal(0)) != (Decimal(0) if life.refund else net)]
    wrong += [f"buyer {b}: {books.get(b, Decimal(0))} != {n - spent[b]}"
              for b, n in zip(buyers, topped_up, strict=True) if books.get(b, Decimal(0)) != n - spent[b]]
    checks.add(not wrong, f"AirTM mode: {len(buyers) + len(sellers) - len(wrong)} of {len(buyers) + len(sellers)} "
               f"claims as expected (seller: {net} per release, 0 per refund; buyer: its top-up - {amount} per "
               f"release - {amount - net} per refund)" + (f"; {'; '.join(wrong[:3])}" if wrong else ""))
    after = await enterprise_balance(session, rig)
    checks.add(after == enterprise_before, f"AirTM mode: the enterprise balance did not move during the run "
                                           f"({enterprise_before} -> {after})")
    code, output = await orchestrator_check(instance.env)
    problems = [line for line in output if line.startswith(("FAIL", "DIFF", "STUCK"))]
    pool = next((line for line in output if line.startswith("Treasury pool:")), "no treasury pool line")
    checks.add(code == 0, f"AirTM mode: python -m orchestrator check: exit {code} ({output[-1] if output else ''}); "
               f"{pool}" + (f"; {'; '.join(problems[:3])}" if problems else ""))


# --------------------------------------------------------------------------------------------------
# The report


def fmt(value: float) -> str:
    return f"{value:.1f}" if value == value else "n/a"


def print_report(args: argparse.Namespace, setup: str, run: RunResult, pg: PgbenchResult | None,
                 checks: Checks, airtm: RunResult | None = None) -> None:
    line = "-" * 118
    done = run.done
    print()
    print(f"Orchestrator lifecycle benchmark: {os.cpu_count()} CPU cores "
          f"({platform.processor() or platform.machine()}), {args.lifecycles} lifecycles of {args.amount} USDC, "
          f"{args.concurrency} in flight, {args.refund_share:.0%} refunded (disputes are not built yet: none "
          f"opened), workers {args.workers} proc x {args.threads} threads, chain 1 proc x 16 threads, sandbox "
          f"ledger instant")
    print(setup)
    print(line)
    print(f"{'run':<34}{'done':>6}{'failed':>8}{'seconds':>9}{'lifecycles/s':>14}{'ledger txs':>12}"
          f"{'ledger tx/s':>13}{'txs/lifecycle':>15}")
    runs = [(f"crypto, {args.concurrency} in flight", run)]
    if airtm is not None:
        runs.append((f"AirTM mode, {args.concurrency} in flight", airtm))
    for name, each in runs:
        per = each.ledger_txs / len(each.done) if each.done else 0.0
        tx_rate = each.ledger_txs / each.seconds if each.seconds else 0.0
        print(f"{name:<34}{len(each.done):>6}{len(each.lifecycles) - len(each.done):>8}{each.seconds:>9.2f}"
              f"{each.rate:>14.1f}{each.ledger_txs:>12}{tx_rate:>13.1f}{per:>15.2f}")
    for name, each in runs:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(each.ledger_by_kind.items()))
        print(f"  {name.split(',')[0]}: ledger transactions by kind (chain_steps CONFIRMED with a tx hash, confirmed "
              f"in the run): {kinds}")
    refunded = sum(life.refund for life in done)
    print(f"  expected per lifecycle: deploy + fund + 3 for a release ({len(done) - refunded} done) or 2 for a "
          f"refund ({refunded} done) = {5 * (len(done) - refunded) + 4 * refunded}")
    if airtm is not None and run.rate:
        low, high = AIRTM_RATIO
        ratio = airtm.rate / run.rate
        print(f"  AirTM mode / crypto: {ratio:.2f} (target {low}..{high}: the ledger work is the same) -> "
              f"{'met' if low <= ratio <= high else 'NOT MET'}")
    if pg is not None:
        tps = f"{pg.tps:.0f} tps" if pg.tps is not None else "n/a"
        lat = f", avg latency {pg.latency_ms:.1f} ms" if pg.latency_ms is not None else ""
        print(f"  PostgreSQL ceiling, same run, Orchestrator idle: pgbench {tps}{lat} ({pg.note})")
    print(line)
    print(f"{'step (ms)':<34}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'202 polled':>12}")
    for name, each in runs:
        for step in (*STEPS, "whole lifecycle"):
            if step == "whole lifecycle":
                values = [(life.finished - life.started) * 1000 for life in each.done]
                polled = sum(bool(life.polled) for life in each.done)
            else:
                values = [life.steps_ms[step] for life in each.lifecycles if step in life.steps_ms]
                polled = sum(step in life.polled for life in each.lifecycles)
            if not values:
                continue
            label = f"{name.split(',')[0]}: {step}" if airtm is not None else step
            print(f"{label:<34}{len(values):>6}{fmt(percentile(values, 50)):>9}{fmt(percentile(values, 90)):>9}"
                  f"{fmt(percentile(values, 99)):>9}{fmt(max(values)):>9}{polled:>12}")
    print(line)
    groups = [g for g in PROCESS_GROUPS if any(each.cpu.get(g, 0) >= 0.005 for _, each in runs)]
    print(f"{'CPU cores used (/proc)':<34}" + "".join(f"{g[:10]:>11}" for g in groups) + f"{'total':>8}"
          + "  DB xacts/lifecycle")
    for name, each in runs:
        per_xacts = each.db_xacts / len(each.done) if each.done else 0.0
        print(f"{name.split(',')[0] + ' run':<34}" + "".join(f"{each.cpu.get(g, 0.0):>11.2f}" for g in groups)
              + f"{sum(each.cpu.get(g, 0.0) for g in groups):>8.2f}{per_xacts:>20.1f}")
    xacts = run.db_xacts / len(done) if done else 0.0
    print(line)
    print_money(run)
    print(line)
    for text in checks.lines:
        print(text)
    print("Target:")
    if run.lifecycles:  # --lifecycles 0: money in and out alone (bench.py's ``money`` part)
        record("escrow lifecycles (create .. release/refund)", run.rate, "lifecycles/s",
               cpu=cpu_per_op(run.cpu, run.seconds, len(done)), xacts=xacts if done else None)
        record("ledger transactions during lifecycles", run.ledger_txs / run.seconds if run.seconds else None,
               "tx/s")
    if airtm is not None:
        record("AirTM-mode escrow lifecycles (treasury-funded)", airtm.rate, "lifecycles/s",
               cpu=cpu_per_op(airtm.cpu, airtm.seconds, len(airtm.done)),
               xacts=airtm.db_xacts / len(airtm.done) if airtm.done else None)
    met = run.rate >= RATE_TARGET and len(done) == len(run.lifecycles) and checks.ok
    if run.lifecycles:
        print(f"  >= {RATE_TARGET:.0f} complete lifecycles/s with the Procfile's pools: {run.rate:.1f}/s -> "
              f"{'met' if met else 'NOT MET'}")


def print_money(run: RunResult) -> None:
    """Withdrawals and top-ups: rate and latency (request answered, and until the final state)."""
    rows: list[tuple[str, list[Flow], float, str]] = []
    if run.withdrawals:
        rows.append(("crypto withdrawal", run.withdrawals, run.seconds, "201 COMPLETED (waits for the ledger)"))
    for kind, final in (("top-up", "TOPUP_SUCCEEDED (webhook)"), ("AirTM withdrawal", "WITHDRAWAL_COMPLETED")):
        if run.money.of(kind):
            rows.append((kind, run.money.of(kind), run.money.seconds.get(kind, 0.0), final))
    if not rows:
        return
    print(f"{'money in/out (ms)':<22}{'done':>6}{'failed':>8}{'per s':>8}{'req p50':>9}{'req p90':>9}"
          f"{'final p50':>11}{'final p90':>11}{'final p99':>11}  final state")
    for kind, flows, seconds, final in rows:
        ok = [f for f in flows if not f.error]
        req = [f.request_ms for f in ok]
        total = [f.total_ms for f in ok]
        rate = len(ok) / seconds if seconds > 0 else 0.0
        record(f"{kind}s (until {final.split()[0]})", rate, "top-ups/s" if kind == "top-up" else "payouts/s")
        print(f"{kind:<22}{len(ok):>6}{len(flows) - len(ok):>8}{rate:>8.1f}{fmt(percentile(req, 50)):>9}"
              f"{fmt(percentile(req, 90)):>9}{fmt(percentile(total, 50)):>11}{fmt(percentile(total, 90)):>11}"
              f"{fmt(percentile(total, 99)):>11}  {final}")
    print("  crypto withdrawals run alongside the crypto lifecycles (their rate is over the whole run); top-ups, "
          "then AirTM withdrawals, run on the AirTM-mode instance after its lifecycles, each phase timed on its own")


# --------------------------------------------------------------------------------------------------
# The run


async def airtm_lifecycles(session: aiohttp.ClientSession, rig: Rig, args: argparse.Namespace, instance: AirtmRig,
                           checks: Checks) -> tuple[str, RunResult]:
    """The same lifecycles on the AirTM-mode instance: AIRTM-backed buyers funded by top-ups and sellers linked
    to AirTM (set-up, not measured), escrows funded by the treasury pool; its checks join ``checks``."""
    buyers_n, amount = args.buyers or args.concurrency, Decimal(args.amount)
    started = time.perf_counter()
    say(f"AirTM instance at {instance.api}: linking {buyers_n} buyers and {args.lifecycles} sellers to AirTM")
    buyers = await linked_users(session, rig, instance, buyers_n, "buyer")
    sellers = await linked_users(session, rig, instance, args.lifecycles, "seller")
    uses = Counter(i % args.concurrency % buyers_n for i in range(args.lifecycles))
    needs = [amount * uses[b] for b in range(buyers_n)]
    linked = time.perf_counter() - started
    say(f"AirTM instance: {sum(needs)} USD topped up by {buyers_n} buyers; funding the treasury pool")
    started = time.perf_counter()
    await top_up_all(session, rig, instance, [(u, e, n) for (u, e), n in zip(buyers, needs, strict=True)],
                     args.money_concurrency, args.activation_timeout)
    topped = time.perf_counter() - started
    per_account = amount * args.lifecycles  # each treasury account could fund every escrow of the run
    accounts = await fund_pool(session, rig, instance, per_account, args.activation_timeout)
    before = await enterprise_balance(session, rig)
    view = dataclasses.replace(rig, database=instance.database, env=instance.env,
                               pids={**instance.pids, "sandbox": rig.pids["sandbox"]})
    buyer_ids, seller_ids = [u for u, _ in buyers], [u for u, _ in sellers]
    run = await measured_run(session, view, args, buyer_ids, seller_ids, [], "", label="airtm")
    say(f"AirTM run done: {len(run.done)} lifecycles in {run.seconds:.1f} s; checking")
    await verify_airtm(checks, session, view, instance, run, buyer_ids, seller_ids, needs, amount, before)
    setup = (f"AirTM set-up: {buyers_n + args.lifecycles} users linked to AirTM in {linked:.1f} s; {sum(needs)} USD "
             f"topped up in {topped:.1f} s; {accounts} treasury account(s) paid {per_account} USDC each, float "
             f"recorded")
    return setup, run


async def bench(args: argparse.Namespace, rig: Rig
                ) -> tuple[str, RunResult, PgbenchResult | None, Checks, RunResult | None]:
    timeout = aiohttp.ClientTimeout(total=args.step_timeout + 30)
    connector = aiohttp.TCPConnector(limit=args.concurrency + 16)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        crypto = start_system(rig, rig.env["SANDBOX_SEED"], args)
        await wait_healthy(session, rig, 60)
        buyers_n = (args.buyers or args.concurrency) if args.lifecycles else 0
        total = buyers_n + args.lifecycles + args.withdrawals
        say(f"system up at {rig.api}; creating {buyers_n} buyers, {args.lifecycles} sellers and "
            f"{args.withdrawals} withdrawers, waiting for their wallets")
        started = time.perf_counter()
        users: list[str] = []
        wallets: list[str] = []
        for first in range(0, total, args.setup_batch):
            batch = await create_users(session, rig, min(args.setup_batch, total - first), first)
            wallets += await wait_wallets_active(rig, batch, args.activation_timeout)
            users += batch
        activated = time.perf_counter() - started
        buyers, sellers = users[:buyers_n], users[buyers_n:buyers_n + args.lifecycles]
        withdrawers = users[buyers_n + args.lifecycles:]
        amount, withdrawal_amount = Decimal(args.amount), Decimal(args.withdrawal_amount)
        uses = Counter(i % args.concurrency % buyers_n for i in range(args.lifecycles))
        needs = [amount * uses[b] for b in range(buyers_n)] + [withdrawal_amount] * len(withdrawers)
        funded = buyers + withdrawers
        say(f"depositing {sum(needs)} USDC into {len(funded)} buyer and withdrawer wallets through the sandbox")
        credited = await fund_buyers(session, rig, funded, wallets[:buyers_n] + wallets[buyers_n + args.lifecycles:],
                                     needs, args.activation_timeout)
        async with session.post(f"{rig.sandbox_url}/_sandbox/stellar/accounts",
                                json={"xlm": "100", "usdcTrustline": True, "usdc": "0"}) as reply:
            destination = (await reply.json())["publicKey"]
        setup = (f"Set-up: {len(users)} users' wallets ACTIVE in {activated:.1f} s; {sum(needs)} USDC deposited "
                 f"on the ledger and credited by the monitor in {credited:.1f} s; sandbox {rig.sandbox_url}")
        run = await measured_run(session, rig, args, buyers, sellers, withdrawers, destination)
        say(f"run done: {len(run.done)} lifecycles in {run.seconds:.1f} s; checking")
        checks = await verify(session, rig, run, sellers, wallets[buyers_n:buyers_n + args.lifecycles], amount,
                              destination, withdrawal_amount)
        airtm: RunResult | None = None
        if (args.airtm_lifecycles and args.lifecycles) or args.topups > 0:
            # one instance at a time: the crypto one's processes stop, so neither run pays for the other's
            stop_system(rig, crypto)
            instance = await start_airtm(session, rig, args)
            try:
                if args.airtm_lifecycles and args.lifecycles:
                    airtm_setup, airtm = await airtm_lifecycles(session, rig, args, instance, checks)
                    setup += "\n" + airtm_setup
                if args.topups > 0:
                    say(f"AirTM instance: {args.topups} top-ups, then {min(args.airtm_withdrawals, args.topups)} "
                        f"AirTM withdrawals")
                    run.money = await airtm_mix(session, rig, instance, topups=args.topups,
                                                payouts=min(args.airtm_withdrawals, args.topups),
                                                concurrency=args.money_concurrency, amount=args.withdrawal_amount,
                                                wait_seconds=args.step_timeout)
            finally:
                stop_airtm(rig, instance)
            failed_money = [f.error for f in run.money.flows if f.error]
            checks.add(not failed_money, f"Top-ups and AirTM withdrawals: {len(run.money.flows) - len(failed_money)}"
                       f" of {len(run.money.flows)} finished" + (f"; {failed_money[:2]}" if failed_money else ""))
            for ok, text in run.money.checks:
                checks.add(ok, text)
    if not checks.ok:  # the rig removes its log directory on the way out: keep a copy to read
        kept = Path(tempfile.mkdtemp(prefix=f"offerhub-bench-lifecycle-logs-{rig.run}-"))
        for log in rig.log_dir.glob("*.log"):
            shutil.copy(log, kept)
        say(f"checks failed; the processes' logs are kept in {kept}")
    pg = None
    if args.pgbench_seconds > 0:
        say(f"pgbench for {args.pgbench_seconds:.0f} s (the Orchestrator idle)")
        pg = run_pgbench({"dsn": rig.database_url, "port": "5432", "dbname": rig.database},
                         accounts=max(100, len(users)), duration=args.pgbench_seconds)
    return setup, run, pg, checks, airtm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench_lifecycle.py",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lifecycles", type=int, default=600, help="lifecycles (and sellers) (default 600)")
    parser.add_argument("--concurrency", type=int, default=32, help="lifecycles in flight (default 32)")
    parser.add_argument("--buyers", type=int, default=0,
                        help="buyers (default: one per lifecycle in flight, so no two in flight share a wallet)")
    parser.add_argument("--refund-share", type=float, default=0.2, help="share refunded instead of released (0.2)")
    parser.add_argument("--amount", default="10.00", help="USDC per order (default 10.00)")
    parser.add_argument("--airtm", dest="airtm_lifecycles", action=argparse.BooleanOptionalAction, default=True,
                        help="the same lifecycles again on an AirTM-mode instance, escrows funded by its treasury "
                             "pool (default: yes)")
    parser.add_argument("--treasury-accounts", type=int, default=0,
                        help="TREASURY_ACCOUNTS of the AirTM-mode instance (default 0: the product's default)")
    parser.add_argument("--withdrawals", type=int, default=48,
                        help="crypto withdrawals run alongside the lifecycles, one per extra funded user (48)")
    parser.add_argument("--topups", type=int, default=48,
                        help="top-ups on a second, AirTM-mode instance after the lifecycles; 0 skips AirTM (48)")
    parser.add_argument("--airtm-withdrawals", type=int, default=48,
                        help="AirTM withdrawals (commit: true) after the top-ups, at most one per top-up (48)")
    parser.add_argument("--money-concurrency", type=int, default=8,
                        help="withdrawals / top-ups in flight (default 8)")
    parser.add_argument("--withdrawal-amount", default="10.00",
                        help="USD per withdrawal and top-up (default 10.00, the withdrawal minimum)")
    parser.add_argument("--workers", type=int, default=2, help="dramatiq worker processes (default 2, as the Procfile)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    parser.add_argument("--setup-batch", type=int, default=12,
                        help="users created (and activated) at a time in the set-up (default 12: more wallet "
                             "steps at once than the chain pool has connections for deadlocks it; see the report)")
    parser.add_argument("--step-timeout", type=float, default=120.0, help="longest wait for one step (120 s)")
    parser.add_argument("--pgbench-seconds", type=float, default=10.0, help="pgbench duration; 0 skips it (10)")
    parser.add_argument("--activation-timeout", type=float, default=300.0,
                        help="longest wait for the wallets, and for the deposits to be credited (300 s)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy chain, workers, web and sandbox during the "
                                                         "measured run (raw stacks in DIR)")
    args = parser.parse_args(argv)
    if min(args.withdrawals, args.topups, args.airtm_withdrawals) < 0 or args.money_concurrency < 1:
        parser.error("--withdrawals, --topups and --airtm-withdrawals must not be negative")
    if args.lifecycles < 0 or args.concurrency < 1 or args.buyers < 0:
        parser.error("--concurrency must be positive, --lifecycles and --buyers not negative")
    if not 0 <= args.refund_share <= 1:
        parser.error("--refund-share must be between 0 and 1")
    if Decimal(args.amount) <= 0:
        parser.error("--amount must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    outcome = run_on_rig(args, lambda rig: bench(args, rig), name="lifecycle",
                         extra_env={"TRUSTLESS_REQUESTS_PER_MINUTE": "0"})
    if isinstance(outcome, int):
        return outcome
    setup, run, pg, checks, airtm = outcome
    print_report(args, setup, run, pg, checks, airtm)
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
