"""The meter's event log (IS 15959 event profiles): which events it logged, and when."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class MeterEvent:
    """One entry of the meter's event log: its IS 15959 event code and the meter's time of it."""

    code: int
    at: datetime

    def as_record(self) -> dict:
        return {"code": self.code, "at": self.at.isoformat()}


class EventLog(ABC):
    @abstractmethod
    def read_clock(self) -> datetime:
        """The meter's clock now: the time its events are stamped with."""

    @abstractmethod
    def events_since(self, instant: datetime) -> list[MeterEvent]:
        """Events the meter logged at or after `instant` (the meter's clock), oldest first."""

    @abstractmethod
    def wait_for_event(self, code: int, since: datetime, timeout_s: float) -> MeterEvent | None:
        """The first event `code` logged at or after `since`, waiting up to timeout_s; None if none came."""
