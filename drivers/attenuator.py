"""Mini-Circuits RCDAT programmable RF attenuators over HTTP (httpx) or Telnet (a raw TCP line protocol).

Resources: 'http://host[:port]' (GET /SETATT=<dB>, /ATT?, /MN?, /SN?, /FIRMWARE?) or 'telnet://host[:port]'
(lines ':SETATT=<dB>', ':ATT?', ':MN?', ':SN?', ':FIRMWARE?' ending in CR LF; port 23 by default; a reply line
may end with CR LF, CR NUL, CR or LF; the Telnet commands a unit sends are taken out of its replies and every
option it offers or asks for is refused: DO x -> WONT x, WILL x -> DONT x).
SETATT answers 1 (done), 0 (refused: invalid value) or 2 (above the model's range: the unit set its maximum).
The model name ends in the model's maximum (RCDAT-6000-110: 0-110 dB); steps are 0.25 dB.

Public methods (role interface `rig.roles.Attenuator`): `identify()` -> Identity("Mini-Circuits", model, serial,
firmware or "-"), `set_attenuation(db)` (refused before sending beyond the model's range, the role's
`limits.attenuation_db` or off the 0.25 dB step; confirmed by read-back), `attenuation()` -> dB, `max_db`,
`make_safe()` (sets the role's required `safe: {attenuation_db: N}`).

Each HTTP exchange ends within the role's timeout_s however the unit answers (one deadline, see http_deadline).
After an exchange that went unanswered or garbled, the next one reconnects first, so a late reply to an earlier
command is never read as the answer to a later one.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time

import httpx

from drivers.http_deadline import DeadlineTransport, deadline
from rig.driver import Driver, Identity
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout, SetpointRefused
from rig.resources import Accepts
from rig.roles import Attenuator

STEP_DB = 0.25
MODEL_MAX = re.compile(r"^RC\w*DAT-\d+-(\d+(?:\.\d+)?)$", re.IGNORECASE)
SET_REPLIES = {"1": None, "0": "refused the value (invalid attenuation)",
               "2": "answered 2: the value is above its range and it set its maximum instead"}
# Telnet (RFC 854): the commands a unit may send among its text; this client supports no option (RFC 855)
IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
REFUSALS = {DO: WONT, WILL: DONT}  # the answer to a unit asking for, or offering, an option
LINE_END = re.compile(rb"\r|\n")  # CR LF, CR NUL, CR or LF end a reply line
MAX_LINE_BYTES = 4096  # more without a line end is noise, not a reply
QUOTED_BYTES = 64  # of a garbled reply, in messages and the transcript


def max_of_model(model: str) -> float | None:
    """110.0 for 'RCDAT-6000-110'; None if the name does not end in a range."""
    match = MODEL_MAX.match(model.strip())
    return float(match.group(1)) if match else None


class RcdatAttenuator(Driver, Attenuator):
    """A Mini-Circuits RCDAT attenuator playing 'attenuator@<n>'. Exchanges are serialised by a lock."""

    SAFE_KEYS = frozenset({"attenuation_db"})
    ACCEPTS = Accepts(("http", "telnet"), "an RCDAT attenuator is reached at 'http://host[:port]' or "
                                          "'telnet://host[:port]'")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "attenuation_db" not in self.config.safe:
            raise ConfigError(f"roles.{self.role}.safe.attenuation_db: required for an attenuator (the value "
                              f"it is set to on every exit path)")
        self.kind = "telnet" if self.resource.scheme == "telnet" else "http"
        self.host = self.resource.host if self.kind == "telnet" else self.resource.url  # http: the base URL
        self.port = self.resource.port
        self.model = ""
        self.max_db: float | None = None
        self._client: httpx.Client | None = None
        self._socket: socket.socket | None = None
        self._buffer = b""
        self._telnet_state = "data"  # of the RFC 854 receiver: data, command, option, subnegotiation[-iac]
        self._telnet_verb = 0
        self._after_cr = False  # the last reply line ended with CR: an LF or NUL right after it belongs to it
        self._resync = False  # the last exchange went unanswered or garbled: reconnect before the next
        self._exchange_lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def open(self) -> None:
        self._connect()
        self.transcript.record(self.role, None, None, note=f"opened {self.address}")
        self.model = self._value("MN?", "MN")
        self.max_db = max_of_model(self.model)
        if self.max_db is None:
            raise InstrumentError(f"{self._where()}: model {self.model!r} does not name its range "
                                  f"(expected e.g. 'RCDAT-6000-110')")
        self.limits.add("attenuation", 0.0, self.max_db, f"the range of the {self.model}")

    def close(self) -> None:
        self._resync = False
        self._disconnect()

    def _connect(self) -> None:
        if self.kind == "http":
            self._client = httpx.Client(base_url=self.host, timeout=self.config.timeout_s,
                                        transport=DeadlineTransport())
            return
        self._buffer = b""
        self._telnet_state, self._after_cr = "data", False
        try:
            self._socket = socket.create_connection((self.host, self.port), timeout=self.config.timeout_s)
        except OSError as exc:
            raise InstrumentError(f"{self._where()}: cannot connect: {exc.strerror or exc}") from None

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _reconnect(self) -> None:
        """A fresh connection: whatever the unit still sends on the old one is never read."""
        self._disconnect()
        self._connect()
        self._resync = False
        self.transcript.record(self.role, None, None,
                               note=f"reconnected to {self.address} after an unanswered or garbled exchange")

    def make_safe(self) -> list[str]:
        value = self.config.safe["attenuation_db"]
        self.set_attenuation(value)
        return [f"attenuation {value:g} dB (confirmed by ATT?)"]

    # -- role interface -------------------------------------------------------------------------------------

    def identify(self) -> Identity:
        model = self._value("MN?", "MN")
        serial = self._value("SN?", "SN")
        firmware_reply = self.exchange("FIRMWARE?")
        firmware = firmware_reply.partition("=")[2] if firmware_reply.startswith("FIRMWARE=") else "-"
        return Identity("Mini-Circuits", model, serial, firmware or "-",
                        raw=f"MN={model} SN={serial} FIRMWARE={firmware}")

    def set_attenuation(self, attenuation_db: float) -> None:
        value = float(attenuation_db)
        if not math.isfinite(value):
            raise SetpointRefused(f"{self._where()}: attenuation {attenuation_db!r} dB refused: not a number")
        self.check_setpoint("attenuation", value, "dB")
        if abs(value / STEP_DB - round(value / STEP_DB)) > 1e-9:
            raise SetpointRefused(f"{self._where()}: attenuation {value:g} dB refused: not on the {STEP_DB:g} dB "
                                  f"step of the {self.model or 'RCDAT'}")
        command = f"SETATT={value:g}"
        reply = self.exchange(command)
        if reply not in SET_REPLIES:
            raise self._unexpected(command, "0, 1 or 2", reply)
        if SET_REPLIES[reply] is not None:
            raise InstrumentError(f"{self._where()}: {self._shown(command)!r}: the unit {SET_REPLIES[reply]}")
        held = self.attenuation()
        if abs(held - value) > 1e-6:
            raise InstrumentError(f"{self._where()}: set {value:g} dB but ATT? reads back {held:g} dB")

    def attenuation(self) -> float:
        reply = self.exchange("ATT?")
        try:
            return float(reply)
        except ValueError:
            raise self._unexpected("ATT?", "a number of dB", reply) from None

    # -- exchanges ------------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.role} ({self.address})"

    def _shown(self, command: str) -> str:
        return f"GET /{command}" if self.kind == "http" else f":{command}"

    def _value(self, query: str, key: str) -> str:
        """'RCDAT-6000-110' from 'MN=RCDAT-6000-110'."""
        reply = self.exchange(query)
        name, equals, value = reply.partition("=")
        if not equals or name.strip().upper() != key or not value.strip():
            raise self._unexpected(query, f"'{key}=...'", reply)
        return value.strip()

    def _unexpected(self, command: str, expected: str, reply: str) -> InstrumentError:
        """The error for a reply of the wrong form; the next exchange reconnects, as the reply may be a late one."""
        self._resync = True
        return InstrumentError(f"{self._where()}: sent {self._shown(command)!r}, expected {expected}, "
                               f"got {reply[:200]!r}")

    def _garbled(self, sent: str, raw: bytes, t_sent: float, what: str) -> InstrumentError:
        """The error for a reply that is not a line of text; transcripted (quoted) with note 'garbled'."""
        quoted = raw[:QUOTED_BYTES]
        self.transcript.record(self.role, sent, quoted.decode("ascii", errors="backslashreplace"), t_mono=t_sent,
                               note="garbled")
        return InstrumentError(f"{self._where()}: answered {sent!r} {what}: {quoted!r}"
                               + ("..." if len(raw) > QUOTED_BYTES else ""))

    def _text(self, sent: str, raw: bytes, t_sent: float) -> str:
        """raw as text, or InstrumentError if it holds anything but printable ASCII."""
        text = raw.decode("ascii", errors="replace")
        if not (text.isascii() and text.isprintable()):
            raise self._garbled(sent, raw, t_sent, "with bytes that are not text")
        return text

    def exchange(self, command: str) -> str:
        """Send one command ('ATT?', 'SETATT=30') on the resource's transport; the reply text, stripped."""
        with self._exchange_lock:
            if self._resync:
                self._reconnect()
            self._resync = True  # until the reply is read: a timeout, an error or an interrupt leave it set
            reply = self._http(command) if self.kind == "http" else self._telnet(command)
            self._resync = False
            return reply

    def _http(self, command: str) -> str:
        if self._client is None:
            raise InstrumentError(f"{self._where()}: not open")
        sent = f"GET /{command}"
        t_sent = time.monotonic()
        try:
            with deadline(self.config.timeout_s):
                response = self._client.get(f"/{command}")
        except httpx.TimeoutException:
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note="timeout")
            raise InstrumentTimeout(f"{self._where()}: no answer within {self.config.timeout_s:g} s "
                                    f"to {sent!r}") from None
        except httpx.HTTPError as exc:
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note=str(exc))
            raise InstrumentError(f"{self._where()}: {sent!r} failed: {exc}") from None
        text = self._text(sent, response.content.strip(), t_sent)
        self.transcript.record(self.role, sent, f"{response.status_code} {text}", t_mono=t_sent)
        if response.status_code != 200:
            raise InstrumentError(f"{self._where()}: {sent!r} answered {response.status_code}: {text[:200]!r}")
        return text

    def _telnet(self, command: str) -> str:
        if self._socket is None:
            raise InstrumentError(f"{self._where()}: not open")
        sent = f":{command}"
        t_sent = time.monotonic()
        try:
            self._socket.sendall(sent.encode("ascii") + b"\r\n")
            line = self._read_line(t_sent + self.config.timeout_s)
        except TimeoutError:
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note="timeout")
            raise InstrumentTimeout(f"{self._where()}: no answer within {self.config.timeout_s:g} s "
                                    f"to {sent!r}") from None
        except OSError as exc:
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note=str(exc))
            raise InstrumentError(f"{self._where()}: {sent!r} failed: {exc.strerror or exc}") from None
        if line is None:
            raise self._garbled(sent, self._buffer, t_sent, f"with no line end within {MAX_LINE_BYTES} bytes")
        reply = self._text(sent, line, t_sent)
        self.transcript.record(self.role, sent, reply, t_mono=t_sent)
        return reply

    def _read_line(self, deadline: float) -> bytes | None:
        """The next non-empty line, stripped, Telnet commands removed; None after MAX_LINE_BYTES without one."""
        while True:
            line = self._next_line()
            if line is not None:
                return line
            if len(self._buffer) > MAX_LINE_BYTES:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._socket.settimeout(remaining)
            chunk = self._socket.recv(4096)
            if not chunk:
                raise ConnectionError(0, "connection closed by the attenuator")
            self._receive(chunk)

    def _next_line(self) -> bytes | None:
        """The next non-empty line of the buffer, stripped, or None while no line end has arrived."""
        while True:
            if self._after_cr and self._buffer:
                if self._buffer[:1] in (b"\n", b"\0"):
                    self._buffer = self._buffer[1:]
                self._after_cr = False
            end = LINE_END.search(self._buffer)
            if end is None:
                return None
            line, self._buffer = self._buffer[: end.start()], self._buffer[end.end():]
            self._after_cr = end.group() == b"\r"
            if line.strip():
                return line.strip()

    def _receive(self, chunk: bytes) -> None:
        """Add chunk's data to the buffer, taking its Telnet commands out and refusing every option asked for."""
        data, answer = bytearray(), bytearray()
        for byte in chunk:
            self._telnet_byte(byte, data, answer)
        self._buffer += bytes(data)
        if answer:
            self._socket.sendall(bytes(answer))

    def _telnet_byte(self, byte: int, data: bytearray, answer: bytearray) -> None:
        state = self._telnet_state
        if state == "data":
            if byte == IAC:
                self._telnet_state = "command"
            else:
                data.append(byte)
        elif state == "command":
            if byte == IAC:
                data.append(byte)  # IAC IAC: the data byte 0xFF
                self._telnet_state = "data"
            elif byte in (WILL, WONT, DO, DONT):
                self._telnet_verb, self._telnet_state = byte, "option"
            else:
                self._telnet_state = "subnegotiation" if byte == SB else "data"
        elif state == "option":
            if self._telnet_verb in REFUSALS:
                answer += bytes((IAC, REFUSALS[self._telnet_verb], byte))
            self._telnet_state = "data"
        elif state == "subnegotiation":
            self._telnet_state = "subnegotiation-iac" if byte == IAC else state
        else:  # IAC inside a subnegotiation: IAC SE ends it
            self._telnet_state = "data" if byte == SE else "subnegotiation"
