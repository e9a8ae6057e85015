"""The meter's load limiter (DLMS class 71): above the threshold for the duration, the relay opens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LimiterSettings:
    threshold_active_w: float
    threshold_normal_w: float
    min_over_threshold_duration_s: float
    min_under_threshold_duration_s: float

    def as_record(self) -> dict:
        return asdict(self)


class LoadLimiter(ABC):
    @abstractmethod
    def read_limiter(self) -> LimiterSettings: ...

    @abstractmethod
    def set_limiter(self, threshold_w: float, duration_s: float) -> None:
        """The normal threshold and the minimum duration over it before the relay opens."""
