"""Run the sandbox: `python -m scripts.sandbox [--port N]` (port 0 picks a free port).

Prints `SANDBOX_READY <url>` on stdout once listening, so a parent process can read the port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import sys

from aiohttp import web

from scripts.sandbox.app import create_app
from scripts.sandbox.config import SandboxConfig
from scripts.sandbox.state import StateFileError


async def serve(config: SandboxConfig, sock: socket.socket) -> None:
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=True)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(f"SANDBOX_READY {config.public_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.sandbox")
    parser.add_argument("--port", type=int, default=None, help="overrides SANDBOX_PORT; 0 picks a free port")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = SandboxConfig.from_env()
    port = config.port if args.port is None else args.port
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, port))
    port = sock.getsockname()[1]
    public_url = os.environ.get("SANDBOX_URL") or f"http://{config.host}:{port}"
    config = dataclasses.replace(config, port=port, public_url=public_url)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(config, sock))
    except StateFileError as exc:  # one line for the operator, never a traceback
        print(f"sandbox: cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
