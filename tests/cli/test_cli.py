"""The ``offerhub`` console script, run as a subprocess against the API process."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from scripts.ports import free_port
from tests.api import unique

OFFERHUB = Path(sys.executable).with_name("offerhub")
ROOT = Path(__file__).resolve().parents[2]

Run = Callable[..., subprocess.CompletedProcess[str]]


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERHUB_API_") and k != "OFFERHUB_ENV_FILE"}
    return {**env, "HOME": str(home), "NO_COLOR": "1", **extra}


@pytest.fixture
def offerhub(home: Path, server_url: str, master_key: str) -> Run:
    """``offerhub <args>`` configured through the environment with the master key (override with env=)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        given = env if env is not None else environment(home, OFFERHUB_API_URL=server_url,
                                                        OFFERHUB_API_KEY=master_key)
        return subprocess.run([str(OFFERHUB), *args], cwd=home / "work", env=given, capture_output=True,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)

    return run


def test_the_console_script_is_installed_and_prints_help(offerhub: Run) -> None:
    assert OFFERHUB.is_file()
    for args in ((), ("--help",)):
        done = offerhub(*args)
        assert done.returncode == 0
        assert "keys" in done.stdout
        assert "bootstrap" in done.stdout
    for args in (("frobnicate",), ("keys", "frobnicate")):
        bogus = offerhub(*args)
        assert bogus.returncode == 1
        assert "Invalid command" in bogus.stderr
        assert "--help" in bogus.stderr


def test_operator_commands_still_run_from_the_settings(offerhub: Run, home: Path, platform_user: str) -> None:
    done = offerhub("migrate")
    assert done.returncode == 0, done.stderr
    assert "latest migration" in done.stdout
    again = offerhub("bootstrap")  # a second run finds the platform user and prints its id
    assert again.returncode == 0, again.stderr
    assert f"PLATFORM_USER_ID={platform_user}" in again.stdout
    rotated = offerhub("wallets", "rotate-key")
    assert rotated.returncode == 0, rotated.stderr
    assert "already current" in rotated.stdout
    module = subprocess.run([sys.executable, "-m", "orchestrator", "migrate"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert module.returncode == 0, module.stderr


def test_keys_create_list_token_and_revoke(offerhub: Run, home: Path, server_url: str) -> None:
    owner = unique("owner")
    created = offerhub("keys", "create", "--user-id", owner, "--scopes", "read,write", "--name", "CLI test")
    assert created.returncode == 0, created.stderr
    assert "Save it now" in created.stdout
    secret = next(word for word in created.stdout.split() if word.startswith("ohk_test_"))
    key_id = next(line.split()[-1] for line in created.stdout.splitlines() if line.startswith("Key ID:"))

    listed = offerhub("keys", "list", "--user-id", owner)
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout
    assert "Found 1 API key(s)" in listed.stdout
    assert "Never" in listed.stdout
    as_json = json.loads(offerhub("keys", "list", "--user-id", owner, "--json").stdout)
    assert [k["id"] for k in as_json] == [key_id]
    assert offerhub("keys", "list", "--user-id", unique("nobody")).stdout.strip() == "No API keys found."

    token = offerhub("keys", "token", key_id, "--ttl", "120", "--json")
    assert token.returncode == 0, token.stderr
    minted = json.loads(token.stdout)
    assert minted["token"].startswith("ohk_tok_")
    assert minted["keyId"] == key_id

    as_owner = offerhub("maintenance", "status", "--key", secret)  # the flag after the command works too
    assert as_owner.returncode == 0, as_owner.stderr

    unconfirmed = offerhub("keys", "revoke", key_id)
    assert unconfirmed.returncode == 1  # no terminal to confirm on and no --yes
    revoked = offerhub("keys", "revoke", key_id, "--yes")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout
    refused = offerhub("--key", secret, "maintenance", "status")
    assert refused.returncode == 1
    assert "the API key was refused (INVALID_API_KEY)" in refused.stderr


def test_missing_configuration_refused_scope_and_a_server_that_is_down(offerhub: Run, home: Path,
                                                                       server_url: str, master_key: str) -> None:
    missing = offerhub("keys", "list", env=environment(home))
    assert missing.returncode == 1
    assert "No API configuration found" in missing.stderr
    assert "OFFERHUB_API_KEY" in missing.stderr

    reply = requests.post(f"{server_url}/api/v1/auth/api-keys", timeout=10,
                          headers={"Authorization": f"Bearer {master_key}"},
                          json={"name": unique("ro"), "scopes": ["read"]})
    read_only = reply.json()["data"]["key"]
    denied = offerhub("keys", "list", env=environment(home, OFFERHUB_API_URL=server_url,
                                                      OFFERHUB_API_KEY=read_only))
    assert denied.returncode == 1
    assert "permission denied: this needs the 'support' scope and the key holds read" in denied.stderr

    for command in (("maintenance", "status"), ("events", "tail")):
        down = offerhub("--url", f"http://127.0.0.1:{free_port()}", *command, timeout=30)
        assert down.returncode == 1
        assert "cannot reach the orchestrator" in down.stderr
        assert "Is it running?" in down.stderr


def test_maintenance_enable_status_disable(offerhub: Run) -> None:
    try:
        enabled = offerhub("maintenance", "enable", "-m", "Upgrading the ledger", "-y")
        assert enabled.returncode == 0, enabled.stderr
        status = offerhub("maintenance", "status")
        assert "ENABLED" in status.stdout
        assert "Upgrading the ledger" in status.stdout
        assert json.loads(offerhub("maintenance", "status", "--json").stdout)["enabled"] is True
        refused = offerhub("keys", "create", "-u", "x", "-s", "read", "-n", "during maintenance")
        assert refused.returncode == 1
        assert "MAINTENANCE_MODE" in refused.stderr
    finally:
        disabled = offerhub("maintenance", "disable", "--yes")
    assert disabled.returncode == 0, disabled.stderr
    assert "NORMAL" in offerhub("maintenance", "status").stdout


def test_health_summarises_the_dependencies(offerhub: Run, home: Path, server_url: str) -> None:
    done = offerhub("health", env=environment(home, OFFERHUB_API_URL=server_url))  # public: no key needed
    assert "database" in done.stdout
    assert "rabbitmq" in done.stdout
    report = json.loads(offerhub("health", "--json").stdout)
    assert report["dependencies"]["database"]["status"] == "healthy"


def test_configuration_from_the_global_file_and_from_a_servers_env(offerhub: Run, home: Path,
                                                                    server_url: str, master_key: str) -> None:
    bare = environment(home)
    saved = offerhub("config", "set", "--api-url", server_url, "--api-key", master_key, "--payment-provider",
                     "crypto", env=bare)
    assert saved.returncode == 0, saved.stderr
    assert "WALLET_ENCRYPTION_KEY=" in saved.stdout
    stored = json.loads((home / ".offerhub" / "config.json").read_text())
    assert stored == {"apiUrl": server_url, "apiKey": master_key, "paymentProvider": "crypto"}
    shown = offerhub("config", "show", env=bare)
    assert f"{master_key[:10]}..." in shown.stdout
    assert master_key not in shown.stdout
    assert offerhub("maintenance", "status", env=bare).returncode == 0

    (home / ".offerhub" / "config.json").unlink()
    port = server_url.rsplit(":", 1)[1]
    (home / "work" / ".env").write_text(f"PORT={port}\nOFFERHUB_MASTER_KEY={master_key}\n")
    assert offerhub("maintenance", "status", env=bare).returncode == 0


def test_events_tail_replays_and_follows_live_events(offerhub: Run, home: Path, server_url: str,
                                                     master_key: str) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    headers = {"Authorization": f"Bearer {master_key}"}

    def new_user() -> str:
        reply = requests.post(f"{server_url}/api/v1/users", json={"externalUserId": unique("tail")},
                              headers=headers, timeout=30)
        return reply.json()["data"]["id"]

    first = new_user()
    done = offerhub("events", "tail", "--since", since, "--types", "user.*", "--resource-types", "User",
                    "--json", "--limit", "1")
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.splitlines()[0])
    assert line["eventType"] == "user.created"
    assert line["position"]

    env = environment(home, OFFERHUB_API_URL=server_url, OFFERHUB_API_KEY=master_key)
    live = subprocess.Popen([str(OFFERHUB), "events", "tail", "--types", "user.created"], cwd=home / "work",
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert live.stderr is not None
        assert live.stdout is not None
        assert "Following events" in live.stderr.readline()
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in live.stdout], daemon=True).start()  # type: ignore
        time.sleep(1.5)  # the stream connects after the banner
        second = new_user()
        printed = ""
        while second not in printed:
            printed = lines.get(timeout=20)
        assert "user.created" in printed
        assert first != second
        live.send_signal(signal.SIGINT)  # Ctrl-C leaves the stream cleanly
        assert live.wait(15) == 130
    finally:
        live.terminate()
        live.wait(10)
