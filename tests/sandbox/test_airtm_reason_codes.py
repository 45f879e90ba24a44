"""The sandbox's AirTM answers with the reason codes AirTM's own API description gives (DESIGN decision 24).

Source: AirTM Enterprise API v2 description 1.87.0, "Reason Codes" (OFFER-HUB/offer-hub,
docs/airtm/documentation.json): 415005 payout not found, 415008 recipient address not active (retry
later), 415009 recipient address inactive, 415010 user deleted or banned, 415031 payin not found,
415061 restricted territory, 415065 AML policy.
"""

from __future__ import annotations

import pytest

from tests.sandbox.test_airtm import Airtm, airtm, new_code

__all__ = ["airtm"]


@pytest.mark.parametrize("path", ["/payouts/{id}", "/payouts/by-code/{code}", "/payouts/{id}/events"])
def test_a_payout_that_does_not_exist_is_415005(airtm: Airtm, path: str) -> None:
    response = airtm.api("GET", path.format(id="7d4c1c8e-0000-4000-8000-000000000000", code=new_code("wd")))

    assert response.status_code == 404
    assert response.json()["code"] == "415005"


@pytest.mark.parametrize(("method", "path"), [("POST", "/payouts/{id}/commit"), ("DELETE", "/payouts/{id}")])
def test_committing_or_canceling_a_payout_that_does_not_exist_is_415005(airtm: Airtm, method: str,
                                                                         path: str) -> None:
    response = airtm.api(method, path.format(id="7d4c1c8e-0000-4000-8000-000000000001"))

    assert response.status_code == 404
    assert response.json()["code"] == "415005"


@pytest.mark.parametrize("path", ["/payins/{id}", "/payins/by-code/{code}"])
def test_a_payin_that_does_not_exist_is_415031(airtm: Airtm, path: str) -> None:
    response = airtm.api("GET", path.format(id="7d4c1c8e-0000-4000-8000-000000000002", code=new_code("topup")))

    assert response.status_code == 404
    assert response.json()["code"] == "415031"


def test_an_inactive_recipient_is_415009_not_the_retry_later_415008(airtm: Airtm) -> None:
    user = airtm.seed_user(status="inactive")

    response = airtm.create_payout(user["email"], 5)

    assert response.json()["code"] == "415009"


def test_an_inactive_buyer_cannot_pay_a_payin_415009(airtm: Airtm) -> None:
    buyer = airtm.seed_user(status="inactive")
    payin = airtm.create_payin(12).json()

    response = airtm.act("payins", payin["id"], "confirm", {"email": buyer["email"]})

    assert response.status_code >= 400
    assert "415009" in response.text
    assert airtm.payin(payin["id"])["status"] == "CREATED"


@pytest.mark.parametrize("code", ["415008", "415010", "415061", "415065"])
def test_a_recipient_scripted_with_a_reason_code_is_refused_with_it(airtm: Airtm, code: str) -> None:
    user = airtm.seed_user(payoutRejectCode=code)
    before = airtm.balance()["available"]

    response = airtm.create_payout(user["email"], 5)

    assert response.status_code >= 400
    assert response.json()["code"] == code
    assert airtm.balance()["available"] == before


def test_an_injected_status_can_carry_any_reason_code(airtm: Airtm) -> None:
    """AirTM's description gives no HTTP status per reason code, so a client must decide by the code:
    the `status` fault takes `code` to answer one with a status we do not pick."""
    payout_id = "7d4c1c8e-0000-4000-8000-000000000003"
    with airtm.borrowed():
        airtm.fault(service="airtm", method="GET", path="/payouts/*", action="status",
                    params={"status": 400, "code": "415005", "message": "Payout not found"})
        response = airtm.api("GET", f"/payouts/{payout_id}")

    assert response.status_code == 400
    assert response.json() == {"code": "415005", "message": "Payout not found"}
