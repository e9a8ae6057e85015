"""Simulated Quectel EC25 modem of one position on a pty, answering AT commands from the position's radio link.

The twin opens a pty and advertises its slave path as the role's resource. Commands end in CR; the modem echoes
them until ATE0 and frames every answer as a Quectel does: '\\r\\n<info>\\r\\n' lines, then '\\r\\nOK\\r\\n',
'\\r\\nERROR\\r\\n' or '\\r\\n+CME ERROR: <text>\\r\\n' (AT+CMEE=2; numeric with 1, plain ERROR with 0).

    AT, ATE0/ATE1, AT+CMEE=<0|1|2>, ATI, AT+CGMR, AT+CGSN
    AT+CSQ      +CSQ: <rssi>,99          rssi = (RSSI + 113) / 2, 0..31; 99 when unregistered
    AT+CESQ     +CESQ: 99,99,255,255,<rsrq>,<rsrp>   rsrp = RSRP + 140 (0..97), rsrq = 2 (RSRQ + 19.5) (0..34);
                                                      255 when unregistered or on 2G
    AT+QCSQ     +QCSQ: "LTE",<rssi>,<rsrp>,<sinr>,<rsrq>  (sinr = 5 (SINR + 20)); "GSM",<rssi> on 2G;
                "NOSERVICE" when unregistered
    AT+CEREG?   +CEREG: <n>,<stat>[,"<tac>","<ci>",<AcT>]  stat 1 registered, 2 searching; AcT 7 (LTE), 0 (2G)
    AT+CEREG=<0|1|2>          unsolicited +CEREG: <stat>[,"<tac>","<ci>",<AcT>] on every registration change
    AT+QCFG="nwscanmode"[,<0|1|3>[,<effect>]]   1 (GSM only) switches the link to its 2g profile, 3 and 0 to 4g

Signal values are the link's reported signal (`RadioLink.reported_signal`, which carries the
`link.rsrp_report_offset_db` defect). Settings: `manufacturer`, `model`, `revision`, `imei`, `tac`, `ci`,
`latency_s` (added before every answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import tty

from rig.sim.link import RadioLink
from rig.sim.model import PhysicalModel

CME_ERRORS = {3: "operation not allowed", 4: "operation not supported", 50: "Incorrect parameters"}
SCAN_MODES = {0: "4g", 1: "2g", 3: "4g"}
ACT = {"4g": 7, "2g": 0}
QCFG = re.compile(r'^AT\+QCFG="NWSCANMODE"(?:,(\d+)(?:,([01]))?)?$')


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


class ModemSim:
    """The modem of position N (role 'modem@N'); driver 'at_modem', transport 'pty'."""

    transport = "pty"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        position = model.position_of(role, "modem", "the modem twin")
        self.link: RadioLink = model.radio(position)
        self.role = role
        self.model = model
        self.position = position
        self.manufacturer = str(settings.get("manufacturer", "Quectel"))
        self.model_name = str(settings.get("model", "EC25"))
        self.revision = str(settings.get("revision", "EC25EFAR06A03M4G"))
        self.imei = str(settings.get("imei", f"8667580400{position:05d}"))
        self.tac = str(settings.get("tac", "1A2B"))
        self.ci = str(settings.get("ci", f"01A2B3{position:02X}"))
        self.latency_s = float(settings.get("latency_s", 0.0))
        self.echo = True
        self.cmee = 0
        self.cereg_n = 0
        self.scan_mode = 3 if self.link.technology == "4g" else 1
        self.pty_path: str | None = None
        self._fds: tuple[int, int] | None = None
        self._buffer = b""
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- transport -------------------------------------------------------------------------------------------

    async def start_pty(self) -> str:
        """Open the pty, answer on its master; return the slave's path (the role's resource)."""
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._fds = (master, slave)  # the slave stays open here, so the master never sees a hang-up
        self.pty_path = os.ttyname(slave)
        self._loop.add_reader(master, self._readable)
        self.link.add_listener(self._registration_changed)
        return self.pty_path

    async def stop(self) -> None:
        if self._fds is not None:
            master, slave = self._fds
            self._fds = None
            self._loop.remove_reader(master)
            os.close(master)
            os.close(slave)

    def _readable(self) -> None:
        try:
            data = os.read(self._fds[0], 4096)
        except OSError:
            return
        self._buffer += data
        while True:
            match = re.search(rb"[\r\n]", self._buffer)
            if match is None:
                return
            line, self._buffer = self._buffer[:match.start()], self._buffer[match.end():]
            text = line.decode("ascii", errors="replace").strip()
            if not text:
                continue
            out = (line + b"\r") if self.echo else b""
            out += self.handle(text)
            if self.latency_s:
                self._loop.call_later(self.latency_s, self._write, out)
            else:
                self._write(out)

    def _write(self, data: bytes) -> None:
        if self._fds is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._fds[0], data)

    def _registration_changed(self, _link: RadioLink) -> None:
        if self.cereg_n:
            self._write(f"\r\n+CEREG: {self._cereg_fields()}\r\n".encode("ascii"))

    # -- AT commands -----------------------------------------------------------------------------------------

    @staticmethod
    def _ok(*info: str) -> bytes:
        return b"".join(f"\r\n{line}\r\n".encode("ascii") for line in info) + b"\r\nOK\r\n"

    def _error(self, code: int = 50) -> bytes:
        if self.cmee == 2:
            return f"\r\n+CME ERROR: {CME_ERRORS[code]}\r\n".encode("ascii")
        if self.cmee == 1:
            return f"\r\n+CME ERROR: {code}\r\n".encode("ascii")
        return b"\r\nERROR\r\n"

    def handle(self, command: str) -> bytes:
        """The framed answer to one command line."""
        text = command.upper()
        queries = {"AT": self._ok, "ATI": lambda: self._ok(self.manufacturer, self.model_name,
                                                            f"Revision: {self.revision}"),
                   "AT+CGMR": lambda: self._ok(self.revision), "AT+CGSN": lambda: self._ok(self.imei),
                   "AT+CSQ": lambda: self._ok(self._csq()), "AT+CESQ": lambda: self._ok(self._cesq()),
                   "AT+QCSQ": lambda: self._ok(self._qcsq()),
                   "AT+CEREG?": lambda: self._ok(f"+CEREG: {self.cereg_n},{self._cereg_fields()}")}
        if text in queries:
            return queries[text]()
        if text in ("ATE0", "ATE1", "ATE"):
            self.echo = text == "ATE1"
            return self._ok()
        for prefix, setting in (("AT+CMEE=", "cmee"), ("AT+CEREG=", "cereg_n")):
            if text.startswith(prefix):
                return self._set_mode(setting, text.removeprefix(prefix))
        match = QCFG.match(text)
        if match:
            return self._nwscanmode(match.group(1))
        if text.startswith("AT"):
            return b"\r\nERROR\r\n"  # a command this modem does not know
        return b""  # not a command at all: a modem stays silent

    def _set_mode(self, setting: str, value: str) -> bytes:
        """AT+CMEE=n or AT+CEREG=n: n is 0, 1 or 2."""
        if value not in ("0", "1", "2"):
            return self._error()
        setattr(self, setting, int(value))
        return self._ok()

    def _registered(self) -> bool:
        return self.link.update()

    def _csq(self) -> str:
        if not self._registered():
            return "+CSQ: 99,99"
        rssi = self.link.reported_signal().rssi_dbm
        return f"+CSQ: {clamp(round((rssi + 113) / 2), 0, 31)},99"

    def _cesq(self) -> str:
        if not self._registered() or self.link.technology != "4g":
            return "+CESQ: 99,99,255,255,255,255"
        signal = self.link.reported_signal()
        rsrp = clamp(math.floor(signal.rsrp_dbm) + 140, 0, 97)
        rsrq = clamp(math.floor((signal.rsrq_db + 19.5) * 2), 0, 34)
        return f"+CESQ: 99,99,255,255,{rsrq},{rsrp}"

    def _qcsq(self) -> str:
        if not self._registered():
            return '+QCSQ: "NOSERVICE"'
        signal = self.link.reported_signal()
        if self.link.technology != "4g":
            return f'+QCSQ: "GSM",{round(signal.rssi_dbm)}'
        sinr = clamp(round((signal.sinr_db + 20) * 5), 0, 250)
        return (f'+QCSQ: "LTE",{round(signal.rssi_dbm)},{round(signal.rsrp_dbm)},{sinr},'
                f'{round(signal.rsrq_db)}')

    def _cereg_fields(self) -> str:
        """'<stat>[,"<tac>","<ci>",<AcT>]' as the present mode (n) reports it."""
        if not self._registered():
            return "2"
        if self.cereg_n == 2:
            return f'1,"{self.tac}","{self.ci}",{ACT[self.link.technology]}'
        return "1"

    def _nwscanmode(self, mode: str | None) -> bytes:
        if mode is None:
            return self._ok(f'+QCFG: "nwscanmode",{self.scan_mode}')
        if int(mode) not in SCAN_MODES:
            return self._error()
        self.scan_mode = int(mode)
        self.link.set_technology(SCAN_MODES[self.scan_mode], by=self.role)
        return self._ok()
