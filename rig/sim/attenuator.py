"""Simulated Mini-Circuits RCDAT attenuator in front of one position's modem, on HTTP (aiohttp) or Telnet.

Answers GET /<command> (HTTP) or lines ':<command>' (Telnet: a line ends with CR LF, CR NUL, CR or LF, the answer
with CR LF, and every Telnet option a client offers or asks for is refused, see rig.sim.lines):
MN? -> 'MN=<model>', SN? -> 'SN=<serial>', FIRMWARE? -> 'FIRMWARE=<firmware>', ATT? -> the attenuation ('30.25'),
SETATT=<dB> -> 1 (set), 0 (refused: not a number, below 0 or off the 0.25 dB step) or 2 (above the model's range:
the maximum is set, as the real unit does); anything else -> '-99 Unrecognized Command'. Every attenuation it sets
goes to the position's radio link (`model.radio(position).set_attenuation`), which writes the truth event
'link.attenuation'.

Settings: `model` (default 'RCDAT-6000-110'; the range is the name's last number), `serial`, `firmware`,
`latency_s` (added before every answer). The transport follows the role's resource: 'http://' or 'telnet://'.
"""

from __future__ import annotations

import asyncio
import math

from aiohttp import web

from rig.errors import ConfigError
from rig.sim.lines import serve_lines
from rig.sim.model import PhysicalModel

STEP_DB = 0.25
UNRECOGNIZED = "-99 Unrecognized Command"


class RcdatSim:
    """The RCDAT of position N (role 'attenuator@N'); driver 'rcdat', transport 'http' or 'telnet'."""

    transports = ("http", "telnet")

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        position = model.position_of(role, "attenuator", "the RCDAT twin")
        self.link = model.radio(position)
        self.role = role
        self.position = position
        self.model_name = str(settings.get("model", "RCDAT-6000-110"))
        try:
            self.max_db = float(self.model_name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            raise ConfigError(f"{role}: model {self.model_name!r} does not end in its range, e.g. "
                              f"'RCDAT-6000-110'") from None
        self.serial = str(settings.get("serial", f"SIM{position:08d}"))
        self.firmware = str(settings.get("firmware", "C9"))
        self.latency_s = float(settings.get("latency_s", 0.0))
        self.transport: str | None = None  # set by the twin from the role's resource
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    # -- the instrument ------------------------------------------------------------------------------------

    def handle(self, command: str) -> str:
        text = command.strip().lstrip(":/").upper()
        if text == "MN?":
            return f"MN={self.model_name}"
        if text == "SN?":
            return f"SN={self.serial}"
        if text == "FIRMWARE?":
            return f"FIRMWARE={self.firmware}"
        if text == "ATT?":
            return f"{self.link.attenuation_db:.2f}"
        if text.startswith("SETATT="):
            return self._set(text.removeprefix("SETATT="))
        return UNRECOGNIZED

    def _set(self, value_text: str) -> str:
        try:
            value = float(value_text)
        except ValueError:
            return "0"
        if not math.isfinite(value) or value < 0 or abs(value / STEP_DB - round(value / STEP_DB)) > 1e-9:
            return "0"
        if value > self.max_db:
            self.link.set_attenuation(self.max_db, by=self.role)
            return "2"
        self.link.set_attenuation(value, by=self.role)
        return "1"

    # -- transports ----------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Serve the transport the twin chose (HTTP or Telnet) on host:port (0: a free port); the bound port."""
        try:
            if self.transport == "telnet":
                self._server = await asyncio.start_server(self._serve_telnet, host=host, port=port)
                return self._server.sockets[0].getsockname()[1]
            app = web.Application()
            app.router.add_get("/{command:.*}", self._serve_http)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, host, port).start()
            return self._runner.addresses[0][1]
        except OSError as exc:
            raise ConfigError(f"{self.role}: cannot serve {self.transport} on {host}:{port}: {exc.strerror}") from None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            self._server = None

    async def _serve_http(self, request: web.Request) -> web.Response:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return web.Response(text=self.handle(request.raw_path))

    async def _serve_telnet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_lines(reader, writer, self.handle, self.latency_s, self._connections, end=b"\r\n",
                          telnet=True)
