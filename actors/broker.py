"""The Dramatiq broker (RabbitMQ with publisher confirms), queue names and the process's engine.

Dramatiq's CLI imports this package and needs the broker set at import time; settings are read once
here. Nothing connects until the first message is sent or consumed.
"""

from __future__ import annotations

import sys
from functools import cache

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import CurrentMessage
from sqlalchemy import Engine

from actors.metrics import metrics
from actors.middleware import ProcessContext
from orchestrator.db import create_sync_engine
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings

try:
    settings = Settings.from_env()
except ConfigError as error:  # a worker started with a bad configuration: the operator's one message, no traceback
    print(error.message, file=sys.stderr)  # noqa: T201
    raise SystemExit(2) from None

#: Queue names carry the run's prefix so test runs and instances never share a queue.
COMMANDS = f"{settings.queue_prefix}commands"
EVENTS = f"{settings.queue_prefix}events"
CHAIN = f"{settings.queue_prefix}chain"
WEBHOOKS = f"{settings.queue_prefix}webhooks"

@cache
def engine() -> Engine:
    """This process's connection pool, created on first use.

    It keeps 16: a worker process's 8 threads and its relay thread, a chain process's 16 threads. A pool
    smaller than its users opened and closed a connection per transaction past its size, and a thread
    waiting for a connection made every step of a lifecycle longer. Issue 16, 200-lifecycle runs on this
    host: 6.4 to 7.0/s (four runs) with this pool and the chain's lock pool at 16; 4.8 to 6.5/s with 8 and 2,
    5.6 with only the chain's at 16. PostgreSQL's CPU rises with it (0.36 cores against 0.15)."""
    return create_sync_engine(settings.database_url, pool_size=16, max_overflow=8)


#: ``confirm_delivery``: a send returns only once RabbitMQ holds the message (DESIGN, write path).
broker = RabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True)
broker.add_middleware(ProcessContext(engine, settings.log_level))
broker.add_middleware(metrics)
#: Lets ``execute_command`` tell a first delivery from a redelivery (it then counts the attempt in one
#: transaction fewer).
broker.add_middleware(CurrentMessage())
dramatiq.set_broker(broker)
