"""Measurements with limits and verdicts: the framework, not a bare assert, judges a value."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from rig.errors import ConfigError

Verdict = Literal["pass", "marginal", "fail"]


@dataclass(frozen=True)
class Limits:
    """Accepted range [low, high]; values outside the inner marginal band are 'marginal'."""

    low: float | None = None
    high: float | None = None
    marginal_low: float | None = None
    marginal_high: float | None = None

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
                   expected + inner if inner is not None else None)

    @classmethod
    def within(cls, expected: float, tolerance: float, marginal: float | None = None) -> Limits:
        """expected +- tolerance (absolute), with an optional inner marginal band."""
        return cls(expected - tolerance, expected + tolerance,
                   expected - marginal if marginal is not None else None,
                   expected + marginal if marginal is not None else None)

    def verdict(self, value: float) -> Verdict:
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
class Measurement:
    test: str
    name: str
    value: float
    unit: str
    low: float | None
    high: float | None
    verdict: Verdict
    uncertainty: float | None = None
    position: int | None = None
    meter: str | None = None
    marginal_low: float | None = None
    marginal_high: float | None = None
    expected: float | None = None
    details: dict | None = None
    t_mono: float = field(default_factory=time.monotonic)
    t_wall: float = field(default_factory=time.time)

    def as_record(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        where = f" at position {self.position} ({self.meter})" if self.position is not None else ""
        limits = Limits(self.low, self.high).describe()
        plus_minus = f" +- {self.uncertainty:g}" if self.uncertainty is not None else ""
        return f"{self.name}{where} = {self.value:g}{plus_minus} {self.unit}, limits {limits} {self.unit}: " \
               f"{self.verdict.upper()}"
