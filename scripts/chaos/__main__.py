"""Chaos run: the whole system from the Procfile, crypto and AirTM lanes on one instance, random kills and
faults, provider switches mid-run, then checks.

    scripts/chaos.py                                  # 1,000 lifecycles, 8 + 4 lanes, a fault every ~3 s
    scripts/chaos.py --lifecycles 60 --lanes 4        # small: 4 crypto + 2 AirTM lanes, two switches
    scripts/chaos.py --lifecycles 200 --duration 120  # shorter (the test suite runs about this)
    scripts/chaos.py --seed 7 --faults kill_chain=3,restart_rabbitmq=1 --sandbox-faults horizon_bad_seq=1

(``scripts/chaos.py`` runs ``python -m scripts.chaos``, which re-executes itself under ``.venv/bin/python``
when needed.)

What it starts (``scripts.chaos.rig``; all on 127.0.0.1, all stopped and removed at the end): its
own ``redis-server`` and its own RabbitMQ node (own node name, ports, epmd and Mnesia directory: the
shared 6379/5672 are never touched), a TCP proxy in front of the shared PostgreSQL (only its own
connections are ever dropped) and a database ``offerhub_chaos_<run>`` of its own, the sandbox, and
every process of the ``Procfile`` (web, worker, chain, monitor, scheduler, webhooks) with a queue and
Redis prefix of its own: ONE instance, AirTM configured in either mode (DESIGN decisions 16 and 26), the
treasury pool created by ``bootstrap`` and the sandbox's AirTM webhooks pointed at it. ``--submit-via``
sets ``TRUSTLESS_SUBMIT_VIA`` (``trustless``: signed Trustless Work envelopes go through TW's
send-transaction; ``horizon``: straight to Horizon, then TW is told).

Set-up: the instance starts with ``PAYMENT_PROVIDER=crypto`` and ``--lanes`` WALLET lanes are made (users
whose wallets the chain activates, and an outside account each); then it is switched to ``airtm`` (a user's
backing is fixed by the mode it was created in) and ``--airtm-lanes`` AIRTM lanes are made (users linked to
AirTM accounts seeded in the sandbox). USDC is paid into each treasury account of the pool and the
operator's float (the pool's and the AirTM enterprise's) is recorded with ``orchestrator/operations/reconcile.py``'s
``record_float``, as an operator runs ``offerhub reconcile --record-float``.

What it does (``scripts.chaos.driver``): every lane, each with one buyer and one seller, runs lifecycles
drawn from one list of ``--lifecycles`` by ``--mix`` (release, refund, a dispute decided FULL_RELEASE,
FULL_REFUND or SPLIT, a cancel after the reserve, a withdrawal, money in). A WALLET lane's money comes in by a
real ledger deposit and leaves to its outside account; an AIRTM lane's comes in by a top-up confirmed on
AirTM's checkout and leaves by an AirTM payout, and its orders are escrowed on Stellar funded by the treasury
pool. ``--switches`` times (two by default: to crypto, and back to airtm), at equal fractions of the
lifecycles (or of ``--duration``, whichever comes first), every product process is restarted with the other
``PAYMENT_PROVIDER`` while lifecycles are in flight; the driver holds a few funded orders of each backing
across each switch, so orders funded in one mode are settled in the other. Two switches cover both
directions with orders in flight. ``--listeners`` SSE listeners follow ``/events`` all along and reconnect
with ``Last-Event-ID``, and two webhook endpoints (every event; ``order.*``) deliver to a receiver that
refuses a tenth of them (``scripts.chaos.webhooks``). Meanwhile (``scripts.chaos.faults``), every
``--fault-interval`` seconds on average, one fault from ``--faults``: SIGKILL and restart of a product process
(serving both kinds of lanes, in the mode then in force), a restart of the private Redis or RabbitMQ, every
PostgreSQL connection reset at the proxy, or one sandbox fault rule from ``--sandbox-faults`` (Horizon,
Trustless Work, AirTM, AirTM's webhooks). ``--no-airtm`` leaves AirTM out: crypto lanes only, no switch.

Then (``scripts.chaos.checks``) it stops the faults, waits for quiescence, stores an ``offerhub
reconcile`` report, and prints each figure: orders by state (every one terminal or waiting for the
marketplace) and by funding, the orders that spanned each switch, no command, flow, chain step, deposit,
top-up or AirTM webhook left open, the journal balances, projection = journal, each wallet's book = its
sandbox ledger USDC, every deposit credited once, no ledger payment or book entry made twice, every top-up
credited once and every AirTM withdrawal one payout, the treasury pool's ledger USDC = journal + recorded
float to the stroop, the AirTM enterprise balance = users' AirTM claims + recorded operator funds to the
cent, the reconciliation without differences, every SSE listener saw every event exactly once, and each
webhook endpoint received every event it matches at least once, signed (the receiver deduplicates on the
event id). Exit code 0 only when every figure holds; 1 on any violation, 2 when the run could not be made
(the rig failed).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench.common import reexec_in_venv  # standard library only: safe before the re-exec

if __name__ == "__main__":
    reexec_in_venv()

import aiohttp  # after the re-exec into the virtualenv
import psycopg

from scripts.chaos import checks as chaos_checks
from scripts.chaos import driver as chaos_driver
from scripts.chaos import faults as chaos_faults
from scripts.chaos import rig as chaos_rig
from scripts.chaos import webhooks as chaos_webhooks
from scripts.chaos.rig import say


@dataclass
class Outcome:
    """One run's result: what the driver did, what the monkey did, the checks; ``recheck`` reads again."""

    args: argparse.Namespace
    rig: chaos_rig.Rig
    facts: chaos_driver.Facts
    monkey: chaos_faults.Monkey
    listeners: list[chaos_driver.Listener]
    receiver: chaos_webhooks.Receiver | None = None
    report: chaos_checks.Report = field(default_factory=chaos_checks.Report)
    switches: list[chaos_rig.Switch] = field(default_factory=list)  # the mid-run ones
    reconciliation: Any = None  # the ``offerhub reconcile`` report stored after quiescence
    started: float = 0.0  # time.monotonic() when the lifecycles began
    seconds: float = 0.0
    quiet_seconds: float = 0.0
    fault_firings: int = 0

    def recheck(self) -> chaos_checks.Report:
        report = chaos_checks.check(self.rig.direct_database_url, self.rig.sandbox_url, self.rig.env, self.facts,
                                    self.listeners, self.switches)
        if self.rig.airtm:
            chaos_checks.reconciliation_figure(self.reconciliation, report)
        with psycopg.connect(self.rig.direct_database_url, autocommit=True) as conn:
            chaos_webhooks.check(conn, self.receiver, report)
        return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/chaos.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=1000, help="lifecycles to drive (default 1000)")
    parser.add_argument("--duration", type=float, default=0,
                        help="stop handing out lifecycles after this many seconds (default 0: no limit)")
    parser.add_argument("--lanes", type=int, default=8, help="WALLET lanes: one buyer/seller pair each (8)")
    parser.add_argument("--airtm-lanes", type=int, default=None,
                        help="AIRTM lanes: one linked buyer/seller pair each (default half of --lanes, at least 1)")
    parser.add_argument("--switches", type=int, default=2,
                        help="provider switches mid-run, at equal fractions of the run (2: to crypto and back)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    mix = ",".join(f"{k}={v}" for k, v in chaos_driver.DEFAULT_MIX.items())
    faults = ",".join(f"{k}={v}" for k, v in chaos_faults.DEFAULT_FAULTS.items())
    parser.add_argument("--mix", default="", help=f"lifecycle weights, e.g. release=25,refund=15 (default {mix})")
    parser.add_argument("--faults", default="", help=f"fault weights, e.g. kill_web=3 (default {faults})")
    parser.add_argument("--sandbox-faults", default="",
                        help=f"sandbox fault weights over: {', '.join(chaos_faults.SANDBOX_FAULTS)} (default all 1)")
    parser.add_argument("--fault-interval", type=float, default=3.0, help="mean seconds between faults (3; 0: none)")
    parser.add_argument("--listeners", type=int, default=3, help="SSE listeners (default 3)")
    parser.add_argument("--step-timeout", type=float, default=240.0,
                        help="longest an order may stay in one state before its lifecycle gives up (240 s)")
    parser.add_argument("--quiet-timeout", type=float, default=300.0, help="longest wait for quiescence (300 s)")
    parser.add_argument("--no-airtm", action="store_true",
                        help="AirTM not configured: WALLET lanes only, no switch")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (always kept on failure)")
    parser.add_argument("--submit-via", choices=("trustless", "horizon"), default="trustless",
                        help="TRUSTLESS_SUBMIT_VIA: where signed Trustless Work envelopes go (default trustless)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    try:
        args.mix_weights = chaos_driver.parse_mix(args.mix)
        args.fault_weights = chaos_faults.parse_weights(args.faults, chaos_faults.DEFAULT_FAULTS,
                                                        chaos_faults.DEFAULT_FAULTS)
        args.sandbox_weights = chaos_faults.parse_weights(args.sandbox_faults,
                                                          dict.fromkeys(chaos_faults.SANDBOX_FAULTS, 1),
                                                          chaos_faults.SANDBOX_FAULTS)
    except ValueError as error:
        parser.error(str(error))
    if args.airtm_lanes is None:
        args.airtm_lanes = max(1, args.lanes // 2)
    if args.no_airtm:
        args.airtm_lanes = args.switches = 0
        for name in [n for n in args.sandbox_weights if n.startswith(("airtm_", "webhook_"))]:
            args.sandbox_weights[name] = 0
    if not any(args.mix_weights.values()):
        parser.error("the lifecycle mix has no weight left")
    if args.lifecycles < 1 or args.lanes < 0 or args.airtm_lanes < 0 or args.lanes + args.airtm_lanes < 1 \
            or args.listeners < 0 or args.switches < 0:
        parser.error("--lifecycles must be positive, some lanes needed, --listeners and --switches not negative")
    if args.switches and not args.airtm_lanes:
        args.switches = 0  # nothing to switch for: WALLET lanes only
    return args


async def wait_healthy(session: aiohttp.ClientSession, api: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            async with session.get(api + "/health") as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{api}/health did not answer 200 within {seconds:.0f} s")


def fund_pool(rig: chaos_rig.Rig, usdc: int, seconds: float = 180) -> str:
    """Pay ``usdc`` USDC into each treasury account once the pool is active, then record the operator's float
    (``offerhub reconcile --record-float``'s function): the checks compare the pool and the enterprise with it."""
    import requests

    from orchestrator.db import create_sync_engine
    from orchestrator.operations import reconcile
    from orchestrator.settings import Settings

    settings = Settings.from_env({**rig.env, "DATABASE_URL": rig.direct_database_url})
    deadline = time.monotonic() + seconds
    with psycopg.connect(rig.direct_database_url, autocommit=True) as conn:
        while True:
            rows = conn.execute("SELECT public_key, purpose, status FROM wallets WHERE purpose IS NOT NULL"
                                ).fetchall()
            if rows and all(r[2] == "ACTIVE" for r in rows):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the treasury pool is not active after {seconds:.0f} s: {rows}")
            time.sleep(0.5)
    treasuries = [r[0] for r in rows if r[1] == "TREASURY"]
    for key in treasuries:
        requests.post(f"{rig.sandbox_url}/_sandbox/stellar/pay", timeout=30, json={
            "from": "issuer", "to": key, "amount": str(usdc), "asset": "USDC"}).raise_for_status()
    engine = create_sync_engine(rig.direct_database_url, pool_size=1)
    try:
        horizon, _ = reconcile.providers(settings)
        while True:
            airtm = reconcile.airtm_client(settings, engine)
            try:
                refused = reconcile.record_float(engine, horizon, airtm)
            finally:
                if airtm is not None:
                    airtm.close()
            if refused is None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator's float could not be recorded: {refused}")
            time.sleep(0.5)
    finally:
        engine.dispose()
    return f"{len(treasuries)} treasury account(s) of {usdc} USDC each"


def reconcile_now(rig: chaos_rig.Rig) -> Any:
    """``offerhub reconcile`` as the operator runs it (``orchestrator/operations/reconcile.py``), stored in the run's
    database; a report with differences emits its event, which the listeners and webhooks then see too."""
    from orchestrator.db import create_sync_engine
    from orchestrator.operations import reconcile
    from orchestrator.settings import Settings

    settings = Settings.from_env({**rig.env, "DATABASE_URL": rig.direct_database_url})
    engine = create_sync_engine(rig.direct_database_url, pool_size=1)
    try:
        horizon, trustless = reconcile.providers(settings)
        airtm = reconcile.airtm_client(settings, engine)
        try:
            return reconcile.run(engine, settings, horizon=horizon, trustless=trustless, airtm=airtm,
                                 trigger="chaos")
        finally:
            if airtm is not None:
                airtm.close()
    finally:
        engine.dispose()


async def switch_midway(args: argparse.Namespace, rig: chaos_rig.Rig, driver: chaos_driver.Driver, total: int,
                        started: float, lanes_done: asyncio.Event, outcome: Outcome) -> None:
    """``--switches`` provider switches at equal fractions of the run. Before each, the driver is asked to hold
    the orders it finds funded (up to ``HOLD_SECONDS`` until one of each backing is held), so some orders
    funded in one mode are settled in the other; everything else in flight is simply caught by the restart."""
    backings = {lane.backing for lane in driver.facts.lanes}
    for n in range(1, args.switches + 1):
        fraction = n / (args.switches + 1)
        at_time = started + args.duration * fraction if args.duration else float("inf")
        while len(driver.facts.lifecycles) < total * fraction and time.monotonic() < at_time:
            if lanes_done.is_set():
                return
            await asyncio.sleep(0.5)
        hold = driver.hold = asyncio.Event()
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline and not lanes_done.is_set() \
                and not all(driver.held[b] for b in backings):  # noqa: ASYNC110  (a count, not an event)
            await asyncio.sleep(0.2)
        provider = "crypto" if rig.provider == "airtm" else "airtm"
        say(f"switch {n}: restarting every process with PAYMENT_PROVIDER={provider}; orders held funded: "
            f"{dict(driver.held)}")
        try:
            switch = await asyncio.to_thread(rig.switch, provider)
        finally:
            driver.hold = None
            hold.set()
        outcome.switches.append(switch)
        say(f"switch {n} to {provider} done in {switch.ended - switch.started:.1f} s")


#: Longest the switcher waits for a funded order of each backing to hold across a switch.
HOLD_SECONDS = 60.0


async def drive(args: argparse.Namespace, rig: chaos_rig.Rig) -> Outcome:
    rng = random.Random(args.seed)
    facts = chaos_driver.Facts()
    monkey = chaos_faults.Monkey(rig, random.Random(args.seed + 1), args.fault_weights, args.sandbox_weights,
                                 args.fault_interval)
    timeout = aiohttp.ClientTimeout(total=60, sock_connect=5)
    connector = aiohttp.TCPConnector(limit=(args.lanes + args.airtm_lanes) * 2 + args.listeners + 8)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as sandbox:
        await wait_healthy(session, rig.api, 120)
        api = chaos_driver.Api(session, rig.api, rig.master_key, facts)
        say(f"system up at {rig.api} in crypto mode; {args.lanes} WALLET lanes of users, waiting for their wallets")
        facts.lanes = await chaos_driver.make_lanes(api, sandbox, rig.sandbox_url, rig.direct_database_url,
                                                    args.lanes, args.seed, rig.run, 300)
        if args.airtm_lanes:
            say("switching to AirTM mode for the AIRTM lanes' users (backing is fixed when a user is created)")
            await asyncio.to_thread(rig.switch, "airtm")
            await wait_healthy(session, rig.api, 120)
            facts.lanes += await chaos_driver.make_airtm_lanes(api, sandbox, rig.sandbox_url, args.airtm_lanes,
                                                               args.seed, rig.run, args.lanes)
            funded = await asyncio.to_thread(fund_pool, rig, 500 + 100 * args.airtm_lanes)
            say(f"{args.airtm_lanes} AIRTM lanes linked; the pool holds {funded}; operator's float recorded")
        listeners = [chaos_driver.Listener(f"listener {i}", key)
                     for i, key in enumerate(await chaos_driver.make_listener_keys(api, args.listeners))]
        receiver = chaos_webhooks.Receiver(random.Random(args.seed + 3))
        await receiver.start()
        await receiver.register(api, rig.direct_database_url)
        say(f"webhook endpoints {', '.join(receiver.hooks)} deliver to {receiver.url}")
        outcome = Outcome(args, rig, facts, monkey, listeners, receiver)
        stop_listening, stop_faults = asyncio.Event(), asyncio.Event()
        # the listeners' own connections: never queued behind the lanes' requests in one pool
        streams = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        listening = [asyncio.create_task(chaos_driver.listen(streams, rig.api, listener, stop_listening,
                                                             random.Random(args.seed + 2 + i)))
                     for i, listener in enumerate(listeners)]
        kinds = chaos_driver.plan_by_backing(args.lifecycles, args.mix_weights, rng, {
            chaos_driver.WALLET: args.lanes, chaos_driver.AIRTM: args.airtm_lanes})
        total = sum(len(share) for share in kinds.values())
        driver = chaos_driver.Driver(api, sandbox, rig.sandbox_url, rig.direct_database_url, facts, rig.run,
                                     args.step_timeout)
        say(f"driving {total} lifecycles on {args.lanes} WALLET + {args.airtm_lanes} AIRTM lanes in "
            f"{rig.provider} mode, {args.switches} switch(es), faults every ~{args.fault_interval:.1f} s "
            f"(seed {args.seed})")
        started = outcome.started = time.monotonic()
        stop_at = started + args.duration if args.duration else float("inf")
        lanes_done = asyncio.Event()
        chaos = asyncio.create_task(monkey.run(stop_faults, sandbox))
        switching = asyncio.create_task(switch_midway(args, rig, driver, total, started, lanes_done, outcome))
        progress = asyncio.create_task(report_progress(facts, monkey, total, listeners))
        try:
            await chaos_driver.run_lanes(driver, facts.lanes, kinds, stop_at)
        finally:
            lanes_done.set()
            await switching
            stop_faults.set()
            await chaos
            progress.cancel()
        outcome.seconds = time.monotonic() - started
        await chaos_faults.clear_faults(sandbox, rig.sandbox_url)
        outcome.fault_firings = await chaos_faults.fault_firings(sandbox, rig.sandbox_url)
        say(f"driven in {outcome.seconds:.0f} s; faults off; waiting for quiescence")
        quiet, outcome.quiet_seconds, counts = await asyncio.to_thread(
            chaos_checks.wait_quiet, [rig.direct_database_url], args.quiet_timeout)
        if not quiet:
            say(f"not quiet after {outcome.quiet_seconds:.0f} s: {counts}")
        if rig.airtm:
            outcome.reconciliation = await asyncio.to_thread(reconcile_now, rig)
            await asyncio.to_thread(chaos_checks.wait_quiet, [rig.direct_database_url], 60)
        await catch_up(rig, listeners)
        await receiver.catch_up(rig.direct_database_url)
        await chaos_driver.stop_listeners(listening, stop_listening)
        await streams.close()
        await receiver.stop()
    outcome.report = await asyncio.to_thread(outcome.recheck)
    outcome.report.figures.insert(0, chaos_checks.Figure("quiescence reached (seconds waited)",
                                                         f"{quiet} ({outcome.quiet_seconds:.0f})", quiet))
    return outcome


async def catch_up(rig: chaos_rig.Rig, listeners: list[chaos_driver.Listener], seconds: float = 60) -> None:
    """Let every listener reach the last relayed position (they are live streams, so this is quick)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(rig.direct_database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT coalesce(max(position), 0) FROM outbox")
        row = await cursor.fetchone()
    top = int(row[0]) if row else 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(listener.last < top for listener in listeners):  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def report_progress(facts: chaos_driver.Facts, monkey: chaos_faults.Monkey, total: int,
                          listeners: list[chaos_driver.Listener]) -> None:
    while True:
        await asyncio.sleep(15)
        outcomes = [life.outcome for life in facts.lifecycles]
        say(f"{sum(o == 'done' for o in outcomes)}/{total} lifecycles done, "
            f"{sum(bool(o) and o != 'done' for o in outcomes)} gave up, {sum(monkey.done.values())} faults "
            f"({monkey.kills} kills); SSE listeners at " + ", ".join(str(listener.last) for listener in listeners))


def print_report(outcome: Outcome) -> None:
    facts, monkey, args = outcome.facts, outcome.monkey, outcome.args
    done = facts.done()
    by_kind: dict[str, list[int]] = {}
    for life in facts.lifecycles:
        counts = by_kind.setdefault(f"{life.kind}/{life.backing.lower()}", [0, 0])
        counts[0] += 1
        counts[1] += life.outcome == "done"
    gave_up = [life for life in facts.lifecycles if life.outcome != "done"]
    print()
    print(f"Chaos run (seed {args.seed}): {len(facts.lifecycles)} lifecycles driven in {outcome.seconds:.0f} s, "
          f"{len(done)} completed, {len(gave_up)} gave up; {args.lanes} WALLET + {args.airtm_lanes} AIRTM lanes, "
          f"{len(outcome.listeners)} SSE listeners")
    print("provider switches mid-run: " + (", ".join(
        f"to {s.provider} after {s.started - outcome.started:.0f} s (restart took {s.ended - s.started:.1f} s)"
        for s in outcome.switches) or "none"))
    print("lifecycles (driven/completed): " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(by_kind.items())))
    for life in gave_up[:10]:
        print(f"    gave up: #{life.index} {life.kind} {life.order_id}: {life.outcome}")
    print(f"kills survived: {monkey.kills} (" + ", ".join(
        f"{k.removeprefix('kill_')} {v}" for k, v in sorted(monkey.done.items()) if k.startswith("kill_")) + ")")
    print("other faults: " + ", ".join(f"{k} {v}" for k, v in sorted(monkey.done.items())
                                       if not k.startswith(("kill_", "sandbox:")) and k != "sandbox")
          + f"; PostgreSQL proxy drops {outcome.rig.proxy.drops}")
    print(f"sandbox faults armed: {monkey.done.get('sandbox', 0)} (" + ", ".join(
        f"{k.removeprefix('sandbox:')} {v}" for k, v in sorted(monkey.done.items()) if k.startswith("sandbox:"))
          + f"), fired {outcome.fault_firings}")
    if monkey.died_on_their_own:
        print("processes that exited on their own (restarted): "
              + ", ".join(f"{k} {v}" for k, v in monkey.died_on_their_own.items()))
    print(f"API answers: {dict(sorted(facts.answers.items()))}; requests retried after a lost answer: "
          f"{facts.retried_requests}; creates asked again after a 202 without the resource: "
          f"{facts.pending_creates}")
    print(f"private RabbitMQ node start: {outcome.rig.startup_seconds.get('rabbitmq', 0):.1f} s; "
          f"Redis {outcome.rig.startup_seconds.get('redis', 0):.1f} s")
    print("-" * 100)
    for line in outcome.report.lines():
        print(line)
    print("-" * 100)
    violations = len(outcome.report.violations)
    print(f"violations: {violations}")


def run(argv: list[str] | None = None, after: Callable[[Outcome], Any] | None = None) -> int:
    """The whole run; ``after(outcome)`` is called while everything is still up (the test uses it)."""
    args = parse_args(argv)
    try:
        extra_env = {"TRUSTLESS_SUBMIT_VIA": args.submit_via, "WEBHOOKS_ALLOW_PRIVATE": "true",
                     "WEBHOOK_RETRY_SCHEDULE": chaos_webhooks.RETRY_SCHEDULE}
        with chaos_rig.rig(keep_logs=args.keep_logs, airtm=not args.no_airtm, extra_env=extra_env) as rig:
            outcome = asyncio.run(drive(args, rig))
            print_report(outcome)
            if after is not None:
                after(outcome)
            if not outcome.report.ok:
                keep = Path(f"/tmp/offerhub-chaos-logs-{rig.run}")
                shutil.copytree(rig.directory, keep, dirs_exist_ok=True)
                say(f"violations found; the processes' logs are kept in {keep}")
            return 0 if outcome.report.ok else 1
    except KeyboardInterrupt:
        say("interrupted; everything this run started was stopped")
        return 130
    except Exception as error:
        say(f"the run could not be made: {type(error).__name__}: {error}")
        return 2


def main() -> int:
    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    return run()


if __name__ == "__main__":
    sys.exit(main())
