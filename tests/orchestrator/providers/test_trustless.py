"""The TW client, envelope checks and fee split against the sandbox over HTTP, signing with role keys."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import redis
from stellar_sdk import Account, Keypair, StrKey, TransactionBuilder, TransactionEnvelope, scval

from orchestrator.errors import NotFound, ProviderFailure, Unavailable
from orchestrator.escrow.tw_envelopes import CheckedEnvelope, RefusedEnvelope, check_envelope, deployed_contract_id
from orchestrator.escrow.tw_fees import payout_from_ledger, usdc_received
from orchestrator.providers.horizon import Horizon
from orchestrator.providers.rate_budget import RateBudget
from orchestrator.providers.trustless import (
    ContractRuleRefused,
    Distribution,
    EscrowRoles,
    Sent,
    TrustlessClient,
    TrustlessRefused,
)
from orchestrator.settings import Settings
from tests.fixtures.sandbox import SandboxControl


@pytest.fixture
def horizon(settings: Settings, ledger: SandboxControl) -> Horizon:
    return Horizon(settings)


@pytest.fixture
def client(settings: Settings, ledger: SandboxControl) -> Iterator[TrustlessClient]:
    tw = TrustlessClient(settings, timeout_ms=10_000)
    yield tw
    tw.http.close()


@pytest.fixture(autouse=True)
def _no_leftover_faults(ledger: SandboxControl) -> Iterator[None]:
    yield
    ledger.clear_faults()


@dataclass
class Escrow:
    """Three fresh wallets (the test holds their keys) and the client that drives their escrow."""

    settings: Settings
    client: TrustlessClient
    horizon: Horizon
    platform: Keypair
    buyer: Keypair
    seller: Keypair
    engagement: str
    contract_id: str = ""

    def sign(self, unsigned: str, signer: Keypair, **checks: object) -> tuple[str, CheckedEnvelope]:
        """§1.7 first, then the signature, as the chain step will do."""
        state = self.horizon.account(signer.public_key)
        assert state is not None
        contract = checks.pop("contract_id", self.contract_id or None)
        checked = check_envelope(unsigned, passphrase=self.settings.network_passphrase, signer=signer.public_key,
                                 source_sequence=state.sequence, contract_id=contract, **checks)  # type: ignore[arg-type]
        envelope = TransactionEnvelope.from_xdr(unsigned, self.settings.network_passphrase)
        envelope.sign(signer)
        assert envelope.hash_hex() == checked.hash
        return envelope.to_xdr(), checked

    def run(self, unsigned: str, signer: Keypair) -> tuple[Sent, str]:
        """Sign, send through T8, and confirm on the ledger (the ledger is the judge, §1.8)."""
        signed, checked = self.sign(unsigned, signer)
        sent = self.client.send_transaction(signed)
        assert sent.outcome == "applied", sent
        record = self.horizon.transaction(checked.hash)
        assert record is not None
        assert record["successful"]
        return sent, checked.hash

    def deploy(self, amount: str, fee_percent: str) -> str:
        roles = EscrowRoles(approver=self.buyer.public_key, service_provider=self.seller.public_key,
                            platform_address=self.platform.public_key, release_signer=self.buyer.public_key,
                            dispute_resolver=self.platform.public_key, receiver=self.seller.public_key)
        unsigned = self.client.deploy(signer=self.platform.public_key, engagement_id=self.engagement, title="Logo",
                                      description="A logo", roles=roles, amount=Decimal(amount),
                                      platform_fee_percent=Decimal(fee_percent))
        sent, _ = self.run(unsigned, self.platform)
        assert sent.contract_id is not None
        assert StrKey.is_valid_contract(sent.contract_id)
        self.contract_id = sent.contract_id
        return sent.contract_id

    def fund(self, amount: str) -> str:
        unsigned = self.client.fund(contract_id=self.contract_id, signer=self.buyer.public_key, amount=Decimal(amount))
        return self.run(unsigned, self.buyer)[1]

    def usdc(self, account_id: str) -> Decimal:
        state = self.horizon.account(account_id)
        assert state is not None
        assert state.usdc is not None
        return state.usdc


def _parties(settings: Settings, client: TrustlessClient, horizon: Horizon, ledger: SandboxControl,
             buyer_usdc: str) -> Escrow:
    def wallet(usdc: str = "0") -> Keypair:
        return Keypair.from_secret(ledger.create_account(usdc_trustline=True, xlm="100", usdc=usdc)["secret"])

    return Escrow(settings, client, horizon, wallet(), wallet(buyer_usdc), wallet(), f"ord_{secrets.token_hex(8)}")


@pytest.fixture
def escrow(settings: Settings, client: TrustlessClient, horizon: Horizon, ledger: SandboxControl) -> Escrow:
    return _parties(settings, client, horizon, ledger, buyer_usdc="100")


def _tw_fee_account(ledger: SandboxControl) -> str:
    return ledger.state()["tw_fee_account"]


def test_release_cycle_pays_the_seller_net_and_both_fees_exactly_as_the_ledger_shows(
        settings: Settings, client: TrustlessClient, horizon: Horizon, ledger: SandboxControl) -> None:
    # Given an escrow of 33.33 USDC at a 2.5 % platform fee (amounts that make the integer division bite)
    p = _parties(settings, client, horizon, ledger, buyer_usdc="33.33")
    contract = p.deploy("33.33", "2.5")
    state = client.get_escrow(contract)
    assert state is not None
    assert (state.engagement_id, state.disputed, state.released, state.resolved) == (p.engagement, False, False, False)
    assert [e.contract_id for e in client.escrows_by_signer(p.platform.public_key, engagement_id=p.engagement)] == [
        contract]
    tw_account = _tw_fee_account(ledger)
    tw_before = p.usdc(tw_account)
    # When the buyer funds, the seller completes, the buyer approves and releases
    p.fund("33.33")
    assert p.usdc(p.buyer.public_key) == 0
    p.run(client.change_milestone_status(contract_id=contract, service_provider=p.seller.public_key,
                                         evidence=p.engagement), p.seller)
    assert client.get_escrow(contract).milestone_completed()  # type: ignore[union-attr]
    p.run(client.approve_milestone(contract_id=contract, approver=p.buyer.public_key), p.buyer)
    assert client.get_escrow(contract).milestone_approved()  # type: ignore[union-attr]
    _, release_hash = p.run(client.release_funds(contract_id=contract, release_signer=p.buyer.public_key), p.buyer)
    # Then the release's operation record splits 33.33 into TW 0.09999, platform 0.83325, seller 32.39676
    records = horizon.operations(release_hash)
    assert records is not None
    payout = payout_from_ledger(records, shares={p.seller.public_key: Decimal("33.33")},
                                platform_fee_percent=Decimal("2.5"), tw_fee_account=tw_account,
                                platform_address=p.platform.public_key, asset_code=settings.usdc_asset_code,
                                asset_issuer=settings.usdc_issuer, contract_id=contract)
    assert payout.consistent, payout.discrepancies
    seller = payout.party(p.seller.public_key)
    assert (seller.gross, seller.trustless_fee, seller.platform_fee, seller.net) == (
        Decimal("33.33"), Decimal("0.09999"), Decimal("0.83325"), Decimal("32.39676"))
    assert (payout.trustless_fee, payout.platform_fee) == (Decimal("0.09999"), Decimal("0.83325"))
    # And the ledger balances agree to the stroop
    assert p.usdc(p.seller.public_key) == seller.net
    assert p.usdc(p.platform.public_key) == payout.platform_fee
    assert p.usdc(tw_account) - tw_before == payout.trustless_fee
    assert client.get_escrow(contract).released  # type: ignore[union-attr]


def test_dispute_resolved_with_a_split_charges_each_share_its_part_of_the_fees(
        escrow: Escrow, client: TrustlessClient, horizon: Horizon, settings: Settings,
        ledger: SandboxControl) -> None:
    # Given a funded escrow of 100 at 5 %
    p = escrow
    contract = p.deploy("100", "5")
    p.fund("100")
    # When the buyer disputes and the platform resolves 80 seller / 20 buyer
    p.run(client.dispute(contract_id=contract, signer=p.buyer.public_key), p.buyer)
    assert client.get_escrow(contract).disputed  # type: ignore[union-attr]
    shares = {p.seller.public_key: Decimal("80"), p.buyer.public_key: Decimal("20")}
    unsigned = client.resolve_dispute(contract_id=contract, dispute_resolver=p.platform.public_key,
                                      distributions=[Distribution(a, v) for a, v in shares.items()])
    _, resolve_hash = p.run(unsigned, p.platform)
    # Then seller 75.76, buyer 18.94, platform 5.00, TW 0.30 (providers.md §1.10 example)
    payout = payout_from_ledger(horizon.operations(resolve_hash) or [], shares=shares,
                                platform_fee_percent=Decimal(5), tw_fee_account=_tw_fee_account(ledger),
                                platform_address=p.platform.public_key, asset_code=settings.usdc_asset_code,
                                asset_issuer=settings.usdc_issuer)
    assert payout.consistent, payout.discrepancies
    assert payout.party(p.seller.public_key).net == Decimal("75.76")
    assert payout.party(p.buyer.public_key).net == Decimal("18.94")
    assert (payout.platform_fee, payout.trustless_fee) == (Decimal(5), Decimal("0.3"))
    assert p.usdc(p.seller.public_key) == Decimal("75.76")
    assert p.usdc(p.buyer.public_key) == Decimal("18.94")
    assert client.get_escrow(contract).resolved  # type: ignore[union-attr]


def test_a_payout_that_differs_from_the_formula_is_reported_not_hidden(settings: Settings) -> None:
    seller, platform, tw_account, contract = (Keypair.random().public_key, Keypair.random().public_key,
                                              Keypair.random().public_key, "C" + "A" * 55)
    usdc = {"asset_type": "credit_alphanum4", "asset_code": settings.usdc_asset_code,
            "asset_issuer": settings.usdc_issuer, "type": "transfer", "from": contract}
    records = [{"type": "invoke_host_function", "asset_balance_changes": [
        {**usdc, "to": seller, "amount": "95.0000000"}, {**usdc, "to": tw_account, "amount": "0.3000000"}]}]
    assert usdc_received(records, asset_code=settings.usdc_asset_code, asset_issuer=settings.usdc_issuer) == {
        seller: Decimal(95), tw_account: Decimal("0.3")}
    payout = payout_from_ledger(records, shares={seller: Decimal(100)}, platform_fee_percent=Decimal(5),
                                tw_fee_account=tw_account, platform_address=platform,
                                asset_code=settings.usdc_asset_code, asset_issuer=settings.usdc_issuer)
    assert payout.party(seller).net == Decimal(95)  # credited what the ledger shows
    assert not payout.consistent
    assert len(payout.discrepancies) == 2  # the seller's net and the missing platform fee


def test_a_contract_rule_broken_at_apply_time_is_a_failed_send_carrying_the_rule(
        escrow: Escrow, client: TrustlessClient, horizon: Horizon) -> None:
    # Given a funded escrow whose milestone is not approved
    p = escrow
    contract = p.deploy("100", "0")
    p.fund("100")
    # When the buyer releases anyway
    signed, checked = p.sign(client.release_funds(contract_id=contract, release_signer=p.buyer.public_key), p.buyer)
    sent = client.send_transaction(signed)
    # Then TW's refusal is a failed outcome carrying the contract rule, and nothing was released
    assert sent.outcome == "failed"
    assert isinstance(sent.refusal, ContractRuleRefused)
    assert sent.refusal.rule == "The escrow must be completed to release earnings"
    assert not client.get_escrow(contract).released  # type: ignore[union-attr]
    record = horizon.transaction(checked.hash)
    assert record is not None
    assert not record["successful"]


def test_a_contract_rule_refused_at_build_time_raises_contract_rule_refused(escrow: Escrow,
                                                                            client: TrustlessClient) -> None:
    p = escrow
    roles = EscrowRoles(p.buyer.public_key, p.seller.public_key, p.platform.public_key, p.buyer.public_key,
                        p.platform.public_key, p.seller.public_key)
    with pytest.raises(ContractRuleRefused) as raised:
        client.deploy(signer=p.platform.public_key, engagement_id=p.engagement, title="t", description="d",
                      roles=roles, amount="10", platform_fee_percent="100")
    assert raised.value.message == "The platform fee cannot exceed 99%"
    assert raised.value.details["originalStatus"] == 400


def test_a_validation_refusal_is_a_trustless_refusal_but_not_a_contract_rule(escrow: Escrow,
                                                                             client: TrustlessClient) -> None:
    with pytest.raises(TrustlessRefused) as raised:
        client.fund(contract_id="not-a-contract", signer=escrow.buyer.public_key, amount="1")
    assert not isinstance(raised.value, ContractRuleRefused)
    assert raised.value.code == "PROVIDER_ERROR"
    assert raised.value.details == {"provider": "trustless_work", "originalStatus": 400,
                                    "message": "contractId must be a valid contract id"}


def test_an_unknown_api_key_is_a_provider_error(settings: Settings, escrow: Escrow) -> None:
    from dataclasses import replace

    wrong = TrustlessClient(replace(settings, trustless_api_key="wrong"), timeout_ms=10_000)
    with pytest.raises(ProviderFailure) as raised:
        wrong.get_escrow(_contract())
    assert (raised.value.code, raised.value.details["originalStatus"]) == ("PROVIDER_ERROR", 401)
    # permanent: a chain step fails at once instead of spending its attempts (providers.md §1.11)
    assert getattr(raised.value, "permanent", False) is True


def _contract() -> str:
    return StrKey.encode_contract(secrets.token_bytes(32))


def test_a_429_is_provider_rate_limited_with_retry_after(escrow: Escrow, client: TrustlessClient,
                                                        ledger: SandboxControl) -> None:
    signer = escrow.buyer.public_key
    ledger.add_fault(service="trustless", action="status", path="/escrow/single-release/dispute-escrow",
                     when={"signer": signer}, params={"status": 429, "retry_after": 7})
    with pytest.raises(ProviderFailure) as raised:
        client.dispute(contract_id=_contract(), signer=signer)
    assert raised.value.code == "PROVIDER_RATE_LIMITED"
    assert raised.value.details["retryAfter"] == 7
    assert client.dispute(contract_id=_contract(), signer=signer)  # the fault fired once


def test_a_429_spends_the_shared_budget_so_no_process_calls_until_retry_after(
        settings: Settings, escrow: Escrow, ledger: SandboxControl) -> None:
    connection = redis.Redis.from_url(settings.redis_url)
    budget = RateBudget(connection, f"{settings.redis_prefix}tw-{secrets.token_hex(4)}:", per_minute=45,
                        max_wait_seconds=0.2)
    paced = TrustlessClient(settings, timeout_ms=10_000, budget=budget)
    signer = escrow.buyer.public_key
    ledger.add_fault(service="trustless", action="status", path="/escrow/single-release/dispute-escrow",
                     when={"signer": signer}, params={"status": 429, "retry_after": 30})
    with pytest.raises(ProviderFailure) as first:
        paced.dispute(contract_id=_contract(), signer=signer)
    assert (first.value.code, first.value.details["originalStatus"]) == ("PROVIDER_RATE_LIMITED", 429)
    # the fault fired once: a request reaching TW now would succeed, so this refusal is the budget's
    with pytest.raises(ProviderFailure) as raised:
        paced.dispute(contract_id=_contract(), signer=signer)
    assert raised.value.code == "PROVIDER_RATE_LIMITED"
    assert "originalStatus" not in raised.value.details
    assert 20 < raised.value.details["retryAfter"] <= 30  # Retry-After, not a whole window
    connection.delete(budget.key)
    connection.close()


@pytest.mark.parametrize(("status", "error", "code"), [
    (500, ProviderFailure, "PROVIDER_ERROR"), (502, ProviderFailure, "PROVIDER_ERROR"),
    (503, Unavailable, "PROVIDER_UNAVAILABLE"), (504, ProviderFailure, "PROVIDER_TIMEOUT"),
    (404, NotFound, "ESCROW_NOT_FOUND")])
def test_server_side_errors_of_build_calls_map_to_provider_codes(
        escrow: Escrow, client: TrustlessClient, ledger: SandboxControl, status: int, error: type[Exception],
        code: str) -> None:
    signer = escrow.buyer.public_key
    ledger.add_fault(service="trustless", action="status", path="/escrow/single-release/dispute-escrow",
                     when={"signer": signer}, params={"status": status})
    with pytest.raises(error) as raised:
        client.dispute(contract_id=_contract(), signer=signer)
    assert raised.value.code == code  # type: ignore[attr-defined]


def test_no_answer_in_time_is_provider_timeout(settings: Settings, escrow: Escrow, ledger: SandboxControl) -> None:
    impatient = TrustlessClient(settings, timeout_ms=500)
    signer = escrow.buyer.public_key
    ledger.add_fault(service="trustless", action="timeout", path="/escrow/single-release/dispute-escrow",
                     when={"signer": signer}, params={"ms": 1500})
    with pytest.raises(ProviderFailure) as raised:
        impatient.dispute(contract_id=_contract(), signer=signer)
    assert raised.value.code == "PROVIDER_TIMEOUT"


def test_apply_then_error_on_send_is_ambiguous_and_the_ledger_shows_it_applied(
        escrow: Escrow, client: TrustlessClient, horizon: Horizon, ledger: SandboxControl) -> None:
    # Given a signed fund envelope and a TW helper that applies it but answers 500 "not available yet"
    p = escrow
    p.deploy("100", "0")
    signed, checked = p.sign(client.fund(contract_id=p.contract_id, signer=p.buyer.public_key, amount="100"),
                             p.buyer)
    ledger.add_fault(service="trustless", action="apply_then_error", path="/helper/send-transaction",
                     when={"signedXdr": signed})
    # When it is sent
    sent = client.send_transaction(signed)
    # Then the outcome is ambiguous (never "failed"), and the hash lookup finds it applied
    assert sent.outcome == "ambiguous"
    record = horizon.transaction(checked.hash)
    assert record is not None
    assert record["successful"]
    assert p.usdc(p.buyer.public_key) == 0


def test_a_send_that_times_out_is_ambiguous(settings: Settings, escrow: Escrow, horizon: Horizon,
                                            ledger: SandboxControl) -> None:
    p = escrow
    p.deploy("100", "0")
    signed, checked = p.sign(p.client.dispute(contract_id=p.contract_id, signer=p.buyer.public_key), p.buyer)
    ledger.add_fault(service="trustless", action="timeout", path="/helper/send-transaction",
                     when={"signedXdr": signed}, params={"ms": 1500})
    assert TrustlessClient(settings, timeout_ms=500).send_transaction(signed).outcome == "ambiguous"
    assert horizon.transaction(checked.hash) is None  # the timeout fault does not apply


# §1.7: envelopes that must never be signed.

def _built(settings: Settings, source: str, contract: str, *, function: str = "fund_escrow", fee: int = 100,
           max_time: int | None = 2_000_000_000, op_source: str | None = None, ops: int = 1) -> str:
    builder = TransactionBuilder(Account(source, 41), settings.network_passphrase, fee)
    if max_time is not None:
        builder.add_time_bounds(0, max_time)
    else:
        builder.add_time_bounds(0, 0)
    for _ in range(ops):
        builder.append_invoke_contract_function_op(contract, function, [scval.to_address(source)], source=op_source)
    return builder.build().to_xdr()


def _check(settings: Settings, xdr: str, signer: str, contract: str | None, **extra: object) -> CheckedEnvelope:
    return check_envelope(xdr, passphrase=settings.network_passphrase, signer=signer, source_sequence=41,
                          contract_id=contract, **extra)  # type: ignore[arg-type]


def test_a_well_formed_envelope_passes_and_reports_what_the_step_stores(settings: Settings) -> None:
    signer, contract = Keypair.random().public_key, _contract()
    checked = _check(settings, _built(settings, signer, contract), signer, contract)
    assert (checked.source, checked.sequence, checked.max_time, checked.function, checked.contract_id) == (
        signer, 42, 2_000_000_000, "fund_escrow", contract)
    assert checked.expires_at.year == 2033


def test_an_envelope_for_another_signer_is_refused(settings: Settings) -> None:
    contract = _contract()
    with pytest.raises(RefusedEnvelope, match="not the expected signer"):
        _check(settings, _built(settings, Keypair.random().public_key, contract), Keypair.random().public_key,
               contract)


def test_an_operation_that_overrides_the_source_is_refused(settings: Settings) -> None:
    signer, contract = Keypair.random().public_key, _contract()
    xdr = _built(settings, signer, contract, op_source=Keypair.random().public_key)
    with pytest.raises(RefusedEnvelope, match="overrides its source"):
        _check(settings, xdr, signer, contract)


def test_a_call_to_another_contract_is_refused(settings: Settings) -> None:
    signer = Keypair.random().public_key
    with pytest.raises(RefusedEnvelope, match="not the escrow"):
        _check(settings, _built(settings, signer, _contract()), signer, _contract())


def test_a_function_outside_the_allow_list_is_refused(settings: Settings) -> None:
    signer, contract = Keypair.random().public_key, _contract()
    with pytest.raises(RefusedEnvelope, match="allow-list"):
        _check(settings, _built(settings, signer, contract, function="transfer"), signer, contract)
    with pytest.raises(RefusedEnvelope, match="allow-list"):  # a configured, narrower list
        _check(settings, _built(settings, signer, contract), signer, contract, functions={"release_funds"})
    with pytest.raises(RefusedEnvelope, match="allow-list"):  # a deploy check accepts only the deploy function
        _check(settings, _built(settings, signer, contract), signer, None)


def test_a_fee_over_the_cap_is_refused(settings: Settings) -> None:
    signer, contract = Keypair.random().public_key, _contract()
    xdr = _built(settings, signer, contract, fee=20_000_001)
    with pytest.raises(RefusedEnvelope, match="exceeds the cap"):
        _check(settings, xdr, signer, contract)
    assert _check(settings, _built(settings, signer, contract, fee=20_000_000), signer, contract)


def test_an_envelope_without_an_upper_time_bound_is_accepted_unless_the_setting_refuses_it(
        settings: Settings) -> None:
    # nothing public shows TW's time bounds: max_time 0 is signed by default (TRUSTLESS_ACCEPT_UNBOUNDED)
    signer, contract = Keypair.random().public_key, _contract()
    checked = _check(settings, _built(settings, signer, contract, max_time=None), signer, contract)
    assert (checked.max_time, checked.expires_at) == (0, None)
    with pytest.raises(RefusedEnvelope, match="no upper time bound"):
        _check(settings, _built(settings, signer, contract, max_time=None), signer, contract, allow_unbounded=False)


def test_a_deploys_contract_id_is_derived_offline_and_is_the_one_the_network_creates(
        settings: Settings, client: TrustlessClient, horizon: Horizon, ledger: SandboxControl) -> None:
    p = _parties(settings, client, horizon, ledger, buyer_usdc="0")
    roles = EscrowRoles(approver=p.buyer.public_key, service_provider=p.seller.public_key,
                        platform_address=p.platform.public_key, release_signer=p.buyer.public_key,
                        dispute_resolver=p.platform.public_key, receiver=p.seller.public_key)
    unsigned = client.deploy(signer=p.platform.public_key, engagement_id=p.engagement, title="Logo",
                             description="A logo", roles=roles, amount=Decimal("5"), platform_fee_percent=Decimal(0))
    account = horizon.account(p.platform.public_key)
    assert account is not None
    checked = check_envelope(unsigned, passphrase=settings.network_passphrase, signer=p.platform.public_key,
                             source_sequence=account.sequence, contract_id=None)
    assert checked.deployed_contract_id is not None
    assert checked.deployed_contract_id == deployed_contract_id(unsigned, settings.network_passphrase)
    assert checked.deployed_contract_id not in ledger.state()["contracts"]  # known before anything is sent
    envelope = TransactionEnvelope.from_xdr(unsigned, settings.network_passphrase)
    envelope.sign(p.platform)
    assert horizon.submit(envelope.to_xdr()).outcome == "applied"  # straight to Horizon: TW answers nothing
    assert ledger.state()["contracts"][checked.deployed_contract_id]["engagement_id"] == p.engagement
    # Horizon-submitted: TW's database learns of it only when told, and then serves it
    assert client.get_escrow(checked.deployed_contract_id) is None
    saved = client.register(envelope.hash_hex())
    assert saved is not None
    assert saved.contract_id == checked.deployed_contract_id
    assert client.get_escrow(checked.deployed_contract_id) is not None


def test_a_deploy_whose_footprint_lacks_the_derived_contract_is_refused(settings: Settings) -> None:
    signer, factory = Keypair.random().public_key, _contract()
    builder = TransactionBuilder(Account(signer, 41), settings.network_passphrase, 100).add_time_bounds(0, 0)
    args = [scval.to_address(signer), scval.to_bytes(bytes(32)), scval.to_bytes(secrets.token_bytes(32)),
            scval.to_symbol("initialize_escrow"), scval.to_vec([]), scval.to_vec([])]
    builder.append_invoke_contract_function_op(factory, "tw_new_single_release_escrow", args)
    with pytest.raises(RefusedEnvelope, match="not in the envelope's read-write footprint"):
        _check(settings, builder.build().to_xdr(), signer, None)


def test_a_fee_bump_envelope_is_refused(settings: Settings) -> None:
    signer, contract = Keypair.random(), _contract()
    inner = TransactionEnvelope.from_xdr(_built(settings, signer.public_key, contract), settings.network_passphrase)
    inner.sign(signer)
    bump = TransactionBuilder.build_fee_bump_transaction(Keypair.random().public_key, 200, inner,
                                                         settings.network_passphrase)
    with pytest.raises(RefusedEnvelope, match="FEE_BUMP"):
        _check(settings, bump.to_xdr(), signer.public_key, contract)


def test_two_operations_or_a_used_sequence_are_refused(settings: Settings) -> None:
    signer, contract = Keypair.random().public_key, _contract()
    with pytest.raises(RefusedEnvelope, match="exactly one operation"):
        _check(settings, _built(settings, signer, contract, ops=2), signer, contract)
    with pytest.raises(RefusedEnvelope, match="not above"):
        check_envelope(_built(settings, signer, contract), passphrase=settings.network_passphrase, signer=signer,
                       source_sequence=42, contract_id=contract)


def test_a_tw_built_envelope_for_another_escrow_is_refused(escrow: Escrow, client: TrustlessClient) -> None:
    # The real sandbox's envelope passes for its own escrow and fails for any other
    p = escrow
    contract = _contract()
    unsigned = client.dispute(contract_id=contract, signer=p.buyer.public_key)
    assert p.sign(unsigned, p.buyer, contract_id=contract)[1].function == "dispute_escrow"
    with pytest.raises(RefusedEnvelope):
        p.sign(unsigned, p.buyer, contract_id=_contract())
    with pytest.raises(RefusedEnvelope):
        p.sign(unsigned, p.seller, contract_id=contract)


def test_a_5xx_on_send_is_ambiguous_even_without_tw_saying_so(escrow: Escrow, client: TrustlessClient,
                                                             ledger: SandboxControl) -> None:
    p = escrow
    p.deploy("100", "0")
    signed, _ = p.sign(client.dispute(contract_id=p.contract_id, signer=p.buyer.public_key), p.buyer)
    ledger.add_fault(service="trustless", action="status", path="/helper/send-transaction",
                     when={"signedXdr": signed}, params={"status": 502, "message": "Bad Gateway"})
    assert client.send_transaction(signed).outcome == "ambiguous"
    # the same envelope may still be sent: resending it is how an ambiguous outcome is settled
    assert client.send_transaction(signed).outcome == "applied"
    assert client.get_escrow(p.contract_id).disputed  # type: ignore[union-attr]


def _with_auth(settings: Settings, source: str, contract: str, root_contract: str, root_function: str) -> str:
    """An escrow call that also carries a source-account authorisation rooted at ``root_contract``."""
    from stellar_sdk import Address
    from stellar_sdk import xdr as sx

    root = sx.SorobanAuthorizedInvocation(
        sx.SorobanAuthorizedFunction(
            sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
            contract_fn=sx.InvokeContractArgs(Address(root_contract).to_xdr_sc_address(),
                                              scval.to_symbol(root_function).sym, [])),
        [])
    entry = sx.SorobanAuthorizationEntry(
        sx.SorobanCredentials(sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT), root)
    builder = TransactionBuilder(Account(source, 41), settings.network_passphrase, 100).add_time_bounds(0, 2**31)
    builder.append_invoke_contract_function_op(contract, "fund_escrow", [scval.to_address(source)], auth=[entry])
    return builder.build().to_xdr()


def test_an_authorisation_rooted_at_another_call_is_refused(settings: Settings) -> None:
    # Our signature would also authorise the entry: a transfer from the signer's USDC must not ride along
    signer, contract, usdc_sac = Keypair.random().public_key, _contract(), _contract()
    with pytest.raises(RefusedEnvelope, match="another contract call"):
        _check(settings, _with_auth(settings, signer, contract, usdc_sac, "transfer"), signer, contract)
    assert _check(settings, _with_auth(settings, signer, contract, contract, "fund_escrow"), signer, contract)
