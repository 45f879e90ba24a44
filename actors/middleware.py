"""Cross-cutting concerns for every actor: log context and connection clean-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from dramatiq import Broker, Middleware, Worker
from dramatiq.broker import MessageProxy
from sqlalchemy import Engine


class ProcessContext(Middleware):
    """Binds the message id and actor to every log line; disposes of the pool when the worker stops."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self.engine = engine

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        structlog.contextvars.bind_contextvars(message_id=message.message_id, actor=message.actor_name)

    def after_process_message(self, broker: Broker, message: MessageProxy, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        self.engine().dispose()
