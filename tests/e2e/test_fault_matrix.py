"""The fault matrix: every sandbox fault injected into every kind of chain step, through the API.

Each case builds what its step needs (an order up to the right state, a funded user, a new user), aims
one fault at that step's own transaction where it is sent (a Trustless Work envelope through TW's T8
relay or Horizon's submit, as ``TRUSTLESS_SUBMIT_VIA`` says; a plain payment to Horizon; the sandbox
matches a submission's `source`, `function` and `operation` on both) or at the call that builds it, runs
the flow, and then checks to the stroop that it completed exactly once, or failed visibly with the money
where states.md says: the order and escrow states, the book, the sandbox ledger's wallets and contract,
the chain step rows and the events.

A fault the step cannot meet (a contract refusal on a plain payment, a lagging indexer for a fund) is
injected all the same: the flow must be unaffected by it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from orchestrator.settings import Settings
from tests.api import Api
from tests.e2e.test_deposits import active_wallet
from tests.e2e.test_escrow_flow import funded_buyer, usdc
from tests.e2e.test_wallets import wallet_status
from tests.fixtures.sandbox import HORIZON_SUBMISSIONS, TW_API_KEY, SandboxControl, submitted_hash, tw_submissions

pytestmark = pytest.mark.usefixtures("monitor")  # funded users need their deposits credited

ASYNC = {"Prefer": "respond-async"}
FAULTS = ("apply_then_drop", "apply_then_error", "timeout", "bad_seq", "surge", "drain_xlm", "contract_reject",
          "indexer_lag", "status_429", "status_5xx")
#: The wallet and order amounts every escrow case uses; 0.3 % of 40.00 goes to Trustless Work.
WALLET, AMOUNT, NET = Decimal("100"), Decimal("40"), Decimal("39.88")


@dataclass(frozen=True)
class Target:
    """One kind of chain step: which flow runs it, who signs it, and how its transaction is recognised."""

    step: str  # chain_steps.kind
    flow: str  # create | fund | release | refund | withdraw | activate
    signer: str  # platform | deployer (one of the platform's deployer accounts) | buyer | seller | user | new
    function: str | None = None  # the contract function its transaction calls
    operation: str = "invoke_host_function"
    tw_path: str | None = None  # the Trustless Work endpoint that builds it
    #: A contract refusal of this step leaves nothing applied: the flow rolls back (O7/O10/O13/O16).
    rolls_back: bool = False


TARGETS = {
    "deploy": Target("tw_deploy", "create", "deployer", "tw_new_single_release_escrow",
                     tw_path="/deployer/single-release", rolls_back=True),
    "fund": Target("tw_fund", "fund", "buyer", "fund_escrow", tw_path="/escrow/single-release/fund-escrow",
                   rolls_back=True),
    "milestone_status": Target("tw_change_status", "release", "seller", "change_milestone_status",
                               tw_path="/escrow/single-release/change-milestone-status", rolls_back=True),
    "approve": Target("tw_approve", "release", "buyer", "approve_milestone",
                      tw_path="/escrow/single-release/approve-milestone"),
    "release": Target("tw_release", "release", "buyer", "release_funds",
                      tw_path="/escrow/single-release/release-funds"),
    "dispute": Target("tw_dispute", "refund", "buyer", "dispute_escrow",
                      tw_path="/escrow/single-release/dispute-escrow", rolls_back=True),
    "resolve": Target("tw_resolve", "refund", "platform", "resolve_dispute",
                      tw_path="/escrow/single-release/resolve-dispute"),
    "withdrawal": Target("withdrawal_payment", "withdraw", "user", operation="payment"),
    "activation": Target("add_trustline", "activate", "new", operation="change_trust"),
}


@dataclass
class Case:
    """What one case built and started, and what the fault did."""

    target: Target
    fault: str
    keys: dict[str, str] = field(default_factory=dict)  # role -> public key
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: dict[str, Any] | None = None
    command_id: str | None = None
    subjects: list[str] = field(default_factory=list)  # chain step subjects (escrow, withdrawal, wallet)
    outside: dict[str, str] | None = None  # a withdrawal's destination
    rules: dict[str, str] = field(default_factory=dict)  # name -> fault rule id
    submit: dict[str, str] = field(default_factory=lambda: dict(HORIZON_SUBMISSIONS))  # where its envelope goes
    remedied: bool = False

    @property
    def when(self) -> dict[str, Any]:
        when: dict[str, Any] = {"operation": self.target.operation}
        if self.target.function:
            when["function"] = self.target.function
        if self.target.signer in self.keys:
            when["source"] = self.keys[self.target.signer]
        return when

    @property
    def refused_outright(self) -> bool:
        """A contract refusal that leaves nothing applied: the flow goes back instead of completing."""
        return self.fault == "contract_reject" and self.target.rolls_back

    @property
    def retried_after_refusal(self) -> bool:
        """A contract refusal after an earlier step landed: the step is tried again, never rolled back."""
        return self.fault == "contract_reject" and self.target.function is not None and not self.target.rolls_back


def platform_key(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT w.public_key FROM wallets w JOIN users u ON u.id = w.user_id "
                                 "WHERE u.external_user_id = 'offerhub-platform'")).scalar_one()


async def prepared(target: Target, fault: str, api: Api, engine: Engine, ledger: SandboxControl) -> Case:
    """Everything up to the flow that runs the target step, built fault-free."""
    case = Case(target, fault, keys={"platform": platform_key(engine)})
    if target.flow == "withdraw":
        (user, wallet), outside = await funded_buyer(api, engine, ledger, "30.00"), ledger.create_account()
        case.users["user"], case.keys["user"], case.outside = user, wallet["public_key"], outside
        return case
    if target.flow == "activate":
        return case
    (buyer, buyer_wallet), (seller, seller_wallet) = await asyncio.gather(
        funded_buyer(api, engine, ledger, f"{WALLET:.2f}"), active_wallet(api, engine))
    case.users.update(buyer=buyer, seller=seller)
    case.keys.update(buyer=buyer_wallet["public_key"], seller=seller_wallet["public_key"])
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"],
                                        "amount": f"{AMOUNT:.2f}", "title": f"Matrix {fault}"})).data
    assert (await api.post(f"/orders/{order['id']}/reserve")).status == 200
    case.order = order
    if target.flow != "create":
        created = await finished(api, engine, await api.post(f"/orders/{order['id']}/escrow", headers=ASYNC))
        assert created["flow_status"] == "DONE", created
    if target.flow not in ("create", "fund"):
        funded = await finished(api, engine, await api.post(f"/orders/{order['id']}/escrow/fund", headers=ASYNC))
        assert funded["flow_status"] == "DONE", funded
    case.order = (await api.get(f"/orders/{order['id']}")).data
    return case


async def finished(api: Api, engine: Engine, reply: Any, seconds: float = 60) -> dict[str, Any]:
    """Wait for a command (and the ledger flow it started) to end; returns its row."""
    assert reply.status in (200, 201, 202), reply.body
    if reply.status != 202:
        return {"status": "DONE", "flow_status": "DONE", "flow_error": None}
    command_id = reply.body["meta"]["commandId"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT status, flow_status, flow_error FROM commands WHERE id = :c"),
                               {"c": command_id}).mappings().one()
        if row["status"] != "PENDING" and row["flow_status"] != "RUNNING":
            return dict(row)
        await asyncio.sleep(0.1)
    raise AssertionError(f"command {command_id} did not finish: {row}")


def inject(case: Case, ledger: SandboxControl) -> None:
    """Aim the case's fault at its target step; a counting rule behind it sees the later submissions."""
    fault, target, when, submit = case.fault, case.target, case.when, case.submit

    def add(name: str, **rule: Any) -> None:
        case.rules[name] = ledger.add_fault(**rule)["id"]

    if fault in ("apply_then_drop", "apply_then_error", "bad_seq", "drain_xlm", "contract_reject"):
        add("fault", **submit, when=when, action=fault, times=1)
    elif fault == "timeout":  # held 0.3 s (not the client's 35 s), then closed unapplied
        add("fault", **submit, when=when, action="timeout", params={"ms": 300}, times=1)
    elif fault == "surge":  # the submission is held while the fee rises under it (see `drive`)
        add("fault", **submit, when=when, action="delay", params={"ms": 600}, times=1)
    elif fault == "indexer_lag":
        add("fault", service="trustless", action="indexer_lag", params={"seconds": 1}, times=0)
    else:
        status, extra = (429, {"retry_after": 1}) if fault == "status_429" else (503, {})
        if target.tw_path:
            add("fault", service="trustless", method="POST", path=target.tw_path, action="status",
                params={"status": status, **extra}, times=1)
        if target.flow == "activate":
            add("friendbot", service="friendbot", action="status", params={"status": status, **extra}, times=1)
        add("submit", **submit, when=when, action="status",
            params={"status": 429 if status == 429 else 502, **extra}, times=1)
    add("after", **submit, when=when, action="delay", params={"ms": 0}, times=0)


async def start(case: Case, api: Api, engine: Engine) -> None:
    order = case.order
    flow = case.target.flow
    if flow == "activate":
        user = await api.user()
        case.users["new"] = user
        return
    if flow == "withdraw":
        reply = await api.post("/withdrawals", {"userId": case.users["user"]["id"], "amount": "20.00",
                                                "destinationType": "crypto",
                                                "destinationRef": case.outside["publicKey"]}, headers=ASYNC)
    else:
        assert order is not None
        path = {"create": "escrow", "fund": "escrow/fund", "release": "resolution/release",
                "refund": "resolution/refund"}[flow]
        reply = await api.post(f"/orders/{order['id']}/{path}", {"reason": "matrix"} if flow == "refund" else None,
                               headers=ASYNC)
    assert reply.status == 202, reply.body
    case.command_id = reply.body["meta"]["commandId"]


def steps(engine: Engine, case: Case) -> list[dict[str, Any]]:
    """The case's chain step rows, oldest first."""
    with engine.connect() as conn:
        if case.target.flow == "activate":
            case.subjects = list(conn.execute(text("SELECT id FROM wallets WHERE user_id = :u"),
                                              {"u": case.users["new"]["id"]}).scalars())
        elif case.target.flow == "withdraw":
            case.subjects = list(conn.execute(text("SELECT id FROM withdrawals WHERE user_id = :u"),
                                              {"u": case.users["user"]["id"]}).scalars())
        else:
            assert case.order is not None
            case.subjects = list(conn.execute(text("SELECT id FROM escrows WHERE order_id = :o"),
                                              {"o": case.order["id"]}).scalars())
        rows = conn.execute(text(
            "SELECT id, kind, status, tx_hash, attempts, last_error, source_account FROM chain_steps "
            "WHERE subject_id = ANY(:s) ORDER BY created_at, id"), {"s": case.subjects}).mappings().all()
    return [dict(row) for row in rows]


def target_rows(engine: Engine, case: Case) -> list[dict[str, Any]]:
    return [row for row in steps(engine, case) if row["kind"] == case.target.step]


def done(engine: Engine, case: Case) -> bool:
    if case.target.flow == "activate":
        with engine.connect() as conn:
            status = conn.execute(text("SELECT status FROM wallets WHERE user_id = :u"),
                                  {"u": case.users["new"]["id"]}).scalar()
        return status in ("ACTIVE", "FAILED")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, flow_status FROM commands WHERE id = :c"),
                           {"c": case.command_id}).mappings().one()
    return row["status"] != "PENDING" and row["flow_status"] != "RUNNING"


async def drive(case: Case, engine: Engine, ledger: SandboxControl, seconds: float = 60) -> None:
    """Wait for the flow to end, doing what the world does meanwhile: the fee surge starts while the
    target's submission is held and ends with the next ledger; XLM reaches a drained account."""
    deadline = time.monotonic() + seconds
    surged = False
    while not done(engine, case):
        if time.monotonic() > deadline:
            raise AssertionError(f"{case.target.step} under {case.fault} did not finish: {steps(engine, case)}")
        if case.fault == "surge" and not surged and fired(ledger, case.rules["fault"]):
            ledger.add_fault(service="horizon", action="surge", params={"stroops": 200_000, "ledgers": 1}, times=1)
            surged = True
        elif not case.remedied and case.fault in ("surge", "drain_xlm"):
            code = "tx_insufficient_fee" if case.fault == "surge" else "tx_insufficient_balance"
            refused = [row for row in target_rows(engine, case) if code in (row["last_error"] or "")]
            if refused:
                # another transaction closes a ledger (the surge lasts one); or XLM arrives from outside
                donor = ledger.create_account(usdc_trustline=False, xlm="200")
                ledger.pay(donor["secret"], refused[0]["source_account"], "100", asset="XLM")
                case.remedied = True
        await asyncio.sleep(0.1)


def fired(ledger: SandboxControl, rule_id: str) -> list[dict[str, Any]]:
    return [entry for entry in ledger.fault_log() if entry["rule"] == rule_id]


def events(engine: Engine, aggregate_id: str, event_type: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT payload FROM outbox WHERE aggregate_id = :a AND event_type = :t "
                                      "ORDER BY id"), {"a": aggregate_id, "t": event_type}).scalars())


def contract_balance(ledger: SandboxControl, contract_id: str) -> Decimal:
    reply = ledger.http.get(f"{ledger.trustless_url}/helper/get-escrow-by-contract-ids",
                            params={"contractIds": contract_id, "validateOnChain": "true"},
                            headers={"x-api-key": TW_API_KEY}, timeout=10)
    assert reply.status_code == 200, reply.text
    return Decimal(str(reply.json()[0]["balance"]))


def contracts_of(ledger: SandboxControl, platform: str, order_id: str) -> list[dict[str, Any]]:
    reply = ledger.http.get(f"{ledger.trustless_url}/helper/get-escrows-by-signer",
                            params={"signer": platform, "engagementId": order_id},
                            headers={"x-api-key": TW_API_KEY}, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def transaction(ledger: SandboxControl, tx_hash: str) -> dict[str, Any]:
    reply = ledger.http.get(f"{ledger.horizon_url}/transactions/{tx_hash}", timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def book(api: Api, user: dict[str, Any]) -> tuple[Decimal, Decimal]:
    balance = await api.balance(user["id"])
    return Decimal(balance["available"]), Decimal(balance["reserved"])


async def check_money(case: Case, api: Api, ledger: SandboxControl) -> None:
    """Book and ledger agree to the stroop with where the flow left the money."""
    flow, refused = case.target.flow, case.refused_outright
    if flow == "activate":
        assert usdc(ledger, case.keys["new"]) == 0  # the trustline exists, nothing else moved
        assert await book(api, case.users["new"]) == (0, 0)
        return
    if flow == "withdraw":
        assert usdc(ledger, case.outside["publicKey"]) == Decimal("20")
        assert usdc(ledger, case.keys["user"]) == Decimal("10")
        assert await book(api, case.users["user"]) == (Decimal("10"), 0)
        return
    order = case.order
    assert order is not None
    buyer, seller = case.users["buyer"], case.users["seller"]
    contract = (order.get("escrow") or {}).get("trustlessContractId")
    if flow == "create" or (flow == "fund" and refused):  # the reservation is still in the book
        assert usdc(ledger, case.keys["buyer"]) == WALLET
        assert await book(api, buyer) == (WALLET - AMOUNT, AMOUNT)
        if contract:
            assert contract_balance(ledger, contract) == 0
        return
    if flow == "fund" or refused:  # in the contract
        assert usdc(ledger, case.keys["buyer"]) == WALLET - AMOUNT
        assert await book(api, buyer) == (WALLET - AMOUNT, 0)
        assert contract_balance(ledger, contract) == AMOUNT
        assert usdc(ledger, case.keys["seller"]) == 0
        return
    assert contract_balance(ledger, contract) == 0
    if flow == "release":
        assert usdc(ledger, case.keys["seller"]) == NET
        assert await book(api, seller) == (NET, 0)
        assert usdc(ledger, case.keys["buyer"]) == WALLET - AMOUNT
        assert await book(api, buyer) == (WALLET - AMOUNT, 0)
    else:
        assert usdc(ledger, case.keys["buyer"]) == WALLET - AMOUNT + NET
        assert await book(api, buyer) == (WALLET - AMOUNT + NET, 0)
        assert usdc(ledger, case.keys["seller"]) == 0


async def check_states(case: Case, api: Api, engine: Engine, ledger: SandboxControl) -> None:
    """The resource ended where it should, with its events once."""
    flow, refused = case.target.flow, case.refused_outright
    if flow == "activate":
        wallet = await wallet_status(engine, case.users["new"]["id"])
        case.keys["new"] = wallet["public_key"]
        assert len(events(engine, wallet["id"], "wallet.activated")) == 1
        return
    if flow == "withdraw":
        steps(engine, case)
        withdrawal_id = case.subjects[0]
        withdrawal = (await api.get(f"/withdrawals/{withdrawal_id}")).data
        assert withdrawal["status"] == "WITHDRAWAL_COMPLETED", withdrawal
        assert len(events(engine, withdrawal_id, "withdrawal.completed")) == 1
        return
    assert case.order is not None
    order_id = case.order["id"]
    order = case.order = (await api.get(f"/orders/{order_id}")).data
    escrow = order.get("escrow") or {}
    expected = {("create", False): ("ESCROW_CREATING", "CREATED"), ("create", True): ("FUNDS_RESERVED", None),
                ("fund", False): ("IN_PROGRESS", "FUNDED"), ("fund", True): ("ESCROW_CREATING", "CREATED"),
                ("release", False): ("CLOSED", "RELEASED"), ("release", True): ("IN_PROGRESS", "FUNDED"),
                ("refund", False): ("CLOSED", "REFUNDED"), ("refund", True): ("IN_PROGRESS", "FUNDED")}
    assert (order["status"], escrow.get("status")) == expected[flow, refused], order
    failed = [(e["operation"], e["retrying"]) for e in events(engine, order_id, "order.operation_failed")]
    operation = {"create": "escrow_create", "fund": "escrow_fund"}.get(flow, flow)
    if refused:
        assert failed == [(operation, False)]
        with engine.connect() as conn:
            flow_error = conn.execute(text("SELECT flow_error FROM commands WHERE id = :c"),
                                      {"c": case.command_id}).scalar()
        assert flow_error is not None  # the request that started it sees the failure
    elif case.retried_after_refusal:
        assert failed == [(operation, True)]
    else:
        assert failed == []
    if flow == "create":
        (deployer,) = {row["source_account"] for row in target_rows(engine, case)}
        contracts = contracts_of(ledger, deployer, order_id)
        assert len(contracts) == (0 if refused else 1)
        for contract in contracts:  # whoever paid the deploy's fee, the platform resolves and takes the fee
            assert contract["signer"] == deployer
            assert contract["roles"]["disputeResolver"] == contract["roles"]["platformAddress"] == case.keys["platform"]
        assert len(events(engine, order_id, "order.escrow_creating")) == 1
    if not refused and flow in ("release", "refund"):
        assert order["finalStatus"] == ("RELEASED" if flow == "release" else "REFUNDED")
        assert len(events(engine, order_id, f"order.{'released' if flow == 'release' else 'refunded'}")) == 1
        assert len(events(engine, order_id, "order.closed")) == 1


def check_steps(case: Case, engine: Engine, ledger: SandboxControl) -> None:
    """Every step confirmed once with a transaction the ledger applied, but for the refused one."""
    rows = steps(engine, case)
    targets = [row for row in rows if row["kind"] == case.target.step]
    if case.fault == "contract_reject" and case.target.function:
        assert targets[0]["status"] == "FAILED", rows
        assert "function_trapped" in targets[0]["last_error"]
        if targets[0]["tx_hash"]:  # applied as a failure: fee and sequence number spent, nothing else
            assert transaction(ledger, targets[0]["tx_hash"])["successful"] is False
        rows = [row for row in rows if row["id"] != targets[0]["id"]]
        targets = targets[1:]
        assert len(targets) == (0 if case.refused_outright else 1), rows
    else:
        assert len(targets) == 1, rows
    assert all(row["status"] == "CONFIRMED" for row in rows), rows
    hashes = [row["tx_hash"] for row in rows if row["tx_hash"]]
    assert len(hashes) == len(set(hashes))
    for tx_hash in hashes:
        assert transaction(ledger, tx_hash)["successful"] is True


def check_fault_met(case: Case, engine: Engine, ledger: SandboxControl) -> None:
    """The fault really hit the step, and what the engine sent after it: nothing for an applied envelope
    whose answer it lost, the same envelope after an unapplied time-out or a drained fee balance, a new
    one after a taken sequence number, and one built again after a fee it could not pay."""
    landed = [row for row in target_rows(engine, case) if row["status"] == "CONFIRMED"]
    for name in ("fault", "submit", "friendbot"):
        if name in case.rules and case.fault != "indexer_lag":
            assert len(fired(ledger, case.rules[name])) == 1, (name, ledger.fault_log())
    if case.fault == "indexer_lag":
        # a deploy's contract id is derived from its signed envelope (DESIGN decision 17): no flow reads TW's
        # indexer on its way, so the lag hides nothing from it (creation used to poll T10 until it showed)
        assert fired(ledger, case.rules["fault"]) == []
        return
    if case.fault in ("status_429", "status_5xx") or (case.fault == "contract_reject" and case.target.function):
        return
    first = submitted_hash(fired(ledger, case.rules["fault"])[0])
    later = [submitted_hash(entry) for entry in fired(ledger, case.rules["after"])]
    (row,) = landed
    if case.fault in ("apply_then_drop", "apply_then_error"):
        assert later == []  # found in history by its hash
        assert (row["tx_hash"], row["attempts"]) == (first, 1)
    elif case.fault in ("timeout", "drain_xlm"):
        assert later[:1] == [first]
        assert row["tx_hash"] == first
        assert case.remedied or case.fault == "timeout"
    elif case.fault == "bad_seq":
        assert later
        assert first not in later
        assert row["tx_hash"] != first
    elif case.fault == "surge":  # built again (the same bytes when nothing else changed), landed after it
        assert later
        assert case.remedied
        assert row["attempts"] >= 1


@pytest.mark.parametrize("kind", list(TARGETS))
@pytest.mark.parametrize("fault", FAULTS)
async def test_each_fault_in_each_step_kind_completes_once_or_fails_visibly_with_the_money_in_place(
        fault: str, kind: str, api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    target = TARGETS[kind]
    case = await prepared(target, fault, api, engine, ledger)
    if target.function is not None:  # a Trustless Work envelope: sent as TRUSTLESS_SUBMIT_VIA says
        case.submit = tw_submissions(settings)
    try:
        inject(case, ledger)
        await start(case, api, engine)
        await drive(case, engine, ledger)
        check_fault_met(case, engine, ledger)
    finally:
        ledger.clear_faults()
    await check_states(case, api, engine, ledger)
    check_steps(case, engine, ledger)
    await check_money(case, api, ledger)
