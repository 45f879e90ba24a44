"""The sandbox application: Horizon, friendbot, Trustless Work, AirTM and the control plane in one app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from scripts.sandbox import control, horizon, state, trustless
from scripts.sandbox.airtm import AirtmSimulator
from scripts.sandbox.clock import Clock
from scripts.sandbox.config import SandboxConfig
from scripts.sandbox.faults import Faults
from scripts.sandbox.node import Node, cancel
from scripts.sandbox.records import problem

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", SandboxConfig)


@web.middleware
async def error_shape(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unexpected errors answer in the service's own error shape, never with a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _shaped(request.path, exc.status, exc.reason)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("Sandbox request %s %s failed.", request.method, request.path)
        return _shaped(request.path, 500, "internal error")


def _shaped(path: str, status: int, message: str) -> web.Response:
    if path.startswith("/trustless"):
        return web.json_response({"status": "FAILED", "message": message}, status=status)
    if path.startswith("/airtm"):
        return web.json_response({"code": str(status), "message": message}, status=status)
    if path.startswith("/_sandbox"):
        return web.json_response({"error": message}, status=status)
    return problem(status, message)


def create_app(config: SandboxConfig) -> web.Application:
    """Build the app; every simulator shares one clock, one fault list and one ledger."""
    app = web.Application(middlewares=[error_shape], client_max_size=4 * 1024 * 1024)
    clock, faults = Clock(), Faults()
    node = Node(config, clock, faults)
    app[CONFIG] = config
    app[control.CLOCK] = clock
    app[horizon.FAULTS] = faults
    app[horizon.NODE] = node
    horizon.setup(app)
    control.setup(app)
    trustless.setup(app, config)
    airtm = _setup_airtm(app, config, clock, faults)
    app.cleanup_ctx.append(_ledger_closer)  # idle in instant mode; the mode can change at run time
    state.attach(app, config, clock, node, airtm)  # raises StateFileError for a file it cannot use
    return app


def _setup_airtm(app: web.Application, config: SandboxConfig, clock: Clock, faults: Faults) -> AirtmSimulator:
    sim = AirtmSimulator(config, clock, faults)
    sim.setup(app)
    app[control.RESETTERS].append(sim.reset)
    app[control.STATE_PARTS]["airtm"] = sim.state
    return sim


async def _ledger_closer(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[horizon.NODE].close_loop())
    yield
    await cancel(task)
