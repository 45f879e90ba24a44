"""A TCP proxy between the chaos run's processes and PostgreSQL that can drop every connection at once.

``python -m scripts.chaos.proxy --target 127.0.0.1:5432`` listens on a free loopback port, prints
``PROXY_READY <port>`` and forwards bytes both ways. ``SIGUSR1`` closes every connection it carries
(both sides, abruptly), as a network blip or a PostgreSQL failover would; new connections are accepted
again at once. Only the connections made through this proxy are touched: the shared PostgreSQL and
everybody else's sessions never notice. The number of connections dropped so far is printed as
``DROPPED <n>`` after each drop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.live: set[asyncio.StreamWriter] = set()
        self.dropped = 0

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            client_writer.close()
            return
        pair = {client_writer, server_writer}
        self.live |= pair
        try:
            await asyncio.gather(self.pipe(client_reader, server_writer), self.pipe(server_reader, client_writer))
        finally:
            self.live -= pair
            for writer in pair:
                writer.close()

    @staticmethod
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    def drop_all(self) -> None:
        """Reset every carried connection (SO_LINGER 0: an RST, not a polite FIN)."""
        for writer in list(self.live):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.transport.abort()
        self.dropped += len(self.live) // 2
        self.live.clear()
        print(f"DROPPED {self.dropped}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.chaos.proxy",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--target", default="127.0.0.1:5432")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    proxy = Proxy(host, int(port))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port, backlog=512)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, proxy.drop_all)
    print(f"PROXY_READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
