"""The sandbox's AirTM subset, over real HTTP: auth, users, pay-ins, checkout, payouts, faults."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.fixtures.sandbox import SandboxControl


class Airtm:
    """AirTM's API (HTTP Basic) and the sandbox's AirTM control plane."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        config = self.control("GET", "/_sandbox/airtm/config").json()
        self.auth = (config["apiKey"], config["apiSecret"])

    def api(self, method: str, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("auth", self.auth)
        return self.http.request(method, f"{self.base}/airtm/v2{path}", json=json, timeout=10, **kwargs)

    def control(self, method: str, path: str, json: Any = None) -> requests.Response:
        return self.http.request(method, f"{self.base}{path}", json=json, timeout=10)

    def configure(self, **settings: Any) -> dict[str, Any]:
        response = self.control("POST", "/_sandbox/airtm/config", settings)
        assert response.status_code == 200, response.text
        return response.json()

    @contextlib.contextmanager
    def borrowed(self, **settings: Any) -> Iterator[Airtm]:
        """Change settings for one test; the previous ones come back after, and fault rules go."""
        before = self.control("GET", "/_sandbox/airtm/config").json()
        self.configure(**settings)
        try:
            yield self
        finally:
            self.control("DELETE", "/_sandbox/faults")
            self.configure(**{k: v for k, v in before.items() if k not in ("apiKey", "apiSecret")})

    def fault(self, **rule: Any) -> None:
        response = self.control("POST", "/_sandbox/faults", rule)
        assert response.status_code in (200, 201), response.text

    def seed_user(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("email", f"user-{uuid.uuid4().hex[:10]}@example.com")
        response = self.control("POST", "/_sandbox/airtm/users", fields)
        assert response.status_code == 201, response.text
        return response.json()

    def create_payin(self, amount: float = 25.5, **fields: Any) -> requests.Response:
        return self.api("POST", "/payins", payin_body(amount) | fields)

    def create_payout(self, email: str, amount: float = 10, **fields: Any) -> requests.Response:
        body = {"airtmUserEmail": email, "amount": amount, "notes": "Withdrawal", "code": new_code("wd")}
        return self.api("POST", "/payouts", body | fields)

    def payin(self, payin_id: str) -> dict[str, Any]:
        return self.api("GET", f"/payins/{payin_id}").json()

    def payout(self, payout_id: str) -> dict[str, Any]:
        return self.api("GET", f"/payouts/{payout_id}").json()

    def act(self, kind: str, resource_id: str, action: str, body: Any = None) -> requests.Response:
        """Drive a pay-in or payout as the buyer or as AirTM (`/_sandbox/airtm/{kind}/{id}/{action}`)."""
        return self.control("POST", f"/_sandbox/airtm/{kind}/{resource_id}/{action}", body)

    def balance(self) -> dict[str, float]:
        return self.api("GET", "/me/balance").json()


def payin_body(amount: float) -> dict[str, Any]:
    """What the orchestrator sends (`providers.md` §3.4): one item for the whole amount."""
    return {
        "code": new_code("topup"),
        "amount": amount,
        "description": "Top-up",
        "items": [{"description": "Top-up", "amount": amount, "quantity": 1}],
        "confirmationUri": "http://127.0.0.1:9/api/v1/topups/t/callback",
        "cancelUri": "http://127.0.0.1:9/api/v1/topups/t/callback",
    }


def new_code(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def eventually(read: Callable[[], Any], accept: Callable[[Any], bool], timeout: float = 5) -> Any:
    """Poll `read` until `accept` holds (the sandbox settles payouts in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if accept(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture
def airtm(sandbox: SandboxControl) -> Iterator[Airtm]:
    """The client on a freshly reset sandbox, with the rate limit off and short delays."""
    with Airtm(sandbox.base_url).borrowed(requestsPerSecond=0, payoutDelaySeconds=0.2) as client:
        yield client


def test_requests_without_the_key_and_secret_are_refused(airtm: Airtm) -> None:
    anonymous = airtm.api("GET", "/me", auth=None)
    wrong = airtm.api("GET", "/me", auth=(airtm.auth[0], "not-the-secret"))

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json()["code"] == wrong.json()["code"] == "415904"
    assert airtm.api("GET", "/me").status_code == 200


def test_seeded_users_are_found_by_email_and_others_are_not(airtm: Airtm) -> None:
    seeded = airtm.seed_user(isVerified=False, country="ARG", firstName="Ana")

    found = airtm.api("GET", f"/users/{seeded['email'].replace('@', '%40')}")
    missing = airtm.api("GET", "/users/nobody%40example.com")

    assert found.status_code == 200
    assert found.json() == {
        "id": seeded["id"],
        "status": "active",
        "primaryEmail": True,
        "isVerified": False,
        "firstName": "Ana",
        "country": "ARG",
    }
    assert missing.status_code == 404
    assert missing.json()["code"] == "415902"


def test_a_payin_is_created_once_per_code_and_read_by_id_and_code(airtm: Airtm) -> None:
    created = airtm.create_payin(40)
    payin = created.json()
    again = airtm.create_payin(40, code=payin["code"])

    assert created.status_code == 200
    assert payin["status"] == "CREATED"
    assert payin["amount"] == payin["netAmount"] == 40
    assert payin["items"][0]["payinId"] == payin["id"]
    assert again.status_code == 409
    assert again.json()["code"] == "415029"
    assert airtm.payin(payin["id"]) == payin
    assert airtm.api("GET", f"/payins/by-code/{payin['code']}").json() == payin
    assert airtm.api("GET", f"/payins/by-code/{new_code('topup')}").status_code == 404


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"items": [{"description": "x", "amount": 1, "quantity": 1}]}, "items"),
        ({"amount": 10.005}, "decimals"),
        ({"amount": "10.00"}, "number"),
        ({"description": "x" * 251}, "250"),
        ({"confirmationUri": None}, "confirmationUri"),
    ],
)
def test_an_invalid_payin_is_refused_with_a_reason_code(airtm: Airtm, fields: dict, why: str) -> None:
    response = airtm.api("POST", "/payins", payin_body(10) | fields)

    assert response.status_code == 400
    assert response.json()["code"] == "415901"
    assert why in response.json()["message"]


def test_a_body_that_is_not_json_gets_an_airtm_error_not_a_traceback(airtm: Airtm) -> None:
    response = airtm.api("POST", "/payins", data=b"{not json", headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert set(response.json()) == {"code", "message"}


def test_the_buyer_confirms_on_the_hosted_page_and_the_enterprise_is_credited_net(airtm: Airtm) -> None:
    buyer = airtm.seed_user()
    airtm.configure(feePercent="2.5")
    payin = airtm.create_payin(100).json()
    before = airtm.balance()["available"]

    page = airtm.http.get(f"{airtm.base}/airtm/checkout/payin/{payin['id']}", timeout=10)
    confirm = airtm.http.post(
        f"{airtm.base}/airtm/checkout/payin/{payin['id']}/confirm",
        data={"email": buyer["email"]},
        allow_redirects=False,
        timeout=10,
    )
    after = airtm.payin(payin["id"])

    assert payin["airtmFee"] == 2.5
    assert payin["netAmount"] == 97.5
    assert page.status_code == 200
    assert "100.00 USD" in page.text
    assert confirm.status_code == 302
    assert confirm.headers["Location"] == f"{payin['confirmationUri']}?code={payin['code']}"
    assert after["status"] == "CONFIRMED"
    assert after["airtmUserId"] == buyer["id"]
    assert airtm.balance()["available"] == pytest.approx(before + 97.5)


def test_a_confirmation_delay_shows_processing_first(airtm: Airtm) -> None:
    buyer = airtm.seed_user()
    airtm.configure(payinConfirmDelaySeconds=0.3)
    payin = airtm.create_payin(5).json()

    acted = airtm.act("payins", payin["id"], "confirm", {"email": buyer["email"]})

    def read() -> str:
        return airtm.payin(payin["id"])["status"]

    assert acted.json()["payin"]["status"] == "PROCESSING"
    assert eventually(read, lambda status: status == "CONFIRMED") == "CONFIRMED"


def test_a_canceled_payin_never_changes_again(airtm: Airtm) -> None:
    buyer = airtm.seed_user()
    payin = airtm.create_payin(5).json()

    canceled = airtm.api("DELETE", f"/payins/{payin['id']}")
    cancel_again = airtm.api("DELETE", f"/payins/{payin['id']}")
    confirm = airtm.act("payins", payin["id"], "confirm", {"email": buyer["email"]})
    fail = airtm.act("payins", payin["id"], "fail", {"reason": "x"})

    assert canceled.json()["status"] == "CANCELED"
    assert cancel_again.json()["code"] == "415030"
    assert confirm.status_code == fail.status_code == 409
    assert airtm.payin(payin["id"])["status"] == "CANCELED"


def test_a_confirmed_payin_cannot_be_canceled(airtm: Airtm) -> None:
    buyer = airtm.seed_user()
    payin = airtm.create_payin(5).json()
    airtm.act("payins", payin["id"], "confirm", {"email": buyer["email"]})

    response = airtm.api("DELETE", f"/payins/{payin['id']}")

    assert response.status_code == 409
    assert response.json()["code"] == "415032"


def test_the_buyer_cancels_and_is_sent_to_the_cancel_uri(airtm: Airtm) -> None:
    payin = airtm.create_payin(5, cancelUri="http://127.0.0.1:9/cancel?x=1").json()

    response = airtm.http.post(
        f"{airtm.base}/airtm/checkout/payin/{payin['id']}/cancel", allow_redirects=False, timeout=10
    )

    assert response.status_code == 302
    assert response.headers["Location"] == f"http://127.0.0.1:9/cancel?x=1&code={payin['code']}"
    assert airtm.payin(payin["id"])["status"] == "CANCELED"


def test_an_unconfirmed_payin_expires(airtm: Airtm) -> None:
    airtm.configure(payinExpirySeconds=0.2)
    payin = airtm.create_payin(5).json()

    status = eventually(lambda: airtm.payin(payin["id"])["status"], "CANCELED".__eq__)

    assert status == "CANCELED"


def test_an_unconfirmed_payin_expires_after_15_days_of_sandbox_clock(airtm: Airtm, sandbox: SandboxControl) -> None:
    payin = airtm.create_payin(5).json()

    sandbox.advance_clock(15 * 86400 - 60)
    still_waiting = airtm.payin(payin["id"])["status"]
    sandbox.advance_clock(61)

    assert still_waiting == "CREATED"
    assert airtm.payin(payin["id"])["status"] == "CANCELED"


def test_a_payout_is_debited_at_creation_and_completes_after_commit(airtm: Airtm) -> None:
    user = airtm.seed_user()
    before = airtm.balance()

    created = airtm.create_payout(user["email"], 12.34, internalNote="airtm_balance")
    payout = created.json()
    held = airtm.balance()
    commit = airtm.api("POST", f"/payouts/{payout['id']}/commit")
    committed = airtm.payout(payout["id"])
    done = eventually(lambda: airtm.payout(payout["id"]), lambda p: p["status"] != "COMMITTED")
    commit_again = airtm.api("POST", f"/payouts/{payout['id']}/commit")
    events = airtm.api("GET", f"/payouts/{payout['id']}/events").json()

    assert created.status_code == 200
    assert payout["status"] == "CREATED"
    assert payout["airtmUserId"] == user["id"]
    assert payout["grossAmount"] == payout["amount"] == 12.34
    assert held["available"] == pytest.approx(before["available"] - 12.34)
    assert held["pending"] == pytest.approx(before["pending"] + 12.34)
    assert commit.status_code == 204
    assert committed["status"] == "COMMITTED"
    assert done["status"] == "COMPLETED"
    assert commit_again.json()["code"] == "415027"
    assert [e["newStatus"] for e in events] == ["CREATED", "COMMITTED", "COMPLETED"]
    assert airtm.balance()["available"] == pytest.approx(before["available"] - 12.34)
    assert airtm.api("GET", f"/payouts/by-code/{payout['code']}").json()["id"] == payout["id"]


def test_a_payout_to_an_unverified_user_waits_and_can_be_canceled(airtm: Airtm) -> None:
    user = airtm.seed_user(isVerified=False)
    before = airtm.balance()["available"]

    payout = airtm.create_payout(user["email"], 7, commit=True).json()
    pending = eventually(lambda: airtm.payout(payout["id"]), lambda p: p["status"] != "COMMITTED")
    canceled = airtm.api("DELETE", f"/payouts/{payout['id']}")
    cancel_again = airtm.api("DELETE", f"/payouts/{payout['id']}")

    assert payout["status"] == "COMMITTED"
    assert pending["status"] == "PENDING"
    assert canceled.json()["status"] == "CANCELED"
    assert cancel_again.json()["code"] == "415055"
    assert airtm.balance()["available"] == pytest.approx(before)


def test_a_pending_payout_completes_once_the_user_is_verified(airtm: Airtm) -> None:
    user = airtm.seed_user(isVerified=False)
    payout = airtm.create_payout(user["email"], 3, commit=True).json()

    def read() -> str:
        return airtm.payout(payout["id"])["status"]

    assert eventually(read, "PENDING".__eq__) == "PENDING"

    airtm.seed_user(email=user["email"], isVerified=True)

    assert eventually(read, "COMPLETED".__eq__) == "COMPLETED"


def test_a_payout_pending_too_long_is_canceled_and_refunded(airtm: Airtm, sandbox: SandboxControl) -> None:
    user = airtm.seed_user(isVerified=False)
    before = airtm.balance()["available"]
    payout = airtm.create_payout(user["email"], 6, commit=True).json()
    eventually(lambda: airtm.payout(payout["id"])["status"], "PENDING".__eq__)

    sandbox.advance_clock(90 * 86400)

    assert airtm.payout(payout["id"])["status"] == "CANCELED"
    assert airtm.balance()["available"] == pytest.approx(before)


@pytest.mark.parametrize(
    ("user", "amount", "code"),
    [
        (None, 5, "415059"),
        ({"status": "inactive"}, 5, "415009"),  # AirTM: "Recipient address inactive"
        ({"payoutRejectCode": "415010"}, 5, "415010"),
        ({}, 0, "415035"),
        ({}, 5.001, "415901"),
    ],
)
def test_a_payout_the_recipient_or_amount_forbids_is_refused(
    airtm: Airtm, user: dict | None, amount: float, code: str
) -> None:
    email = airtm.seed_user(**user)["email"] if user is not None else "nobody@example.com"
    before = airtm.balance()["available"]

    response = airtm.create_payout(email, amount)

    assert response.status_code >= 400
    assert response.json()["code"] == code
    assert airtm.balance()["available"] == before


def test_payout_codes_are_unique_and_the_enterprise_balance_is_a_limit(airtm: Airtm) -> None:
    user = airtm.seed_user()
    first = airtm.create_payout(user["email"], 1).json()
    available = airtm.balance()["available"]

    duplicate = airtm.create_payout(user["email"], 1, code=first["code"])
    airtm.configure(enterpriseBalance=5)
    too_much = airtm.create_payout(user["email"], 5.01)
    just_enough = airtm.create_payout(user["email"], 5)
    airtm.configure(enterpriseBalance=available)

    assert duplicate.json()["code"] == "415056"
    assert too_much.json()["code"] == "415016"
    assert just_enough.status_code == 200


def test_a_scripted_failure_refunds_and_a_terminal_payout_never_changes(airtm: Airtm) -> None:
    user = airtm.seed_user()
    before = airtm.balance()["available"]
    code = new_code("wd")
    airtm.control("POST", "/_sandbox/airtm/payout-scripts", {"code": code, "outcome": "fail", "reasonCode": "415073"})

    payout = airtm.create_payout(user["email"], 4, code=code, commit=True).json()
    failed = eventually(lambda: airtm.payout(payout["id"]), lambda p: p["status"] == "FAILED")
    complete = airtm.act("payouts", payout["id"], "complete")
    delete = airtm.api("DELETE", f"/payouts/{payout['id']}")

    assert failed["status"] == "FAILED"
    assert failed["reasonCode"] == "415073"
    assert complete.status_code == delete.status_code == 409
    assert airtm.payout(payout["id"])["status"] == "FAILED"
    assert airtm.balance()["available"] == pytest.approx(before)


def test_the_control_plane_drives_a_payout_through_error_to_completion(airtm: Airtm) -> None:
    airtm.configure(payoutDelaySeconds=60)
    user = airtm.seed_user()
    payout = airtm.create_payout(user["email"], 2, commit=True).json()

    error = airtm.act("payouts", payout["id"], "error", {"reasonCode": "415998"})
    complete = airtm.act("payouts", payout["id"], "complete")

    assert error.json()["payout"]["status"] == "ERROR"
    assert error.json()["payout"]["reasonCode"] == "415998"
    assert complete.json()["payout"]["status"] == "COMPLETED"


def test_more_than_ten_requests_a_second_are_refused_with_429(airtm: Airtm) -> None:
    airtm.configure(requestsPerSecond=10)
    time.sleep(1.0)

    statuses = [airtm.api("GET", "/me").status_code for _ in range(14)]
    limited = airtm.api("GET", "/me")
    time.sleep(1.05)

    assert statuses[:10] == [200] * 10
    assert 429 in statuses[10:]
    assert limited.headers.get("Retry-After") == "1"
    assert airtm.api("GET", "/me").status_code == 200


def test_an_injected_5xx_is_answered_without_applying(airtm: Airtm) -> None:
    user = airtm.seed_user()
    code = new_code("wd")
    airtm.fault(service="airtm", method="POST", path="/payouts", action="status", params={"status": 503})

    response = airtm.create_payout(user["email"], 1, code=code)

    assert response.status_code == 503
    assert set(response.json()) == {"code", "message"}
    assert airtm.api("GET", f"/payouts/by-code/{code}").status_code == 404


def test_a_create_applied_but_dropped_is_found_by_code(airtm: Airtm) -> None:
    code = new_code("topup")
    airtm.fault(service="airtm", method="POST", path="/payins", when={"code": code}, action="apply_then_drop")

    with pytest.raises(requests.ConnectionError):
        airtm.create_payin(9, code=code)

    found = airtm.api("GET", f"/payins/by-code/{code}")
    assert found.status_code == 200
    assert found.json()["status"] == "CREATED"


def test_an_injected_delay_slows_the_answer(airtm: Airtm) -> None:
    airtm.fault(service="airtm", path="/me", action="delay", params={"ms": 300})

    started = time.monotonic()
    response = airtm.api("GET", "/me")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
