"""An instance whose ``PAYMENT_PROVIDER`` is switched by a restart, as an operator does it (issue 15 point 4).

One database of its own (bootstrapped once, as an operator runs ``python -m orchestrator bootstrap``), queue
and Redis prefixes of its own, and every Procfile role a money flow needs: ``web``, ``worker``, ``chain``,
``scheduler`` and ``monitor``. ``switch(provider)`` stops them all (SIGKILL, as a crash or a hard restart)
and starts them again with the other provider on the same database, ledger and AirTM. AirTM's webhooks are
not pointed at it: whatever it learns from AirTM it learns by reading (the refresh and the scheduler's
polling), so a test sees the polling work in either mode. The settlement sweep is off, so the pool's
accounts change only by escrows and the tests compare them to the stroop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import aiohttp
import psycopg
import pytest
from sqlalchemy import Engine

from orchestrator.db import create_sync_engine, libpq_url
from orchestrator.settings import Settings
from scripts.ports import free_port
from tests.api import Api
from tests.fixtures.airtm import _wait_healthy
from tests.fixtures.broker import delete_queues
from tests.fixtures.logs import LOG_DIR
from tests.fixtures.processes import ROOT, following, process, wait_for


@dataclass
class SwitchableInstance:
    url: str
    engine: Engine
    env: dict[str, str]
    provider: str | None = None
    running: ExitStack = field(default_factory=ExitStack)

    def roles(self) -> dict[str, tuple[str, ...]]:
        prefix = self.env["QUEUE_PREFIX"]
        dramatiq = ("-m", "dramatiq", "actors", "--processes", "1", "--threads", "4", "--queues")
        return {"worker": (*dramatiq, f"{prefix}commands", f"{prefix}events"),
                "chain": (*dramatiq, f"{prefix}chain"),
                "scheduler": ("-m", "orchestrator", "scheduler"),
                "monitor": ("-m", "orchestrator", "monitor")}

    def start(self, provider: str) -> None:
        env = {**self.env, "PAYMENT_PROVIDER": provider}
        web_log = LOG_DIR / f"switch-{provider}-web-{time.monotonic_ns()}.log"
        web = self.running.enter_context(process("-m", "web", log=web_log, **env))
        for args in self.roles().values():
            self.running.enter_context(process(*args, log=None, **env))
        _wait_healthy(self.url, web, web_log)
        wait_for(lambda: following(self.engine), what="the monitor to follow the stream")
        self.provider = provider

    def stop(self) -> None:
        self.running.close()
        self.running = ExitStack()
        self.provider = None

    def switch(self, provider: str) -> None:
        """Restart every process with ``provider`` (nothing else changes: same database, ledger and AirTM)."""
        if self.provider != provider:
            self.stop()
            self.start(provider)


@pytest.fixture(scope="module")
def switchable(settings: Settings, sandbox_url: str) -> Iterator[SwitchableInstance]:
    database_url = settings.database_url + "_switch"
    name = database_url.rsplit("/", 1)[1]
    admin = libpq_url(settings.database_url).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    queue_prefix = f"{settings.queue_prefix}switch_"
    env = {"DATABASE_URL": database_url, "QUEUE_PREFIX": queue_prefix, "PORT": str(port), "PUBLIC_BASE_URL": url,
           "REDIS_PREFIX": f"{settings.redis_prefix}switch:", "AIRTM_REFRESH_SECONDS": "2",
           "AIRTM_TIMEOUT_MS": "3000", "COMMAND_WAIT_SECONDS": "15", "COMMAND_SWEEP_SECONDS": "2",
           "TOPUP_SUCCESS_REDIRECT_URL": "https://marketplace.example/topup/done",
           "TOPUP_CANCEL_REDIRECT_URL": "https://marketplace.example/topup/canceled",
           "SETTLEMENT_SWEEP_SECONDS": "0", "TREASURY_ACCOUNTS": "2",
           # the pool is measured every second against a watermark above what tests pay it (test_treasury_watch)
           "TREASURY_WATCH_SECONDS": "1", "TREASURY_LOW_WATERMARK": "1000"}
    subprocess.run([sys.executable, "-m", "orchestrator", "bootstrap"], cwd=ROOT,
                   env={**os.environ, **env, "PAYMENT_PROVIDER": "crypto"}, check=True, capture_output=True)
    engine = create_sync_engine(database_url, pool_size=4)
    instance = SwitchableInstance(url, engine, env)
    try:
        yield instance
    finally:
        instance.stop()
        engine.dispose()
        delete_queues(settings, queue_prefix)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def switch_api(switchable: SwitchableInstance, master_key: str) -> AsyncIterator[Api]:
    """The master key's ``Api`` on the switchable instance; a fresh connection per request, since the
    server behind it is restarted."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(base_url=switchable.url, connector=connector) as session:
        yield Api(session, master_key)  # type: ignore[arg-type]  # the same request() as a TestClient
