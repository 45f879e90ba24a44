"""An AirTM withdrawal's commit under ``Prefer: respond-async`` answers 202 with the withdrawal as it
stands (api.md §1.12), then the applied report moves it. The command is held back for real by another
transaction holding the withdrawal's row (tests/web/test_accepted.py explains the technique)."""

from __future__ import annotations

from tests.airtm.helpers import funded_user, status_of
from tests.airtm.test_withdrawals import withdraw
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance
from tests.web.test_accepted import ASYNC, accepted, held


async def test_a_commit_answers_the_withdrawal_as_it_stands_then_commits_it(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "30.00")
    withdrawal = await withdraw(airtm_api, user["id"], "10.00")
    path = f"/withdrawals/{withdrawal['id']}"
    with held(airtm_instance.engine, "withdrawals", withdrawal["id"]):
        data = accepted(await airtm_api.post(f"{path}/commit", headers=ASYNC))
    assert data == withdrawal | {"updatedAt": data["updatedAt"]}
    assert (data["status"], data["committed"]) == ("WITHDRAWAL_CREATED", False)
    done = await status_of(airtm_api, path, "WITHDRAWAL_COMPLETED")
    assert done["committed"] is True
    assert (await airtm_api.balance(user["id"]))["available"] == "20.00"
