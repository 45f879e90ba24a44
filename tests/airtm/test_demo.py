"""``offerhub demo --provider airtm`` end to end on the AirTM-mode instance: a top-up through the sandbox's
checkout, escrows funded by the treasury pool (released, refunded, split), a withdrawal to AirTM, and the book
beside AirTM and the ledger. The demo only speaks HTTP; each mode's demo refuses an instance of the other."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from tests.fixtures.airtm import AirtmInstance

OFFERHUB = Path(sys.executable).with_name("offerhub")


def demo(url: str, master_key: str, sandbox_url: str, home: Path, *extra: str,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "NO_COLOR": "1", "OFFERHUB_API_URL": url, "OFFERHUB_API_KEY": master_key}
    return subprocess.run([str(OFFERHUB), "demo", "--sandbox-url", sandbox_url, *extra], cwd=home, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_the_airtm_demo_tops_up_escrows_through_the_pool_withdraws_and_ends_with_everything_agreeing(
        airtm_instance: AirtmInstance, master_key: str, sandbox_url: str, tmp_path: Path) -> None:
    done = demo(airtm_instance.url, master_key, sandbox_url, tmp_path, "--provider", "airtm", "--deposit", "250.00",
                "--withdraw", "20.00")
    out = done.stdout
    print(out, done.stderr)  # the narration, for whoever reads the test log
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    for step in ("1. Two marketplace users, each linked to an AirTM account", "2. A top-up", "3. The treasury pool",
                 "4. Release", "5. Refund", "6. Dispute", "7. A withdrawal", "8. Balances: the book beside AirTM"):
        assert step in out, step
    assert "(AIRTM-backed) linked to AirTM account" in out
    assert f"{sandbox_url}/airtm/checkout/payin/" in out  # the checkout URL the buyer was sent to
    assert "topup TOPUP_SUCCEEDED: buyer available 250.00" in out
    assert out.count("(escrow funded by the platform's treasury pool)") == 3
    assert "release        -> CLOSED / RELEASED" in out
    assert "refund         -> CLOSED / REFUNDED" in out
    assert "resolve SPLIT  -> dispute RESOLVED, order CLOSED / RELEASED" in out
    assert "withdrawal WITHDRAWAL_COMPLETED" in out
    for event in ("user.airtm_linked", "topup.succeeded", "escrow.funded", "order.released", "order.refunded",
                  "dispute.resolved", "withdrawal.completed"):
        assert f" {event} " in out, event
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.strip().startswith(("buyer ", "seller "))}
    assert rows["buyer"][3:5] == ["250.00", "0.00"]  # paid in at AirTM, paid out
    assert rows["seller"][3:5] == ["0.00", "20.00"]
    assert rows["buyer"][2] == rows["seller"][2] == "0.00"  # nothing left reserved
    assert all(row[-1] == "yes" for row in rows.values()), rows
    pool = next(line.split() for line in out.splitlines() if line.strip().endswith(("yes", "NO"))
                and "accounts" in line)
    assert pool[-1] == "yes", pool
    assert Decimal(pool[-2]) < 0  # the fees left the pool, as they left the users' claims
    enterprise = next(line.split() for line in out.splitlines() if line.strip().startswith("at the sandbox"))
    assert enterprise[-1] == "yes", enterprise
    assert "Done: each user's book equals what AirTM moved for them" in out


def test_each_demo_refuses_an_instance_of_the_other_mode(
        airtm_instance: AirtmInstance, server_url: str, master_key: str, sandbox_url: str, tmp_path: Path) -> None:
    crypto_on_airtm = demo(airtm_instance.url, master_key, sandbox_url, tmp_path, timeout=60)
    assert crypto_on_airtm.returncode == 1, crypto_on_airtm.stdout
    assert "runs PAYMENT_PROVIDER=airtm" in crypto_on_airtm.stderr
    assert "offerhub demo --provider airtm" in crypto_on_airtm.stderr
    assert "1. Two marketplace users" not in crypto_on_airtm.stdout  # refused before anything was created
    airtm_on_crypto = demo(server_url, master_key, sandbox_url, tmp_path, "--provider", "airtm", timeout=60)
    assert airtm_on_crypto.returncode == 1, airtm_on_crypto.stdout
    assert "runs PAYMENT_PROVIDER=crypto" in airtm_on_crypto.stderr
    assert "1. Two marketplace users" not in airtm_on_crypto.stdout
