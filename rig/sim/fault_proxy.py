"""A TCP proxy in front of one instrument's address that injects transport faults, switchable at run time.

Modes (every live connection follows a switch at once):

    pass      forward both ways
    freeze    forward nothing, hold what arrives and keep connections open; what was held flows on the next switch
    trickle   forward requests as they come; forward replies one byte every `trickle_s`
    garbage   forward requests (the instrument still obeys them); answer each request chunk with undecodable
              bytes (GARBAGE) instead of the instrument's reply
    drop      close every connection; a new one is accepted and closed at once

`FaultProxy` runs on an asyncio loop; `ProxyThread` serves one on a loop of its own for synchronous callers:

    with ProxyThread(("127.0.0.1", 5025)) as proxy:
        resource = f"TCPIP0::127.0.0.1::{proxy.port}::SOCKET"
        proxy.set_mode("trickle")
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from enum import StrEnum


class Mode(StrEnum):
    PASS = "pass"
    FREEZE = "freeze"
    TRICKLE = "trickle"
    GARBAGE = "garbage"
    DROP = "drop"


GARBAGE = b"\xff\xfe\x00\x80garbage\r\n\r\n"  # not ASCII, not a frame; ends an HTTP head
CHUNK = 65536


class FaultProxy:
    """Listens on host:port (0: a free port) and forwards each connection to upstream (host, port)."""

    def __init__(self, upstream: tuple[str, int], mode: Mode | str = Mode.PASS, trickle_s: float = 0.4,
                 host: str = "127.0.0.1", port: int = 0):
        self.upstream = upstream
        self.mode = Mode(mode)
        self.trickle_s = trickle_s
        self.host = host
        self.port = port
        self.connections = 0  # accepted so far, dropped ones too
        self._server: asyncio.Server | None = None
        self._changed: asyncio.Condition | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._changed = asyncio.Condition()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def set_mode(self, mode: Mode | str) -> None:
        self.mode = Mode(mode)
        if self.mode is Mode.DROP:
            self._close_all()
        async with self._changed:
            self._changed.notify_all()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _not_frozen(self) -> Mode:
        async with self._changed:
            await self._changed.wait_for(lambda: self.mode is not Mode.FREEZE)
        return self.mode

    # -- one connection --------------------------------------------------------------------------------

    async def _serve(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode is Mode.DROP:
            client.close()
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            client.close()
            return
        self._writers.update((client, upstream))
        pumps = [asyncio.create_task(self._requests(client_reader, upstream, client)),
                 asyncio.create_task(self._replies(upstream_reader, client))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client, upstream):
                self._writers.discard(writer)
                writer.close()

    async def _requests(self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter,
                        client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(CHUNK):
                mode = await self._not_frozen()
                if mode is Mode.DROP:
                    return
                upstream.write(chunk)
                if mode is Mode.GARBAGE:
                    client.write(GARBAGE)
                    await client.drain()
                await upstream.drain()

    async def _replies(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(CHUNK):
                while chunk:
                    mode = await self._not_frozen()
                    if mode is Mode.DROP:
                        return
                    if mode is Mode.GARBAGE:
                        break  # the client got garbage for its request instead
                    if mode is Mode.PASS:
                        client.write(chunk)
                        chunk = b""
                    else:
                        client.write(chunk[:1])
                        chunk = chunk[1:]
                        await asyncio.sleep(self.trickle_s)
                    await client.drain()


class ProxyThread:
    """A FaultProxy on an event loop in a daemon thread; start/stop/set_mode from any thread."""

    def __init__(self, upstream: tuple[str, int], mode: Mode | str = Mode.PASS, trickle_s: float = 0.4):
        self.proxy = FaultProxy(upstream, mode, trickle_s)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-proxy")

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def mode(self) -> Mode:
        return self.proxy.mode

    def _call(self, coroutine, timeout_s: float = 5.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def start(self) -> ProxyThread:
        self._thread.start()
        self._call(self.proxy.start())
        return self

    def set_mode(self, mode: Mode | str) -> None:
        self._call(self.proxy.set_mode(mode))

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self.proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._loop.close()

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()
