"""A TCP proxy in front of PostgreSQL, run as its own process by the fault suite
(``python -m faults.proxy LISTEN_PORT TARGET_PORT``): killing it makes the database
unreachable for the worker and the API (live connections reset, new ones refused) without
stopping the machine's server; starting it again brings it back. Its own process, so the
suite's relay and bookkeeping never delay the store's round trips it measures."""

from __future__ import annotations

import asyncio
import contextlib
import sys


class Proxy:
    def __init__(self, *, listen_port: int, target_host: str, target_port: int) -> None:
        self.listen_port = listen_port
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.listen_port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._live):
            writer.transport.abort()
        self._live.clear()

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._live.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._live.discard(writer)
            self._live.discard(up_writer)
            for w in (writer, up_writer):
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.transport.abort()


async def serve(listen_port: int, target_port: int) -> None:
    proxy = Proxy(listen_port=listen_port, target_host="127.0.0.1", target_port=target_port)
    await proxy.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))
