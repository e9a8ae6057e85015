"""What can be checked of a bench before any instrument is touched: secrets, driver settings, limits, channels.

`preflight(bench_file)` raises ConfigError 'file:line: field: message' at the first problem, so a run or a
`rig check` stops before it creates anything or opens any port.
"""

from __future__ import annotations

import os
import re

import yaml

from rig.bench import ROLE_LIMIT_FIELDS, ROLE_RANGE_FIELDS, setpoint_limits
from rig.config import BenchFile, RoleConfig, bench_roles, load_bench, role_location
from rig.driver import Driver, available_drivers, driver_class
from rig.errors import ConfigError
from rig.transcript import Transcript
from rig.yamlfile import dotted, read_yaml, yaml_line

RANGE_UNITS = {"frequency_hz": "Hz", "attenuation_db": "dB"}
FIELD_PATH = re.compile(r"^[\w@.-]+$")


class _Locator:
    """Turns a field location of the bench into 'file:line: field: message'."""

    def __init__(self, bench: BenchFile, root: yaml.Node | None):
        self.bench = bench
        self.root = root

    def error(self, loc: tuple, message: str) -> ConfigError:
        line = yaml_line(self.root, loc)
        return ConfigError(f"{self.bench.path}{f':{line}' if line else ''}: {dotted(loc)}: {message}")

    def where(self, loc: tuple) -> str:
        line = yaml_line(self.root, loc)
        return f"{self.bench.path}{f':{line}' if line else ''}: {dotted(loc)}"

    def driver_error(self, role: str, base: tuple, exc: ConfigError) -> ConfigError:
        """A driver's 'roles.<role>.settings.x: message' placed at the role's own line and field."""
        text = str(exc)
        field, sep, message = text.removeprefix(f"roles.{role}.").partition(": ")
        if text.startswith(f"roles.{role}.") and sep and FIELD_PATH.match(field):
            return self.error(base + tuple(field.split(".")), message)
        return self.error(base, text)


def preflight(bench_file: BenchFile | str | os.PathLike) -> None:
    """Check a bench (a loaded BenchFile or its path) without opening anything: every secret resolves, every
    role's driver accepts its configuration, no role limit lies beyond its instrument's rating, a pulse counter
    has a channel for every position. ConfigError naming file, line and field at the first problem."""
    if isinstance(bench_file, BenchFile):
        bench = bench_file
    else:
        bench = load_bench(bench_file, known_drivers=set(available_drivers()))
    _data, root = read_yaml(bench.path, "bench file")
    locator = _Locator(bench, root)
    for role, config in bench_roles(bench.config).items():
        base = role_location(bench.config, role)
        try:
            cls = driver_class(config.driver)
        except ConfigError as exc:
            raise locator.error(base + ("driver",), str(exc)) from None
        secrets = {name: ref.resolve(locator.where(base + ("secrets", name)), bench.path.parent)
                   for name, ref in config.secrets.items()}
        _check_limits(locator, base, config, cls)
        try:
            driver = cls(role, config, setpoint_limits(bench, role, cls), Transcript(None), secrets)
        except ConfigError as exc:
            raise locator.driver_error(role, base, exc) from None
        except Exception as exc:
            raise locator.error(base + ("settings",), f"driver {config.driver} refused this role's configuration: "
                                                      f"{type(exc).__name__}: {exc}") from None
        _check_channels(locator, base, config, driver, bench)


def _check_limits(locator: _Locator, base: tuple, config: RoleConfig, cls: type[Driver]) -> None:
    """A role limit beyond the instrument's rating promises a protection the instrument cannot give."""
    rating = f"the rating of the {config.driver} instrument"
    for field, (quantity, unit) in ROLE_LIMIT_FIELDS.items():
        value = getattr(config.limits, field)
        _low, high = cls.RATINGS.get(quantity, (None, None))
        if value is not None and high is not None and value > high:
            raise locator.error(base + ("limits", field), f"{value:g} {unit} is above {rating} ({high:g} {unit})")
    for field, quantity in ROLE_RANGE_FIELDS.items():
        span, unit = getattr(config.limits, field), RANGE_UNITS[field]
        low, high = cls.RATINGS.get(quantity, (None, None))
        if span is not None and high is not None and span.max > high:
            raise locator.error(base + ("limits", field, "max"), f"{span.max:g} {unit} is above {rating} "
                                                                 f"({_span(low, high, unit)})")
        if span is not None and low is not None and span.min < low:
            raise locator.error(base + ("limits", field, "min"), f"{span.min:g} {unit} is below {rating} "
                                                                 f"({_span(low, high, unit)})")


def _span(low: float | None, high: float | None, unit: str) -> str:
    if low is None:
        return f"up to {high:g} {unit}"
    return f"from {low:g} {unit}" if high is None else f"{low:g}..{high:g} {unit}"


def _check_channels(locator: _Locator, base: tuple, config: RoleConfig, driver: Driver, bench: BenchFile) -> None:
    """A driver that maps positions to channels (a pulse counter) must have a channel for every bench position."""
    mapping = getattr(driver, "channel_of_position", None)
    if not isinstance(mapping, dict):
        return
    missing = [meter for meter in bench.config.positions if meter.position not in mapping]
    if missing:
        key = next((k for k in ("positions", "channel_of_position") if k in config.settings), None)
        loc = base + ("settings",) + ((key,) if key else ())
        raise locator.error(loc, f"no channel for bench position(s) "
                                 f"{', '.join(f'{m.position} ({m.serial})' for m in missing)}; channels are given "
                                 f"to position(s) {', '.join(map(str, sorted(mapping))) or 'none'}")
