"""SCPI over VISA (pyvisa + pyvisa-py): one deadline per exchange, every exchange transcripted, every fault named.

Every message a driver sends, raw or from its own methods, passes one guard first: a setting of a bounded
quantity is checked against the role's SetpointLimits, and a command that switches an output or input on makes
the driver read back and check the setpoints the instrument holds. A driver declares what to guard as data
(`SETTINGS`, `SWITCHES`, `HELD_SETPOINTS`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import pyvisa
from pyvisa import constants
from pyvisa.errors import VisaIOError
from pyvisa.resources import MessageBasedResource

from rig.driver import Driver, Identity
from rig.errors import InstrumentError, InstrumentTimeout, SetpointRefused

_resource_managers: dict[str, pyvisa.ResourceManager] = {}


def resource_manager(backend: str = "@py") -> pyvisa.ResourceManager:
    if backend not in _resource_managers:
        _resource_managers[backend] = pyvisa.ResourceManager(backend)
    return _resource_managers[backend]


# -- what a message says --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """A header that programs a bounded quantity, e.g. ('[SOURce:]FREQuency[:IMMediate]', 'frequency', 'Hz')."""

    header: str
    quantity: str
    unit: str


@dataclass(frozen=True)
class Switch:
    """A header whose parameter switches an output or input; `refused` names why ON is never sent, if so."""

    header: str
    refused: str = ""


@dataclass(frozen=True)
class ProgramUnit:
    """One `;`-separated command of a message: the full headers it may address, upper case, numeric suffixes
    dropped (OUTP1 -> OUTP), and its parameter text."""

    text: str
    headers: frozenset[tuple[str, ...]]
    parameter: str
    query: bool

    def addresses(self, pattern: str) -> bool:
        nodes = compile_header(pattern)
        return any(_matches(nodes, header) for header in self.headers)


@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    optional: bool


_PATTERN_NODE = re.compile(r"\[:?([A-Za-z*][A-Za-z0-9*]*):?\]|:?([A-Za-z*][A-Za-z0-9*]*)")
_NUMBER = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:E[+-]?\d+)?)\s*([A-Z]*)")
SUFFIX_MULTIPLIERS = {"": 1.0, "K": 1e3, "M": 1e-3, "U": 1e-6}
# IEEE 488.2 reads MHZ and MOHM as mega; MA is mega as a multiplier but milli-ampere to most: refused
SPECIAL_SUFFIXES: dict[str, float | None] = {"MHZ": 1e6, "MOHM": 1e6, "MA": None}


def _stem(node: str) -> str:
    return node.rstrip("0123456789") or node


@cache
def compile_header(pattern: str) -> tuple[_Node, ...]:
    """'[SOURce:]VOLTage[:LEVel]:AC' -> nodes; the short form is the upper-case part of each name."""
    nodes = []
    for optional_name, name in _PATTERN_NODE.findall(pattern):
        text = optional_name or name
        short = "".join(ch for ch in text if not ch.islower())
        nodes.append(_Node(_stem(short), _stem(text.upper()), bool(optional_name)))
    return tuple(nodes)


def _matches(nodes: tuple[_Node, ...], header: tuple[str, ...]) -> bool:
    if not nodes:
        return not header
    first, rest = nodes[0], nodes[1:]
    if header and header[0] in (first.short, first.long) and _matches(rest, header[1:]):
        return True
    return first.optional and _matches(rest, header)


def _split_units(line: str) -> list[str]:
    """Split a program message at ';' outside quoted strings."""
    units, current, quote = [], [], ""
    for ch in line:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            units.append("".join(current))
            current = []
            continue
        current.append(ch)
    units.append("".join(current))
    return [unit.strip() for unit in units if unit.strip()]


def program_units(message: str) -> Iterator[ProgramUnit]:
    """The commands of a message. A header without a leading ':' continues the previous header's path (SCPI);
    lenient instruments also read it from the root, so both readings are kept and a check misses neither."""
    for line in message.splitlines():
        paths: set[tuple[str, ...]] = {()}
        for text in _split_units(line):
            head, _, parameter = text.replace("\t", " ").partition(" ")
            query = head.endswith("?")
            if head.startswith("*"):
                yield ProgramUnit(text, frozenset({(head.rstrip("?").upper(),)}), parameter.strip(), query)
                continue
            nodes = tuple(_stem(node.upper()) for node in head.rstrip("?").split(":") if node)
            headers = {nodes} if head.startswith(":") else {path + nodes for path in paths} | {nodes}
            paths = {header[:-1] for header in headers}
            yield ProgramUnit(text, frozenset(headers), parameter.strip(), query)


def setting_value(parameter: str, unit: str) -> float | None:
    """The value of a numeric parameter in `unit` ('231', '231V', '0.231 KV'), or None if it is not one."""
    match = _NUMBER.fullmatch(parameter.strip().upper())
    if match is None:
        return None
    number, suffix = match.groups()
    unit = unit.upper()
    if suffix in SPECIAL_SUFFIXES and suffix.endswith(unit):
        factor = SPECIAL_SUFFIXES[suffix]
    elif suffix.endswith(unit):
        factor = SUFFIX_MULTIPLIERS.get(suffix[: len(suffix) - len(unit)])
    else:
        factor = None if suffix else 1.0
    return None if factor is None else float(number) * factor


# -- the driver ---------------------------------------------------------------------------------------------


class _NoReply(Exception):
    """The exchange's deadline passed; `partial` holds what arrived."""

    def __init__(self, partial: bytes):
        super().__init__()
        self.partial = partial


class ScpiDriver(Driver):
    """A driver whose instrument speaks SCPI through a VISA resource.

    Exchanges are serialised by a lock, so a poller thread and the bench's safe-state path can share a session.
    A query (write and reply) ends within the role's timeout_s, however slowly the reply trickles in. After a
    timeout, a transport fault or a reply that is not text or not of the expected form, the session is closed
    and the next exchange opens a new one, so no late or stray byte is ever read as another command's answer.
    """

    TERMINATION = "\n"
    SETTINGS: ClassVar[tuple[Setting, ...]] = ()
    SWITCHES: ClassVar[tuple[Switch, ...]] = ()
    HELD_SETPOINTS: ClassVar[tuple[tuple[str, str, str], ...]] = ()  # (query, quantity, unit) read before ON

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._exchange_lock = threading.RLock()
        self.session: MessageBasedResource | None = None
        self._reconnect = False

    # -- session ---------------------------------------------------------------------------------------------

    def open(self) -> None:
        self._open_session(self.config.timeout_s)
        self.transcript.record(self.role, None, None, note=f"opened {self.address}")

    def _open_session(self, open_timeout_s: float) -> None:
        try:
            self.session = resource_manager(self.config.settings.get("visa_backend", "@py")).open_resource(
                self.address, read_termination=self.TERMINATION, write_termination=self.TERMINATION,
                open_timeout=max(1, int(open_timeout_s * 1000)), timeout=int(self.config.timeout_s * 1000))
        except Exception as exc:  # pyvisa-py raises a bare Exception when a TCP connect times out
            raise InstrumentError(f"{self.role} ({self.address}): cannot open: {exc}") from None
        self._reconnect = False

    def close(self) -> None:
        session, self.session = self.session, None
        self._reconnect = False
        if session is not None:
            try:
                session.close()
            except (VisaIOError, OSError):
                pass

    def _drop_session(self, reason: str) -> None:
        self.close()
        self._reconnect = True
        self.transcript.record(self.role, None, None,
                               note=f"closed {self.address} after {reason}; the next exchange reconnects")

    def _session_for(self, message: str, deadline: float) -> MessageBasedResource:
        if self.session is None and self._reconnect:
            remaining_s = deadline - time.monotonic()
            try:
                self._open_session(remaining_s)
            except InstrumentError as exc:
                raise InstrumentError(f"{exc} (reconnecting to send {message!r})") from None
            if self.session.interface_type == constants.InterfaceType.asrl:  # the same wire: drop what waits on it
                self.session.flush(constants.BufferOperation.discard_read_buffer)
            self.transcript.record(self.role, None, None, note=f"reopened {self.address}")
        if self.session is None:
            raise InstrumentError(f"{self.role} ({self.address}): not open when sending {message!r}")
        return self.session

    # -- exchanges -------------------------------------------------------------------------------------------

    def _fail(self, exc: Exception, sent: str) -> InstrumentError:
        if isinstance(exc, VisaIOError) and exc.error_code == constants.StatusCode.error_timeout:
            return InstrumentTimeout(f"{self.role} ({self.address}): no answer within {self.config.timeout_s:g} s "
                                     f"to {sent!r}")
        if isinstance(exc, ConnectionError):
            return InstrumentError(f"{self.role} ({self.address}): not reachable ({exc.strerror}) "
                                   f"when sending {sent!r}")
        return InstrumentError(f"{self.role} ({self.address}): exchange {sent!r} failed: {exc}")

    @staticmethod
    def _give_remaining_time(session: MessageBasedResource, deadline: float, partial: bytes = b"") -> None:
        remaining_ms = (deadline - time.monotonic()) * 1000
        if remaining_ms < 1:
            raise _NoReply(partial)
        session.timeout = remaining_ms

    def _read_reply(self, session: MessageBasedResource, deadline: float) -> bytes:
        """Read up to the terminator by single bytes, each read given only the time left: pyvisa-py restarts its
        timeout on every read call and, within one, never times out while bytes keep arriving."""
        end = self.TERMINATION.encode()
        reply = bytearray()
        with session.ignore_warning(constants.StatusCode.success_max_count_read):
            while not reply.endswith(end):
                self._give_remaining_time(session, deadline, bytes(reply))
                try:
                    byte, _status = session.visalib.read(session.session, 1)
                except VisaIOError as exc:
                    if exc.error_code == constants.StatusCode.error_timeout:
                        raise _NoReply(bytes(reply)) from None
                    raise
                reply += byte
        return bytes(reply[: -len(end)])

    def _transact(self, message: str, read_reply: bool) -> str:
        """Send one message and, if asked, read its reply, all within timeout_s; return the reply ('' if none)."""
        deadline = time.monotonic() + self.config.timeout_s
        try:
            data = (message + self.TERMINATION).encode("ascii")
        except UnicodeEncodeError:
            raise InstrumentError(f"{self.role} ({self.address}): cannot send {message!r}: not ASCII text; "
                                  f"nothing sent") from None
        session = self._session_for(message, deadline)
        t_sent = time.monotonic()
        fault = "an interrupted exchange"
        raw = None
        try:
            self._give_remaining_time(session, deadline)
            session.write_raw(data)
            if read_reply:
                raw = self._read_reply(session, deadline)
            fault = ""
        except _NoReply as no_reply:
            fault = f"a timeout on {message!r}"
            partial = no_reply.partial.decode("ascii", "backslashreplace") or None
            self.transcript.record(self.role, message, partial, t_mono=t_sent, note="no answer in time")
            detail = f" (got {no_reply.partial!r} without the terminator)" if no_reply.partial else ""
            raise InstrumentTimeout(f"{self.role} ({self.address}): no answer within {self.config.timeout_s:g} s "
                                    f"to {message!r}{detail}") from None
        except (VisaIOError, OSError) as exc:
            fault = f"a failed exchange {message!r}"
            self.transcript.record(self.role, message, None, t_mono=t_sent, note=str(exc))
            raise self._fail(exc, message) from None
        finally:
            if fault:
                self._drop_session(fault)
        if raw is None:
            self.transcript.record(self.role, message, None, t_mono=t_sent)
            return ""
        try:
            reply = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.transcript.record(self.role, message, raw.decode("ascii", "backslashreplace"), t_mono=t_sent,
                                   note="reply is not ASCII/UTF-8 text")
            self._drop_session(f"an undecodable reply to {message!r}")
            raise InstrumentError(f"{self.role} ({self.address}): sent {message!r}, got a reply that is not "
                                  f"ASCII/UTF-8 text: {raw!r}") from None
        self.transcript.record(self.role, message, reply, t_mono=t_sent)
        return reply

    def write(self, command: str) -> None:
        with self._exchange_lock:
            self.check_message(command)
            self._transact(command, read_reply=False)

    def query(self, command: str) -> str:
        with self._exchange_lock:
            self.check_message(command)
            return self._transact(command, read_reply=True)

    def unexpected_reply(self, sent: str, expected: str, reply: str) -> InstrumentError:
        """The error for a reply of the wrong form; the reply stream may be out of step, so reconnect first."""
        with self._exchange_lock:
            if self.session is not None:
                self._drop_session(f"an unexpected reply to {sent!r}")
        return InstrumentError(f"{self.role} ({self.address}): sent {sent!r}, expected {expected}, got {reply!r}")

    def query_float(self, command: str) -> float:
        reply = self.query(command)
        try:
            return float(reply)
        except ValueError:
            raise self.unexpected_reply(command, "a number", reply) from None

    def command(self, command: str) -> None:
        """Send a setting and confirm the instrument accepted it (chained SYST:ERR? in the same message)."""
        reply = self.query(f"{command};:SYST:ERR?")
        code, _, message = reply.partition(",")
        try:
            error_code = int(code)
        except ValueError:
            raise self.unexpected_reply(command, "an error-queue entry", reply) from None
        if error_code != 0:
            raise InstrumentError(f"{self.role} ({self.address}): refused {command!r}: {error_code},{message}")

    def identify(self) -> Identity:
        reply = self.query("*IDN?")
        fields = [part.strip() for part in reply.split(",")]
        if len(fields) != 4 or not fields[0] or not fields[1]:
            raise self.unexpected_reply("*IDN?", "'maker,model,serial,firmware'", reply)
        return Identity(*fields, raw=reply)

    # -- the setpoint guard ------------------------------------------------------------------------------------

    def check_setting(self, quantity: str, value: float, unit: str) -> None:
        """Check one value of a bounded quantity; a driver whose quantity needs more than its limits overrides."""
        self.check_setpoint(quantity, value, unit)

    def check_held_setpoints(self) -> None:
        """Read back and check the setpoints the instrument holds; runs before anything switches on."""
        for query, quantity, unit in self.HELD_SETPOINTS:
            self.check_setting(quantity, self.query_float(query), unit)

    def check_message(self, message: str) -> None:
        """Raise SetpointRefused, before anything of `message` is sent, if it sets a bounded quantity beyond the
        limits, switches on what this driver never switches on, or switches on while the instrument holds a
        setpoint beyond them."""
        if not (self.SETTINGS or self.SWITCHES):
            return
        switching_on = ""
        for unit in program_units(message):
            if unit.query:
                continue
            for setting in self.SETTINGS:
                if unit.addresses(setting.header):
                    self._check_setting_unit(setting, unit)
            for switch in self.SWITCHES:
                if unit.addresses(switch.header) and unit.parameter.upper() not in ("OFF", "0"):
                    if switch.refused:
                        raise SetpointRefused(f"{self.role} ({self.address}): {unit.text!r} refused: "
                                              f"{switch.refused}; nothing sent")
                    switching_on = switching_on or unit.text
        if switching_on:
            try:
                self.check_held_setpoints()
            except SetpointRefused as refused:
                raise SetpointRefused(f"{refused} (held by the instrument, read back before {switching_on!r}; "
                                      f"not sent)") from None

    def _check_setting_unit(self, setting: Setting, unit: ProgramUnit) -> None:
        value = setting_value(unit.parameter, setting.unit)
        if value is None:
            raise SetpointRefused(f"{self.role} ({self.address}): {setting.quantity} {unit.parameter!r} in "
                                  f"{unit.text!r} refused: not a number in {setting.unit} this driver can check; "
                                  f"nothing sent")
        try:
            self.check_setting(setting.quantity, value, setting.unit)
        except SetpointRefused as refused:
            raise SetpointRefused(f"{refused} (in {unit.text!r}; nothing sent)") from None
