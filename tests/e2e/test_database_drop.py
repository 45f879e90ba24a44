"""The database's connections are reset under a running web process: 503 with the envelope, never 500,
and a command recorded before the reset is never run twice (a retry with its key gets its outcome).

``python -m web`` reaches PostgreSQL through ``scripts.chaos.proxy``, which resets every connection
it carries on SIGUSR1 (a network blip or a failover). Its commands go to queues of its own that no
worker consumes, so a command it records stays pending until the test hands it to the run's worker.
Nothing of ours is replaced.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import pytest
from sqlalchemy import Engine, text

from actors import execute_command
from orchestrator.settings import Settings
from scripts.ports import free_port
from tests.api import Api, idempotency_key
from tests.fixtures import processes
from tests.fixtures.broker import delete_queues
from tests.fixtures.logs import LOG_DIR
from tests.fixtures.server import wait_until_up

pytestmark = pytest.mark.slow


class Proxied:
    def __init__(self, url: str, proxy: subprocess.Popen[bytes]) -> None:
        self.url, self.proxy = url, proxy

    def drop(self) -> None:
        self.proxy.send_signal(signal.SIGUSR1)


@contextmanager
def database_proxy(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m scripts.chaos.proxy`` on ``port`` in front of the run's PostgreSQL, killed on exit."""
    proxy = subprocess.Popen([sys.executable, "-m", "scripts.chaos.proxy", "--target", "127.0.0.1:5432",
                              "--port", str(port)], cwd=processes.ROOT, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proxy.stdout is not None
        assert proxy.stdout.readline().decode() == f"PROXY_READY {port}\n"
        yield proxy
    finally:
        processes.kill(proxy)  # type: ignore[arg-type]


def proxied_database_url(settings: Settings, port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{settings.database_url.rsplit('/', 1)[1]}"


@pytest.fixture(scope="module")
def proxied_web(settings: Settings) -> Iterator[Proxied]:
    prefix = f"{settings.queue_prefix}proxied_"
    port, web_port = free_port(), free_port()
    log = LOG_DIR / f"proxied-web-{time.monotonic_ns()}.log"
    try:
        with database_proxy(port) as proxy, processes.process(
                "-m", "web", log=log, PORT=str(web_port), QUEUE_PREFIX=prefix,
                DATABASE_URL=proxied_database_url(settings, port)):
            url = f"http://127.0.0.1:{web_port}"
            wait_until_up(url)
            yield Proxied(url, proxy)
    finally:
        delete_queues(settings, prefix)


def test_a_web_process_started_before_the_database_answers_waits_for_it(settings: Settings, platform_user: str) -> None:
    port, web_port = free_port(), free_port()
    log = LOG_DIR / f"early-web-{time.monotonic_ns()}.log"
    # Given a web process whose database does not answer yet (nothing listens on its port)
    with processes.process("-m", "web", log=log, PORT=str(web_port),
                           DATABASE_URL=proxied_database_url(settings, port)) as web:
        time.sleep(3)
        # Then it waits instead of exiting (under honcho an exit would stop every other process) …
        assert web.poll() is None, log.read_text(errors="replace")[-2000:]
        assert "PostgreSQL does not answer yet" in log.read_text(errors="replace")
        # … and serves once the database answers
        with database_proxy(port):
            wait_until_up(f"http://127.0.0.1:{web_port}")



@pytest.mark.parametrize("role", ["monitor", "scheduler"])
def test_a_singleton_started_before_the_database_answers_waits_for_it_then_leads(
        settings: Settings, platform_user: str, role: str) -> None:
    """A standby monitor or scheduler outlives a database restart, a failover or a full connection table
    (under honcho, its exit would stop every other role of the host)."""
    port = free_port()
    log = LOG_DIR / f"early-{role}-{time.monotonic_ns()}.log"
    # Given a monitor or scheduler whose database does not answer yet (nothing listens on its port)
    with processes.process("-m", "orchestrator", role, log=log, DATABASE_URL=proxied_database_url(settings, port)) \
            as child:
        time.sleep(3)
        # Then it waits instead of exiting …
        assert child.poll() is None, log.read_text(errors="replace")[-2000:]
        assert "PostgreSQL does not answer yet" in log.read_text(errors="replace")
        # … and leads once the database answers
        with database_proxy(port):
            processes.wait_for(lambda: "is the leader" in log.read_text(errors="replace"), seconds=60,
                               what=f"the {role} to lead")

async def test_reads_during_connection_resets_get_503_with_the_envelope_and_then_succeed(
        api: Api, master_key: str, proxied_web: Proxied) -> None:
    user = await api.user()
    headers = {"Authorization": f"Bearer {master_key}"}
    answers: list[tuple[int, dict[str, str], str]] = []
    async with aiohttp.ClientSession(base_url=proxied_web.url, headers=headers) as http:
        async def read() -> tuple[int, dict[str, str], str]:
            async with http.get(f"/api/v1/users/{user['id']}") as reply:
                return reply.status, dict(reply.headers), await reply.text()

        for _ in range(5):
            # Given a web process whose pool holds connections (ten reads at once)
            assert {a[0] for a in await asyncio.gather(*(read() for _ in range(10)))} == {200}
            # When every database connection it holds is reset while ten more reads arrive
            proxied_web.drop()
            await asyncio.sleep(0.05)
            answers += await asyncio.gather(*(read() for _ in range(10)))
        await asyncio.sleep(0.5)
        after = await read()
    # Then a read that met a dead connection is told to retry: 503, the error envelope, Retry-After …
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] >= 1, statuses
    for status, reply_headers, reply_text in answers:
        if status == 503:
            error = json.loads(reply_text)["error"]
            assert error["code"] == "SERVICE_UNAVAILABLE"
            assert error["statusCode"] == 503
            assert error["details"]["dependency"] == "database"
            assert reply_headers["Retry-After"] == "1"
    # … and the process recovers by itself: the pool replaces what died
    assert after[0] == 200, after


async def test_a_request_whose_database_drops_after_its_command_was_recorded_never_runs_it_twice(
        api: Api, master_key: str, proxied_web: Proxied, engine: Engine) -> None:
    user = await api.user()
    key = idempotency_key()
    headers = {"Authorization": f"Bearer {master_key}", "Idempotency-Key": key, "Prefer": "wait=20"}
    credit = {"amount": "2.00"}
    async with aiohttp.ClientSession(base_url=proxied_web.url) as http:
        # Given a credit whose command is recorded and pending while the request waits for it
        async def first() -> tuple[int, str]:
            async with http.post(f"/api/v1/users/{user['id']}/balance/credit", json=credit,
                                 headers=headers) as reply:
                return reply.status, await reply.text()

        waiting = asyncio.create_task(first())
        await asyncio.sleep(2)
        with engine.connect() as conn:
            command_ids = conn.execute(text("SELECT id FROM commands WHERE idempotency_key = :k"),
                                       {"k": key}).scalars().all()
        assert len(command_ids) == 1
        # When the database connections drop during the wait
        proxied_web.drop()
        status, body = await waiting
    # Then the request is told to retry …
    assert status == 503, body
    # … and the retry with the same key finds the first command instead of starting a second one
    again = await api.post(f"/users/{user['id']}/balance/credit", credit, headers={"Idempotency-Key": key})
    assert again.status == 409, again.body
    assert again.body["error"]["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM commands WHERE idempotency_key = :k"),
                            {"k": key}).scalar() == 1
    # And once the first command runs, the user is credited once
    execute_command.send(command_ids[0])
    deadline = time.monotonic() + 30
    while (await api.balance(user["id"]))["available"] != "2.00":
        assert time.monotonic() < deadline, await api.balance(user["id"])
        await asyncio.sleep(0.2)
    # And the same retry now answers with that command's outcome, without running anything again
    replay = await api.post(f"/users/{user['id']}/balance/credit", credit, headers={"Idempotency-Key": key})
    assert replay.status == 200, replay.body
    assert replay.headers["Idempotency-Replay"] == "true"
    await asyncio.sleep(1)
    assert (await api.balance(user["id"]))["available"] == "2.00"
