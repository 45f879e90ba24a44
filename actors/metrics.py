"""The actors' Prometheus figures: Dramatiq's middleware plus the commands' own.

Dramatiq's ``Prometheus`` middleware (``dramatiq[prometheus]``, DESIGN decision 14) counts messages,
errors, retries and durations per queue and actor, in prometheus-client's multiprocess mode: each
worker process of one ``dramatiq`` command writes to ``dramatiq_prom_db`` and a forked exposition
server sums them on ``dramatiq_prom_port`` (the Procfile gives ``worker`` and ``chain`` a port and a
directory each). Our command figures go to the same files.

Nothing is recorded in a process that did not boot as a Dramatiq worker (``web`` sends messages
through the same broker; the test run's in-process worker never boots): the hooks do nothing there.
"""

from __future__ import annotations

from typing import Any

from dramatiq import Broker
from dramatiq.middleware.prometheus import Prometheus


class ActorMetrics(Prometheus):
    """Dramatiq's Prometheus middleware, active only in booted worker processes."""

    def __init__(self) -> None:
        super().__init__()
        self.booted = False
        self.commands: Any = None
        self.command_age: Any = None

    def after_process_boot(self, broker: Broker) -> None:
        super().after_process_boot(broker)  # points prometheus-client at the shared directory first
        import prometheus_client as prom  # only now: it picks its multiprocess mode on import

        registry = prom.CollectorRegistry()
        self.commands = prom.Counter("offerhub_commands_finished_total", "Commands finished, by kind and status.",
                                     ["kind", "status"], registry=registry)
        self.command_age = prom.Histogram(
            "offerhub_command_age_seconds", "Seconds from a command's creation to its end, by kind.", ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800), registry=registry)
        self.booted = True

    def command_finished(self, kind: str | None, status: str, age_seconds: float | None) -> None:
        if not self.booted or kind is None:
            return
        self.commands.labels(kind, status).inc()
        if age_seconds is not None:
            self.command_age.labels(kind).observe(age_seconds)

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        if self.booted:
            super().after_worker_shutdown(broker, worker)

    def after_nack(self, broker: Broker, message: Any) -> None:
        if self.booted:
            super().after_nack(broker, message)

    def after_enqueue(self, broker: Broker, message: Any, delay: Any) -> None:
        if self.booted:
            super().after_enqueue(broker, message, delay)

    def before_delay_message(self, broker: Broker, message: Any) -> None:
        if self.booted:
            super().before_delay_message(broker, message)

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if self.booted:
            super().before_process_message(broker, message)

    def after_process_message(self, broker: Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if self.booted:
            super().after_process_message(broker, message, result=result, exception=exception)

    def after_skip_message(self, broker: Broker, message: Any, *, result: Any = None,
                           exception: BaseException | None = None) -> None:
        if self.booted:
            super().after_process_message(broker, message, result=result, exception=exception)


#: The one instance on the broker (the command actor reports to it).
metrics = ActorMetrics()
