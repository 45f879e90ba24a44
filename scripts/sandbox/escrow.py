"""The single-release escrow contract model behind `invoke_host_function` (spec providers.md §1.5, §1.10).

Rules are checked when the network applies the call, as on chain: a refusal traps with TW's message and
the transaction fails (`function_trapped`), consuming its sequence and fee. Amounts are i128 stroops.
"""

from __future__ import annotations

import hashlib
from typing import Any

from stellar_sdk import StrKey, scval
from stellar_sdk import xdr as sx

from scripts.sandbox.clock import Clock
from scripts.sandbox.ledger import ContractEntry, Scratch, fmt_amount
from scripts.sandbox.ops import Trap, asset_fields

#: TW's fee on every payout, in basis points.
TW_FEE_BPS = 30
#: The factory entry point, as in Trustless-Work/trustlesswork-smart-contract-stellar
#: contracts/escrow/src/contract.rs: ``tw_new_single_release_escrow(signer, wasm_hash, salt, init_fn,
#: init_args, constructor_args)``; ``init_args`` holds the escrow (TW's indexer-go
#: ``ParseSingleReleaseEscrowArgs`` reads the same positions).
DEPLOY_FUNCTION = "tw_new_single_release_escrow"
INIT_FUNCTION = "initialize_escrow"
#: contract.rs ``EscrowError::EscrowPropertiesMismatch`` (10): ``fund_escrow`` compares the escrow it is
#: given with the stored one (core/validators/escrow.rs ``validate_fund_escrow_conditions``).
PROPERTIES_MISMATCH = "Error(Contract, #10): the escrow properties do not match the stored escrow"


def soroban_contract_id(network_id: bytes, deployer: str, salt: bytes) -> str:
    """Soroban's contract id for ``deployer.with_address(deployer, salt)``: sha256 of the XDR
    ``HashIDPreimage{ENVELOPE_TYPE_CONTRACT_ID, networkID, CONTRACT_ID_PREIMAGE_FROM_ADDRESS{address, salt}}``
    (stellar-xdr Stellar-transaction.x; the network id is sha256 of the passphrase)."""
    preimage = sx.HashIDPreimage(
        sx.EnvelopeType.ENVELOPE_TYPE_CONTRACT_ID,
        contract_id=sx.HashIDPreimageContractID(
            sx.Hash(network_id),
            sx.ContractIDPreimage(
                sx.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ADDRESS,
                from_address=sx.ContractIDPreimageFromAddress(
                    scval.to_address(deployer).address, sx.Uint256(salt)
                ),
            ),
        ),
    )
    return StrKey.encode_contract(hashlib.sha256(preimage.to_xdr_bytes()).digest())


def address(value: sx.SCVal) -> str:
    return scval.from_address(value).address


def string(value: sx.SCVal) -> str:
    return scval.from_string(value).decode()


def props(value: sx.SCVal) -> dict[str, sx.SCVal]:
    return {scval.from_symbol(k): v for k, v in scval.from_map(value).items()}


class EscrowContracts:
    """Contract host: the deployer contract plus one contract per escrow."""

    def __init__(self, clock: Clock, network_id: bytes, usdc: str, tw_fee_account: str, deployer_id: str):
        self.clock = clock
        self.network_id = network_id
        self.usdc = usdc
        self.tw_fee_account = tw_fee_account
        self.deployer_id = deployer_id
        self.rejections: list[str] = []

    def contract_id_for(self, salt: bytes) -> str:
        """The factory deploys with ``with_address(env.current_contract_address(), salt)`` (contract.rs),
        so the escrow's id derives from the factory contract and the salt, never from the signer."""
        return soroban_contract_id(self.network_id, self.deployer_id, salt)

    def invoke(
        self, scratch: Scratch, caller: str, contract_id: str, function: str, args: list[sx.SCVal]
    ) -> list[dict[str, Any]]:
        try:
            if contract_id == self.deployer_id and function == DEPLOY_FUNCTION:
                return self._deploy(scratch, caller, args)
            contract = scratch.contract(contract_id)
            if contract is None:
                raise Trap("Escrow not found")
            handler = _HANDLERS.get(function)
            if handler is None:
                raise Trap(f"unknown function {function}")
            changes = handler(self, scratch, caller, contract, args)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise Trap(f"invalid arguments: {exc}") from exc
        contract.state["updated_at"] = self.clock.time()
        return changes

    def _deploy(self, scratch: Scratch, caller: str, args: list[sx.SCVal]) -> list[dict[str, Any]]:
        deployer, salt = address(args[0]), scval.from_bytes(args[2])
        if len(args) != 6 or scval.from_symbol(args[3]) != INIT_FUNCTION:
            raise Trap("Error(WasmVm, InvalidAction): unexpected arguments to the factory")
        escrow = props(scval.from_vec(args[4])[0])
        _require_auth(caller, deployer)
        contract_id = self.contract_id_for(salt)
        if scratch.contract(contract_id) is not None:
            raise Trap("contract already exists")
        state = _parse_escrow(escrow, deployer)
        state["created_at"] = state["updated_at"] = self.clock.time()
        scratch.add_contract(ContractEntry(contract_id, self.usdc, 0, state, self.clock.time()))
        return []

    def transfer(self, scratch: Scratch, source: str, dest: str, amount: int) -> dict[str, Any]:
        """Move USDC between an account and a contract (the SAC transfer); traps when it cannot."""
        if amount <= 0:
            raise Trap("Amount cannot be zero")
        for holder, delta in ((source, -amount), (dest, amount)):
            if StrKey.is_valid_contract(holder):
                contract = scratch.contract(holder)
                if contract is None or contract.balance + delta < 0:
                    raise Trap("The escrow balance is not enough")
                contract.balance += delta
                continue
            account = scratch.account(holder)
            line = account.trustlines.get(self.usdc) if account is not None else None
            if line is None:
                raise Trap(f"trustline entry is missing for account {holder}")
            if line.balance + delta < 0:
                raise Trap("The signer has insufficient funds to fund the escrow")
            if line.balance + delta > line.limit:
                raise Trap(f"trustline limit exceeded for account {holder}")
            line.balance += delta
        return {
            **asset_fields(self.usdc),
            "type": "transfer",
            "from": source,
            "to": dest,
            "amount": fmt_amount(amount),
        }

    def _payout(
        self, scratch: Scratch, contract: ContractEntry, shares: dict[str, int]
    ) -> list[dict[str, Any]]:
        """Pay shares minus each share's part of the TW and platform fees (integer division, §1.10)."""
        state = contract.state
        total = sum(shares.values())
        tw_total, platform_total = total * TW_FEE_BPS // 10_000, total * state["platform_fee_bps"] // 10_000
        changes: list[dict[str, Any]] = []
        tw_paid = platform_paid = 0
        for receiver, share in shares.items():
            tw_part, platform_part = share * tw_total // total, share * platform_total // total
            tw_paid, platform_paid = tw_paid + tw_part, platform_paid + platform_part
            net = share - tw_part - platform_part
            if net > 0:
                changes.append(self.transfer(scratch, contract.id, receiver, net))
        if tw_paid:
            changes.append(self.transfer(scratch, contract.id, self.tw_fee_account, tw_paid))
        if platform_paid:
            changes.append(
                self.transfer(scratch, contract.id, state["roles"]["platformAddress"], platform_paid)
            )
        return changes


def _require_auth(caller: str, address_: str) -> None:
    """The envelope's source signs for its own address only (source-account credentials)."""
    if caller != address_:
        raise Trap(f"Error(Auth, InvalidAction): {address_} did not authorize the call")


def _parse_escrow(escrow: dict[str, sx.SCVal], deployer: str) -> dict[str, Any]:
    roles = {k: address(v) for k, v in props(escrow["roles"]).items()}
    milestones = [
        {
            "description": string(props(m)["description"]),
            "status": "pending",
            "evidence": "",
            "approved": False,
        }
        for m in scval.from_vec(escrow["milestones"])
    ]
    amount, fee = scval.from_int128(escrow["amount"]), scval.from_uint32(escrow["platform_fee"])
    if amount <= 0:
        raise Trap("Amount cannot be zero")
    if fee > 9_900:
        raise Trap("The platform fee cannot exceed 99%")
    if not 1 <= len(milestones) <= 50:
        raise Trap("There must be between 1 and 50 milestones")
    trustline = props(escrow["trustline"])
    return {
        "signer": deployer,
        "engagement_id": string(escrow["engagement_id"]),
        "title": string(escrow["title"]),
        "description": string(escrow["description"]),
        "roles": roles,
        "amount": amount,
        "platform_fee_bps": fee,
        "milestones": milestones,
        "flags": {"disputed": False, "released": False, "resolved": False},
        "trustline": {"address": address(trustline["address"]), "symbol": string(trustline["symbol"])},
    }


def _milestone(state: dict[str, Any], index: sx.SCVal) -> dict[str, Any]:
    raw = string(index)
    if not raw.isdigit() or int(raw) >= len(state["milestones"]):
        raise Trap("Invalid milestone index")
    return state["milestones"][int(raw)]


def _fund(host: EscrowContracts, scratch: Scratch, caller: str, c: ContractEntry, args: list) -> list:
    """``fund_escrow(signer, expected_escrow, amount)`` (contract.rs): the caller's copy of the escrow
    must equal the stored one, so TW can build it only from its own record of the escrow."""
    signer, expected, amount = address(args[0]), args[1], scval.from_int128(args[2])
    _require_auth(caller, signer)
    if amount <= 0:
        raise Trap("Amount cannot be zero")
    if expected.to_xdr_bytes() != escrow_scval(c.state).to_xdr_bytes():
        raise Trap(PROPERTIES_MISMATCH)
    return [host.transfer(scratch, signer, c.id, amount)]


def _change_status(
    host: EscrowContracts, scratch: Scratch, caller: str, c: ContractEntry, args: list
) -> list:
    provider = address(args[3])
    _require_auth(caller, provider)
    if provider != c.state["roles"]["serviceProvider"]:
        raise Trap("Only the service provider can change milestone status")
    milestone = _milestone(c.state, args[0])
    milestone["status"], milestone["evidence"] = string(args[1]), string(args[2])
    return []


def _approve(host: EscrowContracts, scratch: Scratch, caller: str, c: ContractEntry, args: list) -> list:
    approver = address(args[1])
    _require_auth(caller, approver)
    if approver != c.state["roles"]["approver"]:
        raise Trap("Only the approver can change milestone flag")
    milestone = _milestone(c.state, args[0])
    if milestone["approved"]:
        raise Trap("You cannot approve a milestone that has already been approved previously")
    milestone["approved"] = True
    return []


def _release(host: EscrowContracts, scratch: Scratch, caller: str, c: ContractEntry, args: list) -> list:
    signer, state, flags = address(args[0]), c.state, c.state["flags"]
    _require_auth(caller, signer)
    if flags["released"]:
        raise Trap("The escrow funds have been released")
    if flags["resolved"]:
        raise Trap("This escrow is already resolved")
    if signer != state["roles"]["releaseSigner"]:
        raise Trap("Only the release signer can release the escrow earnings")
    if not all(m["approved"] for m in state["milestones"]):
        raise Trap("The escrow must be completed to release earnings")
    if flags["disputed"]:
        raise Trap("Escrow has been opened for dispute resolution")
    if c.balance < state["amount"]:
        raise Trap("The escrow balance must be equal to the amount of earnings defined for the escrow")
    flags["released"] = True
    return host._payout(scratch, c, {state["roles"]["receiver"]: state["amount"]})


def _dispute(host: EscrowContracts, scratch: Scratch, caller: str, c: ContractEntry, args: list) -> list:
    signer, state, flags = address(args[0]), c.state, c.state["flags"]
    _require_auth(caller, signer)
    if flags["disputed"]:
        raise Trap("Escrow already in dispute")
    if signer == state["roles"]["disputeResolver"]:
        raise Trap("The dispute resolver cannot dispute the escrow")
    if signer not in state["roles"].values():
        raise Trap("You are not authorized to change the dispute flag")
    if flags["released"] or flags["resolved"]:
        raise Trap(
            "The escrow funds have been released" if flags["released"] else "This escrow is already resolved"
        )
    flags["disputed"] = True
    return []


def _resolve(host: EscrowContracts, scratch: Scratch, caller: str, c: ContractEntry, args: list) -> list:
    resolver, state, flags = address(args[0]), c.state, c.state["flags"]
    _require_auth(caller, resolver)
    if resolver != state["roles"]["disputeResolver"]:
        raise Trap("Only the dispute resolver can execute this function")
    if not flags["disputed"] or flags["resolved"]:
        raise Trap("Escrow not in dispute" if not flags["resolved"] else "This escrow is already resolved")
    shares = {address(k): scval.from_int128(v) for k, v in scval.from_map(args[1]).items()}
    if any(v <= 0 for v in shares.values()):
        raise Trap("Amount cannot be zero")
    if sum(shares.values()) != c.balance or not shares:
        raise Trap(
            "The sum of distributions must equal the current escrow balance when resolving an escrow dispute"
        )
    flags["resolved"] = True
    return host._payout(scratch, c, shares)


_HANDLERS = {
    "fund_escrow": _fund,
    "change_milestone_status": _change_status,
    "approve_milestone": _approve,
    "release_funds": _release,
    "dispute_escrow": _dispute,
    "resolve_dispute": _resolve,
}


def _smap(entries: dict[str, sx.SCVal]) -> sx.SCVal:
    return scval.to_map({scval.to_symbol(k): entries[k] for k in sorted(entries)})


def escrow_scval(state: dict[str, Any]) -> sx.SCVal:
    """The contract's ``Escrow`` struct as an ScVal map (storage/types.rs), for ``fund_escrow``'s
    ``expected_escrow``; built from a state dict (the ledger's or TW's stored copy)."""
    flags = state["flags"]
    return _smap(
        {
            "amount": scval.to_int128(state["amount"]),
            "description": scval.to_string(state["description"]),
            "engagement_id": scval.to_string(state["engagement_id"]),
            "flags": _smap({k: scval.to_bool(bool(flags[k])) for k in ("disputed", "released", "resolved")}),
            "milestones": scval.to_vec(
                [
                    _smap(
                        {
                            "approved": scval.to_bool(bool(m["approved"])),
                            "description": scval.to_string(m["description"]),
                            "evidence": scval.to_string(m["evidence"]),
                            "status": scval.to_string(m["status"]),
                        }
                    )
                    for m in state["milestones"]
                ]
            ),
            "platform_fee": scval.to_uint32(state["platform_fee_bps"]),
            "roles": _smap({k: scval.to_address(v) for k, v in state["roles"].items()}),
            "title": scval.to_string(state["title"]),
            "trustline": _smap(
                {
                    "address": scval.to_address(state["trustline"]["address"]),
                    "symbol": scval.to_string(state["trustline"]["symbol"]),
                }
            ),
        }
    )


def escrow_json(contract: ContractEntry, balance_at: int | None = None) -> dict[str, Any]:
    """TW's escrow object (T9); amounts in USDC units, fee as a percentage."""
    s = contract.state
    balance = contract.balance if balance_at is None else balance_at

    def stamp(t: float) -> dict[str, int]:
        return {"_seconds": int(t), "_nanoseconds": int((t % 1) * 1e9)}

    return {
        "contractId": contract.id,
        "signer": s["signer"],
        "engagementId": s["engagement_id"],
        "title": s["title"],
        "description": s["description"],
        "roles": dict(s["roles"]),
        "amount": _units(s["amount"]),
        "platformFee": s["platform_fee_bps"] / 100,
        "balance": _units(balance),
        "milestones": [dict(m) for m in s["milestones"]],
        "flags": dict(s["flags"]),
        "trustline": dict(s["trustline"]),
        "receiverMemo": 0,
        "isActive": True,
        "user": s["signer"],
        "type": "single-release",
        "createdAt": stamp(s["created_at"]),
        "updatedAt": stamp(s["updated_at"]),
    }


def _units(stroops: int) -> float | int:
    whole, frac = divmod(stroops, 10_000_000)
    return whole if not frac else float(fmt_amount(stroops))
