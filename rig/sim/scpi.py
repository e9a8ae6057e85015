"""A small SCPI command interpreter for simulated instruments.

Long and short header forms (`VOLTage` accepts VOLT and VOLTAGE), case-insensitive, optional nodes in
brackets, `;` chains relative to the previous header's path, a leading `:` to restart at the root, common
`*` commands, and an error queue read with SYST:ERR? as IEEE 488.2 / SCPI-99 instruments keep it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rig.sim.model import PhysicalModel

Handler = Callable[[list[str]], str | None]

NO_ERROR = (0, "No error")
UNDEFINED_HEADER = (-113, "Undefined header")
MISSING_PARAMETER = (-109, "Missing parameter")
ILLEGAL_PARAMETER = (-224, "Illegal parameter value")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
NUMERIC_DATA_ERROR = (-120, "Numeric data error")
QUEUE_OVERFLOW = (-350, "Queue overflow")
ERROR_QUEUE_SIZE = 16


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


def parse_number(args: list[str], low: float, high: float) -> float:
    """A numeric parameter (MIN/MAX allowed) checked against the instrument's range."""
    if not args:
        raise ScpiError(MISSING_PARAMETER)
    text = args[0].upper()
    if text in ("MIN", "MINIMUM"):
        return low
    if text in ("MAX", "MAXIMUM"):
        return high
    try:
        value = float(text)
    except ValueError:
        raise ScpiError(NUMERIC_DATA_ERROR, args[0]) from None
    if not low <= value <= high:
        raise ScpiError(DATA_OUT_OF_RANGE, args[0])
    return value


class ScpiInterpreter:
    """Maps headers to handlers and keeps the error queue; `execute` takes one program message."""

    def __init__(self):
        self._commands: list[tuple[tuple[Node, ...], bool, Handler]] = []
        self._common: dict[str, Handler] = {}
        self.errors: deque[tuple[int, str]] = deque()
        self.add("SYSTem:ERRor[:NEXT]?", self._next_error)
        self.add("*CLS", lambda _args: self.errors.clear())

    def add(self, pattern: str, handler: Handler) -> None:
        is_query = pattern.endswith("?")
        pattern = pattern.rstrip("?")
        if pattern.startswith("*"):
            self._common[pattern.upper() + ("?" if is_query else "")] = handler
        else:
            self._commands.append((compile_pattern(pattern), is_query, handler))

    def push_error(self, error: tuple[int, str], detail: str = "") -> None:
        if len(self.errors) >= ERROR_QUEUE_SIZE:
            self.errors[-1] = QUEUE_OVERFLOW
            return
        code, message = error
        self.errors.append((code, f"{message}; {detail}" if detail else message))

    def _next_error(self, _args: list[str]) -> str:
        code, message = self.errors.popleft() if self.errors else NO_ERROR
        return f'{code},"{message}"'

    def _find(self, header: list[str], is_query: bool) -> Handler | None:
        for nodes, query, handler in self._commands:
            if query == is_query and _match(nodes, header):
                return handler
        return None

    def execute(self, message: str) -> str | None:
        """Run every unit of a program message; return the joined query responses, or None if none."""
        responses: list[str] = []
        path: list[str] = []
        for unit in split_units(message):
            header_text, _, arg_text = unit.partition(" ")
            args = [arg.strip() for arg in arg_text.split(",")] if arg_text.strip() else []
            is_query = header_text.endswith("?")
            header_text = header_text.rstrip("?")
            try:
                if header_text.startswith("*"):
                    handler = self._common.get(header_text.upper() + ("?" if is_query else ""))
                    if handler is None:
                        raise ScpiError(UNDEFINED_HEADER, unit)
                else:
                    absolute = header_text.startswith(":")
                    header = [part for part in header_text.split(":") if part]
                    handler = None
                    if not absolute and path:
                        handler = self._find(path + header, is_query)
                        if handler is not None:
                            header = path + header
                    if handler is None:
                        handler = self._find(header, is_query)
                    if handler is None:
                        raise ScpiError(UNDEFINED_HEADER, unit)
                    path = header[:-1]
                response = handler(args)
            except ScpiError as exc:
                self.push_error((exc.code, exc.message), exc.detail)
                continue
            if is_query and response is not None:
                responses.append(response)
        return ";".join(responses) if responses else None


class ScpiInstrumentSim:
    """Base of the simulated SCPI instruments: answers *IDN? with idn, *RST with _reset() and *OPC? with 1;
    a subclass adds its own commands to self.scpi."""

    transport = "scpi"

    def __init__(self, role: str, model: PhysicalModel, idn: str):
        self.role = role
        self.model = model
        self.idn = idn
        self.scpi = ScpiInterpreter()
        self.scpi.add("*IDN?", lambda _a: self.idn)
        self.scpi.add("*RST", self._reset)
        self.scpi.add("*OPC?", lambda _a: "1")

    def _reset(self, _args: list[str]) -> None:
        raise NotImplementedError

    def handle(self, message: str) -> str | None:
        return self.scpi.execute(message)
