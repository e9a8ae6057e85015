"""A small SCPI command interpreter for simulated instruments, with the IEEE 488.2 status model.

Long and short header forms (`VOLTage` accepts VOLT and VOLTAGE), case-insensitive, optional nodes in
brackets, `;` chains relative to the previous header's path, a leading `:` to restart at the root, and the
commands every SCPI instrument has: the IEEE 488.2 mandatory common commands (*CLS, *ESE, *ESE?, *ESR?, *IDN?,
*OPC, *OPC?, *RST, *SRE, *SRE?, *STB?, *TST?, *WAI) and SCPI-99's SYSTem:ERRor[:NEXT]?, SYSTem:VERSion? and
STATus subsystem.

Status model (IEEE 488.2-1992 sections 11.2 and 11.5, SCPI-99 volume 1 chapter 9): every error goes to the error
queue (16 entries, the last replaced by -350 on overflow) and sets its Standard Event Status Register bit
(-1xx CME, -2xx EXE, -3xx and device errors DDE, -4xx QYE); the register reads PON after power-on. The Status
Byte holds bit 2 (error queue not empty), MAV (a response waits), ESB (an enabled event) and MSS (an enabled
summary). *ESR? and the STATus event queries clear what they read; *CLS clears the event registers and the queue.

Parameters: a command takes the number of parameters it declares (-108 for more, -109 for fewer); a numeric
parameter may carry the suffix of its unit with an IEEE 488.2 multiplier (231V, 0.231KV, 50HZ, 500MA), anything
else is -131.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rig.sim.model import PhysicalModel

Handler = Callable[[list[str]], str | None]

NO_ERROR = (0, "No error")
INVALID_CHARACTER = (-101, "Invalid character")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
MISSING_PARAMETER = (-109, "Missing parameter")
UNDEFINED_HEADER = (-113, "Undefined header")
NUMERIC_DATA_ERROR = (-120, "Numeric data error")
INVALID_SUFFIX = (-131, "Invalid suffix")
SUFFIX_NOT_ALLOWED = (-138, "Suffix not allowed")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
TOO_MUCH_DATA = (-223, "Too much data")
ILLEGAL_PARAMETER = (-224, "Illegal parameter value")
QUEUE_OVERFLOW = (-350, "Queue overflow")
ERROR_QUEUE_SIZE = 16
SCPI_VERSION = "1999.0"
FOUND_CACHE_SIZE = 1024  # headers remembered with the command they name

# Standard Event Status Register bits (IEEE 488.2 11.5.1.1)
OPC, QYE, DDE, EXE, CME, PON = 1, 4, 8, 16, 32, 128
# Status Byte bits (IEEE 488.2 11.2.1, SCPI-99 vol 1 9.1): error queue not empty, MAV, ESB, MSS
ERROR_AVAILABLE, MAV, ESB, MSS = 4, 16, 32, 64
STATUS_ENABLE_MAX = 32767  # a SCPI status enable register is 16 bits, bit 15 always 0

# IEEE 488.2 7.7.3 suffix multipliers (MA is mega; M is milli except in MHZ and MOHM, which are mega)
MULTIPLIER_EXPONENTS = {"EX": 18, "PE": 15, "T": 12, "G": 9, "MA": 6, "K": 3, "M": -3, "U": -6, "N": -9,
                        "P": -12, "F": -15, "A": -18}
MEGA_UNITS = {"HZ": "MHZ", "OHM": "MOHM"}
_NUMERIC = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:\s*(E)\s*([+-]?\d+))?\s*([A-Z]*)")
_HEADER_AND_PARAMETERS = re.compile(r"(\S+)(?:\s+(.*))?", re.DOTALL)


class ScpiError(Exception):
    def __init__(self, error: tuple[int, str], detail: str = ""):
        super().__init__(error[1])
        self.code, self.message = error
        self.detail = detail


@dataclass(frozen=True)
class Node:
    short: str
    long: str
    optional: bool

    def matches(self, text: str) -> bool:
        text = text.upper()
        return text == self.short or text == self.long


_NODE = re.compile(r"\[:?([A-Za-z*][A-Za-z0-9*]*):?\]|:?([A-Za-z*][A-Za-z0-9*]*)")


def compile_pattern(pattern: str) -> tuple[Node, ...]:
    """'[SOURce:]VOLTage[:LEVel]:AC' -> nodes; the short form is the upper-case part of each name."""
    nodes = []
    for optional_name, name in _NODE.findall(pattern):
        text = optional_name or name
        short = "".join(ch for ch in text if ch.isupper() or ch.isdigit() or ch == "*") or text.upper()
        nodes.append(Node(short=short, long=text.upper(), optional=bool(optional_name)))
    return tuple(nodes)


def _match(nodes: tuple[Node, ...], header: list[str]) -> bool:
    if not nodes:
        return not header
    first, rest = nodes[0], nodes[1:]
    if header and first.matches(header[0]) and _match(rest, header[1:]):
        return True
    return first.optional and _match(rest, header)


def split_units(message: str) -> list[str]:
    """Split a program message at ';' outside quoted strings."""
    units, current, quote = [], [], None
    for ch in message:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ";":
            units.append("".join(current))
            current = []
        else:
            current.append(ch)
    units.append("".join(current))
    return [unit.strip() for unit in units if unit.strip()]


def parse_bool(args: list[str]) -> bool:
    if not args:
        raise ScpiError(MISSING_PARAMETER)
    value = args[0].upper()
    if value in ("ON", "1"):
        return True
    if value in ("OFF", "0"):
        return False
    raise ScpiError(ILLEGAL_PARAMETER, args[0])


def suffix_exponent(suffix: str, unit: str | None) -> int:
    """The power of ten a parameter's suffix applies for a parameter in `unit` ('KV' for V: 3); ScpiError -131
    for a suffix of another unit, -138 for a suffix on a parameter without a unit."""
    if not suffix:
        return 0
    if unit is None:
        raise ScpiError(SUFFIX_NOT_ALLOWED, suffix)
    if suffix == unit:
        return 0
    if suffix == MEGA_UNITS.get(unit):
        return 6
    multiplier = suffix.removesuffix(unit) if suffix.endswith(unit) else None
    if multiplier not in MULTIPLIER_EXPONENTS:
        raise ScpiError(INVALID_SUFFIX, f"{suffix} (the parameter is in {unit})")
    return MULTIPLIER_EXPONENTS[multiplier]


def parse_number(args: list[str], low: float, high: float, unit: str | None = None) -> float:
    """A numeric parameter in `unit` ('V', 'HZ', 'A', 'W', 'OHM', 'DEG'; suffix allowed) or MIN/MAX, checked
    against the instrument's range."""
    if not args:
        raise ScpiError(MISSING_PARAMETER)
    text = args[0].upper()
    if text in ("MIN", "MINIMUM"):
        return low
    if text in ("MAX", "MAXIMUM"):
        return high
    match = _NUMERIC.fullmatch(text)
    if match is None:
        raise ScpiError(NUMERIC_DATA_ERROR, args[0])
    mantissa, exponent_mark, exponent, suffix = match.groups()
    try:
        number = Decimal(mantissa + (f"E{exponent}" if exponent_mark else ""))
        value = float(number.scaleb(suffix_exponent(suffix, unit)))
    except (InvalidOperation, OverflowError):
        raise ScpiError(NUMERIC_DATA_ERROR, args[0]) from None
    if not low <= value <= high:
        raise ScpiError(DATA_OUT_OF_RANGE, args[0])
    return value


def event_bit(code: int) -> int:
    """The Standard Event Status Register bit an error sets (SCPI-99 vol 2 21.8)."""
    if -199 <= code <= -100:
        return CME
    if -299 <= code <= -200:
        return EXE
    if -399 <= code <= -300 or code > 0:
        return DDE
    if -499 <= code <= -400:
        return QYE
    return 0


@dataclass
class _Command:
    nodes: tuple[Node, ...]
    query: bool
    handler: Handler
    parameters: int


class ScpiInterpreter:
    """Maps headers to handlers and keeps the status model; `execute` takes one program message."""

    def __init__(self):
        self._commands: list[_Command] = []
        self._common: dict[str, _Command] = {}
        self.errors: deque[tuple[int, str]] = deque()
        self.event_status = PON
        self.event_enable = 0
        self.service_enable = 0
        self.status_enables = {"OPER": 0, "QUES": 0}
        self._response_waiting = False
        self._found: dict[tuple[tuple[str, ...], bool], _Command | None] = {}  # headers already looked up
        self._add_mandatory_commands()

    def _add_mandatory_commands(self) -> None:
        add = self.add
        add("SYSTem:ERRor[:NEXT]?", self._next_error)
        add("SYSTem:VERSion?", lambda _a: SCPI_VERSION)
        add("*CLS", self._clear_status, parameters=0)
        add("*ESE", lambda a: setattr(self, "event_enable", self._register_value(a, 255)))
        add("*ESE?", lambda _a: str(self.event_enable))
        add("*ESR?", self._read_event_status)
        add("*SRE", lambda a: setattr(self, "service_enable", self._register_value(a, 255) & ~MSS))
        add("*SRE?", lambda _a: str(self.service_enable))
        add("*STB?", lambda _a: str(self.status_byte()))
        add("*OPC", self._operation_complete, parameters=0)
        add("*OPC?", lambda _a: "1")  # the twin executes every command before it reads the next
        add("*WAI", lambda _a: None, parameters=0)
        add("*TST?", lambda _a: "0")  # self-test passed
        for register, name in (("OPER", "OPERation"), ("QUES", "QUEStionable")):
            add(f"STATus:{name}[:EVENt]?", lambda _a: "0")  # the twin reports no operation or questionable state
            add(f"STATus:{name}:CONDition?", lambda _a: "0")
            add(f"STATus:{name}:ENABle", lambda a, r=register: self._set_status_enable(r, a))
            add(f"STATus:{name}:ENABle?", lambda _a, r=register: str(self.status_enables[r]))
        add("STATus:PRESet", lambda _a: self.status_enables.update(OPER=0, QUES=0), parameters=0)

    def add(self, pattern: str, handler: Handler, parameters: int | None = None) -> None:
        """Register a header; `parameters` is how many it takes (default: 0 for a query, 1 for a command)."""
        is_query = pattern.endswith("?")
        pattern = pattern.rstrip("?")
        count = parameters if parameters is not None else (0 if is_query else 1)
        if pattern.startswith("*"):
            self._common[pattern.upper() + ("?" if is_query else "")] = _Command((), is_query, handler, count)
        else:
            self._commands.append(_Command(compile_pattern(pattern), is_query, handler, count))
            self._found.clear()

    # -- the status model ---------------------------------------------------------------------------------

    def push_error(self, error: tuple[int, str], detail: str = "") -> None:
        code, message = error
        self.event_status |= event_bit(code)
        if len(self.errors) >= ERROR_QUEUE_SIZE:
            self.errors[-1] = QUEUE_OVERFLOW
            return
        detail = detail.replace('"', "'")
        self.errors.append((code, f"{message}; {detail}" if detail else message))

    def status_byte(self) -> int:
        status = ERROR_AVAILABLE if self.errors else 0
        if self._response_waiting:
            status |= MAV
        if self.event_status & self.event_enable:
            status |= ESB
        if status & self.service_enable:
            status |= MSS
        return status

    def _next_error(self, _args: list[str]) -> str:
        code, message = self.errors.popleft() if self.errors else NO_ERROR
        return f'{code},"{message}"'

    def _clear_status(self, _args: list[str]) -> None:
        self.errors.clear()
        self.event_status = 0

    def _read_event_status(self, _args: list[str]) -> str:
        value, self.event_status = self.event_status, 0
        return str(value)

    def _operation_complete(self, _args: list[str]) -> None:
        self.event_status |= OPC  # no operation of the twin is still pending when *OPC is parsed

    @staticmethod
    def _register_value(args: list[str], high: int) -> int:
        return round(parse_number(args, 0, high))

    def _set_status_enable(self, register: str, args: list[str]) -> None:
        self.status_enables[register] = self._register_value(args, STATUS_ENABLE_MAX)

    # -- program messages ---------------------------------------------------------------------------------

    def _find(self, header: list[str], is_query: bool) -> _Command | None:
        key = (tuple(part.upper() for part in header), is_query)
        if key in self._found:
            return self._found[key]
        found = next((command for command in self._commands
                      if command.query == is_query and _match(command.nodes, header)), None)
        if len(self._found) >= FOUND_CACHE_SIZE:
            self._found.clear()
        self._found[key] = found
        return found

    def _resolve(self, unit: str, header_text: str, is_query: bool, path: list[str]) -> tuple[_Command, list[str]]:
        """The command a unit's header names and the path the next relative header starts from."""
        if header_text.startswith("*"):
            command = self._common.get(header_text.upper() + ("?" if is_query else ""))
            if command is None:
                raise ScpiError(UNDEFINED_HEADER, unit)
            return command, path  # common commands leave the path as it was (IEEE 488.2 A.1.1)
        header = [part for part in header_text.split(":") if part]
        command = None
        if not header_text.startswith(":") and path:
            command = self._find(path + header, is_query)
            if command is not None:
                header = path + header
        if command is None:
            command = self._find(header, is_query)
        if command is None:
            raise ScpiError(UNDEFINED_HEADER, unit)
        return command, header[:-1]

    def execute(self, message: str) -> str | None:
        """Run every unit of a program message; return the joined query responses, or None if none."""
        responses: list[str] = []
        path: list[str] = []
        for unit in split_units(message):
            self._response_waiting = bool(responses)
            try:
                if not unit.isascii():
                    raise ScpiError(INVALID_CHARACTER, unit.encode("ascii", "backslashreplace").decode())
                header_text, arg_text = _HEADER_AND_PARAMETERS.fullmatch(unit).groups()
                args = [arg.strip() for arg in arg_text.split(",")] if arg_text else []
                is_query = header_text.endswith("?")
                command, path = self._resolve(unit, header_text.rstrip("?"), is_query, path)
                if len(args) > command.parameters:
                    raise ScpiError(PARAMETER_NOT_ALLOWED, unit)
                if len(args) < command.parameters:
                    raise ScpiError(MISSING_PARAMETER)
                response = command.handler(args)
            except ScpiError as exc:
                self.push_error((exc.code, exc.message), exc.detail)
                continue
            if is_query and response is not None:
                responses.append(response)
        self._response_waiting = False
        return ";".join(responses) if responses else None


class ScpiInstrumentSim:
    """Base of the simulated SCPI instruments: the interpreter's common commands, *IDN? with idn and *RST with
    _reset(); a subclass adds its own commands to self.scpi."""

    transport = "scpi"
    latency_s = 0.0

    def __init__(self, role: str, model: PhysicalModel, idn: str):
        self.role = role
        self.model = model
        self.idn = idn
        self.scpi = ScpiInterpreter()
        self.scpi.add("*IDN?", lambda _a: self.idn)
        self.scpi.add("*RST", self._reset, parameters=0)

    def _reset(self, _args: list[str]) -> None:
        raise NotImplementedError

    def handle(self, message: str) -> str | None:
        return self.scpi.execute(message)


MAX_MESSAGE_BYTES = 64 * 1024


async def serve_scpi(instrument: ScpiInstrumentSim, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    """Serve one SCPI socket connection: each program message ends with LF (IEEE 488.2 8.4.2; a CR before it is
    whitespace) and is executed after the instrument's latency; a query's response goes back ended by LF. Bytes
    after the last LF when the client disconnects are discarded, never executed. Any byte is accepted: what is
    not ASCII is an error -101 of its unit, and a message longer than MAX_MESSAGE_BYTES an error -223."""
    overlong = False
    try:
        while True:
            try:
                data = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                break  # the client went away mid-message: the fragment is not a message
            except asyncio.LimitOverrunError as exc:
                await reader.readexactly(exc.consumed)
                overlong = True
                continue
            if overlong:
                overlong = False
                instrument.scpi.push_error(TOO_MUCH_DATA, f"a message of more than {MAX_MESSAGE_BYTES} bytes")
                continue
            if instrument.latency_s:
                await asyncio.sleep(instrument.latency_s)
            reply = instrument.handle(data.decode("latin-1").rstrip("\r\n"))
            if reply is not None:
                writer.write(reply.encode("ascii", "backslashreplace") + b"\n")
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
