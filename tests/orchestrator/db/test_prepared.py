"""``prepared``: ``text_array``, an array literal PostgreSQL reads back as exactly the strings given; and
``fetch_many``, several reads in one round trip and one transaction."""

from __future__ import annotations

import psycopg
from sqlalchemy import func, select

from orchestrator.db import libpq_url, prepared
from orchestrator.db.prepared import Query
from orchestrator.settings import Settings

AWKWARD = ["ord_plain", 'a "quoted" one', "back\\slash", "comma,brace{}", " spaced ", "", "NULL", "ñandú €",
           '\\"', "tab\there"]


def test_any_text_comes_back_as_it_was_given(database: str, settings: Settings) -> None:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        back = conn.execute("SELECT %s::VARCHAR[]", (prepared.text_array(AWKWARD),)).fetchone()
        assert back is not None
        assert back[0] == AWKWARD
        assert conn.execute("SELECT %s::VARCHAR[]", (prepared.text_array([]),)).fetchone() == ([],)
        found = conn.execute("SELECT count(*) FROM unnest(%s::VARCHAR[]) v WHERE v = ANY (%s::VARCHAR[])",
                             (prepared.text_array(AWKWARD), prepared.text_array(AWKWARD[:3]))).fetchone()
        assert found == (3,)


async def test_several_reads_see_one_snapshot_in_one_read_only_transaction(database: str,
                                                                            settings: Settings) -> None:
    # Given a web tier's read pool (autocommit: a lone read takes no transaction)
    settled = Query(select(func.now().label("at"), func.current_setting("transaction_isolation").label("level"),
                           func.current_setting("transaction_read_only").label("read_only")))
    pool = prepared.open_pool(libpq_url(settings.database_url), max_size=1, name="test-fetch-many")
    await pool.open()
    try:
        # When fetch_many runs three reads in one round trip
        rows = await prepared.fetch_many(pool, [(settled, {}), (settled, {}), (settled, {})])
        # Then they ran in one repeatable-read, read-only transaction (one start time, one snapshot)
        assert {(r[0].at, r[0].level, r[0].read_only) for r in rows} == {(rows[0][0].at, "repeatable read", "on")}
        # and the connection went back to the pool with no transaction open
        async with pool.connection() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert (await (await conn.execute("SELECT current_setting('transaction_isolation')")).fetchone()
                    == ("read committed",))
    finally:
        await pool.close()
