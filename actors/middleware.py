"""Cross-cutting concerns for every actor: JSON logs with the message's context, connection clean-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from dramatiq import Broker, Middleware, Worker
from dramatiq.broker import MessageProxy
from sqlalchemy import Engine

from orchestrator import logs
from orchestrator.gc_tuning import settle

#: Actors whose single argument is the id of the row they work on, and the log field it fills.
_SUBJECT = {"execute_command": "command_id", "run_chain_step": "step_id"}


class ProcessContext(Middleware):
    """Binds the message id, the actor and the command (or step) id to every log line of the message
    (the core adds the command's request id once it has read the row); disposes of the pool when the
    worker stops."""

    def __init__(self, engine: Callable[[], Engine], log_level: str = "INFO") -> None:
        self.engine = engine
        self.log_level = log_level

    def after_process_boot(self, broker: Broker) -> None:
        """A worker process of the Dramatiq CLI: its lines become JSON (the in-process test worker
        never boots, so the test run's own logging stays as it is). Its actors are imported by now: their
        modules' objects are frozen out of the collector's way (``gc_tuning``)."""
        logs.configure_logging(self.log_level)
        settle()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()
        subject = _SUBJECT.get(message.actor_name)
        arg = message.args[0] if subject and message.args else None
        logs.bind(message_id=message.message_id, actor=message.actor_name,
                  **({subject: arg} if subject and isinstance(arg, str) else {}))

    def after_process_message(self, broker: Broker, message: MessageProxy, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        self.engine().dispose()
