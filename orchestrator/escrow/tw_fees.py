"""What a TW payout (release or dispute resolution) actually paid each party (spec providers.md §1.10).

The book credits what the ledger shows (DESIGN decision 1, net crediting), read from the confirmed
transaction's ``invoke_host_function`` record, and cross-checks it against the contract's fee formula:
both fees in stroops with integer division, charged to each share in proportion. Pure, no network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator.amounts import QUANTUM, quantize

#: TW's own fee on every payout, in basis points (0.30 %).
TW_FEE_BPS = 30
#: Stroops per USDC unit.
STROOPS = 10_000_000


@dataclass(frozen=True)
class PartyPayout:
    """One distribution: what it was worth, what each fee took from it, what reached the wallet."""

    address: str
    gross: Decimal
    trustless_fee: Decimal
    platform_fee: Decimal
    net: Decimal


@dataclass(frozen=True)
class Payout:
    """A whole payout; ``discrepancies`` is empty when the ledger matches the formula to the stroop."""

    parties: tuple[PartyPayout, ...]
    trustless_fee: Decimal
    platform_fee: Decimal
    discrepancies: tuple[str, ...] = ()

    @property
    def gross(self) -> Decimal:
        return sum((p.gross for p in self.parties), Decimal(0))

    @property
    def consistent(self) -> bool:
        return not self.discrepancies

    def party(self, address: str) -> PartyPayout:
        """The share of one address (KeyError when it had none)."""
        for party in self.parties:
            if party.address == address:
                return party
        raise KeyError(address)


def usdc_received(records: Iterable[Mapping[str, Any]], *, asset_code: str, asset_issuer: str,
                  contract_id: str | None = None) -> dict[str, Decimal]:
    """USDC each address received through the transaction's contract calls (optionally from one contract)."""
    received: dict[str, Decimal] = {}
    for record in records:
        if record.get("type") != "invoke_host_function":
            continue
        for change in record.get("asset_balance_changes") or ():
            if (change.get("type") != "transfer" or change.get("asset_code") != asset_code
                    or change.get("asset_issuer") != asset_issuer):
                continue
            if contract_id is not None and change.get("from") != contract_id:
                continue
            amount = quantize(Decimal(change["amount"]))
            received[change["to"]] = received.get(change["to"], Decimal(0)) + amount
    return received


def expected_payout(shares: Mapping[str, Decimal], *, platform_fee_percent: Decimal,
                    tw_fee_bps: int = TW_FEE_BPS) -> Payout:
    """The contract's formula: fees on the total, each share charged ``floor(share * fee / total)``."""
    units = {address: _stroops(amount) for address, amount in shares.items()}
    total = sum(units.values())
    if total <= 0 or any(v <= 0 for v in units.values()):
        raise ValueError("every share must be positive")
    tw_total, platform_total = total * tw_fee_bps // 10_000, total * _bps(platform_fee_percent) // 10_000
    parties = []
    for address, share in units.items():
        tw_part, platform_part = share * tw_total // total, share * platform_total // total
        parties.append(PartyPayout(address, _units(share), _units(tw_part), _units(platform_part),
                                   _units(share - tw_part - platform_part)))
    return Payout(tuple(parties), sum((p.trustless_fee for p in parties), Decimal(0)),
                  sum((p.platform_fee for p in parties), Decimal(0)))


def payout_from_ledger(records: Iterable[Mapping[str, Any]], *, shares: Mapping[str, Decimal],
                       platform_fee_percent: Decimal, tw_fee_account: str, platform_address: str,
                       asset_code: str, asset_issuer: str, contract_id: str | None = None,
                       tw_fee_bps: int = TW_FEE_BPS) -> Payout:
    """Nets and fee totals as the ledger shows them, with every difference from the formula listed.

    ``shares`` are the gross distributions (release: ``{receiver: amount}``). Parties are credited
    their ``net`` (what reached the wallet), whatever the formula says; a discrepancy is for an alert.
    """
    if platform_address in shares or tw_fee_account in shares:
        raise ValueError("the platform and TW fee addresses cannot be parties: their fees would mix with a share")
    received = usdc_received(records, asset_code=asset_code, asset_issuer=asset_issuer, contract_id=contract_id)
    expected = expected_payout(shares, platform_fee_percent=platform_fee_percent, tw_fee_bps=tw_fee_bps)
    problems: list[str] = []
    parties = []
    for party in expected.parties:
        net = received.pop(party.address, Decimal(0)).quantize(QUANTUM)
        if net != party.net:
            problems.append(f"{party.address} received {net}, the formula says {party.net}")
        parties.append(PartyPayout(party.address, party.gross, party.trustless_fee, party.platform_fee, net))
    tw_fee = received.pop(tw_fee_account, Decimal(0)).quantize(QUANTUM)
    platform_fee = received.pop(platform_address, Decimal(0)).quantize(QUANTUM)
    if tw_fee != expected.trustless_fee:
        problems.append(f"TW fee account received {tw_fee}, the formula says {expected.trustless_fee}")
    if platform_fee != expected.platform_fee:
        problems.append(f"platform received {platform_fee}, the formula says {expected.platform_fee}")
    problems.extend(f"unexpected transfer of {amount} to {address}" for address, amount in received.items())
    return Payout(tuple(parties), tw_fee, platform_fee, tuple(problems))


def _bps(percent: Decimal) -> int:
    bps = Decimal(percent) * 100
    if bps != bps.to_integral_value() or not 0 <= bps <= 9_900:
        raise ValueError(f"platform fee {percent}% is not a percentage with at most two decimals in 0..99")
    return int(bps)


def _stroops(amount: Decimal) -> int:
    return int(quantize(Decimal(amount)) * STROOPS)


def _units(stroops: int) -> Decimal:
    return (Decimal(stroops) / STROOPS).quantize(QUANTUM)
