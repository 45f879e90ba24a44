"""The USDC Stellar Asset Contract (SAC): `transfer` and `mint` called through `invoke_host_function`.

A contract transfer is how a Soroban wallet, or any account calling the SAC, moves USDC. Horizon lists such
an operation among the payments when its contract events include a SAC `transfer`, `mint`, `clawback` or
`burn` (stellar/go `services/horizon/internal/ingest/processors/operations_processor.go`, `IsPayment`), and
writes each event as one `asset_balance_changes` entry `{asset_type, asset_code, asset_issuer, type, from?,
to?, amount}` (same file, `createSACBalanceChangeEntry`; `protocols/horizon/operations/main.go`,
`AssetContractBalanceChange`; `from` is absent for a mint). Every other contract id goes to the escrow model.
"""

from __future__ import annotations

from typing import Any

from stellar_sdk import StrKey, scval
from stellar_sdk import xdr as sx

from scripts.sandbox.ledger import Scratch, fmt_amount
from scripts.sandbox.ops import ContractHost, Trap, asset_fields


class AssetContracts:
    """Routes calls to the USDC SAC here, every other call to `inner` (the escrow contracts)."""

    def __init__(self, sac_id: str, usdc: str, issuer: str, inner: ContractHost) -> None:
        self.sac_id, self.usdc, self.issuer, self.inner = sac_id, usdc, issuer, inner

    def invoke(
        self, scratch: Scratch, caller: str, contract_id: str, function: str, args: list[sx.SCVal]
    ) -> list[dict[str, Any]]:
        if contract_id != self.sac_id:
            return self.inner.invoke(scratch, caller, contract_id, function, args)
        try:
            if function == "transfer":
                source, dest, amount = _address(args[0]), _address(args[1]), scval.from_int128(args[2])
                _require_auth(caller, source)
                self._add(scratch, source, -amount)
                self._add(scratch, dest, amount)
                return [{**asset_fields(self.usdc), "type": "transfer", "from": source, "to": dest,
                         "amount": fmt_amount(amount)}]
            if function == "mint":
                dest, amount = _address(args[0]), scval.from_int128(args[1])
                _require_auth(caller, self.issuer)
                self._add(scratch, dest, amount)
                scratch.issue(self.usdc, amount)
                return [{**asset_fields(self.usdc), "type": "mint", "to": dest, "amount": fmt_amount(amount)}]
        except (ValueError, TypeError, IndexError) as exc:
            raise Trap(f"invalid arguments: {exc}") from exc
        raise Trap(f"unknown function {function}")

    def _add(self, scratch: Scratch, holder: str, delta: int) -> None:
        if delta == 0:
            raise Trap("zero amount")
        if StrKey.is_valid_contract(holder):
            contract = scratch.contract(holder)
            if contract is None or contract.balance + delta < 0:
                raise Trap("balance is not sufficient to spend")
            contract.balance += delta
            return
        if holder == self.issuer:  # the issuer holds no trustline: what it sends is minted, what it gets burned
            scratch.issue(self.usdc, -delta)
            return
        account = scratch.account(holder)
        line = account.trustlines.get(self.usdc) if account is not None else None
        if line is None:
            raise Trap(f"trustline entry is missing for account {holder}")
        if line.balance + delta < 0 or line.balance + delta > line.limit:
            raise Trap("balance is not sufficient to spend" if delta < 0 else "trustline limit exceeded")
        line.balance += delta


def _address(value: sx.SCVal) -> str:
    return scval.from_address(value).address


def _require_auth(caller: str, who: str) -> None:
    """Source-account authorization only: the envelope's source must be the address that authorises."""
    if caller != who:
        raise Trap(f"{who} did not authorize the call")
