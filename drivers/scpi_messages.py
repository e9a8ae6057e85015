"""The grammar of SCPI program messages, as far as the setpoint guard reads them: header patterns with short
and long forms and optional nodes, `;`-separated commands with their paths, and numeric parameters with suffixes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache


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


@lru_cache(maxsize=1024)
def parsed_units(message: str) -> tuple[ProgramUnit, ...]:
    """program_units(message), kept for the messages a driver sends again and again (a load's current, polled)."""
    return tuple(program_units(message))


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
