"""Cellular modems (Quectel EC25 / BG96 and alike) on their AT port, over pyserial.

Resource: a serial device path ('/dev/ttyUSB2', a pty such as '/dev/pts/7'), or 'ASRL<path>::INSTR'. The port
is opened exclusively (a port another process holds is refused, naming it), then set up as modem managers do:
ATE0Q0V1 (echo off, result codes on and verbose, whatever the modem was left in), AT+CMEE=2 (verbose
+CME ERROR texts) and AT+CPIN? (the SIM's state, kept as `sim_status`; a missing SIM does not stop the rig
reading signal). A reader thread reads the port continuously, so an unsolicited result code is told from a reply
by its syntax and stamped on the rig's monotonic clock when it arrives, between replies or in the middle of one:
'+CREG/+CGREG/+CEREG: <stat>[,"<tac>","<ci>",<AcT>]' (the read answer has <n> first), and URCs such as RDY,
+QIND, +CPIN or +CFUN whose prefix is not the command's own.

Public methods (role interface `rig.roles.Modem`):
- `identify()` -> Identity(manufacturer and model from ATI, serial = IMEI from AT+CGSN, firmware from AT+CGMR);
- `signal()` -> ModemSignal(rssi_dbm, rsrp_dbm, rsrq_db, sinr_db, mode) from AT+CSQ (dBm = -113 + 2 x rssi,
  99 unknown), AT+CESQ (RSRP dBm = idx - 140, RSRQ dB = idx / 2 - 19.5, 255 unknown) and AT+QCSQ (Quectel:
  "LTE",rssi,rsrp,sinr,rsrq in dBm / dB, SINR dB = v / 5 - 20); None where the modem reports unknown. `csq()`,
  `cesq()` and `qcsq()` give each command's own reading;
- `registration()` -> Registration(stat, status, registered, tac, ci, act) from AT+CEREG? (stat 1 home,
  2 searching, 3 denied, 5 roaming; AcT 7 LTE, 9 NB-IoT);
- `enable_registration_urcs()` (AT+CEREG=2) and `registration_events()` -> [RegistrationEvent(t_mono, stat,
  status, registered, act, line)] of every unsolicited +CEREG received since open (+CREG and +CGREG URCs go to
  the transcript only);
- `technology()` / `set_technology('4g' | '2g' | 'auto')` through AT+QCFG="nwscanmode" (3 LTE only, 1 GSM only,
  0 automatic);
- `command(text)` -> the information lines of any AT command.
Replies are parsed strictly: a line that is not the expected answer raises InstrumentError quoting it; ERROR and
'+CME ERROR: <text>' raise InstrumentError with the text; no final result within timeout_s raises
InstrumentTimeout. make_safe() has nothing to switch.

Settings: `baudrate` (default 115200).
"""

from __future__ import annotations

import errno
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Annotated

import serial
from pydantic import Field

from rig.config import DriverSettings, RoleConfig
from rig.driver import Driver, Identity
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout
from rig.resources import Accepts
from rig.roles import Modem

READ_POLL_S = 0.02
REGISTRATION_STATUS = {0: "not registered", 1: "registered, home network", 2: "searching",
                       3: "registration denied", 4: "unknown", 5: "registered, roaming"}
TECHNOLOGY_OF_SCAN_MODE = {0: "auto", 1: "2g", 3: "4g"}
SCAN_MODE_OF_TECHNOLOGY = {name: mode for mode, name in TECHNOLOGY_OF_SCAN_MODE.items()}
FINAL_ERROR = re.compile(r"^\+CM[ES] ERROR: ?(.*)$")
INTEGER = re.compile(r"^-?\d{1,10}$")  # AT numbers are small: a longer run of digits is garbage, not an integer
REGISTRATION_URC = re.compile(r'^\+C(E|G)?REG: ?(\d{1,10})(,"[^"]*","[^"]*"(?:,(\d{1,10}))?.*)?$')
# unsolicited result codes a Quectel sends unasked (27.007, EC25 manual 'URC'); a reply only to its own command
URC_PREFIXES = ("RDY", "POWERED DOWN", "+CPIN:", "+CFUN:", "+QIND:", "+QUSIM:", "+QSIMSTAT:", "+CTZE:", "+CTZV:",
                "+QIURC:", "+CMTI:", "+CUSD:", "+QNITZ:", "RING")


@dataclass(frozen=True)
class ModemSignal:
    """Radio conditions as the modem reports them; None where it reports unknown."""

    rssi_dbm: float | None
    rsrp_dbm: float | None
    rsrq_db: float | None
    sinr_db: float | None
    mode: str  # AT+QCSQ's system mode: "LTE", "GSM", "NOSERVICE", ...


@dataclass(frozen=True)
class Registration:
    stat: int
    status: str
    registered: bool
    tac: str | None = None
    ci: str | None = None
    act: int | None = None


@dataclass(frozen=True)
class RegistrationEvent:
    """One unsolicited +CEREG, stamped on the rig's monotonic clock when its line arrived."""

    t_mono: float
    stat: int
    status: str
    registered: bool
    act: int | None
    line: str


def lock_holders(path: str) -> list[int]:
    """Process ids holding a flock on the device (from /proc/locks; empty where it cannot be read)."""
    try:
        status = os.stat(path)
        with open("/proc/locks") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return []
    device = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    holders = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            holders.append(int(fields[4]))
    return holders


def own_prefixes(text: str) -> set[str]:
    """The information prefixes of a command line's own answers: 'AT+CPIN?;+CFUN?' -> {'+CPIN:', '+CFUN:'}."""
    return {name + ":" for name in re.findall(r"[+$^#%*][A-Z0-9]+", text.upper())}


def is_unsolicited(line: str, own: set[str]) -> bool:
    """A line that can only be an unsolicited result code here (a URC prefix that is not the command's own)."""
    return any(line.startswith(prefix) for prefix in URC_PREFIXES) and line.split(" ", 1)[0] not in own


class ModemSettings(DriverSettings):
    """Settings of a modem's AT port."""

    baudrate: Annotated[int, Field(gt=0)] = 115200


class AtModem(Driver, Modem):
    """A modem's AT port playing 'modem@<n>'. Exchanges are serialised by a lock."""

    SETTINGS_MODEL = ModemSettings
    ACCEPTS = Accepts(("serial",), "a modem's AT port is a serial device path such as '/dev/ttyUSB2'")

    def __init__(self, role: str, config: RoleConfig, *args, **kwargs):
        super().__init__(role, config, *args, **kwargs)
        self.port = self.resource.path
        self.baudrate = self.settings.baudrate
        self._serial: serial.Serial | None = None
        self._lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self._events: list[RegistrationEvent] = []
        self._events_lock = threading.Lock()
        self._exchange_lock = threading.Lock()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._reader_error: str | None = None
        self.sim_status: str | None = None  # "READY", "SIM PIN", ... or the error AT+CPIN? gave

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.role} ({self.port})"

    def open(self) -> None:
        if not os.path.exists(self.port):
            raise InstrumentError(f"{self._where()}: no serial port {self.port} (is the modem connected and the "
                                  f"resource of {self.role} right?)")
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=READ_POLL_S, exclusive=True)
        except serial.SerialException as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in str(exc):
                holders = lock_holders(self.port)
                held_by = f" (pid {', '.join(map(str, holders))})" if holders else ""
                raise InstrumentError(f"{self._where()}: serial port {self.port} is held by another "
                                      f"process{held_by}") from None
            if exc.errno == errno.ENOENT:
                raise InstrumentError(f"{self._where()}: no serial port {self.port}") from None
            raise InstrumentError(f"{self._where()}: cannot open serial port {self.port}: {exc}") from None
        self._stop.clear()
        self._reader = threading.Thread(target=self._read_lines, daemon=True, name=f"at {self.role}")
        self._reader.start()
        self.transcript.record(self.role, None, None, note=f"opened {self.port} at {self.baudrate} Bd")
        self.command("ATE0Q0V1")
        self.command("AT+CMEE=2")
        info, final = self._exchange("AT+CPIN?")
        status = [line.removeprefix("+CPIN:").strip() for line in info if line.startswith("+CPIN:")]
        self.sim_status = status[0] if final == "OK" and status else final

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(1.0)
            self._reader = None
        if self._serial is not None:
            try:
                self._serial.close()
            except (OSError, serial.SerialException):
                pass
            self._serial = None

    def make_safe(self) -> list[str]:
        return ["modem: nothing to switch"]

    # -- the port -------------------------------------------------------------------------------------------

    def _read_lines(self) -> None:
        """Split the port's bytes into lines; registration URCs to the transcript (+CEREG also to the events), the
        rest to the exchange."""
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self._serial.read(self._serial.in_waiting or 1)
            except (OSError, serial.SerialException, TypeError, AttributeError) as exc:
                if not self._stop.is_set():
                    self._reader_error = str(exc)
                return
            if not chunk:
                continue
            now = time.monotonic()
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode("ascii", errors="replace").strip()
                if not line:
                    continue
                match = REGISTRATION_URC.match(line)
                if match is None:
                    self._lines.put((now, line))
                    continue
                self.transcript.record(self.role, None, line, t_mono=now, note="unsolicited")
                if match.group(1) == "E":
                    stat = int(match.group(2))
                    event = RegistrationEvent(now, stat, REGISTRATION_STATUS.get(stat, f"stat {stat}"),
                                              stat in (1, 5), int(match.group(4)) if match.group(4) else None, line)
                    with self._events_lock:
                        self._events.append(event)

    def command(self, text: str) -> list[str]:
        """Send one AT command line; its information lines (echo and URCs removed) once OK arrives. ERROR or
        '+CME ERROR: <err>' raise InstrumentError naming role, port, command and the modem's text."""
        info, final = self._exchange(text)
        if final == "OK":
            return info
        error = FINAL_ERROR.match(final)
        reason = f": {error.group(1)}" if error else ""
        raise InstrumentError(f"{self._where()}: {text!r} answered {final!r}{reason}")

    def _exchange(self, text: str) -> tuple[list[str], str]:
        """(information lines, final result code line) of one command line."""
        with self._exchange_lock:
            if self._serial is None:
                raise InstrumentError(f"{self._where()}: not open")
            while not self._lines.empty():  # lines nobody asked for (a late answer, a boot message)
                t_late, late = self._lines.get_nowait()
                self.transcript.record(self.role, None, late, t_mono=t_late, note="unsolicited, discarded")
            t_sent = time.monotonic()
            try:
                self._serial.write(text.encode("ascii") + b"\r")
            except (OSError, serial.SerialException) as exc:
                self.transcript.record(self.role, text, None, t_mono=t_sent, note=str(exc))
                raise InstrumentError(f"{self._where()}: cannot send {text!r}: {exc}") from None
            own = own_prefixes(text)
            received: list[str] = []
            deadline = t_sent + self.config.timeout_s
            while True:
                t_line, line = self._next_line(text, received, t_sent, deadline)
                if line == text and not received:
                    continue  # the echo (until ATE0 takes effect)
                if is_unsolicited(line, own):
                    self.transcript.record(self.role, None, line, t_mono=t_line, note="unsolicited")
                    continue
                received.append(line)
                if line in ("OK", "ERROR") or FINAL_ERROR.match(line):
                    self.transcript.record(self.role, text, "\n".join(received), t_mono=t_sent)
                    return received[:-1], line

    def _next_line(self, text: str, received: list[str], t_sent: float, deadline: float) -> tuple[float, str]:
        try:
            return self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.transcript.record(self.role, text, "\n".join(received) or None, t_mono=t_sent, note="timeout")
            if self._reader_error:
                raise InstrumentError(f"{self._where()}: port failed: {self._reader_error}") from None
            got = f"; got only {received!r}" if received else ""
            raise InstrumentTimeout(f"{self._where()}: no final result within {self.config.timeout_s:g} s "
                                    f"to {text!r}{got}") from None

    def _garbage(self, sent: str, expected: str, line: str) -> InstrumentError:
        return InstrumentError(f"{self._where()}: sent {sent!r}, expected {expected}, got {line!r}")

    def _one(self, sent: str, prefix: str, expected: str) -> list[str]:
        """The fields of the single '<prefix> a,b,c' line answering `sent`."""
        lines = self.command(sent)
        if len(lines) != 1 or not lines[0].startswith(prefix):
            stray = [line for line in lines if not line.startswith(prefix)] or lines[1:] or [""]
            raise self._garbage(sent, expected, stray[0])
        return [field.strip() for field in lines[0].removeprefix(prefix).split(",")]

    def _integers(self, sent: str, fields: list[str], count: int, expected: str, line: str) -> list[int]:
        if len(fields) != count or not all(INTEGER.match(field) for field in fields):
            raise self._garbage(sent, expected, line)
        return [int(field) for field in fields]

    # -- identity -------------------------------------------------------------------------------------------

    def identify(self) -> Identity:
        info = self.command("ATI")
        if len(info) < 2:
            raise self._garbage("ATI", "manufacturer, model and revision lines", "\n".join(info))
        firmware = self.command("AT+CGMR")
        if len(firmware) != 1 or not firmware[0]:
            raise self._garbage("AT+CGMR", "one revision line", "\n".join(firmware))
        imei = self.command("AT+CGSN")
        if len(imei) != 1 or not re.fullmatch(r"\d{14,16}", imei[0]):
            raise self._garbage("AT+CGSN", "the IMEI (15 digits)", "\n".join(imei))
        return Identity(info[0], info[1], imei[0], firmware[0].removeprefix("Revision: "),
                        raw=" | ".join([*info, *firmware, *imei]))

    # -- signal ---------------------------------------------------------------------------------------------

    def csq(self) -> float | None:
        """RSSI in dBm from AT+CSQ (-113 + 2 x rssi; 99: unknown)."""
        fields = self._one("AT+CSQ", "+CSQ: ", "'+CSQ: <rssi>,<ber>'")
        rssi, _ber = self._integers("AT+CSQ", fields, 2, "'+CSQ: <rssi>,<ber>'", "+CSQ: " + ",".join(fields))
        if rssi == 99:
            return None
        if not 0 <= rssi <= 31:
            raise self._garbage("AT+CSQ", "rssi 0..31 or 99", "+CSQ: " + ",".join(fields))
        return -113.0 + 2 * rssi

    def cesq(self) -> tuple[float | None, float | None]:
        """(RSRP dBm, RSRQ dB) from AT+CESQ (idx - 140, idx / 2 - 19.5; 255: unknown)."""
        expected = "'+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>'"
        fields = self._one("AT+CESQ", "+CESQ: ", expected)
        line = "+CESQ: " + ",".join(fields)
        *_gsm_umts, rsrq, rsrp = self._integers("AT+CESQ", fields, 6, expected, line)
        if not (0 <= rsrq <= 34 or rsrq == 255) or not (0 <= rsrp <= 97 or rsrp == 255):
            raise self._garbage("AT+CESQ", "rsrq 0..34 and rsrp 0..97 (255 unknown)", line)
        return (None if rsrp == 255 else rsrp - 140.0), (None if rsrq == 255 else rsrq / 2 - 19.5)

    def qcsq(self) -> tuple[str, dict[str, float]]:
        """(system mode, readings) from AT+QCSQ: LTE gives rssi_dbm, rsrp_dbm, sinr_db, rsrq_db; GSM rssi_dbm."""
        fields = self._one("AT+QCSQ", "+QCSQ: ", "'+QCSQ: \"<mode>\",...'")
        line = "+QCSQ: " + ",".join(fields)
        mode = fields[0].strip('"')
        if not (fields[0].startswith('"') and fields[0].endswith('"') and mode):
            raise self._garbage("AT+QCSQ", "a quoted system mode first", line)
        values = self._integers("AT+QCSQ", fields[1:], {"LTE": 4, "GSM": 1}.get(mode, 0),
                                "the values of its system mode", line)
        if mode == "LTE":
            rssi, rsrp, sinr, rsrq = values
            return mode, {"rssi_dbm": float(rssi), "rsrp_dbm": float(rsrp), "sinr_db": sinr / 5 - 20.0,
                          "rsrq_db": float(rsrq)}
        if mode == "GSM":
            return mode, {"rssi_dbm": float(values[0])}
        return mode, {}

    def signal(self) -> ModemSignal:
        """AT+CSQ, AT+CESQ and AT+QCSQ in one reading; QCSQ's values where it gives them."""
        rssi = self.csq()
        rsrp, rsrq = self.cesq()
        mode, quectel = self.qcsq()
        return ModemSignal(quectel.get("rssi_dbm", rssi), quectel.get("rsrp_dbm", rsrp),
                           quectel.get("rsrq_db", rsrq), quectel.get("sinr_db"), mode)

    # -- registration ---------------------------------------------------------------------------------------

    def registration(self) -> Registration:
        expected = "'+CEREG: <n>,<stat>[,<tac>,<ci>,<AcT>]'"
        fields = self._one("AT+CEREG?", "+CEREG: ", expected)
        line = "+CEREG: " + ",".join(fields)
        if len(fields) not in (2, 5) or not all(INTEGER.match(f) for f in fields[:2]):
            raise self._garbage("AT+CEREG?", expected, line)
        stat = int(fields[1])
        if stat not in REGISTRATION_STATUS:
            raise self._garbage("AT+CEREG?", "stat 0..5", line)
        tac = ci = act = None
        if len(fields) == 5:
            if not INTEGER.match(fields[4]):
                raise self._garbage("AT+CEREG?", expected, line)
            tac, ci, act = fields[2].strip('"'), fields[3].strip('"'), int(fields[4])
        return Registration(stat, REGISTRATION_STATUS[stat], stat in (1, 5), tac, ci, act)

    def enable_registration_urcs(self) -> None:
        self.command("AT+CEREG=2")

    def disable_registration_urcs(self) -> None:
        self.command("AT+CEREG=0")

    def registration_events(self) -> list[RegistrationEvent]:
        with self._events_lock:
            return list(self._events)

    # -- technology -----------------------------------------------------------------------------------------

    def technology(self) -> str:
        expected = "'+QCFG: \"nwscanmode\",<mode>'"
        fields = self._one('AT+QCFG="nwscanmode"', "+QCFG: ", expected)
        line = "+QCFG: " + ",".join(fields)
        if len(fields) != 2 or fields[0] != '"nwscanmode"' or not INTEGER.match(fields[1]):
            raise self._garbage('AT+QCFG="nwscanmode"', expected, line)
        mode = int(fields[1])
        if mode not in TECHNOLOGY_OF_SCAN_MODE:
            raise self._garbage('AT+QCFG="nwscanmode"', "scan mode 0 (auto), 1 (GSM) or 3 (LTE)", line)
        return TECHNOLOGY_OF_SCAN_MODE[mode]

    def set_technology(self, technology: str) -> None:
        """'4g' (LTE only), '2g' (GSM only) or 'auto'; takes effect at once."""
        if technology not in SCAN_MODE_OF_TECHNOLOGY:
            raise ConfigError(f"{self._where()}: technology {technology!r} is not one of "
                              f"{', '.join(SCAN_MODE_OF_TECHNOLOGY)}")
        self.command(f'AT+QCFG="nwscanmode",{SCAN_MODE_OF_TECHNOLOGY[technology]},1')
