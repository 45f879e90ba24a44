"""A developer's world survives a sandbox restart (issue 15 point 5, DESIGN decision 27).

The Procfile's processes (web, worker, chain, monitor) run on a database, queue prefix and Redis prefix of
their own against a sandbox of their own that keeps its state in a file, on a fixed port so a restarted
sandbox answers at the same URL, as under `scripts/dev`. The sandbox is killed with SIGKILL right after a
deposit was credited and started again on its file; the monitor is restarted from its stored cursor.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import requests
from sqlalchemy import Engine, text

from orchestrator.db import create_sync_engine
from orchestrator.settings import Settings
from scripts.ports import free_port
from tests.api import Api
from tests.e2e.test_monitor_crash import wait_credits
from tests.e2e.test_wallets import wallet_status
from tests.fixtures.broker import delete_queues
from tests.fixtures.database import own_database
from tests.fixtures.processes import ROOT, kill, process, wait_for
from tests.fixtures.sandbox import SandboxControl, start_sandbox

pytestmark = pytest.mark.slow


@dataclass
class Instance:
    """The orchestrator's processes on their own database, against a sandbox of their own at `sandbox_url`."""

    url: str
    sandbox_url: str
    state_file: Path
    engine: Engine
    env: dict[str, str]
    processes: ExitStack
    sandbox: ExitStack | None = None

    def start_sandbox(self) -> None:
        """A sandbox on the instance's sandbox port that keeps its world in `state_file`."""
        self.sandbox = self.processes.enter_context(ExitStack())
        port = int(self.sandbox_url.rsplit(":", 1)[1])
        self.sandbox.enter_context(start_sandbox(port, SANDBOX_STATE_FILE=str(self.state_file)))

    def kill_sandbox(self) -> None:
        """SIGKILL (`start_sandbox` ends its process with `Popen.kill`), as `kill -9` would."""
        assert self.sandbox is not None
        self.sandbox.close()

    def start_monitor(self) -> subprocess.Popen[bytes]:
        return self.processes.enter_context(process("-m", "orchestrator", "monitor", **self.env))


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/v1/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def instance(settings: Settings, tmp_path: Path) -> Iterator[Instance]:
    stack = ExitStack()
    # migrated by the bootstrap below, as an operator would
    database_url = stack.enter_context(own_database(settings.database_url + "_restart", migrate=False))
    port, sandbox_port = free_port(), free_port()
    queue_prefix = f"{settings.queue_prefix}restart_"
    env = {"DATABASE_URL": database_url, "QUEUE_PREFIX": queue_prefix,
           "REDIS_PREFIX": f"{settings.redis_prefix}restart:", "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
           "SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}"}
    engine = create_sync_engine(database_url, pool_size=2)
    worker = ("-m", "dramatiq", "actors", "--processes", "1", "--threads", "4", "--queues", f"{queue_prefix}commands",
              f"{queue_prefix}events")
    chain = ("-m", "dramatiq", "actors", "--processes", "1", "--threads", "4", "--queues", f"{queue_prefix}chain")
    try:
        with stack:
            found = Instance(f"http://127.0.0.1:{port}", env["SANDBOX_URL"], tmp_path / "state.json", engine, env,
                             stack)
            found.start_sandbox()
            subprocess.run([sys.executable, "-m", "orchestrator", "bootstrap"], cwd=ROOT, env={**os.environ, **env},
                           check=True, capture_output=True, timeout=120)
            stack.enter_context(process("-m", "web", **env))
            stack.enter_context(process(*worker, **env))
            stack.enter_context(process(*chain, **env))
            wait_for(lambda: _healthy(found.url), seconds=60, what="the instance's web process")
            yield found
    finally:
        engine.dispose()
        delete_queues(settings, queue_prefix)


@pytest.fixture
async def instance_api(instance: Instance, master_key: str) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(base_url=instance.url) as session:
        yield Api(session, master_key)  # type: ignore[arg-type]  # the same request() as a TestClient


def _cursor(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT value FROM cursors WHERE name = 'horizon:payments'")).scalar()


def _events(engine: Engine, event_type: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox WHERE event_type = :t"), {"t": event_type}).scalar_one()


async def test_deposits_before_and_after_a_sandbox_restart_are_each_credited_once(
        instance: Instance, instance_api: Api) -> None:
    api, engine = instance_api, instance.engine
    user = await api.user()
    wallet = await wallet_status(engine, user["id"], seconds=60)
    monitor = instance.start_monitor()
    wait_for(lambda: _cursor(engine) is not None, what="the monitor to follow the stream")
    # Given a deposit the monitor has seen and credited
    first = SandboxControl(instance.sandbox_url).pay("issuer", wallet["public_key"], "5.0000001")
    await wait_credits(engine, [user["id"]], 1)
    assert _cursor(engine) == first["operationId"]
    # When the sandbox is killed with SIGKILL and started again on its state file, and so is the monitor
    instance.kill_sandbox()
    kill(monitor)
    instance.start_sandbox()
    instance.start_monitor()
    # Then the ledger still knows the wallet and the monitor's cursor, and a second deposit is credited
    ledger = SandboxControl(instance.sandbox_url)
    second = ledger.pay("issuer", wallet["public_key"], "2.50")
    counted = await wait_credits(engine, [user["id"]], 2)
    assert sorted(tx for _, tx in counted) == sorted([first["hash"], second["hash"]])
    assert set(counted.values()) == {1}
    assert (await api.balance(user["id"]))["available"] == "7.5000001"
    assert _cursor(engine) == second["operationId"]
    assert _events(engine, "network.reset_detected") == 0
    account = ledger.http.get(f"{ledger.horizon_url}/accounts/{wallet['public_key']}", timeout=10).json()
    assert [b["balance"] for b in account["balances"] if b.get("asset_code") == "USDC"] == ["7.5000001"]
