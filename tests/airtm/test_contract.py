"""schemathesis against the AirTM-mode instance (real ``python -m web`` and worker processes): the AirTM
routes answer their documented statuses and shapes, never a 5xx, on real linked users, top-ups and
AirTM withdrawals as well as on random ids."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.airtm.helpers import funded_user, linked_user
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance
from tests.web.test_contract import Fuzzer

#: The operations that behave differently in AirTM mode (in crypto mode they answer 422 PROVIDER_NOT_ENABLED).
AIRTM_PATHS = ("/topups", "/users/{userId}/airtm/link", "/withdrawals", "/webhooks/airtm")


@pytest.mark.timeout(600)
async def test_the_airtm_instance_keeps_its_openapi_contract(airtm_api: Api, airtm: AirtmControl,
                                                             airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "300.00")
    topup = await airtm_api.post("/topups", {"userId": user["id"], "amount": "10.00"})
    assert topup.status == 201, topup.body
    withdrawal = await airtm_api.post("/withdrawals", {"userId": user["id"], "amount": "20.00",
                                                       "destinationType": "bank", "destinationRef": "bank_ref"})
    assert withdrawal.status == 201, withdrawal.body
    other, _ = await linked_user(airtm_api, airtm)
    key = await airtm_api.key("read", "write", "support", "*")
    async with aiohttp.ClientSession() as session, session.get(f"{airtm_instance.url}/api/v1/openapi.json") as resp:
        document = await resp.json()
    document["paths"] = {path: ops for path, ops in document["paths"].items() if path.startswith(AIRTM_PATHS)}
    real = {"userId": other["id"], "topupId": topup.data["id"], "withdrawalId": withdrawal.data["id"]}
    fuzzer = Fuzzer(f"{airtm_instance.url}/api/v1", key, real)
    started = time.monotonic()
    await asyncio.to_thread(fuzzer.run, document)
    print(f"schemathesis (AirTM mode): {fuzzer.sent} requests in {time.monotonic() - started:.1f}s")
    assert not fuzzer.failures, "\n\n".join(fuzzer.failures)
