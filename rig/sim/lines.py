"""Line protocols of simulated instruments: each line a client sends is answered with one line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


async def serve_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Callable[[str], str],
                      latency_s: float, connections: set[asyncio.StreamWriter], end: bytes = b"\n") -> None:
    """Answer each non-empty line (ASCII, surrounding blanks removed) with answer(line) + end, after latency_s,
    until the client disconnects; the writer is in `connections` meanwhile, so a stopping server can close it."""
    connections.add(writer)
    try:
        while line := await reader.readline():
            text = line.decode("ascii", errors="replace").strip()
            if not text:
                continue
            if latency_s:
                await asyncio.sleep(latency_s)
            writer.write(answer(text).encode("ascii", errors="replace") + end)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        connections.discard(writer)
        with contextlib.suppress(Exception):
            writer.close()
