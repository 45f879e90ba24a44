#!/usr/bin/env python3
"""Chaos run: the whole system from the Procfile, mixed lifecycles, random kills and faults, then checks.

    scripts/chaos.py                                  # 1,000 lifecycles, 8 lanes, a fault every ~3 s
    scripts/chaos.py --lifecycles 200 --duration 120  # shorter (the test suite runs about this)
    scripts/chaos.py --seed 7 --faults kill_chain=3,restart_rabbitmq=1 --sandbox-faults horizon_bad_seq=1

What it starts (``scripts/chaos_rig.py``; all on 127.0.0.1, all stopped and removed at the end): its
own ``redis-server`` and its own RabbitMQ node (own node name, ports, epmd and Mnesia directory: the
shared 6379/5672 are never touched), a TCP proxy in front of the shared PostgreSQL (only its own
connections are ever dropped) and a database ``offerhub_chaos_<run>`` of its own, the sandbox, and
every process of the ``Procfile`` (web, worker, chain, monitor, scheduler, webhooks) with a queue and
Redis prefix of its own. ``--submit-via`` sets ``TRUSTLESS_SUBMIT_VIA`` (``trustless``: signed Trustless
Work envelopes go through TW's send-transaction; ``horizon``: straight to Horizon, then TW is told).

What it does (``scripts/chaos_driver.py``): ``--lanes`` lanes, each with one buyer, one seller and one
outside account, run ``--lifecycles`` lifecycles drawn from ``--mix`` (release, refund, a dispute
decided FULL_RELEASE, FULL_REFUND or SPLIT, a crypto withdrawal, a deposit, an AirTM top-up; every
order's buyer is topped up by a real ledger deposit first). ``--listeners`` SSE listeners follow ``/events`` all along
and reconnect with ``Last-Event-ID``, and two webhook endpoints (every event; ``order.*``) deliver to a
receiver that refuses a tenth of them (``scripts/chaos_webhooks.py``). Meanwhile (``scripts/chaos_faults.py``), every
``--fault-interval`` seconds on average, one fault from ``--faults``: SIGKILL and restart of a
product process, a restart of the private Redis or RabbitMQ, every PostgreSQL connection reset at
the proxy, or one sandbox fault rule from ``--sandbox-faults``. AirTM top-ups run on a second
instance in AirTM mode (DESIGN decision 5: web, worker and scheduler of the same Procfile with
``PAYMENT_PROVIDER=airtm``, a database of its own, the sandbox's AirTM webhooks pointed at it), whose
processes are killed too (``kill_airtm``); ``--no-airtm`` leaves it out.

Then (``scripts/chaos_checks.py``) it stops the faults, waits for quiescence and prints each figure:
orders by state (every one terminal or waiting for the marketplace), no command, flow, chain step or
deposit left open, the journal balances, projection = journal, each wallet's book = its sandbox
ledger USDC, every deposit credited once, no ledger payment or book entry made twice, and every SSE
listener saw every event exactly once, and each webhook endpoint received every event it matches at
least once, signed (the receiver deduplicates on the event id). Exit code 0 only when every figure
holds; 1 on any violation, 2 when the run could not be made (the rig failed).
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

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench_common import reexec_in_venv  # noqa: E402  (standard library only)

if __name__ == "__main__":
    reexec_in_venv(__file__)

import aiohttp  # noqa: E402
import psycopg  # noqa: E402

from scripts import chaos_checks, chaos_driver, chaos_faults, chaos_rig, chaos_webhooks  # noqa: E402
from scripts.chaos_rig import say  # noqa: E402


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
    seconds: float = 0.0
    quiet_seconds: float = 0.0
    fault_firings: int = 0

    def recheck(self) -> chaos_checks.Report:
        airtm = bool(self.rig.airtm_env)
        report = chaos_checks.check(self.rig.direct_database_url, self.rig.sandbox_url, self.rig.env, self.facts,
                                    self.listeners, self.rig.direct_airtm_database_url if airtm else None,
                                    self.rig.airtm_env or None)
        with psycopg.connect(self.rig.direct_database_url, autocommit=True) as conn:
            chaos_webhooks.check(conn, self.receiver, report)
        return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=1000, help="lifecycles to drive (default 1000)")
    parser.add_argument("--duration", type=float, default=0,
                        help="stop handing out lifecycles after this many seconds (default 0: no limit)")
    parser.add_argument("--lanes", type=int, default=8, help="lifecycles in flight, one buyer/seller pair each (8)")
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
                        help="no AirTM-mode instance, so no AirTM top-ups (the crypto instance only)")
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
    if args.no_airtm:
        args.mix_weights["airtm_topup"] = 0
        args.fault_weights["kill_airtm"] = 0
    if not any(args.mix_weights.values()):
        parser.error("the lifecycle mix has no weight left")
    if args.lifecycles < 1 or args.lanes < 1 or args.listeners < 0:
        parser.error("--lifecycles and --lanes must be positive, --listeners not negative")
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


async def drive(args: argparse.Namespace, rig: chaos_rig.Rig) -> Outcome:
    rng = random.Random(args.seed)
    facts = chaos_driver.Facts()
    monkey = chaos_faults.Monkey(rig, random.Random(args.seed + 1), args.fault_weights, args.sandbox_weights,
                                 args.fault_interval)
    timeout = aiohttp.ClientTimeout(total=60, sock_connect=5)
    connector = aiohttp.TCPConnector(limit=args.lanes * 2 + args.listeners + 8)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as sandbox:
        await wait_healthy(session, rig.api, 120)
        api = chaos_driver.Api(session, rig.api, rig.master_key, facts)
        airtm = chaos_driver.Api(session, rig.airtm_api, rig.master_key, facts) if rig.airtm_env else None
        say(f"system up at {rig.api}; {args.lanes} lanes of users, waiting for their wallets")
        facts.lanes = await chaos_driver.make_lanes(api, sandbox, rig.sandbox_url, rig.direct_database_url,
                                                    args.lanes, args.seed, rig.run, 300)
        if airtm is not None:
            await wait_healthy(session, rig.airtm_api, 120)
            say(f"AirTM-mode instance up at {rig.airtm_api}; linking each lane's AirTM account")
            await chaos_driver.link_airtm_users(airtm, sandbox, rig.sandbox_url, facts.lanes, rig.run)
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
        kinds = chaos_driver.plan(args.lifecycles, args.mix_weights, rng)
        driver = chaos_driver.Driver(api, sandbox, rig.sandbox_url, rig.direct_database_url, facts, rig.run,
                                     args.step_timeout, airtm)
        say(f"driving {len(kinds)} lifecycles with faults every ~{args.fault_interval:.1f} s (seed {args.seed})")
        started = time.monotonic()
        stop_at = started + args.duration if args.duration else float("inf")
        chaos = asyncio.create_task(monkey.run(stop_faults, sandbox))
        progress = asyncio.create_task(report_progress(facts, monkey, len(kinds), listeners))
        try:
            await chaos_driver.run_lanes(driver, facts.lanes, kinds, stop_at)
        finally:
            stop_faults.set()
            await chaos
            progress.cancel()
        outcome.seconds = time.monotonic() - started
        await chaos_faults.clear_faults(sandbox, rig.sandbox_url)
        outcome.fault_firings = await chaos_faults.fault_firings(sandbox, rig.sandbox_url)
        say(f"driven in {outcome.seconds:.0f} s; faults off; waiting for quiescence")
        databases = [rig.direct_database_url] + ([rig.direct_airtm_database_url] if rig.airtm_env else [])
        quiet, outcome.quiet_seconds, counts = await asyncio.to_thread(
            chaos_checks.wait_quiet, databases, args.quiet_timeout)
        if not quiet:
            say(f"not quiet after {outcome.quiet_seconds:.0f} s: {counts}")
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
        counts = by_kind.setdefault(life.kind, [0, 0])
        counts[0] += 1
        counts[1] += life.outcome == "done"
    gave_up = [life for life in facts.lifecycles if life.outcome != "done"]
    print()
    print(f"Chaos run (seed {args.seed}): {len(facts.lifecycles)} lifecycles driven in {outcome.seconds:.0f} s, "
          f"{len(done)} completed, {len(gave_up)} gave up; {args.lanes} lanes, {len(outcome.listeners)} SSE "
          f"listeners")
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
