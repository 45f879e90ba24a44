"""Users (spec api.md §5) and their balance (§6.1, §6.4)."""

from __future__ import annotations

from aiohttp import web

from orchestrator import ids
from orchestrator.balances import ADMIN_OPERATIONS
from orchestrator.commands import Kind
from orchestrator.db import users as users_db
from orchestrator.errors import Forbidden, NotFound, ValidationFailed
from schemas.balances import ADMIN_BODIES, BALANCE_OUT
from schemas.base import load
from schemas.common import page_limit, reject_unknown
from schemas.users import USER_FILTERS, USER_OUT, CreateUser
from web import enqueue, render
from web.auth import requires
from web.keys import ENGINE, SETTINGS
from web.request_state import BODY
from web.responses import envelope, jsonable, page


@requires("write")
async def create_user(request: web.Request) -> web.Response:
    body = load(CreateUser(), request[BODY])
    state = await enqueue.run(request, Kind.CREATE_USER, jsonable(body))
    return await enqueue.respond(request, state)


@requires("read")
async def get_user(request: web.Request) -> web.Response:
    return envelope(request, USER_OUT.dump(await _user(request)))


@requires("read")
async def list_users(request: web.Request) -> web.Response:
    query = request.query
    reject_unknown(query, {"type", "status", "externalUserId", "email", "limit", "cursor"})
    for name, allowed in USER_FILTERS.items():
        if name in query and query[name] not in allowed:
            raise ValidationFailed.field(name, "INVALID_ENUM", f"must be one of {', '.join(allowed)}",
                                         allowed=allowed)
    limit, after = page_limit(query), await render.page_after(request, users_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(users_db.page(filters=dict(query), after=after, limit=limit))).all()
    found = [users_db.to_user(r) for r in rows]
    return page(request, [USER_OUT.dump(u) for u in found], limit=limit, ids=[u.id for u in found])


@requires("read")
async def get_balance(request: web.Request) -> web.Response:
    return envelope(request, BALANCE_OUT.dump(await _user(request)))


@requires("support")
async def adjust_balance(request: web.Request) -> web.Response:
    """The administrative moves of spec api.md §6.4, refused where the instance disables them."""
    if not request.app[SETTINGS].admin_balance_operations:
        raise Forbidden("Administrative balance operations are disabled on this instance",
                        code="OPERATION_NOT_ALLOWED")
    operation = request.match_info["operation"]
    user = await _user(request)
    body = load(ADMIN_BODIES[operation](), request[BODY])
    payload = jsonable({**body, "operation": operation, "userId": user.id})
    state = await enqueue.run(request, Kind.ADJUST_BALANCE, payload)

    async def current() -> object:
        return {"balance": BALANCE_OUT.dump(await render.load_user(request, user.id)), "operation": operation}

    return await enqueue.respond(request, state, current=current)


async def _user(request: web.Request) -> users_db.User:
    user_id = request.match_info["user_id"]
    if not ids.is_valid("user", user_id):
        raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND")
    return await render.load_user(request, user_id)



assert set(ADMIN_BODIES) == set(ADMIN_OPERATIONS)
