"""The sync SDK against the real server process: envelopes, errors, pagination, idempotency and retries.

Faults come from a real proxy in front of the server (tests/sdk/proxy.py) or from the server's own
maintenance mode; nothing of the SDK's transport is mocked.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from orchestrator.client import (
    AuthenticationError,
    AuthorizationError,
    Client,
    IdempotencyError,
    InsufficientFundsError,
    MaintenanceError,
    NetworkError,
    NotFoundError,
    ValidationError,
)
from orchestrator.settings import Settings
from scripts.ports import free_port
from tests.api import unique
from tests.fixtures.sandbox import SandboxControl, tw_submissions
from tests.sdk.proxy import FaultyProxy, faulty_proxy


@pytest.fixture
def client(server_url: str, master_key: str) -> Iterator[Client]:
    with Client(server_url, master_key, backoff=0.05) as sdk:
        yield sdk


@pytest.fixture
def proxy(server_url: str) -> Iterator[FaultyProxy]:
    with faulty_proxy(server_url) as running:
        yield running


@pytest.fixture
def via_proxy(proxy: FaultyProxy, master_key: str) -> Iterator[Client]:
    with Client(proxy.url, master_key, backoff=0.05) as sdk:
        yield sdk


def test_calls_return_the_envelopes_data_with_what_the_response_said(client: Client) -> None:
    user = client.users.create(external_user_id=unique("sdk"), email="sdk@example.com")
    assert user["id"].startswith("usr_")
    assert user.status_code == 201
    assert user.request_id
    assert user.idempotency_key  # generated, because none was given
    again = client.users.create(external_user_id=user["externalUserId"])
    assert again.status_code == 200
    assert again["id"] == user["id"]
    assert client.users.get(user["id"])["externalUserId"] == user["externalUserId"]
    assert client.balance.get(user["id"])["available"] == "0.00"


@pytest.mark.parametrize("suffix", ["", "/", "/api/v1", "/api/v1/", "/api"])
def test_the_base_url_works_with_or_without_the_api_prefix(server_url: str, master_key: str, suffix: str) -> None:
    with Client(server_url + suffix, master_key) as sdk:
        assert sdk.system.health()["status"] == "healthy"
        assert sdk.config.api_url == f"{server_url}/api/v1"


def test_the_url_and_key_default_to_the_environment(server_url: str, master_key: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFERHUB_API_URL", server_url)
    monkeypatch.setenv("OFFERHUB_API_KEY", master_key)
    with Client() as sdk:
        assert sdk.api_keys.me()["type"] == "master"


def test_lists_page_with_cursors_and_iterate_follows_them(client: Client) -> None:
    email = f"{unique('page')}@example.com"
    made = {client.users.create(external_user_id=unique("page"), email=email)["id"] for _ in range(5)}
    page = client.users.list(email=email, limit=2)
    assert len(page.items) == 2
    assert page.has_more
    assert page.next_cursor == page.items[-1]["id"]
    following = client.users.list(email=email, limit=2, cursor=page.next_cursor)
    assert not {u["id"] for u in page} & {u["id"] for u in following}
    everything = [u["id"] for u in client.users.iterate(email=email, limit=2)]
    assert len(everything) == 5
    assert set(everything) == made


def test_each_error_family_has_its_class_with_code_status_details_and_request_id(
        client: Client, server_url: str) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.users.get("usr_doesnotexist")
    assert missing.value.code == "USER_NOT_FOUND"
    assert missing.value.status_code == 404
    assert missing.value.request_id

    user = client.users.create(external_user_id=unique("err"))
    with pytest.raises(ValidationError) as invalid:
        client.balance.credit(user["id"], amount="10")
    assert invalid.value.code == "VALIDATION_ERROR"
    assert invalid.value.fields[0]["field"] == "amount"
    assert invalid.value.fields[0]["code"] == "INVALID_AMOUNT_FORMAT"

    other = client.users.create(external_user_id=unique("err"))
    order = client.orders.create(buyer_id=user["id"], seller_id=other["id"], amount="25.00", title="Too dear")
    with pytest.raises(InsufficientFundsError) as poor:
        client.orders.reserve(order["id"])
    assert poor.value.status_code == 422
    assert poor.value.details["requested"] == "25.00"

    with Client(server_url, "ohk_test_key_nottherightkeyatall_0000", retries=0) as stranger, \
            pytest.raises(AuthenticationError) as refused:
        stranger.users.list()
    assert refused.value.code == "INVALID_API_KEY"

    read_only = client.api_keys.create(name=unique("ro"), scopes=["read"])["key"]
    with Client(server_url, read_only) as reader:
        assert reader.users.get(user["id"])["id"] == user["id"]
        with pytest.raises(AuthorizationError) as scoped:
            reader.users.create(external_user_id=unique("denied"))
    assert scoped.value.code == "INSUFFICIENT_SCOPE"
    assert scoped.value.required_scope == "write"
    assert scoped.value.current_scopes == ["read"]


def test_a_repeated_idempotency_key_replays_and_a_reused_one_is_refused(client: Client) -> None:
    user = client.users.create(external_user_id=unique("idem"))
    key = str(uuid.uuid4())
    first = client.balance.credit(user["id"], amount="10.00", idempotency_key=key)
    second = client.balance.credit(user["id"], amount="10.00", idempotency_key=key)
    assert not first.replayed
    assert second.replayed
    assert second["newBalance"] == first["newBalance"]
    assert client.balance.get(user["id"])["available"] == "10.00"
    with pytest.raises(IdempotencyError) as reused:
        client.balance.credit(user["id"], amount="11.00", idempotency_key=key)
    assert reused.value.code == "IDEMPOTENCY_KEY_REUSED"


def test_a_503_before_the_server_is_retried_with_the_same_idempotency_key(
        via_proxy: Client, proxy: FaultyProxy) -> None:
    proxy.fail(503, times=2, path_contains="/users")
    user = via_proxy.users.create(external_user_id=unique("retry"))
    tries = [s for s in proxy.requests_to("/users") if s.method == "POST"]
    assert [t.answered for t in tries] == [503, 503, 201]
    assert len({t.headers["Idempotency-Key"] for t in tries}) == 1
    assert tries[0].headers["Idempotency-Key"] == user.idempotency_key
    assert len({t.headers["X-Request-ID"] for t in tries}) == 1  # one logical call in the server's logs
    assert user.request_id == tries[0].headers["X-Request-ID"]


def test_an_answer_lost_after_the_work_is_retried_and_replayed_so_money_moves_once(
        via_proxy: Client, proxy: FaultyProxy, client: Client) -> None:
    user = client.users.create(external_user_id=unique("lost"))
    proxy.fail(503, after_forwarding=True, path_contains="/balance/credit")
    credited = via_proxy.balance.credit(user["id"], amount="7.00")
    assert credited.replayed  # the server had done it; the retry got the stored answer
    tries = proxy.requests_to("/balance/credit")
    assert [t.answered for t in tries] == [503, 200]
    assert tries[0].headers["Idempotency-Key"] == tries[1].headers["Idempotency-Key"]
    assert client.balance.get(user["id"])["available"] == "7.00"


def test_retry_after_is_honoured(via_proxy: Client, proxy: FaultyProxy) -> None:
    proxy.fail(429, path_contains="/health", **{"Retry-After": "1"})
    started = time.monotonic()
    assert via_proxy.system.health()["status"] == "healthy"
    assert time.monotonic() - started >= 1.0
    assert [s.answered for s in proxy.requests_to("/health")] == [429, 200]


def test_retries_give_up_and_raise_the_last_error(proxy: FaultyProxy, master_key: str) -> None:
    proxy.fail(502, times=3, path_contains="/config")
    with Client(proxy.url, master_key, retries=2, backoff=0.01) as sdk, pytest.raises(Exception) as failed:
        sdk.system.config()
    assert failed.value.status_code == 502  # type: ignore[attr-defined]
    assert len(proxy.requests_to("/config")) == 3


def test_a_write_during_maintenance_waits_it_out_with_retries(client: Client, server_url: str,
                                                              master_key: str) -> None:
    client.system.maintenance_enable(message="sdk test")
    try:
        with Client(server_url, master_key, retries=0) as impatient, pytest.raises(MaintenanceError) as refused:
            impatient.users.create(external_user_id=unique("maint"))
        assert refused.value.code == "MAINTENANCE_MODE"
        assert refused.value.status_code == 503
        timer = threading.Timer(1.0, client.system.maintenance_disable)
        timer.start()
        with Client(server_url, master_key, retries=5, backoff=0.4) as patient:
            user = patient.users.create(external_user_id=unique("maint"))
        timer.join()
        assert user.status_code == 201
    finally:
        client.system.maintenance_disable()


def test_a_server_that_is_down_is_a_network_error() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "key", retries=1, backoff=0.01) as sdk, \
            pytest.raises(NetworkError) as down:
        sdk.system.health()
    assert down.value.code == "NETWORK_ERROR"
    assert down.value.status_code == 0


def reserved_order(client: Client) -> dict:
    """An order in FUNDS_RESERVED between two users whose wallets are active (ready for its escrow)."""
    buyer = client.users.create(external_user_id=unique("buyer"))
    seller = client.users.create(external_user_id=unique("seller"))
    for user in (buyer, seller):
        deadline = time.monotonic() + 30
        while True:
            try:
                client.wallet.get_deposit_address(user["id"])
                break
            except NotFoundError:
                assert time.monotonic() < deadline, "wallet never activated"
                time.sleep(0.2)
    client.balance.credit(buyer["id"], amount="30.00")
    order = client.orders.create(buyer_id=buyer["id"], seller_id=seller["id"], amount="30.00", title="Async")
    assert client.orders.reserve(order["id"])["status"] == "FUNDS_RESERVED"
    return {**order, "buyer": buyer}


def test_prefer_wait_bounds_the_servers_wait_and_answers_202_while_the_ledger_works(
        client: Client, ledger: SandboxControl, settings: Settings) -> None:
    order = reserved_order(client)
    # the deploy's envelope is held where TRUSTLESS_SUBMIT_VIA sends it
    ledger.add_fault(**tw_submissions(settings), action="delay", params={"ms": 4000}, times=1)
    try:
        started = time.monotonic()
        accepted = client.orders.create_escrow(order["id"], wait=1)
        assert time.monotonic() - started < 3.5  # the server answered after about a second, not after the ledger
        assert accepted.status_code == 202
        assert accepted.pending
        assert accepted.command_id
        deadline = time.monotonic() + 30
        while (client.orders.get(order["id"])["escrow"] or {}).get("status") != "CREATED":
            assert time.monotonic() < deadline, "escrow never deployed"
            time.sleep(0.3)
    finally:
        ledger.clear_faults()


def test_prefer_respond_async_answers_202_with_the_command(client: Client) -> None:
    order = reserved_order(client)
    buyer = order["buyer"]
    accepted = client.orders.create_escrow(order["id"], respond_async=True)
    assert accepted.status_code == 202
    assert accepted.pending
    assert accepted.command_id
    # the order as it stands (api.md §1.12): before the command ran, or after it started the deploy
    assert accepted["id"] == order["id"]
    assert accepted["status"] in ("FUNDS_RESERVED", "ESCROW_CREATING")
    assert client.orders.wait_for(order["id"], "ESCROW_CREATING", seconds=30)["id"] == order["id"]
    deadline = time.monotonic() + 30
    while (client.orders.get(order["id"])["escrow"] or {}).get("status") != "CREATED":
        assert time.monotonic() < deadline, "escrow never deployed"
        time.sleep(0.3)
    assert Decimal(client.balance.get(buyer["id"])["reserved"]) == Decimal("30.00")
