"""``offerhub demo`` end to end: a real deposit on the sandbox ledger, then release, refund and a split dispute."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OFFERHUB = Path(sys.executable).with_name("offerhub")


def test_the_demo_runs_the_seed_flows_and_ends_with_book_equal_to_ledger(
        server_url: str, master_key: str, sandbox_url: str, monitor: None, tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "NO_COLOR": "1", "OFFERHUB_API_URL": server_url,
           "OFFERHUB_API_KEY": master_key}
    done = subprocess.run([str(OFFERHUB), "demo", "--sandbox-url", sandbox_url, "--deposit", "250.00"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = done.stdout
    print(out)  # the narration, for whoever reads the test log
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    for step in ("1. Two marketplace users", "2. A real deposit", "3. Release", "4. Refund", "5. Dispute",
                 "6. Balances"):
        assert step in out
    assert "release        -> CLOSED / RELEASED" in out
    assert "refund         -> CLOSED / REFUNDED" in out
    assert "resolve SPLIT  -> dispute RESOLVED, order CLOSED / RELEASED" in out
    # the events arrived as they happened, from the deposit to the split
    for event in ("balance.credited", "escrow.funded", "order.released", "order.refunded", "dispute.resolved",
                  "order.closed"):
        assert f" {event} " in out, event
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("buyer ", "seller "))]
    assert [row[0] for row in rows] == ["buyer", "seller"]
    assert all(row[-1] == "yes" for row in rows)
    assert "Done: every party's book balance equals the USDC its wallet holds on the ledger." in out
