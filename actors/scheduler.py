"""The scheduler process: one active leader (advisory lock) running the periodic sweeps."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from actors.airtm import airtm_refresh, process_airtm_webhook
from actors.broker import engine, settings
from actors.chain import run_chain_step
from actors.commands import execute_command
from actors.deposits import send_credits
from actors.dispatch import dispatch
from actors.webhooks import send_drains
from orchestrator.accounts import treasury
from orchestrator.db import leader
from orchestrator.operations import reconcile, sweeps, watch
from orchestrator.outbox import relay
from orchestrator.providers.horizon import Horizon
from orchestrator.settings import Settings

log = logging.getLogger(__name__)
RELAY_SECONDS = 1.0
PRUNE_SECONDS = 3600.0
#: The first wallet check after taking the lead waits at most this long (wallets are still being created).
FIRST_RECONCILE_SECONDS = 60.0
#: How often the leader asks whether the reconciliation report is due (RECONCILE_INTERVAL_HOURS).
RECONCILE_CHECK_SECONDS = 300.0
_reconciling = threading.Lock()


def _reconcile() -> None:
    """Write the periodic reconciliation report, in a thread: it reads every wallet from the ledger, which
    can take minutes, and the relay backstop must not wait for it."""
    if not _reconciling.acquire(blocking=False):
        return

    def work() -> None:
        try:
            if reconcile.due(engine(), settings):
                horizon, trustless = reconcile.providers(settings)
                report = reconcile.run(engine(), settings, horizon=horizon, trustless=trustless,
                                       airtm=reconcile.airtm_client(settings, engine()), trigger="scheduler")
                log.info("Reconciliation report %s: %s", report.id, report.status)
        except Exception:
            log.exception("The reconciliation report failed; the next check retries")
        finally:
            _reconciling.release()

    threading.Thread(target=work, name="reconciliation-report", daemon=True).start()


def run(stop: Callable[[], bool] = lambda: False) -> None:
    """Wait to lead, then loop; a standby takes over when the leader's connection drops."""
    while not stop():
        holder = leader.try_lead(engine(), leader.SCHEDULER_LOCK)
        if holder is None:
            time.sleep(2)
            continue
        log.info("Scheduler is the leader")
        try:
            _lead(holder, stop)
        finally:
            leader.step_down(holder)


def _sweep() -> None:
    age = settings.command_sweep_seconds
    for command_id in sweeps.stale_commands(engine(), older_than_seconds=age):
        log.warning("Republishing command %s (no result yet)", command_id)
        execute_command.send(command_id)
    stale = sweeps.stale_deposits(engine(), older_than_seconds=age)
    if stale:
        log.warning("Republishing the credit of %d deposit(s)", len(stale))
        send_credits(stale)
    for step_id in sweeps.stalled_steps(engine(), older_than_seconds=max(age, settings.chain_stall_seconds)):
        log.warning("Driving on stalled chain step %s", step_id)
        run_chain_step.send(step_id)
    if settings.airtm_configured:  # AIRTM-backed money in flight is settled in either mode (decision 26)
        _sweep_airtm(age)
    send_drains(sweeps.due_webhooks(engine()))


def _sweep_airtm(age: float) -> None:
    """Settle what lost webhooks left behind (providers.md §3.8): re-read open top-ups and withdrawals."""
    for message_id in sweeps.stale_webhooks(engine(), older_than_seconds=age):
        log.warning("Processing AirTM webhook %s again (not processed yet)", message_id)
        process_airtm_webhook.send(message_id)
    topup_ids, withdrawal_ids = sweeps.airtm_open(engine(), period_seconds=settings.airtm_refresh_seconds)
    for topup_id in topup_ids:
        airtm_refresh.send("topup", topup_id)
    for withdrawal_id in withdrawal_ids:
        airtm_refresh.send("withdrawal", withdrawal_id)


def _reconcile_while(leading: threading.Event) -> None:
    """Compare every wallet with the book every ``RECONCILE_SECONDS`` (a thread of its own: one Horizon
    read per wallet must not hold up the relay backstop and the sweeps)."""
    horizon = Horizon(settings)
    # the first pass waits a little too: a fresh deployment is still creating its wallets
    wait = min(settings.reconcile_seconds, FIRST_RECONCILE_SECONDS)
    while _pause(leading, wait):
        try:
            found = watch.reconcile(engine(), horizon)
            log.info("Reconciled %d wallet(s) with the book: %d difference(s), %d problem(s)",
                     found.wallets_compared, found.differences, found.problems)
        except Exception:
            log.exception("Reconciliation failed; trying again at the next interval")
        wait = settings.reconcile_seconds


def _sweep_settlement_while(leading: threading.Event) -> None:
    """Sweep the settlement account's USDC back to the treasury pool every ``SETTLEMENT_SWEEP_SECONDS`` (a
    thread of its own: it reads the pool's accounts on the ledger). Each sweep is a chain step."""
    _with_horizon_every(leading, settings.settlement_sweep_seconds, treasury.plan_sweep, "The settlement sweep")


def _watch_treasury_while(leading: threading.Event) -> None:
    """Measure the treasury pool every ``TREASURY_WATCH_SECONDS`` (a thread of its own: Horizon reads) for
    /health/detailed, /metrics and ``treasury.low``."""
    _with_horizon_every(leading, settings.treasury_watch_seconds, treasury.measure, "Measuring the treasury pool")


def _with_horizon_every(leading: threading.Event, seconds: float,
                        work: Callable[[Any, Settings, Horizon], list[Any]], what: str) -> None:
    """Run ``work`` every ``seconds`` while leading and dispatch what it plans; a failure waits for the next."""
    horizon = Horizon(settings)
    while _pause(leading, seconds):
        try:
            dispatch(work(engine(), settings, horizon))
        except Exception:
            log.exception("%s failed; trying again at the next interval", what)


def _pause(leading: threading.Event, seconds: float) -> bool:
    """Sleep ``seconds`` while still leading; whether to go on."""
    deadline = time.monotonic() + seconds
    while leading.is_set() and time.monotonic() < deadline:
        time.sleep(min(0.5, seconds))
    return leading.is_set()


def _lead(holder: object, stop: Callable[[], bool]) -> None:
    leading = threading.Event()
    leading.set()
    # in either mode: WALLET-backed users keep their wallets after a switch to AirTM (decision 26)
    threading.Thread(target=_reconcile_while, args=(leading,), name="reconcile", daemon=True).start()
    if settings.treasury_watch_seconds > 0:
        threading.Thread(target=_watch_treasury_while, args=(leading,), name="treasury-watch",
                         daemon=True).start()
    if settings.settlement_sweep_seconds > 0:
        threading.Thread(target=_sweep_settlement_while, args=(leading,), name="settlement-sweep",
                         daemon=True).start()
    try:
        _loop(holder, stop)
    finally:
        leading.clear()


def _loop(holder: object, stop: Callable[[], bool]) -> None:
    next_sweep = next_prune = next_reconcile = 0.0
    while not stop() and leader.still_leading(holder):  # type: ignore[arg-type]
        now = time.monotonic()
        try:
            relay.relay(engine(), send_drains)
            if now >= next_sweep:
                _sweep()
                next_sweep = now + settings.command_sweep_seconds / 2
            if now >= next_prune:
                log.info("Pruned %s", sweeps.prune(engine(), event_retention_days=settings.event_retention_days))
                next_prune = now + PRUNE_SECONDS
            if now >= next_reconcile:
                _reconcile()
                next_reconcile = now + RECONCILE_CHECK_SECONDS
        except Exception:
            log.exception("A scheduler pass failed; retrying")
        time.sleep(RELAY_SECONDS)
