"""The sandbox ledger: accounts, trustlines, escrow contracts, history, and conservation of money.

Amounts are integer stroops throughout. An asset is keyed `"native"` or `"CODE:ISSUER"`. Changes are
made on a `Scratch` overlay and committed whole, so a transaction is all-or-nothing; the commit checks
that the overlay created or destroyed no money beyond what it declares (issuance, friendbot, fees).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from stellar_sdk import Keypair

#: Base reserve, as on the public networks (0.5 XLM).
BASE_RESERVE = 5_000_000
#: Minimum per-operation fee.
BASE_FEE = 100
#: One unit (XLM or USDC) in stroops.
ONE = 10_000_000
#: The trustline limit the SDK uses by default.
MAX_LIMIT = 2**63 - 1
NATIVE = "native"


class ConservationError(RuntimeError):
    """Raised when an apply would create or destroy money it does not account for (a sandbox bug)."""


def keypair_from_seed(seed: str, purpose: str) -> Keypair:
    """Stable keys derived from `SANDBOX_SEED` (DESIGN decision 11)."""
    return Keypair.from_raw_ed25519_seed(hashlib.sha256(f"{seed}:{purpose}".encode()).digest())


def asset_issuer(asset: str) -> str | None:
    return None if asset == NATIVE else asset.split(":", 1)[1]


def fmt_amount(stroops: int) -> str:
    """Horizon's 7-decimal amount string."""
    sign = "-" if stroops < 0 else ""
    whole, frac = divmod(abs(stroops), ONE)
    return f"{sign}{whole}.{frac:07d}"


@dataclass
class Trustline:
    balance: int = 0
    limit: int = MAX_LIMIT


@dataclass
class AccountEntry:
    """A classic account; only the master key signs (no multisig in the sandbox)."""

    id: str
    xlm: int
    seq: int
    subentries: int = 0
    trustlines: dict[str, Trustline] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    last_modified_ledger: int = 0

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        state["trustlines"] = {asset: [line.balance, line.limit] for asset, line in self.trustlines.items()}
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AccountEntry:
        lines = {asset: Trustline(int(balance), int(limit)) for asset, (balance, limit) in state["trustlines"].items()}
        return cls(
            id=state["id"], xlm=int(state["xlm"]), seq=int(state["seq"]), subentries=int(state["subentries"]),
            trustlines=lines, data=dict(state["data"]), last_modified_ledger=int(state["last_modified_ledger"]),
        )

    @property
    def min_balance(self) -> int:
        return (2 + self.subentries) * BASE_RESERVE

    @property
    def spendable(self) -> int:
        return self.xlm - self.min_balance


@dataclass
class ContractEntry:
    """An escrow contract: its state (owned by the escrow model) and the token balance it holds."""

    id: str
    asset: str
    balance: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ContractEntry:
        return cls(state["id"], state["asset"], int(state["balance"]), state["state"], float(state["created_at"]))


class Scratch:
    """A copy-on-write overlay over the ledger; `Ledger.commit` applies it, dropping it rolls back."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.accounts: dict[str, AccountEntry | None] = {}
        self.contracts: dict[str, ContractEntry] = {}
        self.issued: dict[str, int] = {}
        self.xlm_created = 0
        self.fees = 0

    def account(self, account_id: str) -> AccountEntry | None:
        if account_id not in self.accounts:
            entry = self.ledger.accounts.get(account_id)
            self.accounts[account_id] = copy.deepcopy(entry) if entry is not None else None
        return self.accounts[account_id]

    def create_account(self, account_id: str, xlm: int) -> AccountEntry:
        entry = AccountEntry(id=account_id, xlm=xlm, seq=self.ledger.sequence << 32)
        self.accounts[account_id] = entry
        return entry

    def contract(self, contract_id: str) -> ContractEntry | None:
        if contract_id not in self.contracts:
            entry = self.ledger.contracts.get(contract_id)
            if entry is None:
                return None
            self.contracts[contract_id] = copy.deepcopy(entry)
        return self.contracts[contract_id]

    def add_contract(self, entry: ContractEntry) -> None:
        self.contracts[entry.id] = entry

    def issue(self, asset: str, stroops: int) -> None:
        """Declare issuance (positive) or burn (negative) of a credit asset by its issuer."""
        self.issued[asset] = self.issued.get(asset, 0) + stroops


class Ledger:
    """All money and history; callers hold `lock` for every change."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.accounts: dict[str, AccountEntry] = {}
        self.contracts: dict[str, ContractEntry] = {}
        self.issued: dict[str, int] = {}
        self.xlm_created = 0
        self.fees_burned = 0
        self.sequence = 1
        self.applied_count = 0

    def to_state(self) -> dict[str, Any]:
        return {
            "accounts": [account.to_state() for account in self.accounts.values()],
            "contracts": [contract.to_state() for contract in self.contracts.values()],
            "issued": dict(self.issued),
            "xlm_created": self.xlm_created,
            "fees_burned": self.fees_burned,
            "sequence": self.sequence,
            "applied_count": self.applied_count,
        }

    def from_state(self, state: dict[str, Any]) -> None:
        """Replace every holding with a snapshot's (the lock stays: it guards this object, not its contents)."""
        self.accounts = {a["id"]: AccountEntry.from_state(a) for a in state["accounts"]}
        self.contracts = {c["id"]: ContractEntry.from_state(c) for c in state["contracts"]}
        self.issued = {asset: int(amount) for asset, amount in state["issued"].items()}
        self.xlm_created, self.fees_burned = int(state["xlm_created"]), int(state["fees_burned"])
        self.sequence, self.applied_count = int(state["sequence"]), int(state["applied_count"])

    def commit(self, scratch: Scratch) -> None:
        """Apply an overlay after checking that it conserves every asset."""
        self._check_delta(scratch)
        for account_id, entry in scratch.accounts.items():
            if entry is not None:
                entry.last_modified_ledger = self.sequence + 1
                self.accounts[account_id] = entry
        self.contracts.update(scratch.contracts)
        for asset, delta in scratch.issued.items():
            self.issued[asset] = self.issued.get(asset, 0) + delta
        self.xlm_created += scratch.xlm_created
        self.fees_burned += scratch.fees

    def _check_delta(self, scratch: Scratch) -> None:
        deltas: dict[str, int] = {}
        for account_id, entry in scratch.accounts.items():
            before = self.accounts.get(account_id)
            _add_holdings(deltas, entry, +1)
            _add_holdings(deltas, before, -1)
        for contract_id, contract in scratch.contracts.items():
            before_c = self.contracts.get(contract_id)
            deltas[contract.asset] = deltas.get(contract.asset, 0) + contract.balance
            if before_c is not None:
                deltas[before_c.asset] = deltas.get(before_c.asset, 0) - before_c.balance
        expected = dict(scratch.issued)
        expected[NATIVE] = scratch.xlm_created - scratch.fees
        for asset in set(deltas) | set(expected):
            if deltas.get(asset, 0) != expected.get(asset, 0):
                raise ConservationError(
                    f"{asset}: holdings moved by {deltas.get(asset, 0)}, expected {expected.get(asset, 0)}"
                )

    def totals(self) -> dict[str, Any]:
        """Recount every holding from scratch and compare with issuance (shown at /_sandbox/state)."""
        held: dict[str, int] = {NATIVE: 0}
        for account in self.accounts.values():
            _add_holdings(held, account, +1)
        for contract in self.contracts.values():
            held[contract.asset] = held.get(contract.asset, 0) + contract.balance
        assets = {}
        for asset in sorted(set(held) | set(self.issued)):
            if asset == NATIVE:
                continue
            assets[asset] = {
                "held": fmt_amount(held.get(asset, 0)),
                "issued": fmt_amount(self.issued.get(asset, 0)),
                "balanced": held.get(asset, 0) == self.issued.get(asset, 0),
            }
        xlm_ok = held[NATIVE] + self.fees_burned == self.xlm_created
        return {
            "xlm": {
                "held": fmt_amount(held[NATIVE]),
                "fees_burned": fmt_amount(self.fees_burned),
                "created": fmt_amount(self.xlm_created),
                "balanced": xlm_ok,
            },
            "assets": assets,
            "balanced": xlm_ok and all(a["balanced"] for a in assets.values()),
        }


def _add_holdings(acc: dict[str, int], entry: AccountEntry | None, sign: int) -> None:
    if entry is None:
        return
    acc[NATIVE] = acc.get(NATIVE, 0) + sign * entry.xlm
    for asset, line in entry.trustlines.items():
        acc[asset] = acc.get(asset, 0) + sign * line.balance
