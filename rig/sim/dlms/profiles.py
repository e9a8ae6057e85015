"""Profile generic (class 7, version 1) buffers of the twin meter and their selective access (Blue Book,
IEC 62056-6-2 4.3.6): rows of captured attribute values in a ring of `profile_entries` (FIFO, the oldest entry
dropped), each row stamped with the meter's time of capture.

Selective access on attribute 2 (buffer): selector 1 range_descriptor {restricting_object, from_value, to_value,
selected_values} where the restricting object is a date-time column (the clock's time, a billing date) and
from/to are date-times, inclusive; selector 2 entry_descriptor {from_entry, to_entry, from_selected_value,
to_selected_value}, 1-based, to_entry 0 = the newest entry, to_selected_value 0 = the last column.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rig.sim.dlms.codec import (
    ARRAY,
    DATE_TIME,
    DOUBLE_LONG_UNSIGNED,
    ENUM,
    INTEGER,
    LONG_UNSIGNED,
    OCTET_STRING,
    STRUCTURE,
    DataError,
    decode_date_time,
    encode_array,
    encode_date_time,
    encode_int,
    encode_octets,
    encode_structure,
)

# Data-Access-Result for selective access the buffer cannot serve
TYPE_UNMATCHED, OTHER_REASON = 12, 250
RANGE_DESCRIPTOR, ENTRY_DESCRIPTOR = 1, 2
FIFO = 1


def obis(text: str) -> bytes:
    """'1.0.1.8.0.255' -> 6 octets."""
    return bytes(int(part) for part in text.split("."))


@dataclass(frozen=True)
class Capture:
    """A capture object definition: which attribute of which object fills a column; `is_time` for a column of
    date-times (stamped with the capture's time)."""

    class_id: int
    name: str
    attribute: int = 2
    data_index: int = 0
    is_time: bool = False

    def encode(self) -> bytes:
        return encode_structure(encode_int(LONG_UNSIGNED, self.class_id), encode_octets(obis(self.name)),
                                encode_int(INTEGER, self.attribute), encode_int(LONG_UNSIGNED, self.data_index))

    def matches(self, definition: list) -> bool:
        """Whether a decoded capture_object_definition names this column."""
        values = [value for _tag, value in definition]
        return len(values) == 4 and values[:3] == [self.class_id, obis(self.name), self.attribute] and \
            values[3] in (0, self.data_index)


CLOCK_TIME = Capture(8, "0.0.1.0.0.255", 2, is_time=True)
NO_SORT_OBJECT = encode_structure(encode_int(LONG_UNSIGNED, 0), encode_octets(bytes(6)), encode_int(INTEGER, 0),
                                  encode_int(LONG_UNSIGNED, 0))

Row = tuple[float, tuple[bytes, ...]]  # (meter time of capture in UTC seconds, encoded value of each column)


class Profile:
    """One profile generic: its columns, its captured rows, its capture period (0: captured on events or on
    reading) and its attributes as encoded Data. `value_of` reads a column's attribute from the meter."""

    def __init__(self, name: str, columns: list[Capture], value_of: Callable[[Capture], bytes],
                 utc_offset_min: Callable[[], int], capture_period_s: int = 0, profile_entries: int = 1,
                 capture_on_read: bool = False):
        self.name = name
        self.columns = columns
        self.value_of = value_of
        self.utc_offset_min = utc_offset_min
        self.capture_period_s = capture_period_s
        self.profile_entries = profile_entries
        self.capture_on_read = capture_on_read
        self.rows: deque[Row] = deque(maxlen=profile_entries)
        self.sort_column = next((column for column in columns if column.is_time), None)

    def capture(self, utc_s: float) -> None:
        """Capture one row stamped utc_s (the meter's time): date-time columns show that instant."""
        stamp = encode_octets(encode_date_time(utc_s, self.utc_offset_min()))
        self.rows.append((utc_s, tuple(stamp if column.is_time else self.value_of(column)
                                       for column in self.columns)))

    def entries(self) -> list[Row]:
        return list(self.rows)

    def entries_in_use(self) -> int:
        """Captured on reading: always full (the read captures); else the rows held."""
        return self.profile_entries if self.capture_on_read else len(self.rows)

    # -- attributes -------------------------------------------------------------------------------------------

    def getters(self, now_s: Callable[[], float]) -> dict[int, Callable[[], bytes]]:
        """Attributes 2..8 as encoded Data (2 without selective access)."""
        def buffer() -> bytes:
            result = self.buffer(now_s, None, None)
            assert isinstance(result, bytes)
            return result
        return {
            2: buffer,
            3: lambda: encode_array([column.encode() for column in self.columns]),
            4: lambda: encode_int(DOUBLE_LONG_UNSIGNED, self.capture_period_s),
            5: lambda: encode_int(ENUM, FIFO),
            6: lambda: self.sort_column.encode() if self.sort_column else NO_SORT_OBJECT,
            7: lambda: encode_int(DOUBLE_LONG_UNSIGNED, self.entries_in_use()),
            8: lambda: encode_int(DOUBLE_LONG_UNSIGNED, self.profile_entries),
        }

    def buffer(self, now_s: Callable[[], float], selector: int | None, parameters: tuple[int, object] | None,
               ) -> bytes | int:
        """Attribute 2, all of it or as the access selector says; a Data-Access-Result when it cannot."""
        if self.capture_on_read:
            self.capture(now_s())
        return select_rows(self.columns, self.entries(), selector, parameters, self.utc_offset_min())


def select_rows(columns: list[Capture], rows: list[Row], selector: int | None,
                parameters: tuple[int, object] | None, utc_offset_min: int) -> bytes | int:
    """The buffer's rows as an array of structures, restricted by a range or entry descriptor."""
    wanted = list(range(len(columns)))
    try:
        if selector == RANGE_DESCRIPTOR:
            rows, wanted = _by_range(columns, rows, parameters, utc_offset_min)
        elif selector == ENTRY_DESCRIPTOR:
            rows, wanted = _by_entry(columns, rows, parameters)
        elif selector is not None:
            return OTHER_REASON
    except (DataError, TypeError, ValueError, IndexError):
        return TYPE_UNMATCHED
    except LookupError:
        return OTHER_REASON
    return encode_array([encode_structure(*(values[index] for index in wanted)) for _stamp, values in rows])


def _fields(parameters: tuple[int, object] | None, tag: int, count: int) -> list[tuple[int, object]]:
    if parameters is None or parameters[0] != tag or len(parameters[1]) != count:
        raise DataError("selective access parameters of the wrong shape")
    return parameters[1]


def _by_range(columns: list[Capture], rows: list[Row], parameters, utc_offset_min: int) -> tuple[list[Row], list[int]]:
    restricting, from_value, to_value, selected = _fields(parameters, STRUCTURE, 4)
    column = next((column for column in columns if column.matches(restricting[1])), None)
    if column is None or not column.is_time:
        raise LookupError("the restricting object is not a date-time column of this profile")
    low, high = (_moment(value, utc_offset_min) for value in (from_value, to_value))
    if selected[0] != ARRAY:
        raise DataError("selected_values is not an array")
    wanted = list(range(len(columns)))
    if selected[1]:
        wanted = [_column_index(columns, definition[1]) for definition in selected[1]]
    return [row for row in rows if low <= round(row[0], 2) <= high], wanted


def _column_index(columns: list[Capture], definition: list) -> int:
    for index, column in enumerate(columns):
        if column.matches(definition):
            return index
    raise LookupError("a selected value is not a column of this profile")


def _moment(value: tuple[int, object], utc_offset_min: int) -> float:
    tag, raw = value
    if tag not in (OCTET_STRING, DATE_TIME) or not isinstance(raw, bytes):
        raise DataError("from/to value is not a date-time")
    return decode_date_time(raw, utc_offset_min)


def _by_entry(columns: list[Capture], rows: list[Row], parameters) -> tuple[list[Row], list[int]]:
    from_entry, to_entry, from_value, to_value = (value for _tag, value in _fields(parameters, STRUCTURE, 4))
    first = max(int(from_entry), 1)
    last = len(rows) if to_entry == 0 else min(int(to_entry), len(rows))
    first_column = max(int(from_value), 1)
    last_column = len(columns) if to_value == 0 else min(int(to_value), len(columns))
    if first_column > last_column:
        raise LookupError("no such columns")
    return rows[first - 1:last], list(range(first_column - 1, last_column))
