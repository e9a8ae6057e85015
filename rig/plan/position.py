"""One meter position of the bench as a plan sees it: its meter, its load path, its RF path, its rating."""

from __future__ import annotations

from typing import TypeVar

import pytest

from rig.bench import Bench
from rig.config import MeterPosition
from rig.driver import Driver
from rig.roles import AcLoad, Attenuator, Cover, MeterReadout, Modem

R = TypeVar("R")
PARTS = {"meter": "interface", "load": "load", "attenuator": "attenuator", "modem": "modem",
         "cover": "cover"}  # role -> bench field


class Position:
    """Position `number` of the bench: `pos.meter`, `pos.load`, `pos.attenuator`, `pos.cover`, `pos.modem` (None
    without one), `pos.get(Role)` for a role only some meters fill. A part the bench does not give this position
    skips the test, saying so; a position whose meter stopped answering is an ERROR (PositionBroken)."""

    def __init__(self, rating: MeterPosition, bench: Bench):
        self.rating = rating
        self.bench = bench
        self.number = rating.position
        self.serial = rating.serial

    def __str__(self) -> str:
        return f"position {self.number} ({self.serial})"

    @property
    def un_v(self) -> float:
        return self.rating.un_v

    @property
    def meter(self) -> MeterReadout:
        return self._part("meter")

    @property
    def load(self) -> AcLoad:
        return self._part("load")

    @property
    def attenuator(self) -> Attenuator:
        return self._part("attenuator")

    @property
    def modem(self) -> Modem | None:
        return self._part("modem") if self.has("modem") else None

    @property
    def cover(self) -> Cover:
        return self._part("cover")

    def has(self, part: str) -> bool:
        return getattr(self.rating, PARTS[part]) is not None

    def get(self, role: type[R]) -> R:
        """This position's instrument that fills `role` (its meter, load, attenuator or modem); skips the test
        when none does."""
        for part in PARTS:
            if self.has(part):
                driver = self._part(part)
                if isinstance(driver, role):
                    return driver
        parts = ", ".join(f"{part}: {self.bench.roles[f'{part}@{self.number}'].driver}"
                          for part in PARTS if self.has(part)) or "no instrument"
        pytest.skip(f"{self}: no instrument of this position can act as {role.__name__} ({parts})")

    def _part(self, part: str) -> Driver:
        if not self.has(part):
            pytest.skip(f"{self} has no {part} (positions[].{PARTS[part]} in {self.bench.file.path.name})")
        return self.bench[f"{part}@{self.number}"]
