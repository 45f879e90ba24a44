"""The sandbox's world on disk (`SANDBOX_STATE_FILE`, DESIGN decision 27): written atomically, reloaded at start.

What is kept: the ledger (accounts, XLM, trustlines, USDC, sequence numbers, escrow and asset contracts'
balances and state, issuance), Horizon's history (ledgers, transactions, operations: paging tokens come out
the same, so a monitor's stored cursor stays valid), Trustless Work's own database and its queue of built
transactions, AirTM's records (users, pay-ins, payouts, the enterprise balance, the payout scripts, the
webhook outbox), the keys the sandbox holds and the clock's offset. What is not: fault rules, request
budgets and run-time settings (configuration, read from the environment at each start), and envelopes
waiting for an interval close (a node's pending queue: their submitters were told nothing final).

When it is written: synchronously, on the event loop, at every point where a change becomes visible —
after each ledger close and before the streams are woken (`Node.on_commit`), after every request that
may change something (any method but GET/HEAD/OPTIONS; the middleware runs before the answer is sent),
after AirTM's clock applies an expiry or settlement (`AirtmStore.on_change`, which GET reads trigger
too), after each webhook attempt, and at a clean shutdown. Nothing is debounced: a `kill -9` at any
moment leaves the file describing a world at least as new as anything Horizon, TW or AirTM has told a
client — a deposit the monitor has streamed is on disk before the stream could send it. A debounce
would lose exactly that window. The price is one full write per change, which a developer's world
(scripts/dev) affords; tests, chaos runs and benchmarks keep the file unset and pay nothing.

The format is JSON with explicit encodings: stroop amounts and sequence numbers are JSON integers (exact
at any size in Python), AirTM amounts decimal strings, datetimes ISO 8601 with microseconds, the webhook
bodies base64. The file holds secret keys, so it is created mode 0600. Never pickle: the file outlives
the code that wrote it, and a checkout's file must not be able to run code.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from scripts.sandbox.airtm import AirtmSimulator
from scripts.sandbox.clock import Clock
from scripts.sandbox.config import SandboxConfig
from scripts.sandbox.history import History
from scripts.sandbox.node import Node

log = logging.getLogger(__name__)

FORMAT = "offerhub-sandbox-state"
VERSION = 1
#: Requests that change nothing themselves (a GET that does — friendbot, AirTM's reads applying due
#: changes — writes through `Node.on_commit` or `AirtmStore.on_change`).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FRESH = "run scripts/dev --fresh to start the ledger and the database afresh"


class StateFileError(Exception):
    """The state file cannot be used; the message is the one line the operator sees."""


def seed_fingerprint(seed: str) -> str:
    """What the file records of `SANDBOX_SEED`: enough to tell seeds apart, without writing the seed."""
    return hashlib.sha256(f"{seed}:state-file".encode()).hexdigest()[:32]


class StateFile:
    """Snapshot and restore of one sandbox process's world."""

    def __init__(self, path: Path, config: SandboxConfig, clock: Clock, node: Node, airtm: AirtmSimulator) -> None:
        self.path = path
        self.config = config
        self.clock = clock
        self.node = node
        self.airtm = airtm
        self._history = _EncodedHistory()

    def attach(self, app: web.Application) -> None:
        """Load the file if there is one, then write after every change from now on."""
        self._lock()
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        self.load()
        self.node.on_commit = self.save
        self.airtm.store.on_change = self.save
        self.airtm.webhooks.on_change = self.save
        app.middlewares.insert(0, self._middleware())
        app.on_cleanup.append(self._on_cleanup)
        self.save()  # the file exists from the first start, so scripts/dev knows this database has its ledger

    def _lock(self) -> None:
        """Hold an exclusive lock for the process's life: two sandboxes writing one file would each
        overwrite the other's world (the kernel releases the lock when the process dies, even by SIGKILL)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._refuse(f"cannot be used ({exc.strerror})") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise StateFileError(f"SANDBOX_STATE_FILE {self.path} is in use by another sandbox; stop it first, "
                                 "or give this one another SANDBOX_STATE_FILE") from exc

    # Writing

    def encode(self) -> bytes:
        """The whole file. The history, which only grows and whose closed records never change, is encoded
        once per record and spliced in, so a save costs little more than writing the bytes."""
        node = self.node.to_state(with_history=False)
        head = _dumps({
            "format": FORMAT,
            "version": VERSION,
            "seed": seed_fingerprint(self.config.seed),
            "passphrase": self.config.network_passphrase,
            "savedAt": datetime.now(UTC).isoformat(),
            "clock": self.clock.to_state(),
            "airtm": self.airtm.to_state(),
        })
        history = self._history.encode(self.node.history)
        return f'{head[:-1]},"node":{_dumps(node)[:-1]},"history":{history}}}}}'.encode()

    def save(self) -> None:
        """Write the whole world to a temporary file beside the target, fsync it, rename it over the target
        and fsync the directory: a reader sees the old file or the new one, never a part."""
        try:
            data = self.encode()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except (OSError, TypeError, ValueError) as exc:
            log.error("Writing the sandbox state to %s failed: %s; a restart would lose the changes since.",
                      self.path, exc)

    def _middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def persist(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            try:
                return await handler(request)
            finally:
                if request.method not in _SAFE_METHODS:
                    self.save()

        return persist

    async def _on_cleanup(self, app: web.Application) -> None:
        self.save()

    # Reading

    def load(self) -> bool:
        """Restore the world from the file; `False` when there is none yet. Raises `StateFileError`."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._refuse(f"cannot be read ({exc.strerror})") from exc
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._refuse("is not a sandbox state file (not JSON)") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise self._refuse("is not a sandbox state file")
        if document.get("version") != VERSION:
            raise self._refuse(f"has format version {document.get('version')!r}, not {VERSION}")
        if document.get("seed") != seed_fingerprint(self.config.seed):
            raise self._refuse("was written under another SANDBOX_SEED")
        if document.get("passphrase") != self.config.network_passphrase:
            raise self._refuse("was written for another network passphrase")
        try:
            self.clock.from_state(document["clock"])
            self.node.from_state(document["node"])
            self.airtm.from_state(document["airtm"])
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            raise self._refuse(f"is damaged ({type(exc).__name__}: {exc})") from exc
        if not self.node.ledger.totals()["balanced"]:
            raise self._refuse("is damaged (its holdings do not add up to what was issued)")
        log.info("Sandbox state loaded from %s: ledger %s, %s transactions, %s accounts.", self.path,
                 self.node.ledger.sequence, len(self.node.history.transactions), len(self.node.ledger.accounts))
        return True

    def _refuse(self, why: str) -> StateFileError:
        return StateFileError(f"SANDBOX_STATE_FILE {self.path} {why}; {_FRESH}")


class _EncodedHistory:
    """The JSON of each closed ledger header and transaction, kept as history grows (a reset starts anew)."""

    def __init__(self) -> None:
        self.history: History | None = None
        self.ledgers: list[str] = []
        self.transactions: list[str] = []

    def encode(self, history: History) -> str:
        if history is not self.history:
            self.history, self.ledgers, self.transactions = history, [], []
        self.ledgers.extend(_dumps(vars(header)) for header in history.ledgers[len(self.ledgers):])
        self.transactions.extend(
            _dumps(history.transactions[tx_hash].to_state()) for tx_hash in history.tx_order[len(self.transactions):]
        )
        return f'{{"ledgers":[{",".join(self.ledgers)}],"transactions":[{",".join(self.transactions)}]}}'


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def attach(app: web.Application, config: SandboxConfig, clock: Clock, node: Node, airtm: AirtmSimulator) -> None:
    """Keep the world in `config.state_file` when one is set (empty: in memory only)."""
    if config.state_file:
        StateFile(Path(config.state_file).expanduser().absolute(), config, clock, node, airtm).attach(app)

