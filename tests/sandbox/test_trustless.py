"""The Trustless Work subset: real unsigned envelopes signed with role keys, the contract rules, exact fees."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from stellar_sdk import Keypair, Server, TransactionEnvelope

from tests.fixtures.sandbox import PASSPHRASE, SandboxControl, start_sandbox
from tests.sandbox.helpers import balances, tw, wallet


class Parties:
    """Platform (deployer, resolver, fee receiver), buyer and seller wallets."""

    def __init__(self, sandbox: SandboxControl, buyer_usdc: str = "100") -> None:
        self.sandbox = sandbox
        self.platform = wallet(sandbox)
        self.buyer = wallet(sandbox, buyer_usdc)
        self.seller = wallet(sandbox)
        self.server = Server(sandbox.horizon_url)

    def signed(self, path: str, body: dict[str, Any], signer: Keypair) -> str:
        reply = tw(self.sandbox, path, body)
        assert reply.status_code == 201, reply.text
        assert reply.json()["status"] == "SUCCESS"
        envelope = TransactionEnvelope.from_xdr(reply.json()["unsignedTransaction"], PASSPHRASE)
        assert envelope.transaction.source.account_id == signer.public_key
        envelope.sign(signer)
        return envelope.to_xdr()

    def call(self, path: str, body: dict[str, Any], signer: Keypair) -> requests.Response:
        return tw(self.sandbox, "/helper/send-transaction", {"signedXdr": self.signed(path, body, signer)})

    def deploy(self, amount: float = 100, fee: float = 5) -> str:
        body = {
            "signer": self.platform.public_key,
            "engagementId": "ord_test",
            "title": "Order",
            "description": "d",
            "roles": {
                "approver": self.buyer.public_key,
                "serviceProvider": self.seller.public_key,
                "platformAddress": self.platform.public_key,
                "releaseSigner": self.buyer.public_key,
                "disputeResolver": self.platform.public_key,
                "receiver": self.seller.public_key,
            },
            "amount": amount,
            "platformFee": fee,
            "milestones": [{"description": "the work"}],
            "trustline": {"address": self.sandbox.issuer(), "symbol": "USDC"},
        }
        reply = self.call("/deployer/single-release", body, self.platform)
        assert reply.status_code == 200, reply.text
        assert reply.json()["escrow"]["engagementId"] == "ord_test"
        return reply.json()["contractId"]

    def ok(self, path: str, body: dict[str, Any], signer: Keypair) -> None:
        reply = self.call(path, body, signer)
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "SUCCESS"

    def escrow(self, contract_id: str) -> dict[str, Any]:
        reply = tw(self.sandbox, "/helper/get-escrow-by-contract-ids", {"contractIds": contract_id}, method="GET")
        return reply.json()[0]

    def usdc(self, keypair: Keypair) -> str:
        return balances(self.server, keypair.public_key)["USDC"]


def _fund_release(p: Parties, contract: str) -> None:
    p.ok(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    p.ok(
        "/escrow/single-release/change-milestone-status",
        {
            "contractId": contract,
            "milestoneIndex": "0",
            "newStatus": "completed",
            "newEvidence": "ord_test",
            "serviceProvider": p.seller.public_key,
        },
        p.seller,
    )
    p.ok(
        "/escrow/single-release/approve-milestone",
        {"contractId": contract, "milestoneIndex": "0", "approver": p.buyer.public_key},
        p.buyer,
    )
    p.ok("/escrow/single-release/release-funds", {"contractId": contract, "releaseSigner": p.buyer.public_key}, p.buyer)


def test_full_escrow_cycle_pays_exact_fees(sandbox: SandboxControl) -> None:
    # Given a deployed escrow of 100 USDC at a 5 % platform fee
    p = Parties(sandbox)
    contract = p.deploy()
    tw_fee_account = sandbox.state()["tw_fee_account"]
    # When the buyer funds, the seller completes, the buyer approves and releases
    p.ok(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    assert p.escrow(contract)["balance"] == 100
    p.ok(
        "/escrow/single-release/change-milestone-status",
        {
            "contractId": contract,
            "milestoneIndex": "0",
            "newStatus": "completed",
            "newEvidence": "",
            "serviceProvider": p.seller.public_key,
        },
        p.seller,
    )
    p.ok(
        "/escrow/single-release/approve-milestone",
        {"contractId": contract, "milestoneIndex": "0", "approver": p.buyer.public_key},
        p.buyer,
    )
    release = p.signed(
        "/escrow/single-release/release-funds", {"contractId": contract, "releaseSigner": p.buyer.public_key}, p.buyer
    )
    reply = tw(sandbox, "/helper/send-transaction", {"signedXdr": release})
    assert reply.status_code == 200, reply.text
    # Then the seller gets 94.70, the platform 5.00, TW 0.30, and the contract is empty
    assert p.usdc(p.seller) == "94.7000000"
    assert p.usdc(p.platform) == "5.0000000"
    assert balances(p.server, tw_fee_account)["USDC"] == "0.3000000"
    assert p.usdc(p.buyer) == "0.0000000"
    escrow = p.escrow(contract)
    assert escrow["flags"] == {"disputed": False, "released": True, "resolved": False}
    assert escrow["milestones"][0] == {
        "description": "the work",
        "status": "completed",
        "evidence": "",
        "approved": True,
    }
    assert escrow["balance"] == 0
    # And each contract call cost its signer exactly the envelope's fee (100 000 stroops)
    assert balances(p.server, p.buyer.public_key)["XLM"] == "99.9699900"  # trustline + fund, approve, release
    # And the payout is an invoke_host_function record with its transfers
    tx_hash = TransactionEnvelope.from_xdr(release, PASSPHRASE).hash_hex()
    operation = p.server.operations().for_transaction(tx_hash).call()["_embedded"]["records"][0]
    assert operation["type"] == "invoke_host_function"
    moved = {(c["to"], c["amount"]) for c in operation["asset_balance_changes"]}
    assert moved == {
        (p.seller.public_key, "94.7000000"),
        (p.platform.public_key, "5.0000000"),
        (tw_fee_account, "0.3000000"),
    }
    streamed = p.server.payments().for_account(p.seller.public_key).limit(200).call()["_embedded"]["records"]
    assert streamed[-1]["transaction_hash"] == tx_hash
    assert sandbox.conservation()["balanced"]


def test_dispute_resolved_with_a_split_charges_fees_pro_rata(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    p.ok(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    p.ok("/escrow/single-release/dispute-escrow", {"contractId": contract, "signer": p.buyer.public_key}, p.buyer)
    distributions = [{"address": p.seller.public_key, "amount": 80}, {"address": p.buyer.public_key, "amount": 20}]
    p.ok(
        "/escrow/single-release/resolve-dispute",
        {"contractId": contract, "disputeResolver": p.platform.public_key, "distributions": distributions},
        p.platform,
    )
    assert p.usdc(p.seller) == "75.7600000"
    assert p.usdc(p.buyer) == "18.9400000"
    assert p.usdc(p.platform) == "5.0000000"
    assert p.escrow(contract)["flags"] == {"disputed": True, "released": False, "resolved": True}
    assert sandbox.conservation()["balanced"]


def test_release_before_approval_fails_with_tw_message_and_consumes_the_sequence(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    p.ok(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    before = p.server.load_account(p.buyer.public_key).sequence
    reply = p.call(
        "/escrow/single-release/release-funds", {"contractId": contract, "releaseSigner": p.buyer.public_key}, p.buyer
    )
    assert reply.status_code == 400
    assert reply.json() == {"status": "FAILED", "message": "The escrow must be completed to release earnings"}
    assert p.server.load_account(p.buyer.public_key).sequence == before + 1
    assert p.escrow(contract)["balance"] == 100


@pytest.mark.parametrize(
    ("path", "body_of", "message"),
    [
        (
            "/escrow/single-release/approve-milestone",
            lambda p, c: {"contractId": c, "milestoneIndex": "0", "approver": p.seller.public_key},
            "Only the approver can change milestone flag",
        ),
        (
            "/escrow/single-release/dispute-escrow",
            lambda p, c: {"contractId": c, "signer": p.platform.public_key},
            "The dispute resolver cannot dispute the escrow",
        ),
        (
            "/escrow/single-release/approve-milestone",
            lambda p, c: {"contractId": c, "milestoneIndex": "3", "approver": p.buyer.public_key},
            "Invalid milestone index",
        ),
    ],
)
def test_contract_rules_refuse_the_wrong_role(sandbox: SandboxControl, path: str, body_of: Any, message: str) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    body = body_of(p, contract)
    signer = {k.public_key: k for k in (p.platform, p.buyer, p.seller)}[
        next(v for k, v in body.items() if k not in ("contractId", "milestoneIndex"))
    ]
    reply = p.call(path, body, signer)
    assert reply.status_code == 400
    assert reply.json()["message"] == message


def test_envelope_signed_by_another_key_is_refused(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    signed = p.signed(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    forged = TransactionEnvelope.from_xdr(signed, PASSPHRASE)
    forged.signatures.clear()
    forged.sign(p.seller)
    reply = tw(sandbox, "/helper/send-transaction", {"signedXdr": forged.to_xdr()})
    assert reply.status_code == 400
    assert "tx_bad_auth" in reply.json()["message"]
    assert p.usdc(p.buyer) == "100.0000000"


def test_resolve_must_distribute_the_whole_balance(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    p.ok(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    p.ok("/escrow/single-release/dispute-escrow", {"contractId": contract, "signer": p.seller.public_key}, p.seller)
    reply = p.call(
        "/escrow/single-release/resolve-dispute",
        {
            "contractId": contract,
            "disputeResolver": p.platform.public_key,
            "distributions": [{"address": p.buyer.public_key, "amount": 99}],
        },
        p.platform,
    )
    assert reply.json()["message"].startswith("The sum of distributions must equal the current escrow balance")


def test_build_validation_and_api_key(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    assert tw(sandbox, "/escrow/single-release/dispute-escrow", {}, key="wrong").status_code == 401
    bad = tw(
        sandbox, "/escrow/single-release/fund-escrow", {"contractId": "nope", "signer": p.buyer.public_key, "amount": 1}
    )
    assert bad.status_code == 400
    assert bad.json()["status"] == "FAILED"
    zero = tw(sandbox, "/deployer/single-release", {"signer": p.platform.public_key, "amount": 0})
    assert zero.status_code == 400


def test_find_by_engagement_and_balances(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    contract = p.deploy()
    found = tw(
        sandbox,
        "/helper/get-escrows-by-signer",
        {"signer": p.platform.public_key, "engagementId": "ord_test"},
        method="GET",
    ).json()
    assert [e["contractId"] for e in found] == [contract]
    by_role = tw(
        sandbox,
        "/helper/get-escrows-by-role",
        {"role": "platformAddress", "roleAddress": p.platform.public_key, "engagementId": "ord_test"},
        method="GET",
    ).json()
    assert len(by_role) == 1
    listed = tw(sandbox, "/helper/get-multiple-escrow-balance", {"addresses[]": contract}, method="GET").json()
    assert listed == [{"address": contract, "balance": 0.0}]


def test_full_release_helper_cycle(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    _fund_release(p, p.deploy(fee=0))
    assert p.usdc(p.seller) == "99.7000000"


def test_rate_limit_answers_429_after_the_budget() -> None:
    with start_sandbox(SANDBOX_TW_REQUESTS_PER_MINUTE="3") as url:
        control = SandboxControl(url)
        codes = [
            tw(control, "/helper/get-escrows-by-signer", {"signer": "x"}, method="GET").status_code for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
