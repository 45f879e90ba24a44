"""``offerhub smoke --network sandbox`` end to end (DESIGN decision 32): the code path an operator runs against
testnet, pointed at the sandbox, against a live server, worker and deposit monitor."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

OFFERHUB = Path(sys.executable).with_name("offerhub")
HASH = re.compile(r"tx (.+?) +([0-9a-f]{64}) \(ledger (\d+), confirmed on Horizon\)")
STEPS = ("instance and network", "two users, wallets activated", "USDC deposit to the buyer", "escrow deployed",
         "escrow funded", "release to the seller", "withdrawal from the seller", "book equals ledger")


def environment(server_url: str, master_key: str, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(tmp_path), "NO_COLOR": "1", "OFFERHUB_API_URL": server_url,
           "OFFERHUB_API_KEY": master_key}
    env.pop("STELLAR_HORIZON_URL", None)  # the smoke run finds Horizon from the network (here the sandbox's)
    return env


def test_the_smoke_run_passes_every_step_with_each_hash_confirmed_on_horizon(
        server_url: str, master_key: str, sandbox_url: str, monitor: None, tmp_path: Path) -> None:
    done = subprocess.run([str(OFFERHUB), "smoke", "--network", "sandbox", "--sandbox-url", sandbox_url],
                          cwd=tmp_path, env=environment(server_url, master_key, tmp_path), capture_output=True,
                          text=True, timeout=600, check=False)
    out = done.stdout
    print(out, done.stderr)  # the report, for whoever reads the test log
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    lines = out.splitlines()
    assert lines[-1].startswith("VERDICT: PASS - 8/8 steps passed (network sandbox")
    assert sum(line.startswith("VERDICT:") for line in lines) == 1
    for number, name in enumerate(STEPS, start=1):
        assert re.search(rf"step {number} {re.escape(name)}: PASS in \d+\.\d s", out), name
    # what a bug report needs: versions, the network's passphrase, URLs, and no secret
    assert "stellar-sdk 16." in out
    assert "network passphrase 'OFFER-HUB Sandbox Network ; 2026'" in out
    assert f"horizon   {sandbox_url}/horizon (read directly)" in out
    assert master_key not in out
    confirmed = {label.strip(): tx_hash for label, tx_hash, _ in HASH.findall(out)}
    assert set(confirmed) == {"buyer activation", "seller activation", "deposit", "escrow deploy", "escrow fund",
                              "escrow release", "withdrawal"}, out
    assert len(set(confirmed.values())) == len(confirmed)  # each step its own transaction
    assert "not confirmed" not in out


def test_a_smoke_run_for_another_network_than_the_instances_fails_at_once_with_exit_1(
        server_url: str, master_key: str, tmp_path: Path) -> None:
    done = subprocess.run([str(OFFERHUB), "smoke", "--network", "testnet"], cwd=tmp_path,
                          env=environment(server_url, master_key, tmp_path), capture_output=True, text=True,
                          timeout=60, check=False)

    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("VERDICT: FAIL at step 1 'instance and network': the instance runs "
                           "STELLAR_NETWORK=sandbox, not testnet"), done.stdout
    assert "0/8 steps passed" in last


def test_ctrl_c_ends_a_smoke_run_with_exit_130_and_a_verdict(
        server_url: str, master_key: str, sandbox_url: str, tmp_path: Path) -> None:
    child = subprocess.Popen([str(OFFERHUB), "smoke", "--network", "sandbox", "--sandbox-url", sandbox_url],
                             cwd=tmp_path, env=environment(server_url, master_key, tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        seen = []
        for line in child.stdout:
            seen.append(line)
            if "step 2/8" in line:
                break
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        rest, _ = child.communicate(timeout=10)
        assert child.returncode == 130, "".join(seen) + rest
        assert time.monotonic() - started < 2  # decision 33: within a second (room for a loaded machine)
        assert "VERDICT: INTERRUPTED during 'two users, wallets activated'" in rest
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
