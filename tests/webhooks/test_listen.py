"""``offerhub webhooks listen --forward-to URL``: live events, signed with the printed secret, reach a real
local receiver; Ctrl-C ends it with exit status 130."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from orchestrator.client import webhooks as sdk
from tests.api import unique
from tests.webhooks.conftest import Received, Receiver, eventually

OFFERHUB = Path(sys.executable).with_name("offerhub")


async def test_listen_forwards_live_events_signed_with_the_printed_secret(
        receiver: Receiver, server_url: str, master_key: str, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OFFERHUB_API_")}, "HOME": str(tmp_path),
           "NO_COLOR": "1", "OFFERHUB_API_URL": server_url, "OFFERHUB_API_KEY": master_key}
    listen = await asyncio.create_subprocess_exec(
        str(OFFERHUB), "webhooks", "listen", "--forward-to", receiver.url, "--events", "user.created",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        assert listen.stderr is not None
        banner = (await asyncio.wait_for(listen.stderr.readline(), 30)).decode()
        secret = re.search(r"(whsec_\S+)", banner)
        assert secret, banner
        await asyncio.sleep(1.5)  # the stream connects after the banner
        async with aiohttp.ClientSession() as http, http.post(
                f"{server_url}/api/v1/users", json={"externalUserId": unique("listen")},
                headers={"Authorization": f"Bearer {master_key}"}) as reply:
            user_id = (await reply.json())["data"]["id"]

        def forwarded() -> list[Received]:
            return [r for r in receiver.requests if json.loads(r.body)["aggregateId"] == user_id]

        request = (await eventually(forwarded, what="the forwarded event"))[0]
        event = sdk.verify(secret.group(1), request.headers, request.body)
        assert event["eventType"] == "user.created"
        assert request.headers["webhook-id"] == event["eventId"]
        assert int(request.headers["OfferHub-Event-Position"]) > 0
        listen.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(listen.wait(), 15) == 130
    finally:
        if listen.returncode is None:
            listen.kill()
            await listen.wait()
