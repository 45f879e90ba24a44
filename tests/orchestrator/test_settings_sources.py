"""Configuration by convention: the environment overrides ``.env`` everywhere, and every command reads it.

Each test runs the real entry points (``offerhub``, ``python -m web``, ``dramatiq``) as subprocesses in a
directory of its own with a ``.env`` of its own, the way an operator runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import dotenv
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OFFERHUB = Path(sys.executable).with_name("offerhub")


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


def server_environment(**extra: str) -> dict[str, str]:
    """The run's environment as an operator's shell would hold it: reading ``.env`` is on again."""
    env = {k: v for k, v in os.environ.items() if k != dotenv.ENV_FILE_VARIABLE}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def test_the_environment_wins_over_the_file_and_an_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("# comment\nPORT=4000\nexport LOG_LEVEL='DEBUG'\nQUEUE_PREFIX=dev_\nREDIS_PREFIX=x:\n")
    environ = {"OFFERHUB_ENV_FILE": str(env_file), "PORT": "5000", "REDIS_PREFIX": "  "}
    merged = dotenv.merged(environ)
    assert merged["PORT"] == "5000"  # the environment wins
    assert merged["LOG_LEVEL"] == "DEBUG"  # `export` and quotes stripped
    assert merged["REDIS_PREFIX"] == "x:"  # blank in the environment: the file's value
    assert dotenv.export_lines(environ) == ["export LOG_LEVEL=DEBUG", "export QUEUE_PREFIX=dev_",
                                            "export REDIS_PREFIX=x:"]
    assert dotenv.merged({"OFFERHUB_ENV_FILE": "", "PORT": "1"}) == {"PORT": "1"}  # empty: no file at all


def test_scripts_dev_exports_only_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=4000\nDEV_GREETING='hello; $(there)'\n")
    shell = f'eval "$({sys.executable} -m orchestrator.dotenv)"; echo "$PORT $DEV_GREETING"'
    done = run(["bash", "-c", shell], tmp_path, server_environment(PORT="5000"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5000 hello; $(there)"  # quoted for the shell, never run


def test_scripts_start_gives_each_role_the_environment_over_the_env_file(tmp_path: Path) -> None:
    """A host's roles (docs/operators/deployment.md): ``PORT=4001 scripts/start web`` must bind 4001 even
    when ``.env`` says 4000, which plain ``honcho start`` would not (it applies ``.env`` over the
    environment and its ``PORT`` over ``-p``), and what only ``.env`` sets still reaches the roles."""
    (tmp_path / "Procfile").write_text("show: echo role PORT=$PORT metrics=$WORKER_METRICS_PORT\n")
    (tmp_path / ".env").write_text("PORT=4000\nWORKER_METRICS_PORT=9191\n")
    env = server_environment(PORT="4123", PROCFILE=str(tmp_path / "Procfile"),
                             OFFERHUB_ENV_FILE=str(tmp_path / ".env"))
    done = run([str(ROOT / "scripts" / "start")], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "role PORT=4123 metrics=9191" in done.stdout
    plain = run([str(Path(sys.executable).with_name("honcho")), "-f", "Procfile", "start"], tmp_path,
                server_environment(PORT="4123"))
    assert "role PORT=4000 " in plain.stdout  # why scripts/start exists: honcho's own .env wins


def test_operator_commands_read_the_env_file_of_the_working_directory(tmp_path: Path) -> None:
    # Given the secrets only in ./.env (as scripts/dev writes them), not in the environment
    env = server_environment()
    secrets = {name: env.pop(name) for name in ("OFFERHUB_MASTER_KEY", "WALLET_ENCRYPTION_KEY")}
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in secrets.items()))
    # When an operator runs `offerhub check` there, it finds them …
    done = run([str(OFFERHUB), "check"], tmp_path, env)
    assert "Invalid configuration" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr  # 1: differences other tests leave behind on purpose
    # … and `offerhub settings` shows where each value came from, secrets masked
    shown = run([str(OFFERHUB), "settings"], tmp_path, {**env, "LOG_LEVEL": "ERROR"})
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()}
    assert lines["OFFERHUB_MASTER_KEY"].endswith("[.env]")
    assert secrets["OFFERHUB_MASTER_KEY"] not in shown.stdout
    assert secrets["WALLET_ENCRYPTION_KEY"] not in shown.stdout
    assert lines["LOG_LEVEL"].split()[1:] == ["ERROR", "[environment]"]
    assert lines["SSE_HEARTBEAT_SECONDS"].split()[1:] == ["15.0", "[default]"]


def test_a_malformed_url_names_its_variable_without_the_password() -> None:
    environ = {"OFFERHUB_MASTER_KEY": "k" * 20, "PAYMENT_PROVIDER": "airtm",
               "DATABASE_URL": "postgres//app:hunter2@db/offerhub", "RABBITMQ_URL": "localhost"}
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(environ)
    problems = "\n".join(refused.value.problems)
    assert "DATABASE_URL='postgres//app:****@db/offerhub' is not a URL" in problems
    assert "RABBITMQ_URL='localhost' is not a URL of the form amqp://" in problems
    assert "hunter2" not in problems


@pytest.mark.parametrize("command", [[sys.executable, "-m", "web"], [sys.executable, "-m", "dramatiq", "actors"],
                                     [str(OFFERHUB), "check"]])
def test_a_misconfigured_process_stops_with_one_line_per_problem_and_no_traceback(command: list[str],
                                                                                 tmp_path: Path) -> None:
    env = server_environment(PAYMENT_PROVIDER="bitcoin", DATABASE_URL="mysql://db/offerhub")
    env.pop("OFFERHUB_MASTER_KEY")
    done = run(command, tmp_path, env)
    assert done.returncode == 2 if command[-1] != "actors" else done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr
    for line in ("OFFERHUB_MASTER_KEY is required", "PAYMENT_PROVIDER must be one of crypto, airtm (got 'bitcoin')",
                 "DATABASE_URL='mysql://db/offerhub' is not a URL of the form postgresql://"):
        assert f"  - {line}" in done.stderr, done.stderr


def test_version(tmp_path: Path) -> None:
    done = run([str(OFFERHUB), "--version"], tmp_path, server_environment())
    assert done.returncode == 0
    assert done.stdout.startswith("offerhub ")
    assert done.stdout.split()[1][0].isdigit()
