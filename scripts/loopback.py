"""An aiohttp server on a loopback port of this process: the webhook receivers of the benchmarks and the
chaos run stand behind one (``WEBHOOKS_ALLOW_PRIVATE`` lets their instances deliver to 127.0.0.1)."""

from __future__ import annotations

from aiohttp import web

from scripts.ports import free_port


class LoopbackServer:
    """``url = await server.start(app)`` … ``await server.stop()``."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None

    async def start(self, app: web.Application) -> str:
        """Serve ``app`` on 127.0.0.1 at a free port; its base URL."""
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
