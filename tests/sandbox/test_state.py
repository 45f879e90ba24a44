"""The sandbox keeps its world in `SANDBOX_STATE_FILE` across a SIGKILL (DESIGN decision 27), and only then.

Each test runs sandboxes of its own (`start_sandbox` ends them with SIGKILL, as `kill -9` would), never the
package's shared one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from stellar_sdk import Server

from tests.fixtures.sandbox import SANDBOX_TEST_SEED, SandboxControl, start_sandbox
from tests.sandbox.helpers import balances, submit, usdc
from tests.sandbox.test_airtm import Airtm
from tests.sandbox.test_trustless import Parties

ROOT = Path(__file__).resolve().parents[2]


def _account(sandbox: SandboxControl, account_id: str) -> dict[str, Any]:
    reply = requests.get(f"{sandbox.horizon_url}/accounts/{account_id}", timeout=10)
    assert reply.status_code == 200, reply.text
    return {k: v for k, v in reply.json().items() if k != "_links"}


def _payments(sandbox: SandboxControl, account_id: str, cursor: str | None = None) -> list[dict[str, Any]]:
    params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
    reply = requests.get(f"{sandbox.horizon_url}/accounts/{account_id}/payments", params=params, timeout=10)
    assert reply.status_code == 200, reply.text
    return [{k: v for k, v in r.items() if k != "_links"} for r in reply.json()["_embedded"]["records"]]


def test_the_whole_world_survives_a_sigkill_and_the_next_start_goes_on_from_it(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    # Given a sandbox keeping its state in a file, with accounts, a USDC payment, a funded escrow and a
    # confirmed AirTM pay-in
    with start_sandbox(SANDBOX_STATE_FILE=str(state_file)) as url:
        sandbox = SandboxControl(url)
        p = Parties(sandbox, buyer_usdc="200")
        paid = sandbox.pay(p.buyer.secret, p.seller.public_key, "7.5000001")
        contract = p.deploy()
        p.ok("/escrow/single-release/fund-escrow",
             {"contractId": contract, "signer": p.buyer.public_key, "amount": 100}, p.buyer)
        airtm = Airtm(url)
        payer = airtm.seed_user()
        payin = airtm.create_payin(12.34).json()
        assert airtm.act("payins", payin["id"], "confirm", {"email": payer["email"]}).status_code == 200
        before = {
            "accounts": {k.public_key: _account(sandbox, k.public_key) for k in (p.platform, p.buyer, p.seller)},
            "payments": _payments(sandbox, p.seller.public_key),
            "escrow": p.escrow(contract),
            "payin": airtm.api("GET", f"/payins/{payin['id']}").json(),
            "enterprise": airtm.balance(),
            "webhooks": airtm.control("GET", "/_sandbox/airtm/webhooks").json(),
            "conservation": sandbox.conservation(),
        }
    # When it is killed with SIGKILL (start_sandbox's exit) and started again on the same file
    assert state_file.stat().st_mode & 0o777 == 0o600  # it holds secret keys
    with start_sandbox(SANDBOX_STATE_FILE=str(state_file)) as url:
        sandbox = SandboxControl(url)
        p.sandbox, p.server = sandbox, Server(sandbox.horizon_url)
        airtm = Airtm(url)
        # Then balances, sequence numbers, history (same paging tokens), the escrow as TW's helper reads it,
        # the pay-in, the enterprise balance and the webhook outbox are all as they were
        after_accounts = {k: _account(sandbox, k) for k in before["accounts"]}
        assert after_accounts == before["accounts"]
        assert after_accounts[p.seller.public_key]["balances"][0]["balance"] == "7.5000001"
        payments = _payments(sandbox, p.seller.public_key)
        assert payments == before["payments"]
        record = next(r for r in payments if r["transaction_hash"] == paid["hash"])
        assert record["paging_token"] == paid["operationId"]
        assert p.escrow(contract) == before["escrow"]
        assert p.escrow(contract)["balance"] == 100
        assert airtm.api("GET", f"/payins/{payin['id']}").json() == before["payin"]
        assert before["payin"]["status"] == "CONFIRMED"
        assert airtm.balance() == before["enterprise"]
        assert airtm.control("GET", "/_sandbox/airtm/webhooks").json() == before["webhooks"]
        assert sandbox.conservation() == before["conservation"]
        # and the world goes on from there: a monitor's cursor sees exactly the next payment, the buyer's
        # next sequence number is accepted, and TW builds the rest of the escrow from its own database
        cursor = record["paging_token"]
        again = submit(p.server, p.buyer, lambda b: b.append_payment_op(p.seller.public_key, usdc(sandbox), "1"))
        assert [r["transaction_hash"] for r in _payments(sandbox, p.seller.public_key, cursor)] == [again["hash"]]
        p.ok("/escrow/single-release/change-milestone-status",
             {"contractId": contract, "milestoneIndex": "0", "newStatus": "completed", "newEvidence": "",
              "serviceProvider": p.seller.public_key}, p.seller)
        p.ok("/escrow/single-release/approve-milestone",
             {"contractId": contract, "milestoneIndex": "0", "approver": p.buyer.public_key}, p.buyer)
        p.ok("/escrow/single-release/release-funds",
             {"contractId": contract, "releaseSigner": p.buyer.public_key}, p.buyer)
        # 100 less TW's 0.3 % and the 5 % platform fee, on top of 7.5000001 + 1 paid directly
        assert balances(p.server, p.seller.public_key)["USDC"] == "103.2000001"
        assert sandbox.conservation()["balanced"]


def _refused(state_file: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "SANDBOX_SEED": SANDBOX_TEST_SEED, "SANDBOX_STATE_FILE": str(state_file), **env}
    environ.pop("SANDBOX_URL", None)
    return subprocess.run([sys.executable, "-m", "scripts.sandbox", "--port", "0"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_file_from_another_seed_or_unreadable_is_refused_with_one_line(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    with start_sandbox(SANDBOX_STATE_FILE=str(state_file)) as url:
        SandboxControl(url).create_account()
    kept = state_file.read_bytes()
    # A sandbox of another seed refuses the file, in one line naming it and the way out, and leaves it alone
    other = _refused(state_file, SANDBOX_SEED="another-seed")
    assert other.returncode == 2
    assert "SANDBOX_READY" not in other.stdout
    assert other.stderr.strip().count("\n") == 0, other.stderr
    assert str(state_file) in other.stderr
    assert "another SANDBOX_SEED" in other.stderr
    assert "scripts/dev --fresh" in other.stderr
    assert state_file.read_bytes() == kept
    # and so does one given a file it cannot read
    state_file.write_text('{"format": "offerhub-sandbox-state", "vers')
    broken = _refused(state_file)
    assert broken.returncode == 2
    assert broken.stderr.strip().count("\n") == 0, broken.stderr
    assert "Traceback" not in broken.stderr
    assert str(state_file) in broken.stderr
    assert "scripts/dev --fresh" in broken.stderr


def test_a_file_in_use_by_a_running_sandbox_is_refused(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    with start_sandbox(SANDBOX_STATE_FILE=str(state_file)) as url:
        created = SandboxControl(url).create_account()["publicKey"]
        second = _refused(state_file)
        assert second.returncode == 2
        assert second.stderr.strip().count("\n") == 0, second.stderr
        assert "in use by another sandbox" in second.stderr
        assert requests.get(f"{url}/horizon/accounts/{created}", timeout=10).status_code == 200


def test_an_empty_state_file_setting_keeps_the_world_in_memory(tmp_path: Path) -> None:
    with start_sandbox(SANDBOX_STATE_FILE="") as url:
        created = SandboxControl(url).create_account()["publicKey"]
    with start_sandbox(SANDBOX_STATE_FILE="") as url:
        gone = requests.get(f"{url}/horizon/accounts/{created}", timeout=10)
        assert gone.status_code == 404
        assert SandboxControl(url).state()["ledger"] == 1  # genesis again
    assert list(tmp_path.iterdir()) == []
