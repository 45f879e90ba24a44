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

    Eight. Sixteen (a chain process's threads) cost credits dearly: the workers' CPU per waited credit
    was 4.7 ms and PostgreSQL's 3.5 against 2.8 and 1.5 with eight (issue 16, two ``scripts/bench.py``
    runs one after the other: waited credits 0.36 -> 0.45 of the same run's write skeleton), while lifecycles/s
    moved within the spread of 200-lifecycle runs (4.8 to 7.0/s over eight runs, either size).
    The chain's lock connections have a pool of their own (``actors.chain.context``)."""
    return create_sync_engine(settings.database_url, pool_size=8)


#: ``confirm_delivery``: a send returns only once RabbitMQ holds the message (DESIGN, write path).
broker = RabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True)
broker.add_middleware(ProcessContext(engine, settings.log_level))
broker.add_middleware(metrics)
#: Lets ``execute_command`` tell a first delivery from a redelivery (it then counts the attempt in one
#: transaction fewer).
broker.add_middleware(CurrentMessage())
dramatiq.set_broker(broker)
