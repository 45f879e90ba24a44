"""An order's view in one statement (``orders_db.VIEW_BY_ID`` and the list page): the milestones, the live
escrow and the dispute summary it carries as JSON come back exactly as reading each table alone gives
them, to the last decimal place and microsecond (issue 16), through SQLAlchemy and through the web
tier's read pool (whose ``json`` parser is orjson)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, delete, insert, text

from orchestrator import ids
from orchestrator.db import disputes as disputes_db
from orchestrator.db import escrows as escrows_db
from orchestrator.db import libpq_url, prepared
from orchestrator.db import orders as orders_db
from orchestrator.db.tables import disputes, escrows, milestones, orders
from tests import builders

AT = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
#: What a client may write as evidence (jsonb keeps any JSON number, 1e400 as its 401 digits): orjson would
#: not read these as written, so the order view never carries it (``orders_db.DISPUTE_SUMMARY``).
EVIDENCE = '[{"url": "https://example.com/a", "n": 123456789012345678901234567890}, {"huge": 1e400}]'


@contextmanager
def _order(engine: Engine, *, with_parts: bool) -> Iterator[str]:
    """An order written straight to its tables, removed afterwards: its made-up rows must not show in the
    lists other tests of this database read."""
    buyer, seller = builders.user(engine), builders.user(engine)
    order_id = ids.new_id("order")
    with engine.begin() as conn:
        conn.execute(insert(orders).values(
            id=order_id, buyer_id=buyer, seller_id=seller, amount=Decimal("12345678901.23"), status="DISPUTED",
            title='A "quoted" title, ñandú', metadata={"nested": {"n": 1.5, "big": 12345678901234567890}},
            settlement={"gross": "30.00"}, created_at=AT))
        if with_parts:
            conn.execute(insert(milestones), [  # created out of position order: the view orders them
                {"id": ids.new_id("milestone"), "order_id": order_id, "milestone_ref": "b", "position": 1,
                 "title": "Second", "amount": Decimal("0.01"), "completed_at": AT},
                {"id": ids.new_id("milestone"), "order_id": order_id, "milestone_ref": "a", "position": 0,
                 "title": "First", "amount": Decimal("29.99"), "completed_at": None}])
            conn.execute(insert(escrows), [  # a discarded escrow and the live one
                {"id": ids.new_id("escrow"), "order_id": order_id, "status": "DISCARDED", "amount": Decimal("30"),
                 "trustless_contract_id": None, "funded_at": None, "funding_mode": "WALLET", "treasury_account": None},
                {"id": ids.new_id("escrow"), "order_id": order_id, "status": "FUNDED", "amount": Decimal("30.00"),
                 "trustless_contract_id": "C" + "A" * 55, "funded_at": AT, "funding_mode": "TREASURY",
                 "treasury_account": "G" + "B" * 55}])
            conn.execute(insert(disputes).values(
                id=ids.new_id("dispute"), order_id=order_id, opened_by="BUYER", reason="NOT_DELIVERED",
                evidence=[], status="RESOLVED", resolution_decision="SPLIT",
                release_amount=Decimal("12.34"), refund_amount=Decimal("17.66"), resolved_at=AT))
            conn.execute(text("UPDATE disputes SET evidence = CAST(:e AS jsonb) WHERE order_id = :o"),
                         {"e": EVIDENCE, "o": order_id})
    try:
        yield order_id
    finally:
        with engine.begin() as conn:
            for table in (disputes, escrows, milestones):
                conn.execute(delete(table).where(table.c.order_id == order_id))
            conn.execute(delete(orders).where(orders.c.id == order_id))


def test_the_view_carries_each_related_row_exactly_as_read_alone(engine: Engine) -> None:
    with _order(engine, with_parts=True) as order_id, engine.connect() as conn:
        row = conn.execute(orders_db.VIEW_BY_ID.bind(order_id=order_id)).one()
        parts, escrow, dispute = orders_db.view_parts(row)
        assert orders_db.to_order(row) == orders_db.get(conn, order_id)
        alone = [orders_db.to_milestone(r) for r in conn.execute(orders_db.milestones_of(order_id))]
        assert [orders_db.to_milestone(r) for r in parts] == alone
        assert [m.milestone_ref for m in alone] == ["a", "b"]
        assert escrow is not None
        assert dispute is not None
        assert escrows_db.to_escrow(escrow) == escrows_db.live_for_order(conn, order_id)
        alone_dispute = disputes_db.of_order_now(conn, order_id)
        assert alone_dispute is not None
        assert dispute == {name: getattr(alone_dispute, name) for name in orders_db.DISPUTE_SUMMARY}


async def test_the_read_pool_parses_the_view_as_sqlalchemy_does(engine: Engine, database: str) -> None:
    pool = prepared.open_pool(libpq_url(database), name="test-reads", max_size=1)
    await pool.open(wait=True)
    try:
        with _order(engine, with_parts=True) as order_id:
            pooled = await prepared.fetch_one(pool, orders_db.VIEW_BY_ID, order_id=order_id)
            with engine.connect() as conn:
                row = conn.execute(orders_db.VIEW_BY_ID.bind(order_id=order_id)).one()
            assert pooled is not None
            assert orders_db.view_parts(pooled) == orders_db.view_parts(row)
            assert orders_db.to_order(pooled) == orders_db.to_order(row)  # metadata (jsonb): exact big integer
            assert pooled["metadata"]["nested"]["big"] == 12345678901234567890
    finally:
        await pool.close()


async def test_jsonb_keeps_the_standard_librarys_parser_on_the_read_pool(database: str) -> None:
    """A client's JSON (jsonb) reads back exactly, where orjson would not read these integers as written."""
    pool = prepared.open_pool(libpq_url(database), name="test-reads", max_size=1)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT '[123456789012345678901234567890, 1e400]'::jsonb, "
                                        "json_build_object('amount', 1.10::numeric::text, 'position', 2)")
            stored, built = await cursor.fetchone() or (None, None)
    finally:
        await pool.close()
    assert stored[0] == 123456789012345678901234567890
    assert stored[1] == 10**400
    assert built == {"amount": "1.10", "position": 2}


def test_an_order_without_related_rows_has_none(engine: Engine) -> None:
    with _order(engine, with_parts=False) as order_id, engine.connect() as conn:
        row = conn.execute(orders_db.VIEW_BY_ID.bind(order_id=order_id)).one()
    assert orders_db.view_parts(row) == ([], None, None)
