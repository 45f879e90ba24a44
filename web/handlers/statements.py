"""Account statements (issue 10; api.md §16 ``GET /users/{userId}/statement``): JSON, or CSV on ``Accept: text/csv``."""

from __future__ import annotations

from aiohttp import web

from orchestrator.db import session
from orchestrator.money import statements
from schemas import queries, views
from schemas.common import period, reject_unknown
from web import render
from web.apidoc import doc
from web.auth import requires
from web.keys import TX_ENGINE
from web.responses import envelope


@doc("A user's account statement over a period (CSV with Accept: text/csv)", query=queries.Period,
     response=views.Statement, alternatives={"text/csv": {"type": "string"}}, errors=("USER_NOT_FOUND",))
@requires("read")
async def get_statement(request: web.Request) -> web.Response:
    reject_unknown(request.query, {"from", "to"})
    since, until = period(request.query)
    user_id = render.path_id(request, "user_id", "user", "USER_NOT_FOUND")
    async with request.app[TX_ENGINE].connect() as conn:
        await conn.exec_driver_sql(session.SNAPSHOT)
        statement = await conn.run_sync(lambda sync: statements.read(sync, user_id, since, until))
        await conn.rollback()
    if "text/csv" in request.headers.get("Accept", ""):
        return web.Response(text=statement.to_csv(), content_type="text/csv", charset="utf-8", headers={
            "Content-Disposition": f'attachment; filename="statement-{user_id}.csv"'})
    return envelope(request, statement.as_dict())
