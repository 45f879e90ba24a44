"""What an operator sees: JSON log lines with the request and command ids, Prometheus metrics on ``web``
and on the actors, and ``/health/detailed`` degrading when work is left waiting.

The product runs as the Procfile runs it (``python -m web`` and ``dramatiq actors`` as subprocesses) on
queues of their own, so the in-process test worker never takes their messages, and on a database of their
own: the backlog and health figures read whole tables, which no other test may have left work in.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from orchestrator.accounts import bootstrap
from orchestrator.db import create_sync_engine
from orchestrator.settings import Settings
from scripts.ports import free_port
from tests.fixtures import processes
from tests.fixtures.broker import delete_queues
from tests.fixtures.database import own_database
from tests.fixtures.logs import LOG_DIR

pytestmark = pytest.mark.slow


@dataclass
class System:
    """A web process and a worker process of their own, with their log files."""

    prefix: str
    web_url: str
    actors_metrics_url: str
    web_log: Path
    second_web_log: Path
    worker_log: Path
    env: dict[str, str]

    def api(self, method: str, path: str, *, key: str, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.request(method, f"{self.web_url}/api/v1{path}", headers=headers, timeout=30,
                                **kwargs)  # type: ignore[arg-type]


def json_lines(path: Path) -> list[dict[str, object]]:
    """Every JSON line of a log file (Dramatiq's own parent process writes a few plain ones)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def wait_until(predicate: object, seconds: float = 30, what: str = "condition") -> None:
    processes.wait_for(predicate, seconds=seconds, what=what)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ops_settings(settings: Settings) -> Iterator[Settings]:
    """The run's settings on a database of the module's own, migrated and bootstrapped, dropped after."""
    with own_database(f"{settings.database_url}_ops") as url:
        yield dataclasses.replace(settings, database_url=url)


@pytest.fixture(scope="module")
def ops_engine(ops_settings: Settings) -> Iterator[Engine]:
    engine = create_sync_engine(ops_settings.database_url, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def system(settings: Settings, ops_settings: Settings, ops_engine: Engine, sandbox_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    prefix = f"{settings.queue_prefix}ops_"
    # the platform user web requires; its wallet's activation is not needed here (users' wallets are
    # funded by the sandbox's friendbot), so its messages are not sent
    bootstrap.bootstrap(ops_engine, ops_settings)
    port, prom_port = free_port(), free_port()
    env = {"QUEUE_PREFIX": prefix, "PORT": str(port), "LOG_LEVEL": "INFO", "DATABASE_URL": ops_settings.database_url,
           "WEB_METRICS_DIR": str(tmp_path_factory.mktemp("web-metrics")),
           "dramatiq_prom_port": str(prom_port), "dramatiq_prom_host": "127.0.0.1",
           "dramatiq_prom_db": str(tmp_path_factory.mktemp("actor-metrics")),
           "HEALTH_COMMAND_AGE_SECONDS": "2", "HEALTH_CHAIN_STEP_AGE_SECONDS": "120"}
    stamp = time.monotonic_ns()
    found = System(prefix, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prom_port}/metrics",
                   LOG_DIR / f"ops-web-{stamp}.log", LOG_DIR / f"ops-web2-{stamp}.log",
                   LOG_DIR / f"ops-worker-{stamp}.log", env)
    # two web processes sharing the port (reuse_port) and the metrics directory, as `honcho -c web=2` runs them
    with processes.process("-m", "web", log=found.web_log, **env), \
            processes.process("-m", "web", log=found.second_web_log, **env):
        wait_until(lambda: _listening(found.web_log) and _listening(found.second_web_log),
                   what="both web processes to listen")
        wait_until(lambda: _answers(found.web_url + "/api/v1/health"), what="the web processes to answer")
        yield found
    delete_queues(settings, prefix)


def _listening(log: Path) -> bool:
    return log.exists() and "listening" in log.read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def workers(system: System) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``dramatiq actors`` as the Procfile runs it, on the system's own queues."""
    prefix = system.prefix
    return processes.process("-m", "dramatiq", "actors", "--processes", "2", "--threads", "2", "--queues",
                             f"{prefix}commands", f"{prefix}events", f"{prefix}chain", log=system.worker_log,
                             **system.env)


def command_status(engine: Engine, request_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT status FROM commands WHERE request_id = :r"), {"r": request_id}).scalar()


def test_every_log_line_is_json_and_carries_the_request_and_command_ids(
        system: System, master_key: str, ops_engine: Engine) -> None:
    engine = ops_engine
    request_id = f"ops-log-{uuid.uuid4()}"
    with workers(system):
        reply = system.api("POST", "/users", key=master_key, headers={"X-Request-ID": request_id},
                           json={"externalUserId": f"ops-{uuid.uuid4()}"})
        assert reply.status_code in (201, 202), reply.text
        wait_until(lambda: any(line.get("command_id") and line.get("actor") == "execute_command"
                               and line.get("request_id") == request_id for line in json_lines(system.worker_log)),
                   what="the worker's line about the command")
    with engine.connect() as conn:
        command_id = conn.execute(text("SELECT id FROM commands WHERE request_id = :r"), {"r": request_id}).scalar()
    assert command_id
    # the web process: every line is JSON; the request's access line names its request and command
    web_lines = system.web_log.read_text().splitlines() + system.second_web_log.read_text().splitlines()
    assert web_lines
    assert all(line.startswith("{") for line in web_lines), web_lines[:3]
    access = [line for log in (system.web_log, system.second_web_log) for line in json_lines(log)
              if line.get("request_id") == request_id]
    assert access, "the request logged a line"
    assert all(line["command_id"] == command_id for line in access)
    assert {"timestamp", "level", "logger", "event"} <= set(access[-1])
    assert access[-1]["status"] in (201, 202)
    assert access[-1]["method"] == "POST"
    # the worker processes: every line about the message carries the command id and the request id
    mine = [line for line in json_lines(system.worker_log) if line.get("command_id") == command_id]
    assert mine
    assert all(line["request_id"] == request_id and line["message_id"] for line in mine)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by name and sorted labels."""
    body = requests.get(url, timeout=30)
    assert body.status_code == 200, body.text
    assert body.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.text) for sample in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_web_metrics_count_every_request_across_the_web_processes_and_read_the_backlogs(
        system: System, master_key: str) -> None:
    health = {"method": "GET", "route": "/api/v1/health"}
    before = scrape(system.web_url + "/metrics")
    # When 40 requests arrive on fresh connections (the kernel spreads them over both processes)
    for _ in range(40):
        assert requests.get(system.web_url + "/api/v1/health", timeout=10).status_code == 200
    assert system.api("GET", "/orders/ord_doesnotexist0000000000000000", key=master_key).status_code == 404
    after = scrape(system.web_url + "/metrics")
    # Then both processes answered some, and /metrics (whichever answers it) counts all of them
    for log in (system.web_log, system.second_web_log):
        assert any(line.get("path") == "/api/v1/health" for line in json_lines(log)), log
    counted = (value(after, "offerhub_http_requests_total", status="200", **health)
               - value(before, "offerhub_http_requests_total", status="200", **health))
    assert counted == 40
    timed = (value(after, "offerhub_http_request_duration_seconds_count", **health)
             - value(before, "offerhub_http_request_duration_seconds_count", **health))
    assert timed == 40
    assert value(after, "offerhub_http_requests_total", method="GET", route="/api/v1/orders/{order_id}",
                 status="404") >= 1
    # And the system's backlogs are there, read when scraped
    for name in ("offerhub_commands_pending", "offerhub_oldest_pending_command_age_seconds",
                 "offerhub_chain_steps_open", "offerhub_oldest_open_chain_step_age_seconds",
                 "offerhub_outbox_unrelayed", "offerhub_outbox_lag_seconds", "offerhub_deposits_pending",
                 "offerhub_monitor_lag_seconds", "offerhub_monitor_unseen_payments"):
        assert (name, ()) in after, name
    assert value(after, "offerhub_queue_reachable") == 1
    assert any(name == "offerhub_queue_messages" for name, _ in after)


def test_actor_metrics_are_summed_over_the_worker_processes(system: System, master_key: str) -> None:
    kind = {"kind": "create_user", "status": "DONE"}
    with workers(system) as worker:
        # Dramatiq forks its exposition server only once every worker process has booted, and waits up
        # to 30 s (``--worker-fork-timeout``) for that: a slow boot on a busy machine delays it as long
        try:
            wait_until(lambda: _answers(system.actors_metrics_url), seconds=90,
                       what="the actors' exposition server")
        except AssertionError:
            tail = system.worker_log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"no exposition server (worker exit code {worker.poll()}); "
                                 f"the worker's log ends:\n{tail}") from None
        before = scrape(system.actors_metrics_url)
        for _ in range(6):
            reply = system.api("POST", "/users", key=master_key, json={"externalUserId": f"ops-{uuid.uuid4()}"})
            assert reply.status_code in (201, 202), reply.text

        def finished(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
            return (value(samples, "offerhub_commands_finished_total", **kind)
                    - value(before, "offerhub_commands_finished_total", **kind))

        # a 202 answers before its command ends, and a 201 answers on the committed row, a moment before
        # the worker counts it: the figures are read once all six have been counted
        wait_until(lambda: finished(scrape(system.actors_metrics_url)) >= 6, what="six commands counted")
        after = scrape(system.actors_metrics_url)
    commands = {"queue_name": f"{system.prefix}commands", "actor_name": "execute_command"}
    assert (value(after, "offerhub_commands_finished_total", **kind)
            - value(before, "offerhub_commands_finished_total", **kind)) == 6
    assert (value(after, "offerhub_command_age_seconds_count", kind="create_user")
            - value(before, "offerhub_command_age_seconds_count", kind="create_user")) == 6
    # dramatiq's own counters: the exposition sums every worker process's file, the killed workers of
    # earlier tests included (their counters stay), and a message an earlier worker took but never acked
    # is delivered again here, so only a lower bound is exact
    assert value(after, "dramatiq_messages_total", **commands) >= 6
    assert value(after, "dramatiq_message_duration_milliseconds_count", **commands) >= 6


def test_the_scheduler_reconciles_wallets_and_web_exposes_the_differences(
        system: System, ops_engine: Engine) -> None:
    engine = ops_engine
    started = time.time()

    def reconciled() -> bool:
        with engine.connect() as conn:
            at = conn.execute(text("SELECT extract(epoch FROM measured_at) FROM operation_figures "
                                   "WHERE name = 'reconciliation'")).scalar()
        return at is not None and float(at) >= started - 1

    log = LOG_DIR / f"ops-scheduler-{time.monotonic_ns()}.log"
    # one Horizon read per wallet of the whole run: a busy machine with many wallets takes a while
    with processes.process("-m", "orchestrator", "scheduler", log=log, **{**system.env, "RECONCILE_SECONDS": "2"}):
        try:
            wait_until(reconciled, seconds=240, what="the scheduler's reconciliation")
        except AssertionError:
            raise AssertionError(log.read_text(errors="replace")[-3000:]) from None
    samples = scrape(system.web_url + "/metrics")
    assert value(samples, "offerhub_reconciliation_wallets_compared") >= 1
    assert ("offerhub_reconciliation_differences", ()) in samples
    assert 0 <= value(samples, "offerhub_reconciliation_age_seconds") < 120


def test_health_degrades_while_a_command_waits_past_its_threshold(
        system: System, master_key: str, ops_engine: Engine) -> None:
    engine = ops_engine
    with processes.process("-m", "orchestrator", "monitor", **system.env):
        wait_until(lambda: processes.following(engine), what="the monitor to follow the stream")
        health_degrades_and_recovers(system, master_key, engine)


def health_degrades_and_recovers(system: System, master_key: str, engine: Engine) -> None:
    # Given no worker consumes the system's queue, a write is recorded and published but not run
    request_id = f"ops-health-{uuid.uuid4()}"
    reply = system.api("POST", "/users", key=master_key, headers={"X-Request-ID": request_id,
                                                                "Prefer": "respond-async"},
                       json={"externalUserId": f"ops-{uuid.uuid4()}"})
    assert reply.status_code == 202, reply.text
    assert command_status(engine, request_id) == "PENDING"
    # When it waits longer than HEALTH_COMMAND_AGE_SECONDS (2 here)
    time.sleep(2.5)
    body = requests.get(system.web_url + "/api/v1/health/detailed", timeout=30)
    data = body.json()["data"]
    # Then the detailed health is degraded (200 unless a dependency is down too) and says why
    down = {name for name, check in data["dependencies"].items() if check["status"] == "unhealthy"}
    assert (body.status_code, data["status"]) == ((503, "unhealthy") if down else (200, "degraded")), data
    oldest = data["operations"]["oldestPendingCommand"]
    assert oldest["status"] == "degraded", data
    assert "ageSeconds" in oldest, data
    assert oldest["ageSeconds"] > 2
    assert oldest["count"] >= 1
    assert oldest["thresholdSeconds"] == 2
    assert data["backlog"]["commandsPending"] >= 1
    # the monitor follows the ledger, so its lag is reported as a figure
    assert data["operations"]["monitor"]["lagSeconds"] is not None
    # And once a worker runs the command, the check is healthy again
    with workers(system):
        wait_until(lambda: command_status(engine, request_id) == "DONE", what="the command to run")
        wait_until(lambda: requests.get(system.web_url + "/api/v1/health/detailed", timeout=30).json()["data"][
            "operations"]["oldestPendingCommand"]["status"] == "healthy", what="the check to recover")
