"""A fleet of meters as a plan sees it: the meters and where they listen, their mains, their consumption, and each
meter's own word on its supply (the fleet's physical truth, not the head end's view).

A fleet is started once (`start`, with the head end's push endpoint its meters dial) and closed at the end of the
run. `mains_off` returns once every chosen meter has lost its mains; `mains_on` starts the restoration and returns at
once (each meter's mains come back within the jitter), so a plan can time the restoration from `states()`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from rig.roles.relay import ControlState


@dataclass(frozen=True)
class FleetMeter:
    """A fleet meter: its serial and its DLMS endpoint ('tcp://host:port')."""

    serial: str
    endpoint: str


@dataclass(frozen=True)
class FleetMeterState:
    """What a fleet meter itself holds: mains, its disconnect control's state, its energy register."""

    serial: str
    mains_on: bool
    control_state: ControlState
    energy_wh: int

    @property
    def relay_connected(self) -> bool:
        return self.control_state is ControlState.CONNECTED

    @property
    def supplied(self) -> bool:
        """Mains present and the relay closed: the consumer has supply."""
        return self.mains_on and self.relay_connected


class Fleet(ABC):
    """What a plan asks of a fleet of meters."""

    @property
    @abstractmethod
    def size(self) -> int:
        """How many meters the fleet serves."""

    @property
    @abstractmethod
    def running(self) -> bool: ...

    @abstractmethod
    def start(self, push_to: tuple[str, int] | None = None) -> list[FleetMeter]:
        """Start the fleet, its meters pushing to `push_to` (host, port); the meters."""

    @abstractmethod
    def meters(self) -> list[FleetMeter]: ...

    @abstractmethod
    def mains_off(self, fraction: float = 1.0, jitter_s: float = 0.0) -> list[str]:
        """Mains off at a share of the meters (drawn at random among those with mains), each within jitter_s;
        returns once all are off, with their serials."""

    @abstractmethod
    def mains_on(self, jitter_s: float = 0.0) -> float:
        """Mains back at every meter without, each within jitter_s; returns at once, with the monotonic instant
        the restoration began."""

    @abstractmethod
    def wait_mains(self, timeout_s: float) -> None:
        """Wait until a restoration begun by `mains_on` is complete (every meter has its mains)."""

    @abstractmethod
    def set_consumption(self, scale: float) -> None:
        """Every meter's consumption scaled from now on (1.0: the fleet's model as it is)."""

    @abstractmethod
    def states(self) -> dict[str, FleetMeterState]:
        """Each meter's state by serial, as the meters hold it."""

    @abstractmethod
    def metrics(self) -> dict:
        """The fleet's own counts: meters, mains on, associations, requests, pushes sent and failed, ..."""

    @abstractmethod
    def close(self) -> None:
        """Stop the fleet (every meter off its address); safe to call more than once."""

    def wait_supplied(self, serials: list[str], timeout_s: float, poll_s: float = 0.1) -> dict[str, float | None]:
        """Watch the meters' own states until each of `serials` is supplied (mains and relay closed); the monotonic
        instant each was first seen supplied (None: not within timeout_s). An instant is late by at most poll_s
        plus one states() call."""
        seen: dict[str, float | None] = dict.fromkeys(serials)
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.states()
            now = time.monotonic()
            for serial, when in seen.items():
                if when is None and states[serial].supplied:
                    seen[serial] = now
            if all(when is not None for when in seen.values()) or now > deadline:
                return seen
            time.sleep(poll_s)
