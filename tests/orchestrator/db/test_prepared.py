"""``prepared.text_array``: an array literal PostgreSQL reads back as exactly the strings given."""

from __future__ import annotations

import psycopg

from orchestrator.db import libpq_url, prepared
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
