"""Simulated cover switch of one meter position: opens and closes the meter's terminal cover in the model, as a
bench's cover actuator (or an operator told to) would. Opening it is a tamper the twin meter logs.

Protocol: ASCII lines over TCP (resource tcp://127.0.0.1:<port>), each ended by LF (a CR before it is ignored; what
a disconnecting client left without an LF is not a command), commands case-insensitive; exactly one reply line per
command, ended by LF:

    OPEN     -> OK                 open the cover (already open: nothing changes)
    CLOSE    -> OK                 close the cover (already closed: nothing changes)
    STATE?   -> OPEN | CLOSED      the cover as it is now
    *IDN?    -> Rig Twin,COVER-SWITCH,<meter serial>,1.0
    other    -> ERR unknown command '<line as received>'

Settings: `latency_s` (added before every answer). Truth event: cover (position, open, by) on every change.
"""

from __future__ import annotations

import asyncio

from rig.sim.lines import serve_lines
from rig.sim.model import PhysicalModel


class CoverSwitchSim:
    """The cover switch of position N (role 'cover@N'); driver 'cover_switch', transport 'tcp'."""

    transport = "tcp"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        self.position = model.position_of(role, "cover", "the cover switch twin")
        self.role = role
        self.model = model
        self.latency_s = float(settings.get("latency_s", 0.0))
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    def handle(self, line: str) -> str:
        """The reply to one command line."""
        command = line.strip().upper()
        meter = self.model.meter(self.position)
        if command in ("OPEN", "CLOSE"):
            self.model.set_cover(self.position, command == "OPEN", by=self.role)
            return "OK"
        if command == "STATE?":
            return "OPEN" if meter.cover_open else "CLOSED"
        if command == "*IDN?":
            return f"Rig Twin,COVER-SWITCH,{meter.serial},1.0"
        return f"ERR unknown command {line.rstrip(chr(13))!r}"

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0: any free port); return the bound port."""
        self._server = await asyncio.start_server(self._serve, host=host, port=port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._connections):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_lines(reader, writer, self.handle, self.latency_s, self._connections)
