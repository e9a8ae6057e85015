"""Driver base class, setpoint limits and the entry-point registry of drivers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import ClassVar

from rig.config import DriverSettings, RoleConfig, driver_settings
from rig.errors import ConfigError, SetpointRefused
from rig.resources import ANY_RESOURCE, Accepts, Resource
from rig.transcript import Transcript

DRIVER_GROUP = "rig.drivers"


@dataclass(frozen=True)
class Bound:
    """One upper or lower bound on a setpoint, with where it comes from."""

    low: float | None
    high: float | None
    origin: str


@dataclass
class SetpointLimits:
    """All bounds on a role's setpoints: instrument rating, role limits, meters' ratings."""

    bounds: dict[str, list[Bound]] = field(default_factory=dict)

    def add(self, quantity: str, low: float | None, high: float | None, origin: str) -> None:
        self.bounds.setdefault(quantity, []).append(Bound(low, high, origin))

    def check(self, quantity: str, value: float, unit: str, role: str, address: str) -> None:
        """Raise SetpointRefused if value breaks any bound; called before anything is sent."""
        if value != value:  # NaN
            raise SetpointRefused(f"{role} ({address}): {quantity} {value} {unit} refused: not a number")
        for bound in self.bounds.get(quantity, []):
            if bound.high is not None and value > bound.high:
                raise SetpointRefused(f"{role} ({address}): {quantity} {value:g} {unit} refused: above "
                                      f"{bound.high:g} {unit}, {bound.origin}")
            if bound.low is not None and value < bound.low:
                raise SetpointRefused(f"{role} ({address}): {quantity} {value:g} {unit} refused: below "
                                      f"{bound.low:g} {unit}, {bound.origin}")

    def high(self, quantity: str) -> float | None:
        highs = [b.high for b in self.bounds.get(quantity, []) if b.high is not None]
        return min(highs) if highs else None


@dataclass(frozen=True)
class Identity:
    manufacturer: str
    model: str
    serial: str
    firmware: str
    raw: str = ""

    def as_record(self) -> dict:
        return {"manufacturer": self.manufacturer, "model": self.model, "serial": self.serial,
                "firmware": self.firmware, "raw": self.raw}


class Driver:
    """Host side of one instrument playing one role.

    Subclasses declare the instrument's ratings (`RATINGS`: quantity -> (low, high)), which meter rating bounds a
    setpoint (`METER_RATINGS`: quantity -> MeterPosition attribute), their settings model (`SETTINGS_MODEL`) and
    the resources they reach (`ACCEPTS`), and implement open, identify, make_safe and close. The constructor
    validates both, so a misspelt setting or a malformed address is refused before anything opens.
    """

    RATINGS: ClassVar[dict[str, tuple[float | None, float | None]]] = {}
    METER_RATINGS: ClassVar[dict[str, str]] = {}
    SAFE_KEYS: ClassVar[frozenset[str]] = frozenset()
    SETTINGS_MODEL: ClassVar[type[DriverSettings]] = DriverSettings  # no settings
    ACCEPTS: ClassVar[Accepts] = ANY_RESOURCE

    def __init__(self, role: str, config: RoleConfig, limits: SetpointLimits, transcript: Transcript,
                 secrets: dict[str, str] | None = None):
        self.role = role
        self.config = config
        self.address = config.resource
        self.limits = limits
        self.transcript = transcript
        self.secrets = secrets or {}
        unknown = set(config.safe) - self.SAFE_KEYS
        if unknown:
            raise ConfigError(f"roles.{role}.safe: unknown key(s) {', '.join(sorted(unknown))} for driver "
                              f"{config.driver} (accepted: {', '.join(sorted(self.SAFE_KEYS)) or 'none'})")
        self.settings = driver_settings(self.SETTINGS_MODEL, role, config.settings)
        self.resource: Resource = self.ACCEPTS.parse(config.resource, role)

    def open(self) -> None:
        raise NotImplementedError

    def identify(self) -> Identity:
        raise NotImplementedError

    def make_safe(self) -> list[str]:
        """Drive the instrument to its safe state; return what was done, in words."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def check_setpoint(self, quantity: str, value: float, unit: str) -> None:
        self.limits.check(quantity, value, unit, self.role, self.address)


@cache
def available_drivers() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=DRIVER_GROUP)}


def driver_class(name: str) -> type[Driver]:
    entry = available_drivers().get(name)
    if entry is None:
        raise ConfigError(f"unknown driver {name!r} (known: {', '.join(sorted(available_drivers()))})")
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f"driver {name!r} ({entry.value}) is not a rig.driver.Driver subclass")
    return cls
