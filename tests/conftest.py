"""Test configuration: each run gets its own database, queue prefix and Redis prefix.

The environment is set here, at import time, because ``actors`` reads its settings (queue names)
when first imported. A missing PostgreSQL, RabbitMQ or Redis fails the run; nothing is skipped.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal

from scripts.ports import free_port

# A suite started as a background job of a shell without job control (`nohup scripts/test &`, some CI
# runners) inherits SIGINT ignored, as POSIX has such jobs do, and every process it starts inherits that
# too: the Ctrl-C tests (issue 19) would then fail on the harness, not on the product. The run restores
# Python's own handler, so the processes it starts begin with the default action, as under a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Under pytest-xdist each worker is a run of its own (its own database, queues, Redis keys and sandbox):
# the workers inherit the controller's id and add their name to it.
RUN_ID = (os.environ.get("OFFERHUB_TEST_RUN_ID") or secrets.token_hex(4)).split("_")[0]
if os.environ.get("PYTEST_XDIST_WORKER"):
    RUN_ID = f"{RUN_ID}_{os.environ['PYTEST_XDIST_WORKER']}"
os.environ.update({
    "OFFERHUB_TEST_RUN_ID": RUN_ID,
    "OFFERHUB_TEST_SANDBOX_URL": os.environ.get("OFFERHUB_TEST_SANDBOX_URL") or "",
    "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/offerhub_test_{RUN_ID}",
    "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "RABBITMQ_URL": os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    "QUEUE_PREFIX": f"t{RUN_ID}_",
    "REDIS_PREFIX": f"offerhub-test-{RUN_ID}:",
    "OFFERHUB_MASTER_KEY": "test-master-key-0123456789",
    "STELLAR_NETWORK": "sandbox",
    "PAYMENT_PROVIDER": "crypto",
    "WALLET_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    # the run's sandbox (tests/fixtures/sandbox.py) listens here, so settings can point at it up front
    "SANDBOX_URL": os.environ.get("OFFERHUB_TEST_SANDBOX_URL") or f"http://127.0.0.1:{free_port()}",
    "SANDBOX_SEED": "offerhub-test-sandbox",
    "TRUSTLESS_API_KEY": "sandbox-tw-key",
    # the sandbox's own 50/min limit is off in tests, so is our shared budget (as DESIGN has benchmarks do)
    "TRUSTLESS_REQUESTS_PER_MINUTE": "0",
    "AIRTM_API_KEY": "sandbox-airtm-key",
    "AIRTM_API_SECRET": "sandbox-airtm-secret",
    "RATE_LIMIT_PER_MINUTE": "0",
    "COMMAND_WAIT_SECONDS": "15",
    "COMMAND_SWEEP_SECONDS": "2",
    # no scheduled reconciliation report in the scheduler tests (tests/e2e/test_reconcile.py runs its own)
    "RECONCILE_INTERVAL_HOURS": "0",
    "LOG_LEVEL": "WARNING",
    # no .env: the run's processes see exactly this environment, never a developer's .env in the checkout
    "OFFERHUB_ENV_FILE": "",
    # the run's sandboxes keep their world in memory whatever a developer's shell exports (DESIGN decision 27)
    "SANDBOX_STATE_FILE": "",
    # the webhook tests' receivers listen on 127.0.0.1 (as in the sandbox; DESIGN decision 28)
    "WEBHOOKS_ALLOW_PRIVATE": "true",
})

pytest_plugins = (
    "tests.fixtures.environment",
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.web",
    "tests.fixtures.sandbox",
    "tests.fixtures.logs",
    "tests.fixtures.processes",
    "tests.fixtures.airtm",
    "tests.fixtures.server",
)
