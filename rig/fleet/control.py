"""The control channel of a shard in a local process: JSON lines over TCP on 127.0.0.1.

Request: {"id": <int>, "method": <a FleetShard control method>, "args": {<keyword arguments>}}
Answer:  {"id": <same>, "result": <the method's JSON result>} or {"id": <same>, "error": "<why>"}
One request at a time per connection; a client may keep its connection for many requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from rig.errors import RigError
from rig.fleet.shard import CONTROL_METHODS, FleetShard

MAX_LINE = 16 * 1024 * 1024  # a meters() or states() answer of 100,000 meters fits


class ControlServer:
    """Serves a shard's control API on 127.0.0.1:port (0: a free port)."""

    def __init__(self, shard: FleetShard):
        self.shard = shard
        self._server: asyncio.AbstractServer | None = None
        self.port: int | None = None

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port, limit=MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def call(self, request: dict) -> dict:
        method, args = request.get("method"), request.get("args") or {}
        if method not in CONTROL_METHODS:
            return {"error": f"unknown control method {method!r} (known: {', '.join(sorted(CONTROL_METHODS))})"}
        if not isinstance(args, dict):
            return {"error": f"{method}: args must be an object"}
        try:
            return {"result": await getattr(self.shard, method)(**args)}
        except TypeError as exc:
            return {"error": f"{method}: {exc}"}
        except RigError as exc:
            return {"error": str(exc)}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                except ValueError:
                    answer = {"error": "request is not JSON"}
                    request = {}
                else:
                    answer = await self.call(request if isinstance(request, dict) else {})
                answer["id"] = request.get("id") if isinstance(request, dict) else None
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()


class ControlClient:
    """One connection to a shard's control server; `call` sends a request and awaits its answer."""

    def __init__(self, host: str, port: int, name: str):
        self.host, self.port, self.name = host, port, name
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=MAX_LINE)
        except OSError as exc:
            raise RigError(f"{self.name}: control channel {self.host}:{self.port} unreachable: "
                           f"{exc.strerror or exc}") from None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def call(self, method: str, **args):
        async with self._lock:
            if self._writer is None:
                await self.connect()
            self._next_id += 1
            self._writer.write(json.dumps({"id": self._next_id, "method": method, "args": args}).encode() + b"\n")
            await self._writer.drain()
            line = await self._reader.readline()
        if not line:
            raise RigError(f"{self.name}: control channel closed during {method}")
        answer = json.loads(line)
        if "error" in answer:
            raise RigError(f"{self.name}: {method}: {answer['error']}")
        return answer["result"]
