"""Numbers committed outbox events for the stream and wakes the web processes."""

from __future__ import annotations

import logging
import threading

import dramatiq

from actors.broker import EVENTS, engine
from actors.webhooks import send_drains
from orchestrator.outbox import relay

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=EVENTS, max_retries=50, min_backoff=50, max_backoff=1_000)
def relay_outbox() -> None:
    relay.relay(engine(), send_drains)


class Relayer:
    """One relay thread per process, coalescing requests: sixteen commits finishing together cost
    one relay pass, not sixteen passes queueing on the relay lock or sixteen broker messages.

    A request made after a commit is always followed by a pass that starts after it, so the
    committed events are numbered without waiting for the scheduler (which still relays every
    second, for a process that died in between).
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
        while True:
            self.wanted.wait()
            self.wanted.clear()
            try:
                relay.relay(engine(), send_drains)
            except Exception:
                log.exception("Relaying the outbox failed; the scheduler's pass will cover it")


relayer = Relayer()
