"""Every fault action for Horizon, friendbot and Trustless Work fires as described and is logged."""

from __future__ import annotations

import time

import pytest
import requests
from stellar_sdk import Keypair, Server, TransactionBuilder, TransactionEnvelope
from stellar_sdk.exceptions import BadRequestError

from tests.fixtures.sandbox import PASSPHRASE, SandboxControl
from tests.sandbox.helpers import balances, result_codes, tw, usdc, wallet
from tests.sandbox.test_trustless import Parties


@pytest.fixture
def server(sandbox: SandboxControl) -> Server:
    return Server(sandbox.horizon_url)


def _payment(sandbox: SandboxControl, server: Server, amount: str = "1") -> tuple[TransactionEnvelope, Keypair, str]:
    alice, bob = wallet(sandbox, "10"), wallet(sandbox)
    account = server.load_account(alice.public_key)
    envelope = (
        TransactionBuilder(account, PASSPHRASE, 100)
        .append_payment_op(bob.public_key, usdc(sandbox), amount)
        .set_timeout(120)
        .build()
    )
    envelope.sign(alice)
    return envelope, alice, bob.public_key


def _post(sandbox: SandboxControl, envelope: TransactionEnvelope, timeout: float = 10) -> requests.Response:
    return requests.post(sandbox.horizon_url + "/transactions", data={"tx": envelope.to_xdr()}, timeout=timeout)


def _fired(sandbox: SandboxControl, action: str) -> list[dict]:
    return [entry for entry in sandbox.fault_log() if entry["action"] == action]


def test_delay_answers_late(sandbox: SandboxControl, server: Server) -> None:
    alice = wallet(sandbox)
    sandbox.add_fault(service="horizon", method="GET", path="/accounts/*", action="delay", params={"ms": 300})
    started = time.monotonic()
    server.load_account(alice.public_key)
    assert time.monotonic() - started >= 0.3
    assert _fired(sandbox, "delay")[0]["request"]["path"].startswith("/accounts/")


def test_status_answers_without_applying(sandbox: SandboxControl, server: Server) -> None:
    envelope, _alice, bob = _payment(sandbox, server)
    sandbox.add_fault(service="horizon", path="/transactions", action="status", params={"status": 503})
    reply = _post(sandbox, envelope)  # raw: stellar-sdk's client itself retries a POST on 503
    assert reply.status_code == 503
    assert reply.json()["status"] == 503
    assert balances(server, bob)["USDC"] == "0.0000000"
    assert server.submit_transaction(envelope)["successful"]
    assert len(_fired(sandbox, "status")) == 1


def test_status_429_carries_retry_after(sandbox: SandboxControl) -> None:
    sandbox.add_fault(service="horizon", path="/fee_stats", action="status", params={"status": 429, "retry_after": 7})
    reply = requests.get(sandbox.horizon_url + "/fee_stats", timeout=5)
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "7"
    assert reply.json()["status"] == 429


def test_timeout_closes_without_applying(sandbox: SandboxControl, server: Server) -> None:
    envelope, _, bob = _payment(sandbox, server)
    sandbox.add_fault(service="horizon", path="/transactions", action="timeout", params={"ms": 200})
    with pytest.raises(requests.ConnectionError):
        _post(sandbox, envelope)
    assert balances(server, bob)["USDC"] == "0.0000000"


def test_apply_then_drop_applies_and_loses_the_answer(sandbox: SandboxControl, server: Server) -> None:
    envelope, _, bob = _payment(sandbox, server)
    sandbox.add_fault(service="horizon", path="/transactions", action="apply_then_drop")
    with pytest.raises(requests.ConnectionError):
        _post(sandbox, envelope)
    assert server.transactions().transaction(envelope.hash_hex()).call()["successful"]
    assert server.submit_transaction(envelope)["hash"] == envelope.hash_hex()
    assert balances(server, bob)["USDC"] == "1.0000000"


def test_apply_then_drop_with_504_horizon_style(sandbox: SandboxControl, server: Server) -> None:
    envelope, _, bob = _payment(sandbox, server)
    sandbox.add_fault(
        service="horizon", path="/transactions", action="apply_then_drop", params={"status": 504, "ms": 50}
    )
    reply = _post(sandbox, envelope)
    assert reply.status_code == 504
    assert reply.json()["type"].endswith("/timeout")
    assert balances(server, bob)["USDC"] == "1.0000000"


def test_apply_then_error_applies_and_answers_500(sandbox: SandboxControl, server: Server) -> None:
    envelope, _, bob = _payment(sandbox, server)
    sandbox.add_fault(service="horizon", path="/transactions", action="apply_then_error")
    assert _post(sandbox, envelope).status_code == 500
    assert balances(server, bob)["USDC"] == "1.0000000"


def test_a_submission_rule_can_name_the_source_and_operation_of_the_transaction(
        sandbox: SandboxControl, server: Server) -> None:
    envelope, alice, bob = _payment(sandbox, server)
    other, _, _ = _payment(sandbox, server)
    sandbox.add_fault(service="horizon", path="/transactions", when={"source": alice.public_key,
                      "operation": "payment"}, action="status", params={"status": 503})
    sandbox.add_fault(service="horizon", path="/transactions", when={"operation": "change_trust"},
                      action="status", params={"status": 503})
    assert server.submit_transaction(other)["successful"]  # another source: untouched
    assert _post(sandbox, envelope).status_code == 503
    fired = _fired(sandbox, "status")
    assert [entry["request"]["body"]["hash"] for entry in fired] == [envelope.hash_hex()]
    assert fired[0]["request"]["body"]["source"] == alice.public_key
    assert balances(server, bob)["USDC"] == "0.0000000"


def test_bad_seq_as_if_another_transaction_landed(sandbox: SandboxControl, server: Server) -> None:
    envelope, alice, bob = _payment(sandbox, server)
    sequence = server.load_account(alice.public_key).sequence
    sandbox.add_fault(service="horizon", path="/transactions", action="bad_seq")
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction(envelope)
    assert result_codes(error.value) == {"transaction": "tx_bad_seq"}
    assert server.load_account(alice.public_key).sequence == sequence + 1
    assert balances(server, bob)["USDC"] == "0.0000000"


def test_surge_raises_the_fee_for_n_ledgers(sandbox: SandboxControl, server: Server) -> None:
    envelope, _, _ = _payment(sandbox, server)
    sandbox.add_fault(service="horizon", action="surge", params={"stroops": 1000, "ledgers": 5})
    assert server.fetch_base_fee() == 1000
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction(envelope)
    assert result_codes(error.value)["transaction"] == "tx_insufficient_fee"
    assert _fired(sandbox, "surge")


def test_drain_xlm_leaves_too_little_for_the_fee_and_records_the_drain(sandbox: SandboxControl, server: Server) -> None:
    envelope, alice, _ = _payment(sandbox, server)
    sandbox.add_fault(service="horizon", path="/transactions", action="drain_xlm")
    with pytest.raises(BadRequestError) as error:
        server.submit_transaction(envelope)
    assert result_codes(error.value)["transaction"] == "tx_insufficient_balance"
    records = server.payments().for_account(alice.public_key).order(desc=True).limit(1).call()["_embedded"]["records"]
    assert records[0]["type"] == "payment"
    assert records[0]["from"] == alice.public_key
    assert sandbox.conservation()["balanced"]


def test_contract_reject_fails_the_call_and_consumes_the_sequence(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    sandbox.add_fault(
        service="trustless",
        path="/helper/send-transaction",
        action="contract_reject",
        params={"message": "Escrow not found"},
    )
    before = p.server.load_account(p.buyer.public_key).sequence
    reply = p.call(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    assert reply.status_code == 400
    assert reply.json() == {"status": "FAILED", "message": "Escrow not found"}
    assert p.server.load_account(p.buyer.public_key).sequence == before + 1
    assert p.usdc(p.buyer) == "100.0000000"


def test_tw_apply_then_error_says_the_result_is_not_available(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    sandbox.add_fault(service="trustless", path="/helper/send-transaction", action="apply_then_error")
    reply = p.call(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    assert reply.status_code == 500
    assert "not be complete yet" in reply.json()["message"]
    assert p.usdc(p.buyer) == "0.0000000"


def test_tw_status_and_bad_seq(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    sandbox.add_fault(service="trustless", path="/escrow/*", action="status", params={"status": 502})
    assert (
        tw(
            sandbox, "/escrow/single-release/dispute-escrow", {"contractId": contract, "signer": p.buyer.public_key}
        ).status_code
        == 502
    )
    stale = p.signed(
        "/escrow/single-release/dispute-escrow", {"contractId": contract, "signer": p.buyer.public_key}, p.buyer
    )
    sandbox.add_fault(service="trustless", path="/helper/send-transaction", action="bad_seq")
    reply = tw(sandbox, "/helper/send-transaction", {"signedXdr": stale})
    assert reply.status_code == 400
    assert "tx_bad_seq" in reply.json()["message"]


def test_indexer_lag_hides_new_contracts_from_t10(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    sandbox.add_fault(service="trustless", action="indexer_lag", params={"seconds": 30})
    contract = p.deploy()
    query = {"signer": p.platform.public_key, "engagementId": "ord_test"}
    assert tw(sandbox, "/helper/get-escrows-by-signer", query, method="GET").json() == []
    on_chain = {"contractIds": contract, "validateOnChain": "true"}
    assert len(tw(sandbox, "/helper/get-escrow-by-contract-ids", on_chain, method="GET").json()) == 1
    sandbox.advance_clock(31)
    assert len(tw(sandbox, "/helper/get-escrows-by-signer", query, method="GET").json()) == 1
    assert _fired(sandbox, "indexer_lag")


def test_stream_disconnect_closes_streams_and_refuses_the_reconnect(sandbox: SandboxControl) -> None:
    url = sandbox.horizon_url + "/payments"
    headers = {"Accept": "text/event-stream"}
    with requests.get(url, params={"cursor": "now"}, headers=headers, stream=True, timeout=10) as stream:
        lines = stream.iter_lines()
        assert any(b"hello" in line for line in lines if line)
        sandbox.add_fault(service="horizon", path="/payments", action="stream_disconnect", params={"status": 503})
        rest = list(lines)
        assert not any(line.startswith(b"data:") for line in rest)
    assert requests.get(url, params={"cursor": "now"}, headers=headers, timeout=5).status_code == 503
    with requests.get(url, params={"cursor": "now"}, headers=headers, stream=True, timeout=5) as again:
        assert again.status_code == 200
    assert len(_fired(sandbox, "stream_disconnect")) == 2


def test_before_history_prunes_without_a_410_for_ascending_cursors(sandbox: SandboxControl, server: Server) -> None:
    """Horizon answers 410 only to a descending query before its history (stellar/go
    services/horizon/internal/actions/helpers.go, validateAndAdjustCursor); ascending starts at the elder."""
    alice = wallet(sandbox)
    first = server.payments().for_account(alice.public_key).call()["_embedded"]["records"][0]["paging_token"]
    sandbox.add_fault(service="horizon", action="before_history", times=0)
    later = sandbox.pay("issuer", alice.public_key, "1.00")
    old = requests.get(sandbox.horizon_url + "/payments", params={"cursor": first}, timeout=5)
    assert old.status_code == 200
    assert [r["transaction_hash"] for r in old.json()["_embedded"]["records"]] == [later["hash"]]
    down = requests.get(sandbox.horizon_url + "/payments", params={"cursor": first, "order": "desc"}, timeout=5)
    assert down.status_code == 410
    assert down.json()["type"].endswith("/before_history")
    assert requests.get(sandbox.horizon_url + "/payments", params={"cursor": "now"}, timeout=5).status_code == 200


def test_friendbot_status_does_not_create(sandbox: SandboxControl, server: Server) -> None:
    keypair = Keypair.random()
    sandbox.add_fault(service="friendbot", action="status", params={"status": 503})
    assert requests.get(sandbox.friendbot_url, params={"addr": keypair.public_key}, timeout=5).status_code == 503
    assert keypair.public_key not in sandbox.state()["accounts"]


def test_when_matches_body_fields_and_times_counts(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    sandbox.add_fault(
        service="trustless", action="status", when={"signer": p.seller.public_key}, params={"status": 500}, times=2
    )
    body = {"contractId": contract, "signer": p.buyer.public_key}
    assert tw(sandbox, "/escrow/single-release/dispute-escrow", body).status_code == 201
    seller = {"contractId": contract, "signer": p.seller.public_key}
    codes = [tw(sandbox, "/escrow/single-release/dispute-escrow", seller).status_code for _ in range(3)]
    assert codes == [500, 500, 201]
    assert sandbox.faults()[0]["fired"] == 2


def test_invalid_rule_is_a_400(sandbox: SandboxControl) -> None:
    reply = requests.post(
        sandbox.base_url + "/_sandbox/faults", json={"service": "horizon", "action": "explode"}, timeout=5
    )
    assert reply.status_code == 400
