"""A-XDR data and COSEM date-time, as the twin meter encodes and decodes them.

Why its own codec: dlms-cosem 21.3.2 is a client library whose response encoders fail (GetResponseNormal.to_bytes
hands bytes to bytearray.append and raises TypeError).
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone

# A-XDR data tags
NULL, ARRAY, STRUCTURE, BOOLEAN, BIT_STRING, DOUBLE_LONG, DOUBLE_LONG_UNSIGNED = 0, 1, 2, 3, 4, 5, 6
OCTET_STRING, VISIBLE_STRING, UTF8_STRING, BCD, INTEGER, LONG, UNSIGNED, LONG_UNSIGNED = 9, 10, 12, 13, 15, 16, 17, 18
LONG64, LONG64_UNSIGNED, ENUM, FLOAT32, FLOAT64, DATE_TIME, DATE, TIME = 20, 21, 22, 23, 24, 25, 26, 27
INTEGER_FORMATS = {INTEGER: ">b", LONG: ">h", UNSIGNED: ">B", LONG_UNSIGNED: ">H", DOUBLE_LONG: ">i",
                   DOUBLE_LONG_UNSIGNED: ">I", LONG64: ">q", LONG64_UNSIGNED: ">Q", ENUM: ">B"}
FIXED_SIZES = {BOOLEAN: 1, FLOAT32: 4, FLOAT64: 8, DATE_TIME: 12, DATE: 5, TIME: 4,
               **{tag: struct.calcsize(fmt) for tag, fmt in INTEGER_FORMATS.items()}}

UNITS = {"W": 27, "VA": 28, "Wh": 30, "A": 33, "V": 35, "Hz": 44, "dBm": 70, "none": 255}


class DataError(ValueError):
    """A-XDR data that cannot be decoded."""


def axdr_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    size = (length.bit_length() + 7) // 8
    return bytes([0x80 | size]) + length.to_bytes(size, "big")


def read_length(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    size = first & 0x7F
    if not 0 < size <= 4 or pos + 1 + size > len(data):
        raise DataError(f"bad length at offset {pos}")
    return int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size


def encode_int(tag: int, value: int) -> bytes:
    return bytes([tag]) + struct.pack(INTEGER_FORMATS[tag], value)


def clamp(tag: int, value: int) -> int:
    """value limited to what an integer type can hold."""
    bits = 8 * struct.calcsize(INTEGER_FORMATS[tag])
    signed = INTEGER_FORMATS[tag][1].islower()
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return min(max(value, low), high)


def encode_bool(value: bool) -> bytes:
    return bytes([BOOLEAN, 1 if value else 0])


def encode_octets(value: bytes) -> bytes:
    return bytes([OCTET_STRING]) + axdr_length(len(value)) + value


def encode_visible(value: str) -> bytes:
    raw = value.encode("ascii")
    return bytes([VISIBLE_STRING]) + axdr_length(len(raw)) + raw


def encode_structure(*items: bytes) -> bytes:
    return bytes([STRUCTURE]) + axdr_length(len(items)) + b"".join(items)


def encode_array(items: list[bytes]) -> bytes:
    return bytes([ARRAY]) + axdr_length(len(items)) + b"".join(items)


def encode_scaler_unit(scaler: int, unit: str) -> bytes:
    return encode_structure(encode_int(INTEGER, scaler), encode_int(ENUM, UNITS[unit]))


MAX_DATA_DEPTH = 64  # arrays and structures inside each other; COSEM objects nest a few levels at most


def decode_data(data: bytes, pos: int = 0, depth: int = 0) -> tuple[tuple[int, object], int]:
    """One A-XDR Data element at pos -> ((tag, value), next position); structures and arrays hold lists, nested
    at most MAX_DATA_DEPTH levels (deeper is a DataError)."""
    try:
        tag = data[pos]
        pos += 1
        if tag == NULL:
            return (tag, None), pos
        if tag in (ARRAY, STRUCTURE):
            if depth >= MAX_DATA_DEPTH:
                raise DataError(f"A-XDR data nested deeper than {MAX_DATA_DEPTH} levels")
            count, pos = read_length(data, pos)
            items = []
            for _ in range(count):
                item, pos = decode_data(data, pos, depth + 1)
                items.append(item)
            return (tag, items), pos
        if tag in (OCTET_STRING, VISIBLE_STRING, UTF8_STRING, BCD, BIT_STRING):
            return _decode_string(data, tag, pos)
        return _decode_fixed(data, tag, pos)
    except IndexError:
        raise DataError("data runs past the end") from None


def _decode_string(data: bytes, tag: int, pos: int) -> tuple[tuple[int, object], int]:
    length, pos = read_length(data, pos)
    if tag == BIT_STRING:
        length = (length + 7) // 8
    raw = bytes(data[pos:pos + length])
    if len(raw) != length:
        raise DataError("string runs past the end")
    return (tag, raw), pos + length


def _decode_fixed(data: bytes, tag: int, pos: int) -> tuple[tuple[int, object], int]:
    size = FIXED_SIZES.get(tag)
    if size is None:
        raise DataError(f"unknown data tag {tag}")
    raw = bytes(data[pos:pos + size])
    if len(raw) != size:
        raise DataError("value runs past the end")
    if tag in INTEGER_FORMATS:
        return (tag, struct.unpack(INTEGER_FORMATS[tag], raw)[0]), pos + size
    if tag == BOOLEAN:
        return (tag, raw != b"\x00"), pos + size
    if tag in (FLOAT32, FLOAT64):
        return (tag, struct.unpack(">f" if tag == FLOAT32 else ">d", raw)[0]), pos + size
    return (tag, raw), pos + size


def decode_one(data: bytes) -> tuple[int, object]:
    """Exactly one Data element filling `data`."""
    value, end = decode_data(data)
    if end != len(data):
        raise DataError(f"{len(data) - end} bytes after the value")
    return value


# -- date-time (Blue Book 4.1.6.1) ------------------------------------------------------------------------------

UNSPECIFIED_DEVIATION = -0x8000
UNSPECIFIED_DATE_TIME = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff"


def encode_date_time(utc_s: float, utc_offset_min: int) -> bytes:
    """12 octets: local date and time, deviation (minutes from local time to UTC, so IST is -330), status 0."""
    local = datetime.fromtimestamp(utc_s, timezone(timedelta(minutes=utc_offset_min)))
    return (struct.pack(">HBBB", local.year, local.month, local.day, local.isoweekday())
            + struct.pack(">BBBB", local.hour, local.minute, local.second, local.microsecond // 10000)
            + struct.pack(">hB", -utc_offset_min, 0))


def decode_date_time(raw: bytes, default_offset_min: int) -> float:
    """UTC seconds of a 12-octet date-time; an unspecified deviation means the meter's own time zone."""
    if len(raw) != 12:
        raise DataError(f"date-time is 12 octets, got {len(raw)}")
    year, month, day, _weekday, hour, minute, second, hundredths, deviation, _status = struct.unpack(
        ">HBBBBBBBhB", raw)
    if year == 0xFFFF or 0xFF in (month, day, hour, minute, second):
        raise DataError("date-time with unspecified fields")
    offset_min = default_offset_min if deviation == UNSPECIFIED_DEVIATION else -deviation
    try:
        local = datetime(year, month, day, hour, minute, second, 0 if hundredths == 0xFF else hundredths * 10000,
                         tzinfo=timezone(timedelta(minutes=offset_min)))
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return local.timestamp()
