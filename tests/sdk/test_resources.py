"""The resource groups that need another instance or role: AirTM link, top-ups and withdrawals (on the
AirTM-mode instance), audit logs, API keys and the system group."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator.client import Client, InvalidStateTransitionError, NotFoundError
from tests.api import unique
from tests.fixtures.airtm import AirtmControl, AirtmInstance


@pytest.fixture
def on_airtm(airtm_instance: AirtmInstance, master_key: str) -> Iterator[Client]:
    with Client(airtm_instance.url, master_key, backoff=0.05) as sdk:
        yield sdk


def until(probe: Callable[[], Any], seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def test_airtm_link_topups_and_withdrawals(on_airtm: Client, airtm: AirtmControl) -> None:
    email = airtm.user()
    user = on_airtm.users.create(external_user_id=unique("sdk-airtm"))
    link = on_airtm.users.link_airtm(user["id"], email=email)
    assert (link["userId"], link["eligible"]) == (user["id"], True)

    topup = on_airtm.topups.create(user_id=user["id"], amount="30.00", return_url="https://shop.example/ok",
                                   cancel_url="https://shop.example/no")
    assert topup["status"] == "TOPUP_AWAITING_USER_CONFIRMATION"
    airtm.payin(topup["airtmPayinId"], "confirm", email=email)
    until(lambda: on_airtm.topups.refresh(topup["id"])["status"] == "TOPUP_SUCCEEDED")
    assert on_airtm.topups.get(topup["id"], user_id=user["id"])["status"] == "TOPUP_SUCCEEDED"
    with pytest.raises(NotFoundError):
        on_airtm.topups.get(topup["id"], user_id="usr_someoneelse")
    second = on_airtm.topups.create(user_id=user["id"], amount="5.00")
    assert on_airtm.topups.cancel(second["id"])["status"] == "TOPUP_CANCELED"
    assert [t["id"] for t in on_airtm.topups.iterate(user_id=user["id"], limit=1)] == [second["id"], topup["id"]]
    assert on_airtm.balance.get(user["id"])["available"] == "30.00"

    withdrawal = on_airtm.withdrawals.create(user_id=user["id"], amount="12.00", destination_type="bank",
                                             destination_ref="bank_ref")
    assert (withdrawal["status"], withdrawal["committed"]) == ("WITHDRAWAL_CREATED", False)
    canceled = on_airtm.withdrawals.cancel(withdrawal["id"], user_id=user["id"])
    assert canceled["status"] == "WITHDRAWAL_CANCELED"
    with pytest.raises(InvalidStateTransitionError) as late:
        on_airtm.withdrawals.commit(withdrawal["id"])
    assert late.value.code == "WITHDRAWAL_NOT_COMMITTABLE"
    assert late.value.current_state == "WITHDRAWAL_CANCELED"
    paid = on_airtm.withdrawals.create(user_id=user["id"], amount="10.00", destination_type="bank",
                                       destination_ref="bank_ref")
    assert on_airtm.withdrawals.commit(paid["id"], user_id=user["id"])["committed"] is True
    until(lambda: on_airtm.withdrawals.refresh(paid["id"])["status"] == "WITHDRAWAL_COMPLETED")
    page = on_airtm.withdrawals.list(user_id=user["id"])
    assert [w["id"] for w in page] == [paid["id"], withdrawal["id"]]
    assert on_airtm.balance.get(user["id"])["available"] == "20.00"


def test_audit_logs_api_keys_and_system(server_url: str, master_key: str) -> None:
    with Client(server_url, master_key) as client:
        key = client.api_keys.create(name=unique("audited"), scopes=["read"], user_id=unique("owner"))
        token = client.api_keys.create_token(key["id"], ttl=120, scopes=["read"])
        assert token["token"].startswith("ohk_tok_")
        with Client(server_url, token["token"]) as holder:
            assert holder.api_keys.me()["type"] == "token"
        assert client.api_keys.revoke(key["id"])["status"] == "REVOKED"
        entries = until(lambda: list(client.audit_logs.iterate(resource_id=key["id"], limit=1)))
        assert {"api_key.created", "api_key.revoked"} <= {e["action"] for e in entries}
        assert client.audit_logs.list(resource_type="ApiKey", action="api_key.created", limit=1).items
        assert client.system.config()["currencies"] == ["USD"]
        assert client.system.health_detailed()["dependencies"]["database"]["status"] == "healthy"
        assert client.system.maintenance_status()["enabled"] is False
