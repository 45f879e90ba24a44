"""A request whose create message never ran: the periodic refresh creates the pay-in or payout, and the
request's flow ends there (DONE), so its idempotent replay answers the record instead of 202 forever.

The lost message is real: a process runs the command (the record and its flow commit) and exits before
sending the actor message, as a worker killed between the commit and the send would; the command's
redelivered message then finds the command done and sends nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.airtm.helpers import funded_user, linked_user, until
from tests.api import Api, idempotency_key
from tests.fixtures.airtm import AirtmControl, AirtmInstance
from tests.fixtures.processes import ROOT

#: Run one command as a worker does, then exit without sending its after-commit messages.
EXECUTE_AND_DIE = """
import sys
from orchestrator import commands
from orchestrator.db import create_sync_engine
from orchestrator.settings import Settings
settings = Settings.from_env()
outcome = commands.execute(create_sync_engine(settings.database_url, pool_size=1), sys.argv[1], settings)
print(outcome.status, *[m.actor for m in outcome.messages])
"""


def execute_and_die(instance: AirtmInstance, command_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", EXECUTE_AND_DIE, command_id], cwd=ROOT, capture_output=True,
                          text=True, check=False, env={**os.environ, **instance.env}, timeout=60)


def flow_of(engine: Engine, command_id: str) -> tuple[str | None, str | None]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT flow_status, result->>'id' AS id FROM commands WHERE id = :c"),
                           {"c": command_id}).one()
        return row.flow_status, row.id


@pytest.mark.parametrize("resource", ["topup", "withdrawal"])
async def test_a_record_whose_create_message_was_lost_is_created_by_the_refresh_and_its_request_answered(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance, resource: str) -> None:
    if resource == "topup":
        user, _ = await linked_user(airtm_api, airtm)
        path, body = "/topups", {"userId": user["id"], "amount": "12.00"}
    else:
        user, _ = await funded_user(airtm_api, airtm, "30.00")
        path, body = "/withdrawals", {"userId": user["id"], "amount": "12.00", "destinationType": "bank",
                                      "destinationRef": "bank_ref"}
    key = idempotency_key()
    airtm_instance.kill_workers()
    try:
        queued = await airtm_api.post(path, body, headers={"Prefer": "respond-async", "Idempotency-Key": key})
        assert queued.status == 202, queued.body
        command_id = queued.body["meta"]["commandId"]
        died = execute_and_die(airtm_instance, command_id)
        assert died.returncode == 0, died.stderr
        status, *unsent = died.stdout.split()
        assert (status, f"airtm_create_{'payin' if resource == 'topup' else 'payout'}" in unsent) == ("DONE", True)
    finally:
        airtm_instance.start_worker()  # gets the command's message again: already done, it sends nothing
    flow, record_id = flow_of(airtm_instance.engine, command_id)
    assert (flow, record_id is not None) == ("RUNNING", True)
    record_path = f"{path}/{record_id}"

    async def created_at_airtm() -> Any:
        found = (await airtm_api.get(record_path)).data
        return found if found.get("airtmPayinId" if resource == "topup" else "airtmPayoutId") else None

    record = await until(created_at_airtm, "the periodic refresh to create it at AirTM", seconds=40)
    made = airtm.payins_with_code(record_id) if resource == "topup" else airtm.payouts_with_code(record_id)
    assert len(made) == 1
    assert record["status"] == ("TOPUP_AWAITING_USER_CONFIRMATION" if resource == "topup" else "WITHDRAWAL_CREATED")

    async def flow_done() -> bool:
        return flow_of(airtm_instance.engine, command_id)[0] == "DONE"

    await until(flow_done, "the request's flow to end")
    replay = await airtm_api.post(path, body, headers={"Idempotency-Key": key})
    assert (replay.status, replay.data["id"], replay.data["status"]) == (201, record_id, record["status"]), replay.body
