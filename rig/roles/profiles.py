"""The meter's IS 15959 profiles (DLMS profile generic, class 7) and name plate, as a plan reads them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# IS 15959 profiles by the names a plan may use (the logical name works as well)
IS15959_PROFILES = {
    "instantaneous": "1.0.94.91.0.255",
    "block_load": "1.0.99.1.0.255",
    "daily_load": "1.0.99.2.0.255",
    "billing": "1.0.98.1.0.255",
    "name_plate": "0.0.94.91.10.255",
    "voltage_events": "0.0.99.98.0.255",
    "current_events": "0.0.99.98.1.255",
    "power_events": "0.0.99.98.2.255",
    "transaction_events": "0.0.99.98.3.255",
    "other_events": "0.0.99.98.4.255",
    "non_rollover_events": "0.0.99.98.5.255",
    "control_events": "0.0.99.98.6.255",
}


@dataclass(frozen=True)
class ProfileColumn:
    """One capture object of a profile: which attribute of which object the column holds, and the scaler and unit
    applied to its values (None: not a scaled quantity; unit '' for a count)."""

    class_id: int
    logical_name: str
    attribute: int
    data_index: int = 0
    scaler: int | None = None
    unit: str | None = None

    def as_record(self) -> dict:
        return {"class_id": self.class_id, "logical_name": self.logical_name, "attribute": self.attribute,
                "data_index": self.data_index, "scaler": self.scaler, "unit": self.unit}


@dataclass(frozen=True)
class ProfileRow:
    """One entry of a profile's buffer: the meter's time of it (its clock column; None without one) and one value
    per column, scaled to its unit (date-times as aware datetimes)."""

    at: datetime | None
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Profile:
    """A profile's columns and the rows read."""

    logical_name: str
    columns: tuple[ProfileColumn, ...]
    rows: tuple[ProfileRow, ...]

    def column(self, logical_name: str, attribute: int = 2) -> int:
        """Index of the column holding attribute `attribute` of `logical_name`."""
        for index, column in enumerate(self.columns):
            if (column.logical_name, column.attribute) == (logical_name, attribute):
                return index
        raise KeyError(f"profile {self.logical_name} has no column {logical_name} attribute {attribute}")

    def values(self, logical_name: str, attribute: int = 2) -> list[Any]:
        """That column's value in every row, oldest first."""
        index = self.column(logical_name, attribute)
        return [row.values[index] for row in self.rows]

    def as_record(self) -> dict:
        return {"logical_name": self.logical_name, "columns": [column.as_record() for column in self.columns],
                "rows": [[row.at.isoformat() if row.at else None,
                          *(value.isoformat() if isinstance(value, datetime) else
                            value.hex() if isinstance(value, bytes) else value for value in row.values)]
                         for row in self.rows]}


@dataclass(frozen=True)
class NamePlate:
    """The IS 15959 name plate details; None where the meter does not give that object."""

    serial: str | None
    manufacturer: str | None
    firmware: str | None
    meter_type: int | str | None
    category: str | None
    current_rating: str | None
    year: int | None

    def as_record(self) -> dict:
        return dict(self.__dict__)


class ProfileReader(ABC):
    """A meter whose profiles a plan can read, whole or in part."""

    @abstractmethod
    def read_profile(self, profile: str, since: datetime | None = None, until: datetime | None = None) -> Profile:
        """Rows of `profile` (a name of IS15959_PROFILES or a logical name) stamped from `since` to `until`
        (both included; None: open), oldest first."""

    @abstractmethod
    def read_profile_entries(self, profile: str, first: int = 1, last: int = 0) -> Profile:
        """Entries first..last of `profile`, counted from 1 (last 0: up to the newest)."""

    @abstractmethod
    def name_plate(self) -> NamePlate: ...
