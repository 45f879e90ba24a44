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
