"""Users (spec api.md §5) and their balance (§6.1, §6.4)."""

from __future__ import annotations

from aiohttp import web

from orchestrator.commands import Kind
from orchestrator.db import commands as commands_db
from orchestrator.db import users as users_db
from orchestrator.errors import Forbidden
from orchestrator.money.balances import ADMIN_OPERATIONS
from schemas import queries, views
from schemas.balances import ADMIN_BODIES, BalanceOut
from schemas.base import load
from schemas.common import check_enums, page_limit, reject_unknown
from schemas.users import USER_FILTERS, USER_OUT, CreateUser, UserOut
from web import enqueue, render
from web.apidoc import doc
from web.auth import requires
from web.keys import ENGINE, SETTINGS
from web.request_state import BODY
from web.responses import envelope, jsonable, page


@doc("Create a user (an existing externalUserId answers 200 with that user)", body=CreateUser,
     response=UserOut, status=201, also=(200,), command=True,
     example={"externalUserId": "your-user-123", "email": "buyer@example.com", "type": "BUYER"})
@requires("write")
async def create_user(request: web.Request) -> web.Response:
    body = load(CreateUser, request[BODY])
    state = await enqueue.run(request, Kind.CREATE_USER, jsonable(body))
    return await enqueue.respond(request, state)


@doc("Read a user", response=UserOut, errors=("USER_NOT_FOUND",))
@requires("read")
async def get_user(request: web.Request) -> web.Response:
    return envelope(request, USER_OUT.dump(await render.user_from_path(request)))


@doc("List users", query=queries.ListUsers, response=UserOut, many=True, paginated=True)
@requires("read")
async def list_users(request: web.Request) -> web.Response:
    query = request.query
    reject_unknown(query, {"type", "status", "externalUserId", "email", "limit", "cursor"})
    check_enums(query, USER_FILTERS)
    limit, after = page_limit(query), await render.page_after(request, users_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(users_db.page(filters=dict(query), after=after, limit=limit))).all()
    found = [users_db.to_user(r) for r in rows]
    return page(request, [USER_OUT.dump(u) for u in found], limit=limit, ids=[u.id for u in found])


@doc("A user's balance", response=BalanceOut, errors=("USER_NOT_FOUND",))
@requires("read")
async def get_balance(request: web.Request) -> web.Response:
    return envelope(request, render.BALANCE(await render.user_from_path(request)))


@doc("Administrative balance operation", body=ADMIN_BODIES, response=views.AdjustResult, command=True,
     errors=("USER_NOT_FOUND", "OPERATION_NOT_ALLOWED", "INSUFFICIENT_FUNDS", "BALANCE_CONCURRENCY_CONFLICT"))
@requires("support")
async def adjust_balance(request: web.Request) -> web.Response:
    """The administrative moves of spec api.md §6.4, refused where the instance disables them."""
    if not request.app[SETTINGS].admin_balance_operations:
        raise Forbidden("Administrative balance operations are disabled on this instance",
                        code="OPERATION_NOT_ALLOWED")
    operation = request.match_info["operation"]
    user_id = render.user_id_from_path(request)
    body = load(ADMIN_BODIES[operation], request[BODY])
    payload = jsonable({**body, "operation": operation, "userId": user_id})
    # the user's existence is checked by the command's own insert: no read before it (issue 16)
    state = await enqueue.run(request, Kind.ADJUST_BALANCE, payload, subject=enqueue.Subject(
        commands_db.ON_USER, user_id, render.user_not_found(user_id)))

    async def current() -> object:
        """The balance as it stands: as the command's insert found it when answered at once, else read."""
        user = (users_db.to_user(state.subject) if state.subject is not None
                else await render.load_user(request, user_id))
        return {"balance": render.BALANCE(user), "operation": operation}

    return await enqueue.respond(request, state, current=current)





assert set(ADMIN_BODIES) == set(ADMIN_OPERATIONS)
