"""The monitor process: one active leader (advisory lock) follows Horizon; standbys wait to take over."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from actors.broker import engine, settings
from actors.deposits import send_credits
from orchestrator.db import leader
from orchestrator.payments.monitor import Monitor, NetworkMismatch

log = logging.getLogger(__name__)
LEADER_CHECK_SECONDS = 2.0


def run() -> None:
    """Wait to lead, then follow the stream until the lock is lost or the process is told to stop."""
    while True:
        holder = leader.try_lead(engine(), leader.MONITOR_LOCK)
        if holder is None:
            time.sleep(LEADER_CHECK_SECONDS)
            continue
        log.info("Monitor is the leader; following Horizon from the stored cursor")
        try:
            if asyncio.run(_lead(holder)):
                return
        finally:
            leader.step_down(holder)


async def _lead(holder: object) -> bool:
    """Follow the stream while leading; True when the process was told to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(Monitor(settings, engine(), send_credits).run(stop))
    lost = False
    while not stop.is_set() and not task.done():
        await asyncio.sleep(LEADER_CHECK_SECONDS)
        if not await asyncio.to_thread(leader.still_leading, holder):  # type: ignore[arg-type]
            log.error("Lost the monitor lock; stepping down")
            lost = True
            break
    requested = stop.is_set()
    stop.set()
    task.cancel()
    (outcome,) = await asyncio.gather(task, return_exceptions=True)
    if isinstance(outcome, NetworkMismatch):
        # refuse to run, in one line and without a traceback (issue 14): nothing here can fix the setting
        sys.stderr.write(f"offerhub monitor: refusing to run: {outcome}\n")
        raise SystemExit(2)
    return requested and not lost
