"""Which ledger records are deposits (providers.md §2.12), on the record shapes Horizon serves."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.payments import deposits

USDC = deposits.Usdc("USDC", "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5")
WALLET = "GCIUANQ3MRCXNDSL4AIKCZ445GK7OSBD5MK7AMPJQLMTKC36SG4HO6Y6"
OTHER = "GDOAG6KWG42QBULQNK6R7XRK4NVW7Q4RVZ3TEFMJ5UBFCRN2L45VX4M7"


def ours(account: str) -> tuple[str, str] | None:
    return ("wal_1", "usr_1") if account == WALLET else None


def payment(**overrides: Any) -> dict[str, Any]:
    record = {"id": "25769807873", "paging_token": "25769807873", "type": "payment", "transaction_successful": True,
              "transaction_hash": "ab" * 32, "asset_type": "credit_alphanum4", "asset_code": "USDC",
              "asset_issuer": USDC.issuer, "from": OTHER, "to": WALLET, "amount": "12.3456789"}
    return {**record, **overrides}


ESCROW = "CESCROWOFOURS"


def contract(frm: str = "CSMARTWALLET", to: str | None = WALLET, **change: Any) -> dict[str, Any]:
    """An ``invoke_host_function`` payment record as Horizon writes a SAC transfer."""
    entry = {"asset_type": "credit_alphanum4", "asset_code": "USDC", "asset_issuer": USDC.issuer,
             "type": "transfer", "from": frm, "to": to, "amount": "80.0000000", **change}
    return {"id": "25769807873", "paging_token": "25769807873", "type": "invoke_host_function",
            "transaction_successful": True, "transaction_hash": "ef" * 32, "asset_balance_changes": [entry]}


def test_a_usdc_payment_into_a_wallet_is_a_deposit_keyed_by_its_operation() -> None:
    row = deposits.classify(payment(), USDC, ours)
    assert row is not None
    assert row["operation_id"] == f"{'ab' * 32}:0"  # hash and index: a TOID repeats after a network reset
    assert row["paging_token"] == "25769807873"
    assert row["op_index"] == 0
    assert str(row["amount"]) == "12.3456789"
    assert (row["wallet_id"], row["user_id"]) == ("wal_1", "usr_1")


@pytest.mark.parametrize("kind", ["path_payment_strict_send", "path_payment_strict_receive"])
def test_path_payments_that_deliver_usdc_count_with_the_amount_received(kind: str) -> None:
    row = deposits.classify(payment(type=kind, source_amount="99.0000000"), USDC, ours)
    assert row is not None
    assert str(row["amount"]) == "12.3456789"


@pytest.mark.parametrize(("name", "record"), [
    ("USDC of another issuer", payment(asset_issuer=OTHER)),
    ("another asset", payment(asset_code="EURC")),
    ("XLM", payment(asset_type="native", asset_code=None, asset_issuer=None)),
    ("a failed transaction", payment(transaction_successful=False)),
    ("the wallet paying itself", payment(**{"from": WALLET})),
    ("a payment to someone else", payment(to=OTHER)),
    ("an account creation", {"id": "1", "type": "create_account", "account": WALLET, "funder": OTHER,
                             "starting_balance": "100.0000000", "transaction_hash": "cd" * 32}),
    ("a payout from one of our escrows", contract(frm=ESCROW)),
    ("a contract transfer of another asset", contract(asset_code="EURC")),
    ("a contract transfer out of the wallet", contract(frm=WALLET, to=OTHER)),
    ("a burn", contract(type="burn", to=None)),
])
def test_records_that_are_not_usdc_deposits_into_a_wallet_are_ignored(name: str, record: dict[str, Any]) -> None:
    assert deposits.classify(record, USDC, ours, is_escrow=lambda a: a == ESCROW) is None, name


def test_usdc_a_contract_moves_into_a_wallet_from_anything_but_our_escrow_is_a_deposit_per_change() -> None:
    """DESIGN decision 23: keyed by transaction hash, operation index and change index."""
    record = contract()
    record["asset_balance_changes"].append({**record["asset_balance_changes"][0], "amount": "1.0000000"})
    rows = deposits.deposit_rows(record, USDC, ours, is_escrow=lambda a: a == ESCROW)
    assert [(r["operation_id"], str(r["amount"])) for r in rows] == [
        (f"{'ef' * 32}:0:0", "80.0000000"), (f"{'ef' * 32}:0:1", "1.0000000")]
    assert rows[0]["from_account"] == "CSMARTWALLET"
