"""The simulated network: genesis accounts, the submit path shared by Horizon and TW, ledger closing.

Every state change goes through `Node.submit` under the ledger lock. In `instant` mode each transaction
closes its own ledger; in `interval` mode envelopes wait for the next close and submitters wait with
them (Horizon's synchronous submit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from stellar_sdk import Account, Asset, Keypair, StrKey, TransactionBuilder

from scripts.sandbox.clock import Clock
from scripts.sandbox.config import SandboxConfig
from scripts.sandbox.escrow import EscrowContracts
from scripts.sandbox.faults import FaultRule, Faults
from scripts.sandbox.history import History, LedgerHeader
from scripts.sandbox.ledger import NATIVE, ONE, ContractEntry, Ledger, Scratch, Trustline, keypair_from_seed
from scripts.sandbox.sac import AssetContracts
from scripts.sandbox.transactions import Decoded, Engine, Outcome, decode

#: XLM held by the friendbot account at genesis (the sandbox's whole XLM supply).
ROOT_XLM = 100_000_000_000 * ONE
#: What friendbot gives a new account.
FRIENDBOT_XLM = 10_000 * ONE
#: How long a synchronous submit waits for its ledger before Horizon's `504`.
SUBMIT_WAIT_SECONDS = 30.0


class SubmitTimeoutError(Exception):
    """Raised when a synchronous submit is not in a closed ledger in time (Horizon's `504 timeout`)."""


@dataclass
class PreApply:
    """Fault effects to carry out, under the lock, just before an envelope is applied."""

    bad_seq: bool = False
    drain_xlm: FaultRule | None = None
    reject: str | None = None


class Node:
    """Holds the ledger, history and contract model; `reset` rebuilds them from genesis."""

    def __init__(self, config: SandboxConfig, clock: Clock, faults: Faults) -> None:
        self.config = config
        self.clock = clock
        self.faults = faults
        self.issuer = keypair_from_seed(config.seed, "usdc-issuer")
        self.root = keypair_from_seed(config.seed, "friendbot")
        self.tw_fee = keypair_from_seed(config.seed, "tw-fee")
        self.drain = keypair_from_seed(config.seed, "drain")
        self.usdc = Asset("USDC", self.issuer.public_key)
        self.usdc_key = f"USDC:{self.issuer.public_key}"
        self.network_id = hashlib.sha256(config.network_passphrase.encode()).digest()
        self.deployer_id = StrKey.encode_contract(hashlib.sha256(f"{config.seed}:tw-deployer".encode()).digest())
        #: The escrow Wasm the factory deploys (an argument of `tw_new_single_release_escrow`).
        self.wasm_hash = hashlib.sha256(f"{config.seed}:tw-escrow-wasm".encode()).digest()
        self.signer_lock = asyncio.Lock()
        #: Called after every ledger close, before any stream is woken (`state.py` writes the world there).
        self.on_commit: Callable[[], None] = lambda: None
        self.secrets: dict[str, str] = {}
        self.generation = 0
        self._queue: list[tuple[Decoded, PreApply, asyncio.Future[Outcome]]] = []
        self.reset()

    def reset(self) -> None:
        """Empty every state back to genesis (configuration is kept)."""
        self._build()
        self._genesis()

    def _build(self) -> None:
        """Fresh, empty ledger, history and contract model (what `reset` and `from_state` start from)."""
        for _, _, future in self._queue:
            if not future.done():
                future.set_exception(SubmitTimeoutError())
        self._queue = []
        self.generation += 1
        self.ledger = Ledger()
        self.history = History()
        self.contracts = EscrowContracts(
            self.clock, self.network_id, self.usdc_key, self.tw_fee.public_key, self.deployer_id
        )
        sac = AssetContracts(self.usdc.contract_id(self.config.network_passphrase), self.usdc_key,
                             self.issuer.public_key, self.contracts)
        self.engine = Engine(self.ledger, self.history, self.clock, self.config.network_passphrase, sac)
        self.secrets = {self.issuer.public_key: self.issuer.secret}
        #: Trustless Work's own database (what its helper reads serve) and the hashes of the transactions
        #: it built (its "internal queue", which `update-from-txhash` requires): see `trustless.py`.
        self.tw_index: dict[str, ContractEntry] = {}
        self.tw_built: set[str] = set()
        self.engine.on_close = self._committed

    def _committed(self) -> None:
        self.on_commit()

    def to_state(self, with_history: bool = True) -> dict[str, Any]:
        """The network and what the sandbox holds beside it: keys, TW's database and its queue of built
        transactions. Transactions waiting for an interval close are not state (a node's pending queue).
        `with_history=False` leaves out the history, for a writer that encodes it as it grows."""
        state = {
            "network_passphrase": self.config.network_passphrase,
            "ledger": self.ledger.to_state(),
            "open": self.engine.open_state(),
            "secrets": dict(self.secrets),
            "tw_index": [entry.to_state() for entry in self.tw_index.values()],
            "tw_built": sorted(self.tw_built),
        }
        if with_history:
            state["history"] = self.history.to_state()
        return state

    def from_state(self, state: dict[str, Any]) -> None:
        """Replace the world with a snapshot's (the caller has checked it is this seed's network)."""
        passphrase = state["network_passphrase"]
        if passphrase != self.config.network_passphrase:  # a `reset-network` to another passphrase
            self.config = replace(self.config, network_passphrase=passphrase)
            self.network_id = hashlib.sha256(passphrase.encode()).digest()
        self._build()
        self.ledger.from_state(state["ledger"])
        self.history.from_state(state["history"])
        self.engine.load_open(state["open"])
        self.secrets = dict(state["secrets"])
        self.tw_index = {e["id"]: ContractEntry.from_state(e) for e in state["tw_index"]}
        self.tw_built = set(state["tw_built"])

    def new_chain(self, passphrase: str | None = None) -> None:
        """A network reset (as testnet's, https://developers.stellar.org/docs/networks): every account,
        trustline, contract and history record is gone and ledgers and paging tokens start over; the keys the
        sandbox holds (its genesis accounts, the external accounts it created) are kept, so a test can fund
        them again. Open streams end (`generation`), and a client resuming from its cursor finds nothing."""
        secrets, old = dict(self.secrets), self.history
        if passphrase:
            self.config = replace(self.config, network_passphrase=passphrase)
            self.network_id = hashlib.sha256(passphrase.encode()).digest()
        self.reset()
        self.secrets.update(secrets)
        old.notify()

    def _genesis(self) -> None:
        scratch = Scratch(self.ledger)
        genesis = ((self.root, ROOT_XLM), (self.issuer, 10_000 * ONE), (self.tw_fee, 10_000 * ONE), (self.drain, ONE))
        for key, xlm in genesis:
            scratch.create_account(key.public_key, xlm)
            scratch.xlm_created += xlm
        fee_account = scratch.account(self.tw_fee.public_key)
        assert fee_account is not None
        fee_account.trustlines[self.usdc_key] = Trustline()
        fee_account.subentries = 1
        self.ledger.commit(scratch)
        closed = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.history.add_ledger(LedgerHeader(self.ledger.sequence, closed, self.engine.base_fee()))

    def on_fault_added(self, rule: FaultRule) -> None:
        """Faults that take effect when added rather than per request."""
        if rule.service == "horizon" and rule.action == "surge":
            self.engine.surge_fee = int(rule.params.get("stroops", 1000))
            self.engine.surge_until = self.ledger.sequence + int(rule.params.get("ledgers", rule.times or 1))
            # `seconds`: the network closes a ledger on a 5,000 ms target even when nothing of ours lands
            # (stellar/stellar-protocol core/cap-0088.md), so a real surge also ends with time; without it,
            # only our own transactions close the sandbox's (instant-mode) ledgers
            seconds = rule.params.get("seconds")
            self.engine.surge_ends_at = self.clock.time() + float(seconds) if seconds else None
            self.faults.fire(rule, {"effect": f"fee raised until ledger {self.engine.surge_until}"})

    async def submit(self, envelope: str, pre: PreApply | None = None, wait: bool = True) -> Outcome:
        """Decode, verify and apply (raises `MalformedError`); in interval mode wait for the close."""
        decoded = decode(envelope, self.network_id)
        pre = pre or PreApply()
        async with self.ledger.lock:
            stored = self.history.transactions.get(decoded.hash_hex)
            if stored is not None:
                return self.engine.stored_outcome(stored)
            self._pre_apply(decoded, pre)
            if self.config.ledger_mode == "instant":
                outcome = self.engine.apply(decoded, 1, pre.reject)
                if outcome.kind == "applied":
                    self.engine.close_ledger()
                return outcome
            future = self._enqueue(decoded, pre)
            if isinstance(future, Outcome):
                return future
        if not wait:
            return Outcome("pending", decoded.hash_hex, "pending")
        try:
            return await asyncio.wait_for(asyncio.shield(future), SUBMIT_WAIT_SECONDS)
        except TimeoutError as exc:
            raise SubmitTimeoutError() from exc

    def _enqueue(self, decoded: Decoded, pre: PreApply) -> asyncio.Future[Outcome] | Outcome:
        for queued, _, future in self._queue:
            if queued.hash_hex == decoded.hash_hex:
                return future
        pending = sum(1 for queued, _, _ in self._queue if queued.source == decoded.source)
        code = self.engine.precheck(decoded, pending)
        if code is not None:
            from scripts.sandbox import results

            return Outcome("rejected", decoded.hash_hex, code, result_xdr=results.transaction_result(0, code))
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((decoded, pre, future))
        return future

    def _pre_apply(self, decoded: Decoded, pre: PreApply) -> None:
        account = self.ledger.accounts.get(decoded.source)
        if account is None:
            return
        if pre.bad_seq:
            account.seq += 1
        if pre.drain_xlm is not None:
            leave = int(pre.drain_xlm.params.get("leave_stroops", 0))
            amount = account.spendable - leave
            if amount > 0:
                self.engine.system_payment(decoded.source, self.drain.public_key, NATIVE, amount, "drain_xlm")
                if self.config.ledger_mode == "instant":
                    self.engine.close_ledger()

    async def close_loop(self) -> None:
        """Interval mode: close a ledger every `ledger_interval_seconds` (idle while the mode is instant:
        the control plane can switch modes at run time)."""
        while True:
            interval = self.config.ledger_mode == "interval"
            await asyncio.sleep(self.config.ledger_interval_seconds if interval else 0.25)
            if self.config.ledger_mode == "interval":
                async with self.ledger.lock:
                    self._close_interval()

    async def set_ledger_mode(self, mode: str, interval_seconds: float | None = None) -> None:
        """Switch between instant and interval closes; what waits for a close is applied on the way to instant."""
        if mode not in ("instant", "interval"):
            raise ValueError("mode must be instant or interval")
        seconds = self.config.ledger_interval_seconds if interval_seconds is None else float(interval_seconds)
        if not 0 < seconds <= 60:
            raise ValueError("intervalSeconds must be in (0, 60]")
        async with self.ledger.lock:
            if mode == "instant" and self._queue:
                self._close_interval()
            self.config = replace(self.config, ledger_mode=mode, ledger_interval_seconds=seconds)

    def _close_interval(self) -> None:
        queue, self._queue = self._queue, []
        settled: list[tuple[asyncio.Future[Outcome], Outcome]] = []
        order = 0
        for decoded, pre, future in queue:
            outcome = self.engine.apply(decoded, order + 1, pre.reject)
            order += outcome.kind == "applied"
            settled.append((future, outcome))
        self.engine.close_ledger()
        for future, outcome in settled:
            if not future.done():
                future.set_result(outcome)

    async def sign_and_submit(self, signer: Keypair, build: Any, valid_for: int = 300) -> Outcome:
        """Build a transaction for an account whose key the sandbox holds (friendbot, issuer, externals)."""
        async with self.signer_lock:
            account = self.ledger.accounts.get(signer.public_key)
            if account is None:
                raise ValueError(f"account {signer.public_key} does not exist")
            builder = TransactionBuilder(
                Account(signer.public_key, account.seq),
                self.config.network_passphrase,
                self.engine.base_fee(),
            )
            builder.add_time_bounds(0, int(self.clock.time()) + valid_for)
            build(builder)
            envelope = builder.build()
            envelope.sign(signer)
            for extra in getattr(build, "extra_signers", ()):
                envelope.sign(extra)
            return await self.submit(envelope.to_xdr())

    async def friendbot(self, address: str, xlm: int = FRIENDBOT_XLM) -> Outcome:
        """Create and fund an account from the root account, as a recorded `create_account`."""

        def build(b: TransactionBuilder) -> None:
            b.append_create_account_op(address, _units(xlm))

        return await self.sign_and_submit(self.root, build)

    def keypair_for(self, who: str) -> Keypair:
        """`issuer`, a secret seed, or a public key whose secret the sandbox holds."""
        if who == "issuer":
            return self.issuer
        if who.startswith("S"):
            return Keypair.from_secret(who)
        secret = self.secrets.get(who)
        if secret is None:
            raise ValueError(f"the sandbox holds no key for {who}")
        return Keypair.from_secret(secret)

    def state(self) -> dict[str, Any]:
        """The whole ledger for `GET /_sandbox/state`."""
        from scripts.sandbox.records import account_json

        return {
            "network_passphrase": self.config.network_passphrase,
            "ledger": self.ledger.sequence,
            "clock": {"now": self.clock.now().isoformat(), "offset_seconds": self.clock.offset},
            "usdc": {"code": "USDC", "issuer": self.issuer.public_key},
            "tw_fee_account": self.tw_fee.public_key,
            "deployer_contract": self.deployer_id,
            "accounts": {k: account_json(a) for k, a in self.ledger.accounts.items()},
            "contracts": {
                k: {"balance": c.balance / ONE, "balance_stroops": c.balance, **c.state}
                for k, c in self.ledger.contracts.items()
            },
            "transactions": {
                "count": len(self.history.transactions),
                "applied": self.ledger.applied_count,
                "recent": [self.history.transactions[h].json for h in self.history.tx_order[-20:]],
            },
            "conservation": self.ledger.totals(),
        }


def _units(stroops: int) -> str:
    whole, frac = divmod(stroops, ONE)
    return f"{whole}.{frac:07d}"


async def cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
