"""Typed per-request state keys (aiohttp ``RequestKey``) set by the middlewares, read by handlers."""

from __future__ import annotations

from aiohttp import web

#: Per-request state set by the middlewares and read by handlers.
REQUEST_ID = web.RequestKey("request_id", str)
CREDENTIAL = web.RequestKey("credential", object)
BODY = web.RequestKey("body", object)
IDEMPOTENCY = web.RequestKey("idempotency", tuple)
COMMAND_ID = web.RequestKey("command_id", str)
PREFERENCE = web.RequestKey("preference_applied", str)
RATE_HEADERS = web.RequestKey("ratelimit_headers", dict)
