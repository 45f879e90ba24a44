"""``scripts/bench.py``'s table: the AirTM-mode lifecycles are divided by the crypto ones of the same run (issue
15), and the ``lifecycle`` part measures lifecycles only while money in and out is a part of its own."""

from __future__ import annotations

from scripts.bench import __main__ as bench


def test_airtm_lifecycles_are_compared_with_the_crypto_ones_of_the_same_run() -> None:
    args = bench.parse_args(["--quick"])
    figures = [bench.Figure("escrow lifecycles (create .. release/refund)", 40.0, "lifecycles/s"),
               bench.Figure("AirTM-mode escrow lifecycles (treasury-funded)", 36.0, "lifecycles/s")]
    bench.attach_limits(figures, bench.Ceilings(ledger_rate=80.0), args)
    crypto, airtm = figures
    assert (crypto.limit, crypto.ratio) == (80.0, 0.5)
    assert airtm.limit_name == "crypto lifecycles, same run"
    assert (airtm.limit, airtm.ratio) == (40.0, 0.9)
    assert "0.8..1.25" in airtm.note


def test_the_lifecycle_part_is_lifecycles_only_and_money_is_its_own_part() -> None:
    args = bench.parse_args(["--quick", "--only", "lifecycle,money"])
    commands = bench.existing_commands(args, bench.Ceilings())
    lifecycle, money = commands["lifecycle"], commands["money"]
    for flag in ("--withdrawals", "--topups", "--airtm-withdrawals"):
        assert lifecycle[lifecycle.index(flag) + 1] == "0"
        assert int(money[money.index(flag) + 1]) > 0
    assert "--no-airtm" not in lifecycle
    assert money[money.index("--lifecycles") + 1] == "0"
