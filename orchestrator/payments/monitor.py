"""The deposit monitor: follows Horizon's payments from a cursor stored in PostgreSQL.

A reader task takes records off the stream into a queue; a writer drains the queue in batches and
records, in one transaction per batch, the deposits found and the cursor past them, then hands the
new deposits to ``sink`` (which sends one credit message each). A crash between the two leaves the
deposits pending in the database, where the scheduler finds them.

Horizon never refuses an ascending cursor (stellar/go ``services/horizon/internal/actions/helpers.go``):
before its oldest ledger it silently starts there, beyond its newest record it answers empty pages. So at
every (re)start and every ``HORIZON_CHECK_SECONDS`` the monitor compares its cursor with Horizon's root
document and with the record it last read (``providers/horizon_stream.py``):

- another ``network_passphrase``: it refuses to run (``NetworkMismatch``);
- the cursor beyond the newest ledger, or the record at the cursor gone or another transaction: the network
  was reset (testnet is, periodically; DESIGN decision 35). It emits ``network.reset_detected`` (so
  ``/health/detailed`` turns ``critical``), adjusts nothing in the book, and starts over on the new chain:
  every wallet's own payments are read from the new chain's beginning, then the stream follows on;
- the cursor older than ``history_elder_ledger`` (history pruned past it): every wallet's own payments are
  read from the oldest record kept, then the stream resumes at the newest record, instead of streaming the
  whole network from the elder ledger against the rate limit.

Deposits are keyed by transaction hash and operation index, so reading a range again credits nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from orchestrator import ids
from orchestrator.db import cursors as cursors_db
from orchestrator.db import deposits as deposits_db
from orchestrator.db import operations as operations_db
from orchestrator.db import session
from orchestrator.db import wallets as wallets_db
from orchestrator.events import iso, now
from orchestrator.payments import deposits
from orchestrator.providers.horizon_stream import PaymentStream, Root, ledger_of
from orchestrator.settings import Settings
from orchestrator.unit_of_work import Context, UnitOfWork

log = logging.getLogger(__name__)
BATCH = 500
#: Records that are not deposits still move the stored cursor, at most this often (seconds).
CURSOR_EVERY = 1.0
MAX_BACKOFF = 30.0
#: The transaction hash of the record at the stream cursor: proves the cursor is on this chain.
ANCHOR = f"{deposits.STREAM_CURSOR}:anchor"
#: The operation figures the health check reads (a detected network reset turns it critical).
NETWORK = "network"


class NetworkMismatch(Exception):
    """Horizon serves another network than the one configured: following it would be wrong."""


class NetworkChanged(Exception):
    """The periodic check found the cursor outside Horizon's history: start over."""


class Monitor:
    def __init__(self, settings: Settings, engine: Any, sink: Callable[[list[str]], None]) -> None:
        self.settings, self.engine, self.sink = settings, engine, sink
        self.usdc = deposits.Usdc(settings.usdc_asset_code, settings.usdc_issuer)
        self.watched: dict[str, tuple[str, str]] = {}
        self.not_ours: set[str] = set()
        self.escrow_contracts: set[str] = set()

    def wallet_of(self, account: str) -> tuple[str, str] | None:
        """Our wallet for ``account``; an unknown account is looked up once (wallets are created before
        their trustline exists, so no USDC can reach a wallet the database does not know yet)."""
        if account in self.watched:
            return self.watched[account]
        if account in self.not_ours:
            return None
        with session.transaction(self.engine) as conn:
            wallet = wallets_db.by_public_key(conn, account)
        if wallet is None:
            self.not_ours.add(account)
            return None
        self.watched[account] = (wallet.id, wallet.user_id)
        return self.watched[account]

    def is_escrow(self, address: str) -> bool:
        """Whether a contract is one of our escrows (its payouts are booked by the escrow flow)."""
        if not address.startswith("C"):
            return False
        if address not in self.escrow_contracts:
            with session.transaction(self.engine) as conn:
                if not deposits_db.is_escrow_contract(conn, address):
                    return False
            self.escrow_contracts.add(address)
        return True

    def _rows(self, record: dict[str, Any], wallet_of: Callable[[str], tuple[str, str] | None],
              source: str = "stellar_deposit") -> list[dict[str, Any]]:
        return deposits.deposit_rows(record, self.usdc, wallet_of, source=source, is_escrow=self.is_escrow)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow until ``stop``; ``NetworkMismatch`` ends the run (the caller refuses to go on)."""
        backoff = 0.5
        async with PaymentStream(self.settings.horizon_url) as horizon:
            while not stop.is_set():
                try:
                    await self._follow(horizon, stop)
                    backoff = 0.5
                except (asyncio.CancelledError, NetworkMismatch):
                    raise
                except NetworkChanged as change:
                    log.warning("%s; checking the cursor again", change)
                except Exception as error:
                    log.warning("The payment stream stopped (%s: %s); resuming from the stored cursor in %.1f s",
                                type(error).__name__, error, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)

    async def _follow(self, horizon: PaymentStream, stop: asyncio.Event) -> None:
        cursor = await self.check(horizon)
        self.watched = await asyncio.to_thread(self._load_watched)
        if self.settings.horizon_follow_mode == "accounts":
            await self._poll_accounts(horizon, stop)
            return
        log.info("Following payments after cursor %s for %d wallets", cursor, len(self.watched))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10 * BATCH)
        reader = asyncio.create_task(self._read(horizon, cursor, queue))
        checked = time.monotonic()
        try:
            while not stop.is_set():
                if reader.done():
                    reader.result()  # raises the stream's error
                    return
                await self._write(queue)
                if time.monotonic() - checked >= self.settings.horizon_check_seconds:
                    checked = time.monotonic()
                    await self._recheck(horizon)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def check(self, horizon: PaymentStream) -> str:
        """Compare the stored cursor with Horizon (see the module's docstring) and return where to follow from."""
        root = await horizon.root()
        self._same_network(root)
        cursor = await asyncio.to_thread(self._cursor, deposits.STREAM_CURSOR)
        if cursor is None:  # first start: what existing wallets already received is found per wallet
            log.info("No stored cursor: reading every wallet's payments, then following from the newest record")
            await self.reconcile(horizon)
        else:
            verdict = await self._verdict(horizon, root, cursor)
            if verdict == "reset":
                await self._on_reset(horizon, root, cursor)
            elif verdict == "pruned":
                log.warning("Horizon keeps history from ledger %d only and the cursor %s is older: reading "
                            "every wallet's payments, then following from the newest record", root.elder_ledger,
                            cursor)
                await self.reconcile(horizon, from_start=True)
        found = await asyncio.to_thread(self._cursor, deposits.STREAM_CURSOR)
        assert found is not None
        return found

    def _same_network(self, root: Root) -> None:
        if root.passphrase != self.settings.network_passphrase:
            raise NetworkMismatch(
                f"Horizon at {self.settings.horizon_url} serves the network {root.passphrase!r}, not the configured "
                f"{self.settings.stellar_network} network {self.settings.network_passphrase!r}; check "
                "STELLAR_NETWORK and STELLAR_HORIZON_URL")

    async def _verdict(self, horizon: PaymentStream, root: Root, cursor: str) -> str:
        """``reset``, ``pruned`` or ``ok`` for the stored cursor."""
        if int(cursor) == 0:
            return "ok"
        ledger = ledger_of(cursor)
        if ledger > root.latest_ledger:
            return "reset"  # beyond the newest record: Horizon would answer empty pages forever
        if ledger < root.elder_ledger:
            return "pruned"  # (a reset whose new chain outgrew the cursor looks the same: both read wallets anew)
        anchor = await asyncio.to_thread(self._cursor, ANCHOR)
        if anchor is not None:
            records = await horizon.page("/payments", cursor=str(int(cursor) - 1), order="asc", limit="1")
            if not records or str(records[0]["paging_token"]) != cursor or records[0]["transaction_hash"] != anchor:
                return "reset"  # the record we last read is not on this chain
        return "ok"

    async def _recheck(self, horizon: PaymentStream) -> None:
        root = await horizon.root()
        self._same_network(root)
        cursor = await asyncio.to_thread(self._cursor, deposits.STREAM_CURSOR)
        if cursor is not None and (verdict := await self._verdict(horizon, root, cursor)) != "ok":
            raise NetworkChanged(f"the stored cursor {cursor} is {verdict} (Horizon: ledgers {root.elder_ledger}"
                                 f"..{root.latest_ledger})")

    async def _on_reset(self, horizon: PaymentStream, root: Root, cursor: str) -> None:
        """DESIGN decision 35: report, adjust nothing, start over at the new chain's beginning."""
        log.error("The network was reset: the stored cursor %s (ledger %d) is not on the chain Horizon serves "
                  "(ledgers %d..%d). Nothing in the book is adjusted; `offerhub check` lists every wallet and open "
                  "escrow missing from the new chain. Reading every wallet's payments on the new chain.",
                  cursor, ledger_of(cursor), root.elder_ledger, root.latest_ledger)
        await asyncio.to_thread(self._record_reset, root, cursor)
        await self.reconcile(horizon, from_start=True)

    def _record_reset(self, root: Root, cursor: str) -> None:
        detection = ids.new_id("event")
        figures = {"status": "reset_detected", "detectedAt": iso(now()), "previousCursor": cursor,
                   "previousLedger": ledger_of(cursor), "elderLedger": root.elder_ledger,
                   "latestLedger": root.latest_ledger, "networkPassphrase": root.passphrase}
        with UnitOfWork(self.engine, Context(actor_type="SYSTEM", actor_id="monitor", correlation_id=detection),
                        settings=self.settings) as uow:
            uow.emit("network.reset_detected", self.settings.stellar_network, figures)
            operations_db.put_figures(uow.conn, NETWORK, figures)
            cursors_db.put(uow.conn, deposits.STREAM_CURSOR, "0")
            uow.conn.execute(cursors_db.delete_prefix("wallet:"))
            uow.conn.execute(cursors_db.delete_prefix(ANCHOR))
            uow.commit()

    async def _read(self, horizon: PaymentStream, cursor: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        async for record in horizon.stream(cursor):
            await queue.put(record)

    async def _write(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        try:
            first = await asyncio.wait_for(queue.get(), CURSOR_EVERY)
        except TimeoutError:
            return
        records = [first]
        while not queue.empty() and len(records) < BATCH:
            records.append(queue.get_nowait())
        await asyncio.to_thread(self._record, records)

    def _record(self, records: list[dict[str, Any]]) -> None:
        rows = [row for record in records for row in self._rows(record, self.wallet_of)]
        log.debug("Read %d record(s), %d deposit(s), last %s", len(records), len(rows), records[-1].get("paging_token"))
        last = records[-1]
        new = deposits.record_batch(self.engine, rows, cursor_name=deposits.STREAM_CURSOR,
                                    cursor=str(last["paging_token"]), anchor=(ANCHOR, last["transaction_hash"]))
        if new:
            log.info("Recorded %d deposit(s); cursor at %s", len(new), last["paging_token"])
            self.sink(new)

    async def reconcile(self, horizon: PaymentStream, *, from_start: bool = False,
                        source: str = "stellar_deposit_reconciled") -> None:
        """Read each wallet's own payments (from its reconciliation cursor, or with ``from_start`` from the
        oldest record Horizon keeps), then resume the stream at the newest record (taken first, so nothing
        between the two reads is missed; overlaps dedupe)."""
        latest = await horizon.page("/payments", order="desc", limit="1")
        for account, wallet in (await asyncio.to_thread(self._load_watched)).items():
            await self._reconcile_wallet(horizon, account, wallet, from_start=from_start, source=source)
        cursor, anchor = (str(latest[0]["paging_token"]), latest[0]["transaction_hash"]) if latest else ("0", None)
        await asyncio.to_thread(deposits.record_batch, self.engine, [], cursor_name=deposits.STREAM_CURSOR,
                                cursor=cursor, anchor=(ANCHOR, anchor) if anchor else None)

    async def _reconcile_wallet(self, horizon: PaymentStream, account: str, wallet: tuple[str, str], *,
                                from_start: bool = False, source: str = "stellar_deposit_reconciled") -> None:
        name = f"wallet:{wallet[0]}"
        cursor = None if from_start else await asyncio.to_thread(self._cursor, name)
        while True:
            records = await horizon.account_payments(account, cursor)
            if not records:
                return
            rows = [row for r in records for row in self._rows(r, lambda to: wallet if to == account else None,
                                                                 source)]
            cursor = str(records[-1]["paging_token"])
            new = await asyncio.to_thread(deposits.record_batch, self.engine, rows, cursor_name=name, cursor=cursor)
            if new:
                await asyncio.to_thread(self.sink, new)

    async def _poll_accounts(self, horizon: PaymentStream, stop: asyncio.Event) -> None:
        """The follow mode that does not stream the network (``HORIZON_FOLLOW_MODE=accounts``): each wallet's
        own payments, every ``HORIZON_POLL_SECONDS``; a round costs one request per wallet (more when a wallet
        received more than a page), whatever the network's volume."""
        log.info("Polling the payments of %d wallets every %.1f s", len(self.watched),
                 self.settings.horizon_poll_seconds)
        checked = time.monotonic()
        while not stop.is_set():
            await self.reconcile(horizon, source="stellar_deposit")
            if time.monotonic() - checked >= self.settings.horizon_check_seconds:
                checked = time.monotonic()
                await self._recheck(horizon)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.horizon_poll_seconds)

    def _cursor(self, name: str) -> str | None:
        with session.transaction(self.engine) as conn:
            return cursors_db.get(conn, name)

    def _load_watched(self) -> dict[str, tuple[str, str]]:
        with session.transaction(self.engine) as conn:
            return wallets_db.watched(conn)
