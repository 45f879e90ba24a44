"""The deposit monitor: follows Horizon's payment stream from a cursor stored in PostgreSQL.

A reader task takes records off the stream into a queue; a writer drains the queue in batches and
records, in one transaction per batch, the deposits found and the cursor past them, then hands the
new deposits to ``sink`` (which sends one credit message each). A crash between the two leaves the
deposits pending in the database, where the scheduler finds them. On any stream failure the loop
restarts from the stored cursor; a cursor Horizon no longer keeps (``410``) triggers a per-wallet
reconciliation before the stream resumes from the newest record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from orchestrator import deposits
from orchestrator.db import cursors as cursors_db
from orchestrator.db import session
from orchestrator.db import wallets as wallets_db
from orchestrator.providers.horizon_stream import BeforeHistory, PaymentStream
from orchestrator.settings import Settings

log = logging.getLogger(__name__)
BATCH = 500
#: Records that are not deposits still move the stored cursor, at most this often (seconds).
CURSOR_EVERY = 1.0
MAX_BACKOFF = 30.0


class Monitor:
    def __init__(self, settings: Settings, engine: Any, sink: Callable[[list[str]], None]) -> None:
        self.settings, self.engine, self.sink = settings, engine, sink
        self.usdc = deposits.Usdc(settings.usdc_asset_code, settings.usdc_issuer)
        self.watched: dict[str, tuple[str, str]] = {}
        self.not_ours: set[str] = set()

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

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        async with PaymentStream(self.settings.horizon_url) as horizon:
            while not stop.is_set():
                try:
                    await self._follow(horizon, stop)
                    backoff = 0.5
                except BeforeHistory:
                    log.warning("The stored cursor is older than Horizon's history; reconciling every wallet")
                    await self.reconcile(horizon)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("The payment stream stopped (%s); resuming from the stored cursor in %.1f s",
                                type(error).__name__, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)

    async def _follow(self, horizon: PaymentStream, stop: asyncio.Event) -> None:
        cursor = await asyncio.to_thread(self._stored_cursor)
        if cursor is None:  # first start: what existing wallets already received is found per wallet
            await self.reconcile(horizon)
            cursor = await asyncio.to_thread(self._stored_cursor)
            assert cursor is not None
        await horizon.check_cursor(cursor)
        self.watched = await asyncio.to_thread(self._load_watched)
        log.info("Following payments after cursor %s for %d wallets", cursor, len(self.watched))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10 * BATCH)
        reader = asyncio.create_task(self._read(horizon, cursor, queue))
        try:
            while not stop.is_set():
                if reader.done():
                    reader.result()  # raises the stream's error
                    return
                await self._write(queue)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

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
        rows = [row for record in records if (row := deposits.classify(record, self.usdc, self.wallet_of))]
        log.debug("Read %d record(s), %d deposit(s), last %s", len(records), len(rows), records[-1].get("paging_token"))
        cursor = str(records[-1]["paging_token"])
        new = deposits.record_batch(self.engine, rows, cursor_name=deposits.STREAM_CURSOR, cursor=cursor)
        if new:
            log.info("Recorded %d deposit(s); cursor at %s", len(new), cursor)
            self.sink(new)

    async def reconcile(self, horizon: PaymentStream) -> None:
        """Read each wallet's own payments from its reconciliation cursor, then resume the stream at the
        newest record (taken first, so nothing between the two reads is missed; overlaps dedupe)."""
        latest = await horizon.latest_cursor()
        for account, wallet in (await asyncio.to_thread(self._load_watched)).items():
            await self._reconcile_wallet(horizon, account, wallet)
        await asyncio.to_thread(deposits.record_batch, self.engine, [], cursor_name=deposits.STREAM_CURSOR,
                                cursor=latest)

    async def _reconcile_wallet(self, horizon: PaymentStream, account: str, wallet: tuple[str, str]) -> None:
        name = f"wallet:{wallet[0]}"
        cursor = await asyncio.to_thread(self._cursor, name)
        while True:
            try:
                records = await horizon.account_payments(account, cursor)
            except BeforeHistory:
                cursor, records = None, await horizon.account_payments(account, None)
            if not records:
                return
            rows = [row for r in records if (row := deposits.classify(
                r, self.usdc, lambda to: wallet if to == account else None, source="stellar_deposit_reconciled"))]
            cursor = str(records[-1]["paging_token"])
            new = await asyncio.to_thread(deposits.record_batch, self.engine, rows, cursor_name=name, cursor=cursor)
            if new:
                await asyncio.to_thread(self.sink, new)

    def _stored_cursor(self) -> str | None:
        return self._cursor(deposits.STREAM_CURSOR)

    def _cursor(self, name: str) -> str | None:
        with session.transaction(self.engine) as conn:
            return cursors_db.get(conn, name)

    def _load_watched(self) -> dict[str, tuple[str, str]]:
        with session.transaction(self.engine) as conn:
            return wallets_db.watched(conn)
