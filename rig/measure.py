"""Measurements with limits and verdicts: the framework, not a bare assert, judges a value.

A limit is a range (`Limits`: low, high, an optional marginal band; `within`, `within_percent`) or an expected
value (`Equals`: booleans, counts, states). A `Spec` says what will be measured (name, unit, limit, position and
meter); it judges a value into a `Measurement`, or records that the value was never taken (`not_measured`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from rig.errors import ConfigError

Verdict = Literal["pass", "marginal", "fail"]
Value = float | int | bool | str
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Limits:
    """Accepted range [low, high]; values outside the inner marginal band are 'marginal'."""

    low: float | None = None
    high: float | None = None
    marginal_low: float | None = None
    marginal_high: float | None = None
    expected: float | None = None

    def __post_init__(self):
        if self.low is None and self.high is None:
            raise ConfigError("a measurement needs at least one limit (low or high)")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ConfigError(f"limit low {self.low} is above high {self.high}")

    @classmethod
    def within_percent(cls, expected: float, percent: float, marginal_percent: float | None = None) -> Limits:
        """expected +- percent % (of |expected|), with an optional inner marginal band."""
        span = abs(expected) * percent / 100
        inner = abs(expected) * marginal_percent / 100 if marginal_percent is not None else None
        return cls(expected - span, expected + span,
                   expected - inner if inner is not None else None,
                   expected + inner if inner is not None else None, expected)

    @classmethod
    def within(cls, expected: float, tolerance: float, marginal: float | None = None) -> Limits:
        """expected +- tolerance (absolute), with an optional inner marginal band."""
        return cls(expected - tolerance, expected + tolerance,
                   expected - marginal if marginal is not None else None,
                   expected + marginal if marginal is not None else None, expected)

    def verdict(self, value: float) -> Verdict:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"a range judges numbers, got {value!r}: use Equals for booleans and states")
        if math.isnan(value):
            return "fail"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return "fail"
        if (self.marginal_low is not None and value < self.marginal_low) or (
            self.marginal_high is not None and value > self.marginal_high
        ):
            return "marginal"
        return "pass"

    def describe(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "+inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}]"


@dataclass(frozen=True)
class Equals:
    """The value must equal `expected` exactly: a boolean, a count, a state."""

    expected: Value
    low = high = marginal_low = marginal_high = None

    def verdict(self, value: Value) -> Verdict:
        same_kind = isinstance(value, bool) == isinstance(self.expected, bool)  # True is no count of 1
        return "pass" if same_kind and value == self.expected else "fail"

    def describe(self) -> str:
        return f"= {self.expected}"


Limit = Limits | Equals


@dataclass(frozen=True)
class Measurement:
    test: str
    name: str
    value: Value | None  # None: not measured
    unit: str
    low: float | None
    high: float | None
    verdict: Verdict
    uncertainty: float | None = None
    position: int | None = None
    meter: str | None = None
    marginal_low: float | None = None
    marginal_high: float | None = None
    expected: Value | None = None
    details: dict | None = None
    note: str | None = None  # e.g. "not measured", "not observed within 13.2 s"
    t_mono: float = field(default_factory=time.monotonic)
    t_wall: float = field(default_factory=time.time)

    def as_record(self) -> dict:
        return asdict(self)

    def limit_text(self) -> str:
        """'[low, high] unit', or '= expected' for an exact value."""
        if self.low is None and self.high is None:
            return f"= {self.expected}"
        return f"{Limits(self.low, self.high).describe()}{f' {self.unit}' if self.unit else ''}"

    def describe(self) -> str:
        where = f" at position {self.position} ({self.meter})" if self.position is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        limit = f"expected {self.expected}" if self.low is None and self.high is None else f"limits {self.limit_text()}"
        note = f" ({self.note})" if self.note and self.value is not None else ""
        if self.value is None:
            return f"{self.name}{where}: {self.note or NOT_MEASURED}, {limit}: {self.verdict.upper()}"
        plus_minus = f" +- {self.uncertainty:g}" if self.uncertainty is not None else ""
        value = f"{self.value:g}" if isinstance(self.value, float) else str(self.value)
        return f"{self.name}{where} = {value}{plus_minus}{unit}, {limit}: {self.verdict.upper()}{note}"


@dataclass(frozen=True)
class Spec:
    """What a test will measure: name, unit, the limit it is judged by, and which position's meter it is of."""

    name: str
    unit: str
    limit: Limit
    position: int | None = None
    meter: str | None = None

    def judge(self, test: str, value: Value, *, uncertainty: float | None = None, details: dict | None = None,
              note: str | None = None) -> Measurement:
        """The value judged against the limit (a note forces FAIL: the value is only a bound, e.g. time waited)."""
        if isinstance(value, int | float) and not isinstance(value, bool) and not isinstance(self.limit, Equals):
            value = float(value)
        verdict = "fail" if note else self.limit.verdict(value)
        return self._measurement(test, value, verdict, uncertainty, details, note)

    def not_measured(self, test: str, why: str = NOT_MEASURED) -> Measurement:
        return self._measurement(test, None, "fail", None, None, why)

    def _measurement(self, test: str, value: Value | None, verdict: Verdict, uncertainty: float | None,
                     details: dict | None, note: str | None) -> Measurement:
        limit = self.limit
        return Measurement(test=test, name=self.name, value=value, unit=self.unit, low=limit.low, high=limit.high,
                           verdict=verdict, uncertainty=uncertainty, position=self.position, meter=self.meter,
                           marginal_low=limit.marginal_low, marginal_high=limit.marginal_high, expected=limit.expected,
                           details=details, note=note)
