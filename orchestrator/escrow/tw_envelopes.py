"""The checks before a custodial key signs an envelope Trustless Work built (spec providers.md §1.7).

TW builds, we sign with users' keys: an envelope that pays someone else, calls another contract or
bids an absurd fee must be refused before any signature exists. Pure XDR inspection, no network.

A deploy's contract id is derived here too, offline, from the signed envelope (DESIGN decision 17): TW's
factory ``tw_new_single_release_escrow(signer, wasm_hash, salt, init_fn, init_args, constructor_args)``
deploys with ``env.deployer().with_address(env.current_contract_address(), salt)``
(Trustless-Work/trustlesswork-smart-contract-stellar, contracts/escrow/src/contract.rs), so the new
contract's id is Soroban's ``HashIDPreimage`` ``ENVELOPE_TYPE_CONTRACT_ID`` over the network id
(sha256 of the passphrase) and a ``CONTRACT_ID_PREIMAGE_FROM_ADDRESS`` of the invoked factory contract and
that salt (stellar-xdr Stellar-transaction.x; rs-soroban-env's contract-id derivation). The id must also
be in the envelope's read-write footprint, where the network will create its instance entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stellar_sdk import Address, InvokeHostFunction, StrKey, TransactionEnvelope
from stellar_sdk import xdr as stellar_xdr
from stellar_sdk.exceptions import SdkError

from orchestrator.errors import ProviderFailure

#: TW's deploy entry point (§1.7); the deployer contract's id is TW's, so only the name is checked.
DEPLOY_FUNCTIONS = frozenset({"tw_new_single_release_escrow"})
#: Escrow contract functions seen in TW's sources (§1.7); versions differ, so callers may pass their own.
ESCROW_FUNCTIONS = frozenset({"fund_escrow", "change_milestone_status", "approve_milestone", "approve_milestones",
                              "release_funds", "dispute_escrow", "resolve_dispute"})
#: The position of ``salt`` among the factory's arguments (contract.rs above; TW's indexer,
#: Trustless-Work/trustlesswork-indexer-go ``ParseSingleReleaseEscrowArgs``, reads it at the same place).
DEPLOY_SALT_ARG = 2
#: ``TRUSTLESS_MAX_FEE_STROOPS`` default: 2 XLM per transaction.
MAX_FEE_STROOPS = 20_000_000

_INVOKE = stellar_xdr.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT
_CONTRACT_FN = stellar_xdr.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN


class RefusedEnvelope(ProviderFailure):
    """Raised when a TW-built envelope fails a §1.7 check; nothing may be signed or submitted."""

    def __init__(self, reason: str, *, permanent: bool = True) -> None:
        self.reason = reason
        #: TW would build the same envelope again, so the step fails at once (a stale sequence is the
        #: exception: the account moved between building and checking, and a new build is fine).
        self.permanent = permanent
        super().__init__(f"Refused to sign a Trustless Work envelope: {reason}",
                         details={"provider": "trustless_work", "reason": reason})


@dataclass(frozen=True)
class CheckedEnvelope:
    """What the chain step stores with the signed envelope (§1.7 last paragraph)."""

    hash: str
    source: str
    sequence: int
    max_time: int
    fee: int
    function: str
    contract_id: str
    #: The contract a deploy creates (derived offline, checked against the footprint); None otherwise.
    deployed_contract_id: str | None = None
    #: The envelope as parsed for the checks, for the caller to sign: parsing Soroban XDR is the chain
    #: worker's largest single cost (py-spy, issue 16), so it is done once.
    envelope: TransactionEnvelope | None = field(default=None, compare=False, repr=False)

    @property
    def expires_at(self) -> datetime | None:
        """``max_time`` as an aware datetime (None for an unbounded envelope, which never expires and is
        dead only once its source's sequence has passed it: DESIGN decision 22)."""
        return datetime.fromtimestamp(self.max_time, UTC) if self.max_time else None


def check_envelope(unsigned_xdr: str, *, passphrase: str, signer: str, source_sequence: int,
                   contract_id: str | None, functions: Collection[str] | None = None,
                   max_fee: int = MAX_FEE_STROOPS, allow_unbounded: bool = True) -> CheckedEnvelope:
    """Run every §1.7 check; ``contract_id`` None means a deploy (T1), else the escrow called by T2 to T7.

    ``source_sequence`` is the signer's sequence as Horizon reports it now. ``allow_unbounded``
    (``TRUSTLESS_ACCEPT_UNBOUNDED``) accepts ``max_time == 0``: nothing public shows TW's time bounds
    (providers.md §5), and such an envelope is proven dead by its sequence number alone (decision 22).
    """
    envelope = _parse(unsigned_xdr, passphrase)
    tx = envelope.transaction
    if tx.source.account_id != signer:
        raise RefusedEnvelope(f"source account {tx.source.account_id} is not the expected signer {signer}")
    if len(tx.operations) != 1:
        raise RefusedEnvelope(f"expected exactly one operation, found {len(tx.operations)}")
    op = tx.operations[0]
    if op.source is not None and op.source.account_id != signer:
        raise RefusedEnvelope(f"the operation overrides its source with {op.source.account_id}")
    invoke, called, function = _invoked(op)
    allowed = functions if functions is not None else (DEPLOY_FUNCTIONS if contract_id is None else ESCROW_FUNCTIONS)
    if function not in allowed:
        raise RefusedEnvelope(f"function {function!r} is not in the allow-list")
    if contract_id is not None and called != contract_id:
        raise RefusedEnvelope(f"the call targets contract {called}, not the escrow {contract_id}")
    _check_auth(invoke, called, function)
    if tx.fee > max_fee:
        raise RefusedEnvelope(f"fee {tx.fee} stroops exceeds the cap of {max_fee}")
    bounds = tx.preconditions.time_bounds if tx.preconditions is not None else None
    max_time = bounds.max_time if bounds is not None else 0
    if not max_time and not allow_unbounded:
        raise RefusedEnvelope("the envelope has no upper time bound (TRUSTLESS_ACCEPT_UNBOUNDED is off)")
    if tx.sequence <= source_sequence:
        raise RefusedEnvelope(f"sequence {tx.sequence} is not above the account's current {source_sequence}",
                              permanent=False)
    deployed = deployed_contract_id(envelope, passphrase) if function in DEPLOY_FUNCTIONS else None
    return CheckedEnvelope(hash=envelope.hash_hex(), source=signer, sequence=tx.sequence, max_time=max_time,
                           fee=tx.fee, function=function, contract_id=called, deployed_contract_id=deployed,
                           envelope=envelope)


def contract_id_from_address(passphrase: str, address: str, salt: bytes) -> str:
    """Soroban's id of a contract deployed by ``address`` with ``salt``: sha256 of the XDR
    ``HashIDPreimage{ENVELOPE_TYPE_CONTRACT_ID, networkID, CONTRACT_ID_PREIMAGE_FROM_ADDRESS{address, salt}}``."""
    if len(salt) != 32:
        raise RefusedEnvelope(f"the deploy salt is {len(salt)} bytes, not 32")
    preimage = stellar_xdr.HashIDPreimage(
        stellar_xdr.EnvelopeType.ENVELOPE_TYPE_CONTRACT_ID,
        contract_id=stellar_xdr.HashIDPreimageContractID(
            stellar_xdr.Hash(hashlib.sha256(passphrase.encode()).digest()),
            stellar_xdr.ContractIDPreimage(
                stellar_xdr.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ADDRESS,
                from_address=stellar_xdr.ContractIDPreimageFromAddress(
                    Address(address).to_xdr_sc_address(), stellar_xdr.Uint256(salt)))))
    return StrKey.encode_contract(hashlib.sha256(preimage.to_xdr_bytes()).digest())


def deployed_contract_id(envelope: TransactionEnvelope | str, passphrase: str) -> str:
    """The contract a TW deploy envelope creates, derived offline and found in its read-write footprint."""
    if isinstance(envelope, str):
        envelope = TransactionEnvelope.from_xdr(envelope, passphrase)
    tx = envelope.transaction
    if len(tx.operations) != 1:
        raise RefusedEnvelope("a deploy has exactly one operation")
    _, factory, function = _invoked(tx.operations[0])
    if function not in DEPLOY_FUNCTIONS:
        raise RefusedEnvelope(f"{function!r} is not a deploy")
    op = tx.operations[0]
    assert isinstance(op, InvokeHostFunction)
    assert op.host_function.invoke_contract is not None
    args = op.host_function.invoke_contract.args
    salt = args[DEPLOY_SALT_ARG].bytes if len(args) > DEPLOY_SALT_ARG else None
    if salt is None:
        raise RefusedEnvelope("the deploy call carries no salt argument")
    derived = contract_id_from_address(passphrase, factory, salt.sc_bytes)
    if derived not in _read_write_contracts(tx.soroban_data):
        raise RefusedEnvelope(f"the derived contract {derived} is not in the envelope's read-write footprint")
    return derived


def _read_write_contracts(data: stellar_xdr.SorobanTransactionData | None) -> set[str]:
    """Contract ids whose data the transaction may write (the new instance entry is among them)."""
    if data is None:
        return set()
    return {Address.from_xdr_sc_address(key.contract_data.contract).address
            for key in data.resources.footprint.read_write if key.contract_data is not None}


def _parse(unsigned_xdr: str, passphrase: str) -> TransactionEnvelope:
    try:
        raw = stellar_xdr.TransactionEnvelope.from_xdr(unsigned_xdr)
    except (ValueError, TypeError, EOFError, SdkError) as error:
        raise RefusedEnvelope(f"not a transaction envelope ({type(error).__name__})") from error
    if raw.type != stellar_xdr.EnvelopeType.ENVELOPE_TYPE_TX:
        raise RefusedEnvelope(f"not a plain transaction envelope ({raw.type.name})")
    return TransactionEnvelope.from_xdr_object(raw, passphrase)  # the XDR decoded once, not twice


def _invoked(op: object) -> tuple[InvokeHostFunction, str, str]:
    """The operation as a contract call with its contract id and function name, or refuse."""
    if not isinstance(op, InvokeHostFunction):
        raise RefusedEnvelope(f"the operation is {type(op).__name__}, not invoke host function")
    if op.host_function.type != _INVOKE or op.host_function.invoke_contract is None:
        raise RefusedEnvelope(f"the host function is {op.host_function.type.name}, not a contract call")
    return (op, *_contract_call(op.host_function.invoke_contract))


def _contract_call(call: stellar_xdr.InvokeContractArgs) -> tuple[str, str]:
    address = Address.from_xdr_sc_address(call.contract_address).address
    return address, call.function_name.sc_symbol.decode()


def _check_auth(op: InvokeHostFunction, contract_id: str, function: str) -> None:
    """Our signature also authorises the op's auth entries: each must be rooted at the very call we checked.

    Sub-invocations (the USDC transfer inside ``fund_escrow``) are the contract's own business.
    """
    for entry in op.auth:
        root = entry.root_invocation.function
        if root.type != _CONTRACT_FN or root.contract_fn is None:
            raise RefusedEnvelope(f"an authorisation entry authorises {root.type.name}")
        if _contract_call(root.contract_fn) != (contract_id, function):
            raise RefusedEnvelope("an authorisation entry is rooted at another contract call")
