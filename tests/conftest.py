"""Test configuration: each run gets its own database, queue prefix and Redis prefix.

The environment is set here, at import time, because ``actors`` reads its settings (queue names)
when first imported. A missing PostgreSQL, RabbitMQ or Redis fails the run; nothing is skipped.
"""

from __future__ import annotations

import os
import secrets

RUN_ID = os.environ.get("OFFERHUB_TEST_RUN_ID") or secrets.token_hex(4)
os.environ.update({
    "OFFERHUB_TEST_RUN_ID": RUN_ID,
    "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/offerhub_test_{RUN_ID}",
    "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "RABBITMQ_URL": os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    "QUEUE_PREFIX": f"t{RUN_ID}_",
    "REDIS_PREFIX": f"offerhub-test-{RUN_ID}:",
    "OFFERHUB_MASTER_KEY": "test-master-key-0123456789",
    "STELLAR_NETWORK": "sandbox",
    "RATE_LIMIT_PER_MINUTE": "0",
    "COMMAND_WAIT_SECONDS": "15",
    "COMMAND_SWEEP_SECONDS": "2",
    "LOG_LEVEL": "WARNING",
})

pytest_plugins = (
    "tests.fixtures.environment",
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.web",
    "tests.fixtures.sandbox",
)
