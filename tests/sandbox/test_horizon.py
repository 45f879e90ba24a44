"""stellar-sdk's own Server, ServerAsync and TransactionBuilder, unchanged, against the sandbox's Horizon."""

from __future__ import annotations

import asyncio

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server, ServerAsync, TransactionBuilder
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.exceptions import BadRequestError, NotFoundError

from tests.fixtures.sandbox import PASSPHRASE, SandboxControl
from tests.sandbox.helpers import balances, result_codes, submit, usdc, wallet


@pytest.fixture
def server(sandbox: SandboxControl) -> Server:
    return Server(sandbox.horizon_url)


def test_root_reports_the_sandbox_passphrase(sandbox: SandboxControl) -> None:
    root = requests.get(sandbox.horizon_url + "/", timeout=5).json()
    assert root["network_passphrase"] == PASSPHRASE
    assert root["history_latest_ledger"] >= 1


def test_friendbot_funds_a_new_account_once(sandbox: SandboxControl, server: Server) -> None:
    keypair = Keypair.random()
    assert requests.get(sandbox.friendbot_url, params={"addr": keypair.public_key}, timeout=10).status_code == 200
    assert balances(server, keypair.public_key)["XLM"] == "10000.0000000"
    again = requests.get(sandbox.friendbot_url, params={"addr": keypair.public_key}, timeout=10)
    assert again.status_code == 400


def test_unknown_account_is_a_404_problem(server: Server) -> None:
    with pytest.raises(NotFoundError) as error:
        server.accounts().account_id(Keypair.random().public_key).call()
    assert error.value.status == 404


def test_activation_creates_account_and_trustline_atomically(sandbox: SandboxControl, server: Server) -> None:
    # Given a platform account and a new user key
    platform, user = wallet(sandbox), Keypair.random()
    asset = usdc(sandbox)
    # When one transaction creates the account and the trustline, signed by both
    account = server.load_account(platform.public_key)
    envelope = (
        TransactionBuilder(account, PASSPHRASE, 100)
        .append_create_account_op(user.public_key, "5")
        .append_change_trust_op(asset, source=user.public_key)
        .set_timeout(60)
        .build()
    )
    envelope.sign(platform)
    envelope.sign(user)
    assert server.submit_transaction(envelope)["successful"]
    # Then the user holds 5 XLM and a USDC trustline (one subentry)
    loaded = server.accounts().account_id(user.public_key).call()
    assert loaded["subentry_count"] == 1
    assert balances(server, user.public_key) == {"USDC": "0.0000000", "XLM": "5.0000000"}


def test_payment_moves_usdc_and_charges_the_fee(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "50"), wallet(sandbox)
    reply = submit(server, alice, lambda b: b.append_payment_op(bob.public_key, usdc(sandbox), "20.5"))
    assert reply["successful"]
    assert reply["fee_charged"] == "100"
    assert balances(server, bob.public_key)["USDC"] == "20.5000000"
    assert balances(server, alice.public_key) == {"USDC": "29.5000000", "XLM": "99.9999800"}  # trustline + payment
    assert sandbox.conservation()["balanced"]


def test_wrongly_signed_envelope_is_refused_with_bad_auth(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    account = server.load_account(alice.public_key)
    envelope = (
        TransactionBuilder(account, PASSPHRASE, 100)
        .append_payment_op(bob.public_key, usdc(sandbox), "1")
        .set_timeout(60)
        .build()
    )
    envelope.sign(bob)
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction(envelope)
    assert result_codes(error.value) == {"transaction": "tx_bad_auth"}
    assert balances(server, alice.public_key)["USDC"] == "10.0000000"
    assert server.load_account(alice.public_key).sequence == account.sequence - 1


def test_envelope_signed_for_another_network_is_bad_auth(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    account = server.load_account(alice.public_key)
    envelope = (
        TransactionBuilder(account, "Test SDF Network ; September 2015", 100)
        .append_payment_op(bob.public_key, usdc(sandbox), "1")
        .set_timeout(60)
        .build()
    )
    envelope.sign(alice)
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction(envelope.to_xdr())
    assert result_codes(error.value)["transaction"] == "tx_bad_auth"


def test_extra_signature_is_bad_auth_extra(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    account = server.load_account(alice.public_key)
    envelope = (
        TransactionBuilder(account, PASSPHRASE, 100)
        .append_payment_op(bob.public_key, usdc(sandbox), "1")
        .set_timeout(60)
        .build()
    )
    envelope.sign(alice)
    envelope.sign(bob)
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction(envelope)
    assert result_codes(error.value)["transaction"] == "tx_bad_auth_extra"


def test_failed_operation_consumes_sequence_and_fee_but_moves_nothing(sandbox: SandboxControl, server: Server) -> None:
    # Given alice with 10 USDC and a receiver without a trustline
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    stranger = sandbox.create_account(usdc_trustline=False)["publicKey"]
    before = server.load_account(alice.public_key).sequence
    # When one transaction pays bob 5 and the stranger 1
    with pytest.raises(BadRequestError) as error:
        submit(
            server,
            alice,
            lambda b: b.append_payment_op(bob.public_key, usdc(sandbox), "5").append_payment_op(
                stranger, usdc(sandbox), "1"
            ),
        )
    # Then nothing moved (all-or-nothing) but the sequence and the fee are spent
    assert result_codes(error.value) == {"transaction": "tx_failed", "operations": ["op_success", "op_no_trust"]}
    assert balances(server, bob.public_key)["USDC"] == "0.0000000"
    assert balances(server, alice.public_key) == {"USDC": "10.0000000", "XLM": "99.9999700"}  # 100 + 2 x 100
    assert server.load_account(alice.public_key).sequence == before + 1
    failed_hash = error.value.extras["hash"]
    assert server.transactions().transaction(failed_hash).call()["successful"] is False


@pytest.mark.parametrize(("amount", "code"), [("11", "op_underfunded"), ("0.0000001", "op_success")])
def test_underfunded_payment(sandbox: SandboxControl, server: Server, amount: str, code: str) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    build = lambda b: b.append_payment_op(bob.public_key, usdc(sandbox), amount)  # noqa: E731
    if code == "op_success":
        assert submit(server, alice, build)["successful"]
        return
    with pytest.raises(BadRequestError) as error:
        submit(server, alice, build)
    assert result_codes(error.value)["operations"] == [code]


def test_stale_sequence_is_bad_seq_and_changes_nothing(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    account = server.load_account(alice.public_key)
    first = TransactionBuilder(account, PASSPHRASE, 100).append_payment_op(bob.public_key, usdc(sandbox), "1")
    envelope_a = first.set_timeout(60).build()
    account.sequence -= 1
    envelope_b = (
        TransactionBuilder(account, PASSPHRASE, 100)
        .append_payment_op(bob.public_key, usdc(sandbox), "2")
        .set_timeout(60)
        .build()
    )
    envelope_a.sign(alice)
    envelope_b.sign(alice)
    server.submit_transaction(envelope_a)
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction(envelope_b)
    assert result_codes(error.value) == {"transaction": "tx_bad_seq"}
    assert balances(server, bob.public_key)["USDC"] == "1.0000000"


def test_resubmitting_an_applied_envelope_answers_the_stored_result(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    account = server.load_account(alice.public_key)
    envelope = (
        TransactionBuilder(account, PASSPHRASE, 100)
        .append_payment_op(bob.public_key, usdc(sandbox), "3")
        .set_timeout(60)
        .build()
    )
    envelope.sign(alice)
    first = server.submit_transaction(envelope)
    second = server.submit_transaction(envelope)
    assert first == second
    assert balances(server, bob.public_key)["USDC"] == "3.0000000"


def test_fee_below_base_fee_is_insufficient_fee(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    with pytest.raises(BadRequestError) as error:
        submit(server, alice, lambda b: b.append_payment_op(bob.public_key, usdc(sandbox), "1"), fee=99)
    assert result_codes(error.value)["transaction"] == "tx_insufficient_fee"


def test_expired_envelope_is_too_late(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    account = server.load_account(alice.public_key)
    envelope = (
        TransactionBuilder(account, PASSPHRASE, 100)
        .append_payment_op(bob.public_key, usdc(sandbox), "1")
        .set_timeout(60)
        .build()
    )
    envelope.sign(alice)
    sandbox.advance_clock(120)
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction(envelope)
    assert result_codes(error.value)["transaction"] == "tx_too_late"


def test_fee_above_spendable_xlm_is_insufficient_balance(sandbox: SandboxControl, server: Server) -> None:
    poor, bob = wallet(sandbox, "10", xlm="1.5000500"), wallet(sandbox)
    with pytest.raises(BadRequestError) as error:
        submit(server, poor, lambda b: b.append_payment_op(bob.public_key, usdc(sandbox), "1"), fee=1000)
    assert result_codes(error.value)["transaction"] == "tx_insufficient_balance"


def test_malformed_envelope_is_transaction_malformed(sandbox: SandboxControl) -> None:
    reply = requests.post(sandbox.horizon_url + "/transactions", data={"tx": "bm90IGFuIGVudmVsb3Bl"}, timeout=5)
    assert reply.status_code == 400
    assert reply.json()["type"].endswith("/transaction_malformed")


def test_async_submit_is_pending_then_duplicate(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    account = server.load_account(alice.public_key)
    envelope = (
        TransactionBuilder(account, PASSPHRASE, 100)
        .append_payment_op(bob.public_key, usdc(sandbox), "1")
        .set_timeout(60)
        .build()
    )
    envelope.sign(alice)
    assert server.submit_transaction_async(envelope)["tx_status"] == "PENDING"
    assert server.transactions().transaction(envelope.hash_hex()).call()["successful"]
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction_async(envelope)
    assert error.value.status == 409


def test_payments_are_paged_in_token_order_with_joined_transactions(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    for amount in ("1", "2", "3"):
        submit(server, alice, lambda b, a=amount: b.append_payment_op(bob.public_key, usdc(sandbox), a))
    records = server.payments().for_account(bob.public_key).limit(200).call()["_embedded"]["records"]
    assert [r["type"] for r in records] == ["create_account", "payment", "payment", "payment"]
    tokens = [int(r["paging_token"]) for r in records]
    assert tokens == sorted(tokens)
    after = server.payments().for_account(bob.public_key).cursor(records[1]["paging_token"]).join("transactions")
    page = after.call()["_embedded"]["records"]
    assert [r["amount"] for r in page] == ["2.0000000", "3.0000000"]
    assert page[0]["transaction"]["hash"] == page[0]["transaction_hash"]
    latest = server.payments().order(desc=True).limit(1).call()["_embedded"]["records"]
    assert latest[0]["amount"] == "3.0000000"


def test_change_trust_is_an_operation_but_not_a_payment(sandbox: SandboxControl, server: Server) -> None:
    alice = wallet(sandbox)
    ops_types = {r["type"] for r in server.payments().for_account(alice.public_key).call()["_embedded"]["records"]}
    assert "change_trust" not in ops_types
    reply = submit(server, alice, lambda b: b.append_change_trust_op(Asset("EURC", sandbox.issuer())))
    operations = server.operations().for_transaction(reply["hash"]).call()["_embedded"]["records"]
    assert operations[0]["type"] == "change_trust"


def test_path_payment_with_the_same_asset(sandbox: SandboxControl, server: Server) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    asset = usdc(sandbox)
    submit(server, alice, lambda b: b.append_path_payment_strict_send_op(bob.public_key, asset, "4", asset, "4", []))
    records = server.payments().for_account(bob.public_key).call()["_embedded"]["records"]
    assert records[-1]["type"] == "path_payment_strict_send"
    assert records[-1]["amount"] == "4.0000000"


def test_fee_stats_and_latest_ledger(server: Server) -> None:
    assert server.fetch_base_fee() == 100
    latest = server.ledgers().order(desc=True).limit(1).call()["_embedded"]["records"][0]
    assert latest["base_reserve_in_stroops"] == 5_000_000


def test_server_streams_payments_from_a_cursor_then_live(sandbox: SandboxControl, server: Server) -> None:
    # Given two payments already made to bob
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    start = sandbox.pay(alice.secret, bob.public_key, "1")
    sandbox.pay(alice.secret, bob.public_key, "2")
    seen: list[str] = []
    # When streaming from the first one's cursor, and a third payment lands while streaming
    for record in server.payments().for_account(bob.public_key).cursor(start["operationId"]).stream():
        seen.append(record["amount"])
        if len(seen) == 1:
            sandbox.pay(alice.secret, bob.public_key, "3")
        if len(seen) == 2:
            break
    # Then the stream replays after the cursor and then delivers live
    assert seen == ["2.0000000", "3.0000000"]


async def test_async_server_streams_payments_from_a_cursor(sandbox: SandboxControl) -> None:
    # Given two payments already made to bob
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    sandbox.pay(alice.secret, bob.public_key, "1")
    first = sandbox.pay(alice.secret, bob.public_key, "2")
    async with ServerAsync(sandbox.horizon_url, client=AiohttpClient()) as server:
        stream = server.payments().for_account(bob.public_key).cursor(first["operationId"]).stream()
        # When a third payment lands while streaming from the second's cursor
        seen: list[str] = []

        async def pay_later() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(sandbox.pay, alice.secret, bob.public_key, "3")

        task = asyncio.create_task(pay_later())
        async for record in stream:
            seen.append(record["amount"])
            if len(seen) == 1:
                break
        await task
    # Then only records after the cursor arrive, live
    assert seen == ["3.0000000"]


async def test_stream_replays_from_cursor_then_goes_live(sandbox: SandboxControl) -> None:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    start = sandbox.pay(alice.secret, bob.public_key, "1")
    sandbox.pay(alice.secret, bob.public_key, "2")
    async with ServerAsync(sandbox.horizon_url, client=AiohttpClient()) as server:
        seen = []
        async for record in server.payments().cursor(start["operationId"]).stream():
            seen.append(record["amount"])
            if len(seen) == 1:
                await asyncio.to_thread(sandbox.pay, alice.secret, bob.public_key, "4")
            if len(seen) == 2:
                break
    assert seen == ["2.0000000", "4.0000000"]


def _root(sandbox: SandboxControl) -> dict:
    return requests.get(sandbox.horizon_url + "/", timeout=5).json()


def _records(sandbox: SandboxControl, path: str = "/payments", **params: str) -> list[dict]:
    response = requests.get(sandbox.horizon_url + path, params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["_embedded"]["records"]


def test_pruned_history_moves_the_elder_and_ascending_reads_start_there(sandbox: SandboxControl) -> None:
    alice = wallet(sandbox)
    old = sandbox.pay("issuer", alice.public_key, "1.00")
    assert _root(sandbox)["history_elder_ledger"] == 1
    sandbox.add_fault(service="horizon", action="before_history", times=0)
    new = sandbox.pay("issuer", alice.public_key, "2.00")
    root = _root(sandbox)
    assert root["history_elder_ledger"] == new["ledger"]
    for path in ("/payments", f"/accounts/{alice.public_key}/payments"):
        assert [r["transaction_hash"] for r in _records(sandbox, path, cursor="1")] == [new["hash"]]
        assert [r["transaction_hash"] for r in _records(sandbox, path, order="desc")] == [new["hash"]]
    assert requests.get(f"{sandbox.horizon_url}/transactions/{old['hash']}", timeout=5).status_code == 404
    assert _records(sandbox, cursor=str(2**62)) == []  # beyond the newest record: an empty page, no error


def test_reset_network_starts_a_new_chain_and_keeps_the_keys(sandbox: SandboxControl) -> None:
    alice = wallet(sandbox, usdc_amount="5")
    before = _records(sandbox, order="desc", limit="1")[0]["paging_token"]
    answer = sandbox.http.post(f"{sandbox.base_url}/_sandbox/reset-network", json={}, timeout=10).json()
    assert answer["network_passphrase"] == PASSPHRASE
    root = _root(sandbox)
    assert root["history_latest_ledger"] < int(before) >> 32
    assert requests.get(f"{sandbox.horizon_url}/accounts/{alice.public_key}", timeout=5).status_code == 404
    assert _records(sandbox, cursor=before) == []  # the old cursor lies beyond the new chain
    # the sandbox still holds alice's key: she can be funded again on the new chain
    assert requests.get(sandbox.friendbot_url, params={"addr": alice.public_key}, timeout=10).status_code == 200
    renamed = sandbox.http.post(f"{sandbox.base_url}/_sandbox/reset-network",
                                json={"passphrase": "Another Network ; 2027"}, timeout=10).json()
    assert _root(sandbox)["network_passphrase"] == renamed["network_passphrase"] == "Another Network ; 2027"
    sandbox.http.post(f"{sandbox.base_url}/_sandbox/reset-network", json={"passphrase": PASSPHRASE}, timeout=10)


def test_request_budget_answers_429_with_retry_after_and_counts_stream_passes(sandbox: SandboxControl) -> None:
    budget = f"{sandbox.base_url}/_sandbox/horizon/budget"
    assert sandbox.http.post(budget, json={"requestsPerHour": 36, "burst": 3}, timeout=5).status_code == 200
    try:
        first = requests.get(sandbox.horizon_url + "/", timeout=5)
        assert first.headers["X-RateLimit-Limit"] == "3"
        assert first.headers["X-RateLimit-Remaining"] == "2"
        requests.get(sandbox.horizon_url + "/", timeout=5)
        # a stream's first pass costs one unit, like any request
        with requests.get(sandbox.horizon_url + "/payments", params={"cursor": "now"}, timeout=5, stream=True,
                          headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
        refused = requests.get(sandbox.horizon_url + "/", timeout=5)
        assert refused.status_code == 429
        assert refused.json()["type"].endswith("/rate_limit_exceeded")
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        # a refused stream is a plain 429 problem (no rate-limit headers, as Horizon's stream handler)
        stream = requests.get(sandbox.horizon_url + "/payments", params={"cursor": "now"}, timeout=5,
                              headers={"Accept": "text/event-stream"})
        assert stream.status_code == 429
    finally:
        sandbox.http.post(budget, json={"requestsPerHour": 0}, timeout=5)


def test_a_stream_ends_after_limit_records_with_byebye(sandbox: SandboxControl) -> None:
    alice = wallet(sandbox)
    for _ in range(3):
        sandbox.pay("issuer", alice.public_key, "1.00")
    response = requests.get(f"{sandbox.horizon_url}/accounts/{alice.public_key}/payments",
                            params={"cursor": "0", "limit": "2"}, headers={"Accept": "text/event-stream"}, timeout=10)
    ids = [line for line in response.text.splitlines() if line.startswith("id: ")]
    assert len(ids) == 2
    assert response.text.rstrip().endswith('data: "byebye"')


def test_a_contract_transfer_is_listed_among_payments_with_asset_balance_changes(sandbox: SandboxControl) -> None:
    alice, bob = wallet(sandbox, usdc_amount="10"), wallet(sandbox)
    sent = sandbox.http.post(f"{sandbox.base_url}/_sandbox/stellar/contract-transfer",
                             json={"from": alice.secret, "to": bob.public_key, "amount": "2.5"}, timeout=10)
    assert sent.status_code == 200, sent.text
    record = _records(sandbox, f"/accounts/{bob.public_key}/payments", order="desc", limit="1")[0]
    assert record["type"] == "invoke_host_function"
    assert record["transaction_hash"] == sent.json()["hash"]
    assert record["function"] == "HostFunctionTypeHostFunctionTypeInvokeContract"
    assert record["asset_balance_changes"] == [{
        "asset_type": "credit_alphanum4", "asset_code": "USDC", "asset_issuer": sandbox.issuer(),
        "type": "transfer", "from": alice.public_key, "to": bob.public_key, "amount": "2.5000000"}]
    server = Server(sandbox.horizon_url)
    assert balances(server, bob.public_key)["USDC"] == "2.5000000"
    assert balances(server, alice.public_key)["USDC"] == "7.5000000"
