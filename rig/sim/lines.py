"""Line protocols of simulated instruments: each line a client sends is answered with one line.

Two framings: plain lines ended by LF (a CR before it is ignored), and Telnet (RFC 854) where CR LF, CR NUL, a
bare CR or a bare LF end a line, and the Telnet commands in the stream are taken out of the data. This side
supports no Telnet option (RFC 855): it refuses each one offered or asked for (DO x -> WONT x, WILL x -> DONT x),
ignores subnegotiations and the other commands, and reads IAC IAC as the data byte 0xFF. Bytes after the last
line end when the client disconnects are a fragment, never a command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
REFUSALS = {DO: WONT, WILL: DONT}  # the answer to a request for an option this side does not support
MAX_LINE_BYTES = 4096  # a longer line is noise: it is dropped


class TelnetLines:
    """Incremental RFC 854 decoder: `feed(data)` returns the lines completed and the bytes to send back."""

    def __init__(self):
        self._state = "data"
        self._verb = 0
        self._line = bytearray()
        self._after_cr = False
        self._overlong = False

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        lines: list[bytes] = []
        answer = bytearray()
        for byte in data:
            if self._state == "data":
                if byte == IAC:
                    self._state = "command"
                else:
                    self._data(byte, lines)
            elif self._state == "command":
                self._command(byte, lines)
            elif self._state == "option":
                if self._verb in REFUSALS:
                    answer += bytes((IAC, REFUSALS[self._verb], byte))
                self._state = "data"
            elif self._state == "subnegotiation":
                self._state = "subnegotiation-iac" if byte == IAC else self._state
            else:  # after IAC inside a subnegotiation: IAC SE ends it, IAC IAC is its data
                self._state = "data" if byte == SE else "subnegotiation"
        return lines, bytes(answer)

    def _command(self, byte: int, lines: list[bytes]) -> None:
        if byte == IAC:
            self._state = "data"
            self._data(byte, lines)  # IAC IAC: the data byte 0xFF
        elif byte in (WILL, WONT, DO, DONT):
            self._verb, self._state = byte, "option"
        elif byte == SB:
            self._state = "subnegotiation"
        else:  # NOP, GA, AYT, IP, ...: nothing this side acts on
            self._state = "data"

    def _data(self, byte: int, lines: list[bytes]) -> None:
        after_cr, self._after_cr = self._after_cr, False
        if byte in (0x0A, 0x00) and after_cr:
            return  # the LF of CR LF, the NUL of CR NUL: the line already ended at the CR
        if byte in (0x0D, 0x0A):
            self._after_cr = byte == 0x0D
            if not self._overlong:
                lines.append(bytes(self._line))
            self._line.clear()
            self._overlong = False
        elif len(self._line) >= MAX_LINE_BYTES:
            self._overlong = True
            self._line.clear()
        elif not self._overlong:
            self._line.append(byte)


async def serve_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Callable[[str], str],
                      latency_s: float, connections: set[asyncio.StreamWriter], end: bytes = b"\n",
                      telnet: bool = False) -> None:
    """Answer each non-empty line (ASCII, surrounding blanks removed) with answer(line) + end, after latency_s,
    until the client disconnects; the writer is in `connections` meanwhile, so a stopping server can close it.
    With `telnet`, the stream is read as Telnet (module docstring); else lines end with LF."""
    connections.add(writer)
    decoder = TelnetLines() if telnet else None
    try:
        while True:
            if decoder is None:
                try:
                    lines = [await reader.readuntil(b"\n")]
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    break  # the client went away mid-line, or sent a line no instrument would read
            else:
                data = await reader.read(4096)
                if not data:
                    break
                lines, refusals = decoder.feed(data)
                if refusals:
                    writer.write(refusals)
            for line in lines:
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
