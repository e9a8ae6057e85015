"""Reading IS 15959 profiles (DLMS profile generic, class 7) and the name plate from a DLMS meter.

Columns come from the profile's capture_objects (attribute 3), never from a table here; the buffer (attribute 2) is
read whole or with selective access (DLMS UA 1000-1, profile generic attribute 2: selector 1 range_descriptor on
the profile's clock column, selector 2 entry_descriptor) when the association negotiated selective access, and
selected here otherwise. Values are scaled with the profile's IS 15959 scaler profile or, for a column it lacks,
with the object's own scaler_unit attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from dlms_cosem import cosem, dlms_data, enumerations
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import EntryDescriptor, RangeDescriptor

from rig.errors import InstrumentError
from rig.roles.profiles import IS15959_PROFILES, NamePlate, Profile, ProfileColumn, ProfileReader, ProfileRow

PROFILE_GENERIC, CLOCK_CLASS, DATA = 7, 8, 1
CLOCK = "0.0.1.0.0.255"
EVENTS_SCALER = "1.0.94.91.7.255"
# IS 15959 scaler profiles: each holds, in its one entry, the scaler_unit of its profile's columns
SCALER_PROFILES = {
    "1.0.94.91.0.255": "1.0.94.91.3.255",  # instantaneous
    "1.0.99.1.0.255": "1.0.94.91.4.255",   # block load
    "1.0.99.2.0.255": "1.0.94.91.5.255",   # daily load
    "1.0.98.1.0.255": "1.0.94.91.6.255",   # billing
    **{f"0.0.99.98.{n}.255": EVENTS_SCALER for n in range(7)},  # the event logs share the events scaler
}
# IS 15959 name plate details (class 1 data, attribute 2)
NAME_PLATE = {"serial": "0.0.96.1.0.255", "manufacturer": "0.0.96.1.1.255", "firmware": "1.0.0.2.0.255",
              "meter_type": "0.0.94.91.9.255", "category": "0.0.94.91.11.255",
              "current_rating": "0.0.94.91.12.255", "year": "0.0.96.1.4.255"}
# (class, value attribute) -> attribute of its scaler_unit: register, extended register, demand register
SCALER_ATTRIBUTES = {(3, 2): 3, (4, 2): 3, (5, 2): 4, (5, 3): 4}
# (class, attribute) holding a date-time: clock time, capture times of extended and demand registers
DATE_TIME_ATTRIBUTES = {(8, 2), (4, 5), (5, 6), (5, 7)}
# data objects (class 1) holding a date-time: time stamp of the (most recent) billing period, OBIS x.x.0.1.2.255
TIME_STAMPS = {"0.0.0.1.2.255", "1.0.0.1.2.255"}
# DLMS UA 1000-1 unit enumeration (part of it); 255: a count, no unit
UNITS = {1: "a", 2: "mo", 3: "wk", 4: "d", 5: "h", 6: "min", 7: "s", 8: "°", 9: "°C", 10: "currency", 27: "W",
         28: "VA", 29: "var", 30: "Wh", 31: "VAh", 32: "varh", 33: "A", 34: "C", 35: "V", 44: "Hz", 56: "%",
         57: "Ah", 70: "dBm", 71: "dBµV", 72: "dB", 255: ""}
# bounds of a date range left open by the caller
OPEN_START = datetime(2000, 1, 1, tzinfo=UTC)
OPEN_END = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)


class EntryRange(EntryDescriptor):
    """entry_descriptor (selector 2): dlms-cosem 21.3.2 declares it but cannot encode it, so its A-XDR is built here:
    structure {from_entry double-long-unsigned, to_entry double-long-unsigned, from_selected_value long-unsigned,
    to_selected_value long-unsigned}, entries and columns counted from 1, 0 meaning the last."""

    def to_bytes(self) -> bytes:
        return (bytes([self.ACCESS_DESCRIPTOR]) + b"\x02\x04"
                + dlms_data.DoubleLongUnsignedData(self.from_entry).to_bytes()
                + dlms_data.DoubleLongUnsignedData(self.to_entry).to_bytes()
                + dlms_data.UnsignedLongData(self.from_selected_value).to_bytes()
                + dlms_data.UnsignedLongData(self.to_selected_value).to_bytes())


def obis_text(value: Any) -> str:
    return ".".join(str(octet) for octet in value) if isinstance(value, bytes) and len(value) == 6 else str(value)


def profile_obis(profile: str) -> str:
    """A name of IS15959_PROFILES or a logical name -> the logical name."""
    if profile in IS15959_PROFILES:
        return IS15959_PROFILES[profile]
    parts = profile.split(".")
    if len(parts) != 6 or not all(part.isdigit() and int(part) < 256 for part in parts):
        raise ValueError(f"{profile!r} is neither a logical name (a.b.c.d.e.f) nor one of "
                         f"{', '.join(IS15959_PROFILES)}")
    return profile


def capture_columns(captures: Any) -> list[ProfileColumn]:
    """capture_objects (attribute 3): array of structure {class_id, logical_name, attribute_index, data_index}."""
    if not isinstance(captures, list):
        raise ValueError(f"capture_objects is {captures!r}, not an array")
    columns = []
    for capture in captures:
        if not (isinstance(capture, list) and len(capture) == 4 and isinstance(capture[1], bytes)
                and all(isinstance(part, int) for part in (capture[0], capture[2], capture[3]))):
            raise ValueError(f"capture object {capture!r} is not {{class_id, logical_name, attribute, data_index}}")
        columns.append(ProfileColumn(capture[0], obis_text(capture[1]), capture[2], capture[3]))
    return columns


def is_date_time(column: ProfileColumn) -> bool:
    return (column.class_id, column.attribute) in DATE_TIME_ATTRIBUTES or \
        (column.class_id, column.attribute) == (DATA, 2) and column.logical_name in TIME_STAMPS


def time_column(columns: list[ProfileColumn]) -> int | None:
    """The column that stamps a row: the clock's time or else a billing time stamp (the billing profile's)."""
    clock = next((index for index, column in enumerate(columns)
                  if (column.class_id, column.logical_name, column.attribute) == (CLOCK_CLASS, CLOCK, 2)), None)
    if clock is not None:
        return clock
    return next((index for index, column in enumerate(columns)
                 if column.logical_name in TIME_STAMPS and is_date_time(column)), None)


def scaler_source(column: ProfileColumn) -> tuple[int, str, int] | None:
    """(class, logical name, attribute) of the scaler_unit that scales this column; None if none does."""
    attribute = SCALER_ATTRIBUTES.get((column.class_id, column.attribute))
    return None if attribute is None else (column.class_id, column.logical_name, attribute)


def scalers_of_scaler_profile(captures: Any, buffer: Any) -> dict[tuple[int, str, int], tuple[int, int]]:
    """An IS 15959 scaler profile's one entry: its columns are scaler_unit attributes, its values {scaler, unit}."""
    columns = capture_columns(captures)
    if not buffer:
        return {}
    if not isinstance(buffer, list):
        raise ValueError(f"scaler profile buffer is {buffer!r}, not an array")
    entry = buffer[0]
    if not isinstance(entry, list) or len(entry) != len(columns):
        raise ValueError(f"scaler profile entry {entry!r} does not match its {len(columns)} capture objects")
    found = {}
    for column, value in zip(columns, entry, strict=True):
        if is_scaler_unit(value):
            found[(column.class_id, column.logical_name, column.attribute)] = (value[0], value[1])
    return found


def is_scaler_unit(value: Any) -> bool:
    """A scaler_unit as DLMS UA 1000-1 types it: structure {scaler integer (-128..127), unit enum (0..255)}; a
    scaler beyond an integer's range is refused rather than raising a power of ten without end."""
    return (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
            and -128 <= value[0] <= 127 and 0 <= value[1] <= 255)


def scaled(value: Any, scaler: int) -> Any:
    """A number times 10^scaler (dividing by the exact power of ten when the scaler is negative)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value
    return value / 10 ** -scaler if scaler < 0 else float(value * 10 ** scaler)


@dataclass(frozen=True)
class DateRange:
    """Rows stamped from since to until (both included), selected on the profile's time column."""

    since: datetime | None
    until: datetime | None

    def descriptor(self, columns: list[ProfileColumn], utc_offset_min: int) -> RangeDescriptor | None:
        """range_descriptor (selector 1): the row's time column as restricting object, from and to as date-times in
        the meter's time zone, no selected values (all columns)."""
        if self.since is None and self.until is None:
            return None
        at = time_column(columns)
        if at is None:
            raise ValueError("the profile has no date-time column to select dates on")
        stamp = columns[at]
        zone = timezone(timedelta(minutes=utc_offset_min))
        restricting = CaptureObject(cosem.CosemAttribute(enumerations.CosemInterface(stamp.class_id),
                                                         cosem.Obis.from_string(stamp.logical_name), stamp.attribute),
                                    stamp.data_index)
        return RangeDescriptor(restricting, (self.since or OPEN_START).astimezone(zone),
                               (self.until or OPEN_END).astimezone(zone))

    def pick(self, rows: list[ProfileRow]) -> list[ProfileRow]:
        since, until = self.since or OPEN_START, self.until or OPEN_END
        return [row for row in rows if row.at is not None and since <= row.at <= until]

    def __str__(self) -> str:
        return f"from {self.since or 'the start'} to {self.until or 'the end'}"


@dataclass(frozen=True)
class EntrySpan:
    """Entries first..last, counted from 1 (last 0: up to the newest)."""

    first: int
    last: int

    def descriptor(self, columns: list[ProfileColumn], utc_offset_min: int) -> EntryRange:
        return EntryRange(from_entry=self.first, to_entry=self.last)

    def pick(self, rows: list[ProfileRow]) -> list[ProfileRow]:
        return rows[self.first - 1:self.last or len(rows)]

    def __str__(self) -> str:
        return f"entries {self.first} to {self.last or 'the last'}"


class DlmsProfiles(ProfileReader):
    """Profile and name plate reading for DlmsMeter. The host gives `_call(name, body)`, `_get_value(session,
    logical_name, class_id, attribute, access=None)`, `_get_optional(...)` (None where the meter refuses),
    `_selective_access(session)`, `_date_time(raw)`, `_where()` and `utc_offset_min`; a session's `cache` keeps
    what is static for the association (capture objects, scalers)."""

    def read_profile(self, profile: str, since: datetime | None = None, until: datetime | None = None) -> Profile:
        if any(moment is not None and moment.tzinfo is None for moment in (since, until)):
            raise ValueError("read_profile needs timezone-aware datetimes")
        logical_name = profile_obis(profile)
        selection = DateRange(since, until)
        return self._call(f"read_profile {logical_name} {selection}",
                          lambda session: self._read_profile(session, logical_name, selection))

    def read_profile_entries(self, profile: str, first: int = 1, last: int = 0) -> Profile:
        if not (1 <= first < 2**32 and 0 <= last < 2**32) or (last and last < first):
            raise ValueError(f"entries {first}..{last}: first counts from 1, last is 0 or not below first")
        logical_name = profile_obis(profile)
        selection = EntrySpan(first, last)
        return self._call(f"read_profile_entries {logical_name} {selection}",
                          lambda session: self._read_profile(session, logical_name, selection))

    def name_plate(self) -> NamePlate:
        def body(session) -> NamePlate:
            values = {part: self._get_optional(session, logical_name, DATA, 2)
                      for part, logical_name in NAME_PLATE.items()}
            year = _text(values.pop("year"))
            meter_type = values.pop("meter_type")
            return NamePlate(**{part: _text(value) for part, value in values.items()},
                             meter_type=meter_type if isinstance(meter_type, int) else _text(meter_type),
                             year=int(year) if year is not None and year.isdigit() else None)
        return self._call("name_plate", body)

    # -- on the association --------------------------------------------------------------------------------

    def _read_profile(self, session, logical_name: str, selection: DateRange | EntrySpan) -> Profile:
        columns = self._columns(session, logical_name)
        try:
            access = selection.descriptor(columns, self.utc_offset_min)
        except ValueError as exc:
            raise InstrumentError(f"{self._where()}: profile {logical_name}: {exc}") from None
        selected_by_meter = access is None or self._selective_access(session)
        buffer = self._get_value(session, logical_name, PROFILE_GENERIC, 2, access if selected_by_meter else None)
        columns = self._with_scalers(session, logical_name, columns)
        rows = self._rows(logical_name, columns, buffer)
        return Profile(logical_name, tuple(columns), tuple(rows if selected_by_meter else selection.pick(rows)))

    def _columns(self, session, logical_name: str) -> list[ProfileColumn]:
        key = ("capture_objects", logical_name)
        if key not in session.cache:
            captures = self._get_value(session, logical_name, PROFILE_GENERIC, 3)
            try:
                session.cache[key] = capture_columns(captures)
            except ValueError as exc:
                raise InstrumentError(f"{self._where()}: profile {logical_name}: {exc}") from None
        return session.cache[key]

    def _with_scalers(self, session, logical_name: str, columns: list[ProfileColumn]) -> list[ProfileColumn]:
        sources = [scaler_source(column) for column in columns]
        if not any(sources):
            return columns
        known = self._scaler_profile(session, logical_name)
        result = []
        for column, source in zip(columns, sources, strict=True):
            if source is None:
                result.append(column)
                continue
            scaler, unit = known[source] if source in known else self._own_scaler(session, logical_name, source)
            result.append(ProfileColumn(column.class_id, column.logical_name, column.attribute, column.data_index,
                                        scaler, UNITS.get(unit, f"unit {unit}")))
        return result

    def _scaler_profile(self, session, logical_name: str) -> dict[tuple[int, str, int], tuple[int, int]]:
        """The scaler_units the profile's IS 15959 scaler profile holds; none if it has none or the meter refuses."""
        scaler_profile = SCALER_PROFILES.get(logical_name)
        key = ("scaler_profile", scaler_profile)
        if scaler_profile is None:
            return {}
        if key not in session.cache:
            captures = self._get_optional(session, scaler_profile, PROFILE_GENERIC, 3)
            buffer = self._get_optional(session, scaler_profile, PROFILE_GENERIC, 2) if captures is not None else None
            try:
                session.cache[key] = scalers_of_scaler_profile(captures, buffer) if captures is not None else {}
            except ValueError as exc:
                raise InstrumentError(f"{self._where()}: scaler profile {scaler_profile}: {exc}") from None
        return session.cache[key]

    def _own_scaler(self, session, logical_name: str, source: tuple[int, str, int]) -> tuple[int, int]:
        key = ("scaler_unit", source)
        if key not in session.cache:
            class_id, name, attribute = source
            value = self._get_optional(session, name, class_id, attribute)
            if not is_scaler_unit(value):
                raise InstrumentError(f"{self._where()}: profile {logical_name} column {name}: no scaler_unit in "
                                      f"{SCALER_PROFILES.get(logical_name, 'a scaler profile')} and attribute "
                                      f"{attribute} is {value!r}")
            session.cache[key] = (value[0], value[1])
        return session.cache[key]

    def _rows(self, logical_name: str, columns: list[ProfileColumn], buffer: Any) -> list[ProfileRow]:
        if buffer is None:
            return []
        if not isinstance(buffer, list):
            raise InstrumentError(f"{self._where()}: profile {logical_name} buffer is {buffer!r}, not an array")
        clock_at = time_column(columns)
        rows = []
        for entry in buffer:
            if not isinstance(entry, list) or len(entry) != len(columns):
                raise InstrumentError(f"{self._where()}: profile {logical_name} entry {entry!r} does not match its "
                                      f"{len(columns)} capture objects")
            values = tuple(self._cell(logical_name, column, value) for column, value in zip(columns, entry,
                                                                                             strict=True))
            rows.append(ProfileRow(values[clock_at] if clock_at is not None else None, values))
        return rows

    def _cell(self, logical_name: str, column: ProfileColumn, value: Any) -> Any:
        if is_date_time(column) and value is not None:
            if isinstance(value, bytes) and value[:2] == b"\xff\xff":
                return None  # a date-time left unspecified (no billing yet)
            try:
                return self._date_time(value)
            except (TypeError, ValueError) as exc:
                raise InstrumentError(f"{self._where()}: profile {logical_name} column {column.logical_name}: "
                                      f"{value!r} is not a date-time ({exc})") from None
        return value if column.scaler is None else scaled(value, column.scaler)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("ascii") if value.isascii() and value.decode("ascii").isprintable() else value.hex()
    return str(value)
