"""Numbers committed outbox events for the stream and wakes the web processes."""

from __future__ import annotations

import logging
import threading
import time

import dramatiq

from actors.broker import EVENTS, engine
from actors.webhooks import send_drains
from orchestrator.outbox import relay

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=EVENTS, max_retries=50, min_backoff=50, max_backoff=1_000)
def relay_outbox() -> None:
    relay.relay(engine(), send_drains)


#: The least time between two relay passes of one process: what an event may wait under load.
GAP_SECONDS = 0.05


class Relayer:
    """One relay thread per process, coalescing requests: sixteen commits finishing together cost
    one relay pass, not sixteen passes queueing on the relay lock or sixteen broker messages.

    A request made after a commit is always followed by a pass that starts after it, so the
    committed events are numbered without waiting for the scheduler (which still relays every
    second, for a process that died in between). Passes start at least ``GAP_SECONDS`` apart: a
    request after a quiet spell is relayed at once, and under load each pass takes every commit of
    its gap (issue 16: a pass per one or two commits was a relay transaction per credit).
    """

    def __init__(self) -> None:
        self.wanted = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def request(self) -> None:
        self.wanted.set()
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
                    self.thread.start()

    def _run(self) -> None:
        last = 0.0
        while True:
            self.wanted.wait()
            time.sleep(max(0.0, last + GAP_SECONDS - time.monotonic()))  # gather what commits meanwhile
            self.wanted.clear()
            last = time.monotonic()
            try:
                relay.relay(engine(), send_drains)
            except Exception:
                log.exception("Relaying the outbox failed; the scheduler's pass will cover it")


relayer = Relayer()
