"""The AirTM simulator: Enterprise API v2 subset, hosted checkout, Svix webhooks, control plane.

`AirtmSimulator(config, clock, faults).setup(app)` mounts everything on the sandbox app:
`/airtm/v2` (the API, `providers.md` §4.4), `/airtm/checkout/payin/{id}` (the buyer's page),
`/_sandbox/airtm/*` and `/_sandbox/webhooks/{id}/redeliver` (§4.5), and runs the webhook delivery
and clock tasks for the app's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from scripts.sandbox.airtm_api import PREFIX, AirtmApi
from scripts.sandbox.airtm_control import AirtmControl
from scripts.sandbox.airtm_settings import AirtmSettings
from scripts.sandbox.airtm_store import AirtmStore
from scripts.sandbox.airtm_webhooks import WebhookDeliverer
from scripts.sandbox.clock import Clock
from scripts.sandbox.config import SandboxConfig
from scripts.sandbox.faults import Faults

log = logging.getLogger(__name__)

#: How often due expiries and settlements are applied without a request asking.
TICK_SECONDS = 0.05


class AirtmSimulator:
    """One process's AirTM: its settings, records, webhook queue and routes."""

    def __init__(self, config: SandboxConfig, clock: Clock, faults: Faults) -> None:
        self.config = config
        self.settings = AirtmSettings.from_config(config)
        self.webhooks = WebhookDeliverer(self.settings, clock, faults)
        self.store = AirtmStore(self.settings, clock, self.webhooks.enqueue)
        self.api = AirtmApi(self.store, self.settings, faults)
        self.control = AirtmControl(self.store, self.settings, self.webhooks)

    def setup(self, app: web.Application) -> None:
        app.add_subapp(PREFIX, self.api.app())
        app.add_routes(self.control.routes())
        app.cleanup_ctx.append(self._running)

    async def _running(self, app: web.Application) -> AsyncIterator[None]:
        await self.webhooks.start()
        ticker = asyncio.create_task(self._tick_forever(), name="airtm-clock")
        yield
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await self.webhooks.stop()

    async def _tick_forever(self) -> None:
        while True:
            try:
                self.store.tick()
            except Exception:
                log.exception("Applying due AirTM changes failed.")
            await asyncio.sleep(TICK_SECONDS)

    def reset(self) -> None:
        """Empty the records and the delivery log; settings set at run time are configuration and stay."""
        self.store.reset()
        self.webhooks.reset()

    def to_state(self) -> dict[str, Any]:
        """Records and the webhook outbox; settings are configuration (the environment's at each start)."""
        return {"store": self.store.to_state(), "webhooks": self.webhooks.to_state()}

    def from_state(self, state: dict[str, Any]) -> None:
        self.store.from_state(state["store"])
        self.webhooks.from_state(state["webhooks"])

    def state(self) -> dict[str, Any]:
        return self.store.state() | {"webhooks": self.webhooks.state(), "settings": self.settings.to_json()}
