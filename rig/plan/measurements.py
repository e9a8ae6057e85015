"""Declared measurements: a test says up front what it will measure and against which limit.

`measure.declare(name, unit, limit)` returns a `Declared`; calling it with the value takes the measurement
(judged, written at once, an Allure step); `not_observed(waited_s)` records that the system under test did not do
what was waited for (FAIL, the value is the time waited). A declared measurement never taken is recorded as
not measured when the test ends, and fails it. `measure(name, value, unit, limit)` declares and takes at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rig.errors import RigError
from rig.measure import Limit, Measurement, Spec, Value


class Numbered(Protocol):
    number: int
    serial: str


class Declared:
    """One declared measurement of a test; taken once."""

    def __init__(self, spec: Spec, owner: Measurements):
        self.spec = spec
        self.owner = owner
        self.taken: Measurement | None = None

    def __call__(self, value: Value, *, uncertainty: float | None = None, details: dict | None = None) -> Measurement:
        return self._take(lambda test: self.spec.judge(test, value, uncertainty=uncertainty, details=details))

    def not_observed(self, waited_s: float, *, uncertainty: float | None = None,
                     details: dict | None = None) -> Measurement:
        """The system under test did not do it within waited_s: FAIL, with the time waited as the value."""
        return self._take(lambda test: self.spec.judge(test, waited_s, uncertainty=uncertainty, details=details,
                                                       note=f"not observed within {waited_s:.3g} s"))

    @property
    def failed(self) -> bool:
        return self.taken is not None and self.taken.verdict == "fail"

    def _take(self, judge: Callable[[str], Measurement]) -> Measurement:
        if self.taken is not None:
            raise RigError(f"{self.owner.test}: measurement {self.spec.name!r} taken twice")
        self.taken = judge(self.owner.test)
        self.owner.write(self.taken)
        return self.taken


class Measurements:
    """The measurements of one test; by default of the test's own position (`pos`), if it has one."""

    def __init__(self, test: str, write: Callable[[Measurement], None], meter_of: Callable[[int], str | None],
                 position: Numbered | int | None = None):
        self.test = test
        self.write = write
        self.meter_of = meter_of
        self.position = position
        self.declared: list[Declared] = []

    def declare(self, name: str, unit: str, limit: Limit, *, position: Numbered | int | None = None) -> Declared:
        number, meter = self._where(position)
        declared = Declared(Spec(name, unit, limit, number, meter), self)
        self.declared.append(declared)
        return declared

    def __call__(self, name: str, value: Value, unit: str, limit: Limit, *, uncertainty: float | None = None,
                 position: Numbered | int | None = None, details: dict | None = None) -> Measurement:
        return self.declare(name, unit, limit, position=position)(value, uncertainty=uncertainty, details=details)

    @property
    def taken(self) -> list[Measurement]:
        return [d.taken for d in self.declared if d.taken is not None]

    def record_not_taken(self) -> list[Measurement]:
        """Every declared measurement never taken, recorded as not measured."""
        missing = []
        for declared in self.declared:
            if declared.taken is None:
                declared.taken = declared.spec.not_measured(self.test)
                self.write(declared.taken)
                missing.append(declared.taken)
        return missing

    def _where(self, position: Numbered | int | None) -> tuple[int | None, str | None]:
        if position is None:
            position = self.position
        if position is None:
            return None, None
        if isinstance(position, int):
            return position, self.meter_of(position)
        return position.number, position.serial
