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
    # a DTO validation failure comes in NestJS's shape, not TW's {status, message}
    assert bad.status_code == 400
    assert bad.json() == {"message": ["contractId must be a valid contract id"], "error": "Bad Request",
                          "statusCode": 400}
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


# --- Trustless Work as the real service behaves (issue 14, DESIGN decision 17) ---


def _deploy_body(p: Parties, engagement: str = "ord_direct") -> dict[str, Any]:
    return {
        "signer": p.platform.public_key, "engagementId": engagement, "title": "Order", "description": "d",
        "roles": {"approver": p.buyer.public_key, "serviceProvider": p.seller.public_key,
                  "platformAddress": p.platform.public_key, "releaseSigner": p.buyer.public_key,
                  "disputeResolver": p.platform.public_key, "receiver": p.seller.public_key},
        "amount": 100, "platformFee": 0, "milestones": [{"description": "the work"}],
        "trustline": {"address": p.sandbox.issuer(), "symbol": "USDC"},
    }


def _soroban_contract_id(factory: str, salt: bytes) -> str:
    """Soroban's derivation written out byte by byte from the XDR definitions (Stellar-transaction.x):
    sha256(HashIDPreimage{ENVELOPE_TYPE_CONTRACT_ID=8, sha256(passphrase),
    ContractIDPreimage{CONTRACT_ID_PREIMAGE_FROM_ADDRESS=0, SCAddress{SC_ADDRESS_TYPE_CONTRACT=1, id}, salt}})."""
    import hashlib
    import struct

    from stellar_sdk import StrKey

    preimage = (struct.pack(">i", 8) + hashlib.sha256(PASSPHRASE.encode()).digest() + struct.pack(">i", 0)
                + struct.pack(">i", 1) + StrKey.decode_contract(factory) + salt)
    return StrKey.encode_contract(hashlib.sha256(preimage).digest())


def _put(sandbox: SandboxControl, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.put(f"{sandbox.trustless_url}{path}", json=body, headers={"x-api-key": "sandbox-tw-key"},
                        timeout=30)


def test_a_deploy_is_a_v1_factory_call_and_the_contract_id_is_sorobans_derivation(sandbox: SandboxControl) -> None:
    from stellar_sdk import Address, InvokeHostFunction, scval
    from stellar_sdk import xdr as sx

    p = Parties(sandbox)
    reply = tw(sandbox, "/deployer/single-release", _deploy_body(p))
    envelope = TransactionEnvelope.from_xdr(reply.json()["unsignedTransaction"], PASSPHRASE)
    op = envelope.transaction.operations[0]
    assert isinstance(op, InvokeHostFunction)
    call = op.host_function.invoke_contract
    factory = Address.from_xdr_sc_address(call.contract_address).address
    # contract.rs: tw_new_single_release_escrow(signer, wasm_hash, salt, init_fn, init_args, constructor_args)
    assert factory == sandbox.state()["deployer_contract"]
    assert call.function_name.sc_symbol == b"tw_new_single_release_escrow"
    assert len(call.args) == 6
    assert scval.from_address(call.args[0]).address == p.platform.public_key
    assert scval.from_symbol(call.args[3]) == "initialize_escrow"
    # the source authorises the call with source-account credentials; sorobanData carries a resource fee
    assert [a.credentials.type for a in op.auth] == [sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT]
    data = envelope.transaction.soroban_data
    assert data is not None
    assert data.resource_fee.int64 > 0
    # with_address(current_contract_address, salt): the id derives from the factory and the salt
    expected = _soroban_contract_id(factory, scval.from_bytes(call.args[2]))
    written = {Address.from_xdr_sc_address(k.contract_data.contract).address
               for k in data.resources.footprint.read_write if k.contract_data is not None}
    assert expected in written
    envelope.sign(p.platform)
    sent = tw(sandbox, "/helper/send-transaction", {"signedXdr": envelope.to_xdr()})
    assert sent.status_code == 200, sent.text
    assert sent.json()["contractId"] == expected
    assert expected in sandbox.state()["contracts"]


def test_helper_reads_know_only_escrows_sent_through_trustless_work_or_registered(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    envelope = TransactionEnvelope.from_xdr(
        tw(sandbox, "/deployer/single-release", _deploy_body(p)).json()["unsignedTransaction"], PASSPHRASE)
    envelope.sign(p.platform)
    landed = p.server.submit_transaction(envelope)  # straight to Horizon, not through TW's helper
    assert landed["successful"]
    contract = next(iter(sandbox.state()["contracts"]))
    # TW's database has not heard of it: every helper read is empty, and fund cannot be built
    assert tw(sandbox, "/helper/get-escrow-by-contract-ids", {"contractIds": contract, "validateOnChain": "true"},
              method="GET").json() == []
    assert tw(sandbox, "/helper/get-escrows-by-signer", {"signer": p.platform.public_key,
                                                          "engagementId": "ord_direct"}, method="GET").json() == []
    assert tw(sandbox, "/helper/get-multiple-escrow-balance", {"addresses": contract}, method="GET").json() == []
    fund = {"contractId": contract, "signer": p.buyer.public_key, "amount": 100}
    missing = tw(sandbox, "/escrow/single-release/fund-escrow", fund)
    assert (missing.status_code, missing.json()) == (500, {"status": "FAILED", "message": "Escrow not found"})
    # update-from-txhash knows only hashes of transactions TW built and the network holds
    assert _put(sandbox, "/indexer/update-from-txhash", {"txHash": "ab" * 32}).status_code == 400
    registered = _put(sandbox, "/indexer/update-from-txhash", {"txHash": landed["hash"]})
    assert registered.status_code == 200, registered.text
    assert registered.json()["status"] == "SUCCESS"
    assert registered.json()["savedEscrow"]["contractId"] == contract
    assert [e["contractId"] for e in tw(sandbox, "/helper/get-escrow-by-contract-ids", {"contractIds": contract},
                                         method="GET").json()] == [contract]
    p.ok("/escrow/single-release/fund-escrow", fund, p.buyer)
    assert p.usdc(p.buyer) == "0.0000000"


def test_unknown_routes_and_methods_answer_as_nestjs_does(sandbox: SandboxControl) -> None:
    posted = tw(sandbox, "/indexer/update-from-txHash", {"txHash": "ab" * 32})
    assert (posted.status_code, posted.json()) == (
        404, {"message": "Cannot POST /indexer/update-from-txHash", "error": "Not Found", "statusCode": 404})
    assert tw(sandbox, "/escrow/abc", method="GET").status_code == 404


def test_a_switch_makes_the_build_endpoints_answer_unbounded_envelopes(sandbox: SandboxControl) -> None:
    p = Parties(sandbox)
    sandbox.add_fault(service="trustless", action="unbounded_envelopes", path="/escrow/single-release/*", times=0)
    contract = p.deploy(fee=0)
    built = tw(sandbox, "/escrow/single-release/fund-escrow",
               {"contractId": contract, "signer": p.buyer.public_key, "amount": 100})
    bounds = TransactionEnvelope.from_xdr(built.json()["unsignedTransaction"], PASSPHRASE).transaction.preconditions
    assert bounds is not None
    assert bounds.time_bounds is not None
    assert bounds.time_bounds.max_time == 0
    deploy = TransactionEnvelope.from_xdr(
        tw(sandbox, "/deployer/single-release", _deploy_body(p, "ord_other")).json()["unsignedTransaction"],
        PASSPHRASE)
    assert deploy.transaction.preconditions.time_bounds.max_time > 0  # the switch covers only its paths
    # an unbounded envelope is still a valid one
    _fund_release(p, contract)
    assert p.usdc(p.seller) == "99.7000000"


def test_a_bump_sequence_consumes_the_sequence_an_envelope_was_built_for(sandbox: SandboxControl) -> None:
    from stellar_sdk.exceptions import BadRequestError

    from tests.sandbox.helpers import submit

    p = Parties(sandbox)
    built = TransactionEnvelope.from_xdr(
        tw(sandbox, "/deployer/single-release", _deploy_body(p)).json()["unsignedTransaction"], PASSPHRASE)
    built.sign(p.platform)
    submit(p.server, p.platform, lambda b: b.append_bump_sequence_op(built.transaction.sequence))
    with pytest.raises(BadRequestError) as refused:
        p.server.submit_transaction(built)
    assert refused.value.extras["result_codes"]["transaction"] == "tx_bad_seq"
