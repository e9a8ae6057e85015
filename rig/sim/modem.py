"""Simulated Quectel EC25 modem of one position on a pty, answering AT commands from the position's radio link.

The twin opens a pty and advertises its slave path as the role's resource. It follows ITU-T V.250 for the command
line and 3GPP TS 27.007 / the Quectel EC25 AT Commands Manual for the commands:

- A command line is 'AT' (or 'at') and commands up to S3 (CR; an LF right after it is ignored); S5 (backspace)
  edits; 'A/' repeats the previous line at once. Basic commands follow each other ('ATE0V1'), extended ones are
  separated by ';' ('AT+CSQ;+CEREG?'); the line ends with one final result code, or stops at the first error.
- Echo (E1) returns the line as received. V1 frames '<CR><LF>text<CR><LF>' and '<CR><LF>OK<CR><LF>'; V0 frames
  'text<CR><LF>' and numeric codes '0<CR>' (OK) / '4<CR>' (ERROR). Q1 suppresses result codes.
- Errors: an unknown command or a syntax error is ERROR; an MT error is '+CME ERROR: <err>' numeric (CMEE 1,
  the twin's factory value), verbose (CMEE 2) or plain ERROR (CMEE 0).
- Z restores the profile stored by &W, &F the factory profile (E1 V1 Q0 X4, CMEE 1, CREG/CGREG/CEREG 0).

    ATI, AT+GMI/+CGMI, +GMM/+CGMM, +GMR/+CGMR, +GSN/+CGSN, +GCAP, +CIMI, +QCCID, +CSUB, +CVERSION, +IPR
    AT+CPIN?    +CPIN: READY (+CME ERROR: 10 with the `sim_inserted: false` setting)
    AT+CREG? / +CGREG? / +CEREG?   +CEREG: <n>,<stat>[,"<tac>","<ci>",<AcT>]  stat 1 registered, 2 searching,
                0 radio off; AcT 7 (LTE), 0 (2G). =<n> (0..2) turns on the URC +CEREG: <stat>[,"<tac>","<ci>",<AcT>]
                on every change of registration
    AT+COPS?    +COPS: 0,<format>,"<operator>",<AcT>; AT+COPS=0 | =2 (deregister) | =3,<format>; =? the cell
    AT+CFUN?    +CFUN: <fun>; AT+CFUN=0|1|4 (0 and 4 turn the radio off: unregistered, no signal)
    AT+QNWINFO  +QNWINFO: "FDD LTE","<mcc><mnc>","LTE BAND <n>",<earfcn>  ("No Service" unregistered)
    AT+CSQ      +CSQ: <rssi>,99          rssi = (RSSI + 113) / 2, 0..31; 99 when unregistered
    AT+CESQ     +CESQ: 99,99,255,255,<rsrq>,<rsrp>   rsrp = RSRP + 140 (0..97), rsrq = 2 (RSRQ + 19.5) (0..34);
                                                      255 when unregistered or on 2G
    AT+QCSQ     +QCSQ: "LTE",<rssi>,<rsrp>,<sinr>,<rsrq>  (sinr = 5 (SINR + 20)); "GSM",<rssi> on 2G;
                "NOSERVICE" when unregistered
    AT+CMEE?/=<0|1|2>, ATE, ATV, ATQ, ATX, ATH, ATZ, AT&F, AT&W, AT&C, AT&D, ATS<n>?/=<v>
    AT+QCFG="nwscanmode"[,<0|1|3>[,<effect>]]   1 (GSM only) switches the link to its 2g profile, 3 and 0 to 4g
    AT+QURCCFG="urcport"[,"<port>"]

Signal values are the link's reported signal (`RadioLink.reported_signal`, which carries the
`link.rsrp_report_offset_db` defect). Settings: `manufacturer`, `model`, `revision`, `imei`, `imsi`, `iccid`,
`operator` (long name), `operator_short`, `plmn` (MCC MNC), `band` (LTE band), `earfcn`, `tac`, `ci`,
`sim_inserted`, `latency_s` (added before every answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import tty
from dataclasses import dataclass, replace

from rig.sim.link import RadioLink
from rig.sim.model import PhysicalModel

# 3GPP TS 27.007 9.2.1 (general errors), the texts of AT+CMEE=2
CME_ERRORS = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
              30: "no network service", 50: "Incorrect parameters"}
SCAN_MODES = {0: "4g", 1: "2g", 3: "4g"}
ACT = {"4g": 7, "2g": 0}
BAUD_RATES = (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
S_REGISTERS = {0: 0, 3: 13, 4: 10, 5: 8, 6: 2, 7: 0, 8: 2, 10: 15}  # V.250 6.2 defaults
EXTENDED = re.compile(r"^([+$^#%*][A-Z0-9!%\-./:_]+)(=\?|\?|=(.*))?$", re.DOTALL)
# numbers of at most 9 digits: a longer one is a syntax error (ERROR), never an integer to convert
BASIC = re.compile(r"^(&?[A-Z])(\d{0,9})$")
S_COMMAND = re.compile(r"^S(\d{1,9})(\?|=(\d{0,9}))$")
NUMERIC_CODES = {"OK": "0", "ERROR": "4"}


class AtError(Exception):
    """A command failed: `code` is its +CME ERROR number; None for ERROR (unknown command, syntax)."""

    def __init__(self, code: int | None = None):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Profile:
    """The settings ATZ, AT&F and AT&W act on."""

    echo: bool = True
    verbose: bool = True
    quiet: bool = False
    x: int = 4
    cmee: int = 1
    creg: int = 0
    cgreg: int = 0
    cereg: int = 0
    cops_format: int = 0
    c: int = 1
    d: int = 2
    s: tuple[tuple[int, int], ...] = tuple(S_REGISTERS.items())


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def split_arguments(text: str) -> list[str]:
    """'3,"a,b",1' -> ['3', '"a,b"', '1'] (commas inside quotes kept)."""
    arguments, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            arguments.append(current)
            current = ""
        else:
            current += char
    arguments.append(current)
    return arguments


def integer(argument: str, allowed) -> int:
    """The integer argument, one of `allowed`; else +CME ERROR 50."""
    if not re.fullmatch(r"\d{1,9}", argument) or int(argument) not in allowed:
        raise AtError(50)
    return int(argument)


def normalise(body: str) -> str:
    """The command line after 'AT': upper case and without spaces, except inside quotes."""
    out, quoted = [], False
    for char in body:
        if char == '"':
            quoted = not quoted
        if quoted or char == '"':
            out.append(char)
        elif char != " ":
            out.append(char.upper())
    if quoted:
        raise AtError()
    return "".join(out)


def split_commands(body: str) -> list[str]:
    """The commands of one line (V.250 5.2): basic ones back to back, extended ones up to ';'."""
    text, commands, i = normalise(body), [], 0
    while i < len(text):
        char = text[i]
        if char == ";":
            i += 1
            continue
        if char in "+$^#%*":
            end, quoted = i, False
            while end < len(text) and (quoted or text[end] != ";"):
                quoted ^= text[end] == '"'
                end += 1
            commands.append(text[i:end])
            i = end + 1
            continue
        match = re.match(r"S\d+(\?|=\d*)|&[A-Z]\d*|[A-Z]\d*", text[i:])
        if match is None:
            raise AtError()
        commands.append(match.group(0))
        i += match.end()
    return commands


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
        self.imei = str(settings.get("imei", luhn_completed(f"8667580400{position:04d}")))
        self.imsi = str(settings.get("imsi", f"40445{9000000000 + position:010d}"))
        self.iccid = str(settings.get("iccid", luhn_completed(f"899145{1000000000000 + position:013d}")))
        self.operator = str(settings.get("operator", "Vi India"))
        self.operator_short = str(settings.get("operator_short", "Vi"))
        self.plmn = str(settings.get("plmn", "40445"))
        self.band = int(settings.get("band", 3))
        self.earfcn = int(settings.get("earfcn", 1300))
        self.tac = str(settings.get("tac", "1A2B"))
        self.ci = str(settings.get("ci", f"01A2B3{position:02X}"))
        self.sim_inserted = bool(settings.get("sim_inserted", True))
        self.latency_s = float(settings.get("latency_s", 0.0))
        self.stored = Profile()
        self.profile = self.stored
        self.fun = 1
        self.deregistered = False  # AT+COPS=2
        self.baud_rate = 115200
        self.urc_port = "usbat"
        self.scan_mode = 3 if self.link.technology == "4g" else 1
        self.pty_path: str | None = None
        self._fds: tuple[int, int] | None = None
        self._buffer = b""
        self._last_line = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reported = self._registration()

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
        while (out := self._next_line()) is not None:
            self._send(out)

    def _next_line(self) -> bytes | None:
        """The answer to the next complete command line in the buffer (echo included); None when there is none."""
        self._buffer = self._buffer.lstrip(b"\n")  # the LF of a CR LF line end
        if self._buffer[:2] in (b"A/", b"a/"):
            self._buffer = self._buffer[2:]
            return (b"A/" if self.profile.echo else b"") + self.handle(self._last_line)
        end = self._buffer.find(self._s3)
        if end < 0:
            return None
        raw, self._buffer = self._buffer[:end], self._buffer[end + 1:]
        echo = raw + self._s3 if self.profile.echo and raw else b""
        line = edited(raw, self._s_value(5)).decode("ascii", errors="replace")
        prefix = re.search("AT|at", line)  # V.250 5.2.1: what comes before the prefix is ignored
        if prefix is None:
            return echo  # not a command line: nothing but the echo
        self._last_line = line[prefix.start():]
        return echo + self.handle(self._last_line)

    def _send(self, out: bytes) -> None:
        if not out:
            return
        if self.latency_s:
            self._loop.call_later(self.latency_s, self._write, out)
        else:
            self._write(out)

    def _write(self, data: bytes) -> None:
        if self._fds is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._fds[0], data)

    # -- framing (V.250 6.2.6) -------------------------------------------------------------------------------

    def _s_value(self, register: int) -> int:
        return dict(self.profile.s)[register]

    @property
    def _s3(self) -> bytes:
        return bytes([self._s_value(3)])

    def _info(self, lines: list[str]) -> bytes:
        s3, s4 = chr(self._s_value(3)), chr(self._s_value(4))
        head = s3 + s4 if self.profile.verbose else ""
        return "".join(f"{head}{line}{s3}{s4}" for line in lines).encode("ascii")

    def _result(self, code: str) -> bytes:
        if self.profile.quiet:
            return b""
        s3, s4 = chr(self._s_value(3)), chr(self._s_value(4))
        if self.profile.verbose:
            return f"{s3}{s4}{code}{s3}{s4}".encode("ascii")
        return f"{NUMERIC_CODES.get(code, code)}{s3}".encode("ascii")

    def _error(self, code: int | None) -> bytes:
        if code is None or self.profile.cmee == 0:
            return self._result("ERROR")
        return self._result(f"+CME ERROR: {CME_ERRORS[code] if self.profile.cmee == 2 else code}")

    # -- command lines ---------------------------------------------------------------------------------------

    def handle(self, line: str) -> bytes:
        """The framed answer to one command line ('AT...'), then any registration URC it caused."""
        out = b""
        try:
            commands = split_commands(line[2:])
        except AtError as error:
            return self._error(error.code)
        for command in commands:
            try:
                out += self._info(self.execute(command))
            except AtError as error:
                return out + self._error(error.code) + self._urcs()
        return out + self._result("OK") + self._urcs()

    def execute(self, command: str) -> list[str]:
        """The information lines of one command; AtError when it fails."""
        match = EXTENDED.match(command)
        if match:
            name, suffix, value = match.groups()
            handler = self._extended().get(name)
            if handler is None:
                raise AtError()
            kind = {None: "exec", "?": "read", "=?": "test"}.get(suffix, "set")
            return handler(kind, split_arguments(value) if kind == "set" else [])
        match = S_COMMAND.match(command)
        if match:
            return self._s_register(int(match.group(1)), match.group(3))
        match = BASIC.match(command)
        if match and match.group(1) in self._basic():
            return self._basic()[match.group(1)](match.group(2))
        raise AtError()

    # -- basic commands (V.250 6.1, 6.2) ---------------------------------------------------------------------

    def _basic(self) -> dict:
        return {"E": lambda v: self._flag("echo", v), "V": lambda v: self._flag("verbose", v),
                "Q": lambda v: self._flag("quiet", v), "X": lambda v: self._set("x", v, range(5)),
                "&C": lambda v: self._set("c", v, range(2)), "&D": lambda v: self._set("d", v, range(3)),
                "Z": lambda v: self._restore(v, self.stored), "&F": lambda v: self._restore(v, Profile()),
                "&W": self._store, "I": self._identification, "H": self._hang_up}

    @staticmethod
    def _hang_up(value: str) -> list[str]:
        """ATH: no call to hang up."""
        if value not in ("", "0"):
            raise AtError()
        return []

    def _flag(self, name: str, value: str) -> list[str]:
        return self._set(name, value, (0, 1), bool)

    def _set(self, name: str, value: str, allowed, kind=int) -> list[str]:
        """A basic command's value (missing: 0); a value out of range is ERROR (V.250 5.3.1)."""
        if int(value or "0") not in allowed:
            raise AtError()
        self.profile = replace(self.profile, **{name: kind(int(value or "0"))})
        return []

    def _restore(self, value: str, profile: Profile) -> list[str]:
        if value not in ("", "0"):
            raise AtError()
        self.profile = profile
        return []

    def _store(self, value: str) -> list[str]:
        if value not in ("", "0"):
            raise AtError()
        self.stored = self.profile
        return []

    def _identification(self, value: str) -> list[str]:
        if value not in ("", "0"):
            raise AtError()
        return [self.manufacturer, self.model_name, f"Revision: {self.revision}"]

    def _s_register(self, register: int, value: str | None) -> list[str]:
        registers = dict(self.profile.s)
        if register not in registers:
            raise AtError()
        if value is None:
            return [f"{registers[register]:03d}"]
        limit = 128 if register in (3, 4, 5) else 256
        if not value or int(value) >= limit:
            raise AtError()
        registers[register] = int(value)
        self.profile = replace(self.profile, s=tuple(registers.items()))
        return []

    # -- extended commands (3GPP TS 27.007, Quectel) ---------------------------------------------------------

    def _extended(self) -> dict:
        def constant(*lines: str):
            return lambda kind, _args: self._only_exec(kind, list(lines))
        return {"+GMI": constant(self.manufacturer), "+CGMI": constant(self.manufacturer),
                "+GMM": constant(self.model_name), "+CGMM": constant(self.model_name),
                "+GMR": constant(self.revision), "+CGMR": constant(self.revision),
                "+GSN": constant(self.imei), "+CGSN": constant(self.imei),
                "+GCAP": constant("+GCAP: +CGSM"), "+CSUB": constant("SubEdition: V02"),
                "+CVERSION": constant(f"VERSION: {self.revision}", "Jan 01 2020 00:00:00", "Authors: QCT"),
                "+CIMI": lambda kind, _a: self._only_exec(kind, [self._sim(self.imsi)]),
                "+QCCID": lambda kind, _a: self._only_exec(kind, [f"+QCCID: {self._sim(self.iccid)}"]),
                "+CPIN": self._cpin, "+CMEE": self._cmee, "+CFUN": self._cfun, "+COPS": self._cops,
                "+CREG": lambda kind, args: self._reg("+CREG", "creg", kind, args),
                "+CGREG": lambda kind, args: self._reg("+CGREG", "cgreg", kind, args),
                "+CEREG": lambda kind, args: self._reg("+CEREG", "cereg", kind, args),
                "+CSQ": lambda kind, _a: self._only_exec(kind, [self._csq()], "+CSQ: (0-31,99),(0-7,99)"),
                "+CESQ": lambda kind, _a: self._only_exec(kind, [self._cesq()]),
                "+QCSQ": lambda kind, _a: self._only_exec(kind, [self._qcsq()]),
                "+QNWINFO": lambda kind, _a: self._only_exec(kind, [self._qnwinfo()]),
                "+IPR": self._ipr, "+QCFG": self._qcfg, "+QURCCFG": self._qurccfg}

    @staticmethod
    def _only_exec(kind: str, lines: list[str], test: str | None = None) -> list[str]:
        if kind == "exec":
            return lines
        if kind == "test":
            return [test] if test else []
        raise AtError()

    def _sim(self, value: str) -> str:
        if not self.sim_inserted:
            raise AtError(10)
        return value

    def _cpin(self, kind: str, _args: list[str]) -> list[str]:
        if kind == "read":
            return [f"+CPIN: {self._sim('READY')}"]
        if kind == "test":
            return []
        self._sim("")
        raise AtError(3)  # no PIN is pending

    def _cmee(self, kind: str, args: list[str]) -> list[str]:
        if kind == "read":
            return [f"+CMEE: {self.profile.cmee}"]
        if kind == "test":
            return ["+CMEE: (0-2)"]
        if kind == "exec" or len(args) != 1:
            raise AtError(50)
        self.profile = replace(self.profile, cmee=integer(args[0] or "0", (0, 1, 2)))
        return []

    def _cfun(self, kind: str, args: list[str]) -> list[str]:
        if kind == "read":
            return [f"+CFUN: {self.fun}"]
        if kind == "test":
            return ["+CFUN: (0,1,4),(0-1)"]
        if kind == "exec" or len(args) > 2:
            raise AtError(50)
        fun = integer(args[0], (0, 1, 4))
        if len(args) == 2:
            integer(args[1], (0, 1))
        self.fun = fun
        return []

    def _cops(self, kind: str, args: list[str]) -> list[str]:
        if kind == "test":
            return [f'+COPS: (2,"{self.operator}","{self.operator_short}","{self.plmn}",7),,(0-4),(0-2)']
        if kind == "read":
            stat, act = self._registration()
            if stat not in (1, 5):
                return [f"+COPS: {2 if self.deregistered else 0}"]
            name = (self.operator, self.operator_short, self.plmn)[self.profile.cops_format]
            return [f'+COPS: 0,{self.profile.cops_format},"{name}",{act}']
        if kind == "exec" or not 1 <= len(args) <= 4:
            raise AtError(50)
        mode = integer(args[0], (0, 1, 2, 3, 4))
        if mode == 3:
            if len(args) != 2:
                raise AtError(50)
            self.profile = replace(self.profile, cops_format=integer(args[1], (0, 1, 2)))
        elif mode == 2:
            self.deregistered = True
        elif mode == 0:
            self.deregistered = False
        else:
            raise AtError(3)  # manual selection: the twin's cell is the only one
        return []

    def _reg(self, name: str, setting: str, kind: str, args: list[str]) -> list[str]:
        """AT+CREG / +CGREG / +CEREG: read, test and =<n>."""
        if kind == "read":
            return [f"{name}: {getattr(self.profile, setting)},{self._registration_fields(setting)}"]
        if kind == "test":
            return [f"{name}: (0-2)"]
        if kind == "exec" or len(args) != 1:
            raise AtError(50)
        self.profile = replace(self.profile, **{setting: integer(args[0] or "0", (0, 1, 2))})
        return []

    def _ipr(self, kind: str, args: list[str]) -> list[str]:
        if kind == "read":
            return [f"+IPR: {self.baud_rate}"]
        if kind == "test":
            return [f"+IPR: (),({','.join(map(str, BAUD_RATES))})"]
        if kind == "exec" or len(args) != 1:
            raise AtError(50)
        self.baud_rate = integer(args[0], BAUD_RATES)
        return []

    def _qcfg(self, kind: str, args: list[str]) -> list[str]:
        """AT+QCFG="nwscanmode"[,<mode>[,<effect>]]: 0 automatic, 1 GSM only, 3 LTE only."""
        if kind == "test":
            return ['+QCFG: "nwscanmode",(0,1,3),(0,1)']
        if kind != "set" or args[0].lower() != '"nwscanmode"' or len(args) > 3:
            raise AtError(50)
        if len(args) == 1:
            return [f'+QCFG: "nwscanmode",{self.scan_mode}']
        mode = integer(args[1], SCAN_MODES)
        if len(args) == 3:
            integer(args[2], (0, 1))
        self.scan_mode = mode
        self.link.set_technology(SCAN_MODES[mode], by=self.role)
        return []

    def _qurccfg(self, kind: str, args: list[str]) -> list[str]:
        """AT+QURCCFG="urcport"[,"usbat"|"usbmodem"|"uart1"]: where URCs go (all to this port on the twin)."""
        if kind != "set" or args[0].lower() != '"urcport"' or len(args) > 2:
            raise AtError(50)
        if len(args) == 1:
            return [f'+QURCCFG: "urcport","{self.urc_port}"']
        port = args[1].strip('"').lower()
        if port not in ("usbat", "usbmodem", "uart1"):
            raise AtError(50)
        self.urc_port = port
        return []

    # -- the radio ----------------------------------------------------------------------------------------------

    def _registered(self) -> bool:
        return self._registration()[0] in (1, 5)

    def _registration(self) -> tuple[int, int]:
        """(stat, AcT): 0 with the radio off or deregistered, 2 searching, 1 registered."""
        if self.fun != 1 or self.deregistered:
            return 0, ACT[self.link.technology]
        if not self.link.update():
            return 2, ACT[self.link.technology]
        return 1, ACT[self.link.technology]

    def _registration_fields(self, setting: str) -> str:
        """'<stat>[,"<tac>","<ci>",<AcT>]' as the mode (n) of `setting` reports it."""
        stat, act = self._registration()
        n = getattr(self.profile, setting)
        if n == 2 and stat in (1, 5):
            return f'{stat},"{self.tac}","{self.ci}",{act}'
        return str(stat)

    def _urcs(self) -> bytes:
        """The unsolicited registration codes due since the last report (CREG, CGREG, CEREG with n > 0)."""
        now = self._registration()
        if now == self._reported:
            return b""
        self._reported = now
        lines = [f"{name}: {self._registration_fields(setting)}"
                 for name, setting in (("+CREG", "creg"), ("+CGREG", "cgreg"), ("+CEREG", "cereg"))
                 if getattr(self.profile, setting)]
        return self._info(lines)

    def _registration_changed(self, _link: RadioLink) -> None:
        self._write(self._urcs())

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

    def _qnwinfo(self) -> str:
        if not self._registered():
            return "+QNWINFO: No Service"
        if self.link.technology != "4g":
            return f'+QNWINFO: "EDGE","{self.plmn}","GSM 1800",{self.earfcn % 1024}'
        return f'+QNWINFO: "FDD LTE","{self.plmn}","LTE BAND {self.band}",{self.earfcn}'


def edited(raw: bytes, backspace: int) -> bytes:
    """The line with each S5 (backspace) character removing the one before it (V.250 6.2.3)."""
    out = bytearray()
    for byte in raw:
        if byte == backspace:
            if out:
                out.pop()
        else:
            out.append(byte)
    return bytes(out)


def luhn_completed(digits: str) -> str:
    """`digits` with its Luhn check digit appended (the 15th digit of an IMEI, the last of an ICCID)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return digits + str((10 - total % 10) % 10)
