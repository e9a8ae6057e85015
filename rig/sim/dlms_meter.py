"""Simulated DLMS/COSEM smart meter (IS 15959-2 / IS 16444) of one position, answering live from the model.

One logical device (server SAP 1) with a public client (SAP 16, no security) and a meter-reader client (SAP 32,
LLS password), served over the IEC 62056-47 TCP wrapper on a loopback port and, with `hdlc: true`, also over
IEC 62056-46 HDLC on a pty whose path is `pty_path`. Only LN referencing, unciphered, GET/SET/ACTION normal.

Disconnect control follows the Blue Book state machine of class 70 for the configured control mode (default 5,
see DEFAULT_CONTROL_MODE); the limiter (class 71) monitors the position's active power and opens the relay
through the local disconnection when it stays above threshold_active for min_over_threshold_duration.

With `powered_by_source` the meter lives on the source's voltage. Without it, and for `boot_s` after it
returns, its communication module is dead: the head end's commands get no answer (NoAnswer) and the limiter does
not run. Its own data port keeps answering from the meter's battery as if powered (the power-off reading Indian
smart meters offer; (unverified) as a requirement of IS 16444), unless `battery_reading: false`: then the port is
silent too, and a connection opened before a power loss is closed at its first request after it. The relay and
the control state are kept in non-volatile memory across a power loss (unless the relay_state_volatile defect
says otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import struct
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from rig.errors import ConfigError
from rig.sim.model import PhysicalModel

SERVER_SAP = 1
CLIENT_ROLES = {16: "public", 32: "reader"}
BOTH = frozenset(CLIENT_ROLES.values())
READER = frozenset({"reader"})
NOBODY: frozenset[str] = frozenset()

# Control mode 5: disconnection remote (b, c), manual (f), local (g); reconnection remote straight to connected
# (d), manual (e), local (h). A prepaid meter closes its relay on the head end's reconnect after a recharge with
# no button pressed by the consumer (d, not a), and its load-limit trips are local disconnections (g) that the
# meter itself restores (h): mode 5 is the only one with d, g and h. This twin performs a, b, c, d and g only.
DEFAULT_CONTROL_MODE = 5
DISCONNECTED, CONNECTED, READY_FOR_RECONNECTION = 0, 1, 2
STATE_NAMES = {DISCONNECTED: "disconnected", CONNECTED: "connected", READY_FOR_RECONNECTION: "ready_for_reconnection"}
DIRECT_RECONNECT_MODES = (1, 3, 5)

LIMITER_PERIOD_S = 0.05
DUPLICATE_AFTER_S = 0.5  # duplicate_execution: a repeated command runs this long after the next one
SERVER_MAX_PDU = 1024
HDLC_MAX_INFO = 128
IST_OFFSET_MIN = 330

# A-XDR data tags
NULL, ARRAY, STRUCTURE, BOOLEAN, BIT_STRING, DOUBLE_LONG, DOUBLE_LONG_UNSIGNED = 0, 1, 2, 3, 4, 5, 6
OCTET_STRING, VISIBLE_STRING, UTF8_STRING, BCD, INTEGER, LONG, UNSIGNED, LONG_UNSIGNED = 9, 10, 12, 13, 15, 16, 17, 18
LONG64, LONG64_UNSIGNED, ENUM, FLOAT32, FLOAT64, DATE_TIME, DATE, TIME = 20, 21, 22, 23, 24, 25, 26, 27
INTEGER_FORMATS = {INTEGER: ">b", LONG: ">h", UNSIGNED: ">B", LONG_UNSIGNED: ">H", DOUBLE_LONG: ">i",
                   DOUBLE_LONG_UNSIGNED: ">I", LONG64: ">q", LONG64_UNSIGNED: ">Q", ENUM: ">B"}
FIXED_SIZES = {BOOLEAN: 1, FLOAT32: 4, FLOAT64: 8, DATE_TIME: 12, DATE: 5, TIME: 4,
               **{tag: struct.calcsize(fmt) for tag, fmt in INTEGER_FORMATS.items()}}

# Data-Access-Result / Action-Result
SUCCESS, READ_WRITE_DENIED, OBJECT_UNDEFINED, OBJECT_CLASS_INCONSISTENT = 0, 3, 4, 9
TYPE_UNMATCHED, OTHER_REASON = 12, 250

# ACSE
ACCEPTED, REJECTED_PERMANENT = 0, 1
DIAG_NULL, DIAG_NO_REASON, DIAG_CONTEXT_NOT_SUPPORTED = 0, 1, 2
DIAG_MECHANISM_NOT_RECOGNISED, DIAG_MECHANISM_REQUIRED, DIAG_AUTHENTICATION_FAILURE = 11, 12, 13
DIAG_AUTHENTICATION_REQUIRED = 14
DIAG_NAMES = {0: "null", 1: "no-reason-given", 2: "application-context-name-not-supported",
              11: "authentication-mechanism-name-not-recognised", 12: "authentication-mechanism-name-required",
              13: "authentication-failure", 14: "authentication-required"}
DLMS_OID = bytes.fromhex("60857405 08")
LN_NO_CIPHERING = DLMS_OID + b"\x01\x01"
MECHANISM_OID = DLMS_OID + b"\x02"
LLS = 1
INITIATE_ERROR = 6  # ConfirmedServiceError choice: initiate-error
DLMS_VERSION_TOO_LOW, INCOMPATIBLE_CONFORMANCE, PDU_SIZE_TOO_SHORT = 1, 2, 3
CONFORMANCE_GET, CONFORMANCE_SET, CONFORMANCE_ACTION = 1 << 4, 1 << 3, 1 << 0
SERVER_CONFORMANCE = CONFORMANCE_GET | CONFORMANCE_SET | CONFORMANCE_ACTION

# Exception-Response: state-error, service-error
SERVICE_NOT_ALLOWED, SERVICE_UNKNOWN = 1, 2
OPERATION_NOT_POSSIBLE, SERVICE_NOT_SUPPORTED, SERVICE_OTHER_REASON = 1, 2, 3

LLC_REQUEST, LLC_RESPONSE = b"\xe6\xe6\x00", b"\xe6\xe7\x00"
HDLC_FLAG = 0x7E
SNRM, DISC, UA, DM = 0x83, 0x43, 0x63, 0x0F
POLL_FINAL = 0x10

UNITS = {"W": 27, "Wh": 30, "A": 33, "V": 35, "Hz": 44, "dBm": 70, "none": 255}


class DataError(ValueError):
    """A-XDR data that cannot be decoded."""


class NoAnswer(ConnectionError):
    """The meter did not answer (no supply voltage, or still booting)."""


# -- A-XDR ------------------------------------------------------------------------------------------------------


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


def decode_data(data: bytes, pos: int = 0) -> tuple[tuple[int, object], int]:
    """One A-XDR Data element at pos -> ((tag, value), next position); structures and arrays hold lists."""
    try:
        tag = data[pos]
        pos += 1
        if tag == NULL:
            return (tag, None), pos
        if tag in (ARRAY, STRUCTURE):
            count, pos = read_length(data, pos)
            items = []
            for _ in range(count):
                item, pos = decode_data(data, pos)
                items.append(item)
            return (tag, items), pos
        if tag in (OCTET_STRING, VISIBLE_STRING, UTF8_STRING, BCD, BIT_STRING):
            length, pos = read_length(data, pos)
            if tag == BIT_STRING:
                length = (length + 7) // 8
            raw = bytes(data[pos:pos + length])
            if len(raw) != length:
                raise DataError("string runs past the end")
            return (tag, raw), pos + length
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
    except IndexError:
        raise DataError("data runs past the end") from None


def decode_one(data: bytes) -> tuple[int, object]:
    """Exactly one Data element filling `data`."""
    value, end = decode_data(data)
    if end != len(data):
        raise DataError(f"{len(data) - end} bytes after the value")
    return value


# -- date-time (Blue Book 4.1.6.1) ------------------------------------------------------------------------------

UNSPECIFIED_DEVIATION = -0x8000


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


UNSPECIFIED_DATE_TIME = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff"


# -- BER (ACSE) -------------------------------------------------------------------------------------------------


def ber_length(length: int) -> bytes:
    return axdr_length(length)


def ber(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + ber_length(len(value)) + value


def ber_items(data: bytes) -> dict[int, bytes]:
    """Tag -> content of each TLV in a BER-encoded sequence (single-octet tags, as ACSE APDUs use)."""
    items: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        tag = data[pos]
        length, pos = read_length(data, pos + 1)
        if pos + length > len(data):
            raise DataError(f"BER element {tag:#04x} runs past the end")
        items[tag] = bytes(data[pos:pos + length])
        pos += length
    return items


def ber_inner(data: bytes, tag: int) -> bytes:
    """Content of a TLV that must be exactly one element with this tag."""
    items = ber_items(data)
    if list(items) != [tag]:
        raise DataError(f"expected one element {tag:#04x}")
    return items[tag]


# -- HDLC (IEC 62056-46) ----------------------------------------------------------------------------------------


def crc16_x25(data: bytes) -> bytes:
    """HCS/FCS: CRC-16/X.25, sent least significant octet first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return (crc ^ 0xFFFF).to_bytes(2, "little")


def hdlc_frame(destination: bytes, source: bytes, control: int, information: bytes = b"",
               segmented: bool = False) -> bytes:
    """A frame of format type 3 with its flags; HCS only when there is an information field."""
    length = 2 + len(destination) + len(source) + 1 + 2 + (2 + len(information) if information else 0)
    header = (0xA000 | (0x0800 if segmented else 0) | length).to_bytes(2, "big") + destination + source
    header += bytes([control])
    body = header + (crc16_x25(header) + information if information else b"")
    return bytes([HDLC_FLAG]) + body + crc16_x25(body) + bytes([HDLC_FLAG])


def hdlc_address_end(frame: bytes, pos: int) -> int:
    """Index after an HDLC address of 1, 2 or 4 octets starting at pos (only the last has its low bit set)."""
    for size in range(1, 5):
        if pos + size > len(frame):
            break
        if frame[pos + size - 1] & 1:
            if size == 3:
                break
            return pos + size
    raise DataError("bad HDLC address")


def server_logical_address(address: bytes) -> int:
    """Upper HDLC address (the logical device) of a 1, 2 or 4 octet server address."""
    if len(address) == 4:
        return (address[0] >> 1) << 7 | address[1] >> 1
    return address[0] >> 1


def hdlc_parameters(info: bytes) -> dict[int, int]:
    """Negotiation parameters of an SNRM/UA information field (format 81, group 80)."""
    if len(info) < 3 or info[0] != 0x81 or info[1] != 0x80:
        return {}
    params, pos, end = {}, 3, min(3 + info[2], len(info))
    while pos + 2 <= end:
        ident, size = info[pos], info[pos + 1]
        params[ident] = int.from_bytes(info[pos + 2:pos + 2 + size], "big")
        pos += 2 + size
    return params


def encode_hdlc_parameters(max_info_tx: int, max_info_rx: int, window_tx: int = 1, window_rx: int = 1) -> bytes:
    def value(ident: int, number: int, size: int | None = None) -> bytes:
        size = size or (1 if number < 0x100 else 2)
        return bytes([ident, size]) + number.to_bytes(size, "big")

    group = value(5, max_info_tx) + value(6, max_info_rx) + value(7, window_tx, 4) + value(8, window_rx, 4)
    return bytes([0x81, 0x80, len(group)]) + group


# -- COSEM objects ----------------------------------------------------------------------------------------------

# class id -> (number of attributes, number of methods) of the interface class
CLASS_SHAPES = {1: (2, 0), 3: (3, 1), 8: (9, 6), 70: (4, 2), 71: (11, 0)}


def obis(text: str) -> bytes:
    """'1.0.1.8.0.255' -> 6 octets."""
    return bytes(int(part) for part in text.split("."))


def obis_text(logical_name: bytes) -> str:
    return ".".join(str(octet) for octet in logical_name)


@dataclass
class CosemObject:
    """An object of the logical device: attribute getters (encoded Data), setters and methods returning a
    result code, and which client roles may read, write and invoke."""

    class_id: int
    logical_name: bytes
    getters: dict[int, Callable[[], bytes]]
    setters: dict[int, Callable[[tuple[int, object], str], int]] = field(default_factory=dict)
    methods: dict[int, Callable[[tuple[int, object] | None, str], int]] = field(default_factory=dict)
    readers: frozenset[str] = BOTH
    writers: frozenset[str] = NOBODY

    def __post_init__(self) -> None:
        self.getters = {1: lambda: encode_octets(self.logical_name), **self.getters}


@dataclass
class Association:
    client_sap: int
    role: str
    conformance: int
    client_max_pdu: int


@dataclass
class Link:
    """One transport connection: its application associations by client SAP."""

    transport: str
    associations: dict[int, Association] = field(default_factory=dict)


def exception_response(state_error: int, service_error: int) -> bytes:
    return bytes([0xD8, state_error, service_error])


class DlmsMeterSim:
    """The DLMS/COSEM server of a position's meter (role 'meter@<position>').

    Settings: `lls_password` (default "12345678"), `control_mode` (0..6, default 5),
    `utc_offset_min` (the meter's time zone, default 330: IST), `logical_device_name`, `manufacturer`,
    `firmware`, `limiter_threshold_w` (default 100000), `limiter_duration_s` (default 30), `hdlc` (also serve
    HDLC on a pty), `latency_s` (added before every answer), `boot_s` (silent after power returns, default 0.5),
    `powered_by_source` (the meter is down without the source's voltage, default false: always up),
    `battery_reading` (the data port answers without supply voltage, default true).

    The public client reads the identity objects, the clock and the energy register; the reader reads every
    object, sets the clock and the limiter and invokes the disconnect control. Anything else is answered with
    read-write-denied; unknown objects and attributes with object-undefined, a wrong class with
    object-class-inconsistent. Truth events: dlms.association, dlms.release, clock.set, limiter.set,
    limiter.trip, limiter.ignored, disconnect_control, meter.power, dlms.unanswered, and the model's relay
    switching; with the command defects relay.closing, dlms.command_dropped, dlms.command_repeated.

    The signal strength object 0.1.96.12.5.255 (class 3, integer, scaler 0, dBm) reports the RSRP the modem
    measures on the position's radio link (rig/sim/link.py), rounded to whole dBm.
    """

    transport = "dlms"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        position = model.position_of(role, "meter", "the DLMS meter twin")
        self.meter = model.meter(position)
        self.role = role
        self.model = model
        self.position = position
        self.password = str(settings.get("lls_password", "12345678")).encode()
        self.control_mode = int(settings.get("control_mode", DEFAULT_CONTROL_MODE))
        if not 0 <= self.control_mode <= 6:
            raise ConfigError(f"{role}: control_mode {self.control_mode} is outside 0..6")
        self.energy_scaler = int(settings.get("energy_scaler", 0))  # 1.0.1.8.0.255 in 10**scaler Wh
        self.utc_offset_min = int(settings.get("utc_offset_min", IST_OFFSET_MIN))
        self.logical_device_name = str(settings.get("logical_device_name", f"RIG{self.meter.serial}"))
        self.manufacturer = str(settings.get("manufacturer", "Rig Twin"))
        self.firmware = str(settings.get("firmware", "1.0.0"))
        self.hdlc = bool(settings.get("hdlc", False))
        self.latency_s = float(settings.get("latency_s", 0.0))
        self.boot_s = float(settings.get("boot_s", 0.5))
        self.battery_reading = bool(settings.get("battery_reading", True))
        self.powered_by_source = bool(settings.get("powered_by_source", False))
        self.clock_offset_s = 0.0
        self.control_state = CONNECTED if self.meter.relay_commanded or self.control_mode == 0 else DISCONNECTED
        self.powered = model.supply_voltage_v() > 0
        self.up_at = model.clock()  # answers from this instant on while powered
        self.power_epoch = 0  # counts power losses: a connection from an earlier epoch died with the modem
        self.trip_ignored = False
        self.threshold_normal = int(settings.get("limiter_threshold_w", 100_000))
        self.threshold_active = self.threshold_normal
        self.threshold_emergency = self.threshold_normal
        self.min_over_s = int(settings.get("limiter_duration_s", 30))
        self.min_under_s = 0
        self.over_since: float | None = None
        self.objects = {obj.logical_name: obj for obj in self._objects()}
        self.pty_path: str | None = None
        self.port: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pty_fds: tuple[int, int] | None = None
        self._hdlc_link: HdlcLink | None = None
        self._limiter_task: asyncio.Task | None = None
        self._relay_closing: asyncio.TimerHandle | None = None  # a reconnect under reconnect_extra_delay_s
        self._replay: str | None = None  # a command to execute once more after the next (duplicate_execution)
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- objects ----------------------------------------------------------------------------------------------

    def _register(self, name: str, tag: int, value_of: Callable[[], float], scaler: int, unit: str,
                  readers: frozenset[str] = READER) -> CosemObject:
        def value() -> bytes:
            return encode_int(tag, clamp(tag, round(value_of() / 10 ** scaler)))
        return CosemObject(3, obis(name), {2: value, 3: lambda: encode_scaler_unit(scaler, unit)}, readers=readers)

    def _objects(self) -> list[CosemObject]:
        position = self.position

        def text(value: str) -> dict[int, Callable[[], bytes]]:
            return {2: lambda: encode_visible(value)}

        return [
            CosemObject(1, obis("0.0.42.0.0.255"), text(self.logical_device_name)),
            CosemObject(1, obis("0.0.96.1.0.255"), text(self.meter.serial)),
            CosemObject(1, obis("0.0.96.1.1.255"), text(self.manufacturer)),
            CosemObject(1, obis("1.0.0.2.0.255"), text(self.firmware)),
            self._clock(),
            self._register("1.0.1.8.0.255", DOUBLE_LONG_UNSIGNED, self._energy_wh, self.energy_scaler, "Wh", BOTH),
            self._register("1.0.12.7.0.255", LONG_UNSIGNED, self.model.supply_voltage_v, -2, "V"),
            self._register("1.0.11.7.0.255", DOUBLE_LONG_UNSIGNED, lambda: self.model.position_current_a(position),
                           -3, "A"),
            self._register("1.0.1.7.0.255", DOUBLE_LONG_UNSIGNED, lambda: self.model.position_power_w(position),
                           0, "W"),
            self._register("1.0.13.7.0.255", LONG, self._power_factor, -3, "none"),
            self._register("1.0.14.7.0.255", LONG_UNSIGNED, self._frequency, -2, "Hz"),
            self._register("0.1.96.12.5.255", INTEGER, self._signal_dbm, 0, "dBm"),
            self._disconnect_control(),
            self._limiter(),
        ]

    def _clock(self) -> CosemObject:
        getters = {
            2: lambda: encode_octets(encode_date_time(time.time() + self.clock_offset_s, self.utc_offset_min)),
            3: lambda: encode_int(LONG, -self.utc_offset_min),
            4: lambda: encode_int(UNSIGNED, 0),
            5: lambda: encode_octets(UNSPECIFIED_DATE_TIME),
            6: lambda: encode_octets(UNSPECIFIED_DATE_TIME),
            7: lambda: encode_int(INTEGER, 0),
            8: lambda: encode_bool(False),
            9: lambda: encode_int(ENUM, 1),  # internal crystal
        }
        return CosemObject(8, obis("0.0.1.0.0.255"), getters, {2: self._set_time}, writers=READER)

    def _disconnect_control(self) -> CosemObject:
        getters = {2: lambda: encode_bool(self.reported_output_state()),
                   3: lambda: encode_int(ENUM, self.control_state),
                   4: lambda: encode_int(ENUM, self.control_mode)}
        methods = {1: lambda data, by: self._remote_command(data, by, "remote_disconnect"),
                   2: lambda data, by: self._remote_command(data, by, "remote_reconnect")}
        return CosemObject(70, obis("0.0.96.3.10.255"), getters, methods=methods, readers=READER, writers=READER)

    def _limiter(self) -> CosemObject:
        def threshold(value_of: Callable[[], int]) -> Callable[[], bytes]:
            return lambda: encode_int(DOUBLE_LONG_UNSIGNED, value_of())

        script = encode_octets(obis("0.0.10.0.106.255"))  # disconnector script table
        getters = {
            2: lambda: encode_structure(encode_int(LONG_UNSIGNED, 3), encode_octets(obis("1.0.1.7.0.255")),
                                        encode_int(INTEGER, 2)),
            3: threshold(lambda: self.threshold_active),
            4: threshold(lambda: self.threshold_normal),
            5: threshold(lambda: self.threshold_emergency),
            6: lambda: encode_int(DOUBLE_LONG_UNSIGNED, self.min_over_s),
            7: lambda: encode_int(DOUBLE_LONG_UNSIGNED, self.min_under_s),
            8: lambda: encode_structure(encode_int(LONG_UNSIGNED, 0), encode_octets(UNSPECIFIED_DATE_TIME),
                                        encode_int(DOUBLE_LONG_UNSIGNED, 0)),
            9: lambda: encode_array([]),
            10: lambda: encode_bool(False),
            11: lambda: encode_structure(encode_structure(script, encode_int(LONG_UNSIGNED, 1)),
                                         encode_structure(script, encode_int(LONG_UNSIGNED, 0))),
        }
        setters = {index: (lambda data, by, index=index: self._set_limiter(index, data, by))
                   for index in (3, 4, 5, 6, 7)}
        return CosemObject(71, obis("0.0.17.0.0.255"), getters, setters, readers=READER, writers=READER)

    # -- live values ------------------------------------------------------------------------------------------

    def _energy_wh(self) -> float:
        """The register as the meter shows it: whole units of 10**energy_scaler Wh (completed, not rounded)."""
        self.model.now()
        unit = 10.0 ** self.energy_scaler
        return math.floor(self.meter.register_energy_wh / unit + 1e-9) * unit

    def _signal_dbm(self) -> float:
        """RSRP as the modem reports it to the meter (whole dBm: the register's scaler is 0)."""
        return self.model.radio(self.position).reported_signal().rsrp_dbm

    def _power_factor(self) -> float:
        apparent = self.model.supply_voltage_v() * self.model.position_current_a(self.position)
        return self.model.position_power_w(self.position) / apparent if apparent > 0 else 1.0

    def _frequency(self) -> float:
        source = self.model.source
        return source.frequency_setpoint_hz if source.output_on else 0.0

    # -- behaviour --------------------------------------------------------------------------------------------

    def _set_time(self, data: tuple[int, object], by: str) -> int:
        tag, raw = data
        if tag not in (OCTET_STRING, DATE_TIME) or not isinstance(raw, bytes) or len(raw) != 12:
            return TYPE_UNMATCHED
        try:
            utc_s = decode_date_time(raw, self.utc_offset_min)
        except DataError:
            return OTHER_REASON
        self.clock_offset_s = utc_s - time.time()
        self.model.truth.event("clock.set", role=self.role, position=self.position,
                               meter_time=datetime.fromtimestamp(utc_s, UTC).isoformat(),
                               offset_s=self.clock_offset_s, by=by)
        return SUCCESS

    def _set_limiter(self, index: int, data: tuple[int, object], by: str) -> int:
        tag, value = data
        if tag not in INTEGER_FORMATS or tag == ENUM:
            return TYPE_UNMATCHED
        if not 0 <= value < 2**32:
            return OTHER_REASON
        if index == 3:
            self.threshold_active = value
        elif index == 4:
            self.threshold_normal = self.threshold_active = value  # no emergency profile is ever active
        elif index == 5:
            self.threshold_emergency = value
        elif index == 6:
            self.min_over_s = value
        else:
            self.min_under_s = value
        self.over_since = None
        names = {3: "threshold_active", 4: "threshold_normal", 5: "threshold_emergency",
                 6: "min_over_threshold_duration", 7: "min_under_threshold_duration"}
        self.model.truth.event("limiter.set", role=self.role, position=self.position, attribute=names[index],
                               value=value, by=by)
        return SUCCESS

    def reported_output_state(self) -> bool:
        """Attribute 2: the relay as the meter reports it (the relay_state_inverted defect reports the opposite)."""
        return self.meter.relay_closed != self.meter.defects.relay_state_inverted

    def answering(self) -> bool:
        """Follow the supply voltage: True while the meter is powered and booted and so answers at all."""
        if not self.powered_by_source:
            return True
        now = self.model.clock()
        powered = self.model.supply_voltage_v() > 0
        if powered != self.powered:
            self.powered = powered
            if powered:
                self.up_at = now + self.boot_s
                self.model.truth.event("meter.power", role=self.role, position=self.position, on=True,
                                       answering_from_mono=self.up_at, control_state=STATE_NAMES[self.control_state])
                if self.meter.defects.relay_state_volatile and self.control_state != CONNECTED:
                    self._change_state("power_up", ("volatile", CONNECTED), by=f"{self.role} power-up "
                                       f"(defect relay_state_volatile)")
            else:
                self.power_epoch += 1
                self.over_since = None
                if self._hdlc_link is not None and not self.battery_reading:
                    self._hdlc_link.reset(connected=False)
                self.model.truth.event("meter.power", role=self.role, position=self.position, on=False,
                                       control_state=STATE_NAMES[self.control_state],
                                       relay_closed=self.meter.relay_closed)
        return powered and now >= self.up_at

    def port_answering(self) -> bool:
        """The meter's data port answers: while the meter is up, or always with battery reading."""
        return self.answering() or self.battery_reading

    def _remote(self, data: tuple[int, object] | None, by: str, method: str) -> int:
        if data is not None and data[0] not in INTEGER_FORMATS:
            return TYPE_UNMATCHED
        if self.control_mode == 0:
            return READ_WRITE_DENIED  # mode 0: always connected, no remote switching
        state = self.control_state
        if method == "remote_disconnect":
            transition = {CONNECTED: ("c", DISCONNECTED), READY_FOR_RECONNECTION: ("b", DISCONNECTED)}.get(state)
        elif state == DISCONNECTED:
            transition = ("d", CONNECTED) if self.control_mode in DIRECT_RECONNECT_MODES else \
                ("a", READY_FOR_RECONNECTION)
        else:
            transition = None
        self._change_state(method, transition, by)
        return SUCCESS

    def _change_state(self, trigger: str, transition: tuple[str, int] | None, by: str) -> None:
        before = self.control_state
        if transition is not None:
            self.control_state = transition[1]
        self.model.truth.event("disconnect_control", role=self.role, position=self.position, trigger=trigger,
                               transition=transition[0] if transition else None,
                               control_state=STATE_NAMES[self.control_state], previous=STATE_NAMES[before],
                               control_mode=self.control_mode, by=by)
        if transition is not None:
            self._switch_relay(self.control_state == CONNECTED, trigger)

    def _switch_relay(self, closed: bool, trigger: str) -> None:
        """Drive the relay as the control state says; with reconnect_extra_delay_s a remote reconnect closes it
        that much later (a later change of state cancels the closing)."""
        if self._relay_closing is not None:
            self._relay_closing.cancel()
            self._relay_closing = None
        delay_s = self.meter.defects.reconnect_extra_delay_s
        by = f"{self.role} {trigger}"
        if closed and trigger == "remote_reconnect" and delay_s > 0 and self._loop is not None:
            self.model.truth.event("relay.closing", role=self.role, position=self.position, delay_s=delay_s,
                                   defect="reconnect_extra_delay_s", by=by)

            def close() -> None:
                self._relay_closing = None
                self.model.set_relay(self.position, True, by=f"{by} (defect reconnect_extra_delay_s)")

            self._relay_closing = self._loop.call_later(delay_s, close)
            return
        self.model.set_relay(self.position, closed, by=by)

    def _remote_command(self, data: tuple[int, object] | None, by: str, method: str) -> int:
        """A client's remote disconnect or reconnect. The command-execution defects act on commands that reached
        the meter over the radio after waiting out an outage (the link's delivery in progress says so):
        loses_queued_commands acknowledges and drops them, duplicate_execution executes them once more after
        the next command."""
        delivery = self.model.radio(self.position).carrying
        after_outage = delivery is not None and delivery.waited_for_registration
        defects = self.meter.defects
        if after_outage and defects.loses_queued_commands:
            self.model.truth.event("dlms.command_dropped", role=self.role, position=self.position, method=method,
                                   defect="loses_queued_commands", by=by)
            return SUCCESS
        result = self._remote(data, by, method)
        if self._replay is not None and self._loop is not None:
            replay, self._replay = self._replay, None
            self._loop.call_later(DUPLICATE_AFTER_S, self._execute_again, replay, by)
        if after_outage and defects.duplicate_execution and result == SUCCESS:
            self._replay = method
        return result

    def _execute_again(self, method: str, by: str) -> None:
        self.model.truth.event("dlms.command_repeated", role=self.role, position=self.position, method=method,
                               defect="duplicate_execution", by=by)
        self._remote(None, f"{by} (executed again: defect duplicate_execution)", method)

    def remote_disconnect(self, by: str) -> int:
        """Method 1 of the disconnect control, as a client invoking it would; NoAnswer while the meter is down."""
        self._require_answering("remote_disconnect", by)
        return self._remote(None, by, "remote_disconnect")

    def remote_reconnect(self, by: str) -> int:
        """Method 2 of the disconnect control, as a client invoking it would; NoAnswer while the meter is down."""
        self._require_answering("remote_reconnect", by)
        return self._remote(None, by, "remote_reconnect")

    def _require_answering(self, method: str, by: str) -> None:
        if not self.answering():
            why = "has no supply voltage" if not self.powered else "is still booting"
            self.model.truth.event("dlms.unanswered", role=self.role, position=self.position, method=method,
                                   reason=why, by=by)
            raise NoAnswer(f"{self.role}: no answer to {method}: the meter {why}")

    def check_limiter(self, now: float | None = None) -> None:
        """Trip (local disconnection, transition g) once power has stayed above threshold_active long enough."""
        now = time.monotonic() if now is None else now
        power_w = self.model.position_power_w(self.position)
        if self.control_state != CONNECTED or not self.meter.relay_closed or power_w <= self.threshold_active:
            self.over_since = None
            return
        if self.over_since is None:
            self.over_since = now
            self.trip_ignored = False
        if now - self.over_since < self.min_over_s:
            return
        if self.meter.defects.load_limit_ignored:
            if not self.trip_ignored:
                self.trip_ignored = True
                self.model.truth.event("limiter.ignored", role=self.role, position=self.position, power_w=power_w,
                                       threshold_w=self.threshold_active, over_s=now - self.over_since,
                                       defect="load_limit_ignored")
            return
        self.model.truth.event("limiter.trip", role=self.role, position=self.position, power_w=power_w,
                               threshold_w=self.threshold_active, over_s=now - self.over_since,
                               min_over_threshold_duration_s=self.min_over_s)
        self.over_since = None
        if self.control_mode != 0:
            self._change_state("limiter", ("g", READY_FOR_RECONNECTION), by=f"{self.role} limiter")

    async def _watch_limiter(self) -> None:
        while True:
            await asyncio.sleep(LIMITER_PERIOD_S)
            if self.answering():
                self.check_limiter()

    # -- application layer ------------------------------------------------------------------------------------

    def handle_apdu(self, link: Link, client_sap: int, apdu: bytes) -> bytes | None:
        """The response to one xDLMS/ACSE APDU from a client SAP on a link (None: no response)."""
        if not apdu:
            return None
        tag = apdu[0]
        if tag == 0x60:
            return self._associate(link, client_sap, apdu)
        association = link.associations.get(client_sap)
        if tag == 0x62:
            link.associations.pop(client_sap, None)
            if association is not None:
                self.model.truth.event("dlms.release", role=self.role, transport=link.transport,
                                       client_sap=client_sap)
            return b"\x63\x03\x80\x01\x00"
        if tag not in (0xC0, 0xC1, 0xC3):
            return exception_response(SERVICE_UNKNOWN, SERVICE_NOT_SUPPORTED)
        if association is None:
            return exception_response(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE)
        needed = {0xC0: CONFORMANCE_GET, 0xC1: CONFORMANCE_SET, 0xC3: CONFORMANCE_ACTION}[tag]
        if len(apdu) < 13 or apdu[1] != 1 or not association.conformance & needed:
            return exception_response(SERVICE_NOT_ALLOWED, SERVICE_NOT_SUPPORTED)
        invoke = apdu[2]
        class_id = int.from_bytes(apdu[3:5], "big")
        logical_name, index, rest = apdu[5:11], apdu[11], apdu[12:]
        by = f"{CLIENT_ROLES[client_sap]} client {client_sap}"
        if tag == 0xC0:
            response = self._get(association.role, class_id, logical_name, index, rest)
            answer = bytes([0xC4, 1, invoke]) + (b"\x00" + response if isinstance(response, bytes)
                                                 else bytes([1, response]))
            if association.client_max_pdu and len(answer) > association.client_max_pdu:
                answer = bytes([0xC4, 1, invoke, 1, OTHER_REASON])
            return answer
        if tag == 0xC1:
            return bytes([0xC5, 1, invoke, self._set(association.role, class_id, logical_name, index, rest, by)])
        return bytes([0xC7, 1, invoke, self._action(association.role, class_id, logical_name, index, rest, by), 0])

    def _lookup(self, class_id: int, logical_name: bytes, index: int, method: bool) -> CosemObject | int:
        obj = self.objects.get(logical_name)
        if obj is None:
            return OBJECT_UNDEFINED
        if obj.class_id != class_id:
            return OBJECT_CLASS_INCONSISTENT
        attributes, methods = CLASS_SHAPES[class_id]
        if not 1 <= index <= (methods if method else attributes):
            return OBJECT_UNDEFINED
        return obj

    def _get(self, role: str, class_id: int, logical_name: bytes, index: int, rest: bytes) -> bytes | int:
        obj = self._lookup(class_id, logical_name, index, method=False)
        if isinstance(obj, int):
            return obj
        if role not in obj.readers:
            return READ_WRITE_DENIED
        if rest[:1] != b"\x00":
            return OTHER_REASON  # selective access was not negotiated
        return obj.getters[index]()

    def _set(self, role: str, class_id: int, logical_name: bytes, index: int, rest: bytes, by: str) -> int:
        obj = self._lookup(class_id, logical_name, index, method=False)
        if isinstance(obj, int):
            return obj
        if role not in obj.writers or index not in obj.setters:
            return READ_WRITE_DENIED
        if rest[:1] != b"\x00":
            return OTHER_REASON
        try:
            data = decode_one(rest[1:])
        except DataError:
            return TYPE_UNMATCHED
        return obj.setters[index](data, by)

    def _action(self, role: str, class_id: int, logical_name: bytes, index: int, rest: bytes, by: str) -> int:
        obj = self._lookup(class_id, logical_name, index, method=True)
        if isinstance(obj, int):
            return obj
        if role not in obj.writers or index not in obj.methods:
            return READ_WRITE_DENIED
        try:
            data = decode_one(rest[1:]) if rest[:1] == b"\x01" else None
        except DataError:
            return TYPE_UNMATCHED
        return obj.methods[index](data, by)

    # -- association (ACSE) -----------------------------------------------------------------------------------

    def _associate(self, link: Link, client_sap: int, aarq: bytes) -> bytes:
        try:
            if aarq[0] != 0x60:
                raise DataError("not an AARQ")
            length, pos = read_length(aarq, 1)
            fields = ber_items(aarq[pos:pos + length])
            outcome = self._judge_aarq(client_sap, fields)
        except (DataError, IndexError, KeyError):
            outcome = (REJECTED_PERMANENT, DIAG_NO_REASON, None, None, None)
        result, diagnostic, mechanism, user_information, association = outcome
        link.associations.pop(client_sap, None)
        if association is not None:
            link.associations[client_sap] = association
        self.model.truth.event("dlms.association", role=self.role, transport=link.transport, client_sap=client_sap,
                               result="accepted" if result == ACCEPTED else "rejected-permanent",
                               diagnostic=DIAG_NAMES.get(diagnostic, str(diagnostic)))
        return aare(result, diagnostic, mechanism, user_information)

    def _judge_aarq(self, client_sap: int, fields: dict[int, bytes]) -> tuple:
        """(result, diagnostic, mechanism echoed, user-information, Association or None) for an AARQ."""
        if ber_inner(fields.get(0xA1, b""), 0x06) != LN_NO_CIPHERING:
            return REJECTED_PERMANENT, DIAG_CONTEXT_NOT_SUPPORTED, None, None, None
        role = CLIENT_ROLES.get(client_sap)
        if role is None:
            return REJECTED_PERMANENT, DIAG_NO_REASON, None, None, None
        requirements = fields.get(0x8A, b"")
        authenticated = len(requirements) >= 2 and bool(requirements[1] & 0x80)
        mechanism_oid = fields.get(0x8B)
        mechanism = None
        if authenticated and mechanism_oid is not None:
            if len(mechanism_oid) != 7 or mechanism_oid[:6] != MECHANISM_OID:
                return REJECTED_PERMANENT, DIAG_MECHANISM_NOT_RECOGNISED, None, None, None
            mechanism = mechanism_oid[6]
        if role == "public":
            if mechanism not in (None, 0):
                return REJECTED_PERMANENT, DIAG_MECHANISM_NOT_RECOGNISED, None, None, None
        else:
            if not authenticated:
                return REJECTED_PERMANENT, DIAG_AUTHENTICATION_REQUIRED, None, None, None
            if mechanism_oid is None:
                return REJECTED_PERMANENT, DIAG_MECHANISM_REQUIRED, None, None, None
            if mechanism != LLS:
                return REJECTED_PERMANENT, DIAG_MECHANISM_NOT_RECOGNISED, None, None, None
            value = fields.get(0xAC)
            password = ber_items(value).get(0x80) if value else None
            if password != self.password:
                return REJECTED_PERMANENT, DIAG_AUTHENTICATION_FAILURE, LLS, None, None
        initiate = ber_inner(fields.get(0xBE, b""), 0x04)
        version, conformance, max_pdu = parse_initiate_request(initiate)
        negotiated = conformance & SERVER_CONFORMANCE
        error = (DLMS_VERSION_TOO_LOW if version < 6 else INCOMPATIBLE_CONFORMANCE if not negotiated
                 else PDU_SIZE_TOO_SHORT if 0 < max_pdu < 12 else None)
        if error is not None:
            return REJECTED_PERMANENT, DIAG_NO_REASON, mechanism, bytes([0x0E, 1, INITIATE_ERROR, error]), None
        response = (b"\x08\x00\x06\x5f\x1f\x04\x00" + negotiated.to_bytes(3, "big")
                    + SERVER_MAX_PDU.to_bytes(2, "big") + b"\x00\x07")
        return ACCEPTED, DIAG_NULL, mechanism, response, Association(client_sap, role, negotiated, max_pdu)

    # -- transports -------------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Serve the TCP wrapper on host:port (0: any free port), the HDLC pty too with `hdlc`; return the port."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve_tcp, host=host, port=port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.hdlc:
            self._open_pty()
        self._limiter_task = asyncio.create_task(self._watch_limiter())
        return self.port

    async def stop(self) -> None:
        if self._limiter_task is not None:
            self._limiter_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._limiter_task
            self._limiter_task = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._pty_fds is not None:
            master, slave = self._pty_fds
            self._loop.remove_reader(master)
            os.close(master)
            os.close(slave)
            self._pty_fds = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = Link("tcp")
        epoch = self.power_epoch
        try:
            while True:
                version, source, destination, length = struct.unpack(">HHHH", await reader.readexactly(8))
                apdu = await reader.readexactly(length)
                if not self.port_answering():
                    continue  # no supply and no battery reading: nothing answers
                if epoch != self.power_epoch and not self.battery_reading:
                    break  # this connection died at a power loss
                if version != 1:
                    break
                if destination != SERVER_SAP:
                    continue  # no such logical device: the wrapper discards it
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                response = self.handle_apdu(link, source, apdu)
                if response is not None:
                    writer.write(wrap(SERVER_SAP, source, response))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty_fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        self._hdlc_link = HdlcLink(self)
        self._loop.add_reader(master, self._pty_readable)

    def _pty_readable(self) -> None:
        master = self._pty_fds[0]
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if not self.port_answering():
            return  # no supply and no battery reading: the port is dead
        frames = self._hdlc_link.feed(data)
        if not frames:
            return
        if self.latency_s:
            self._loop.call_later(self.latency_s, self._pty_write, frames)
        else:
            self._pty_write(frames)

    def _pty_write(self, frames: list[bytes]) -> None:
        if self._pty_fds is None:
            return
        for frame in frames:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._pty_fds[0], frame)


def wrap(source_wport: int, destination_wport: int, apdu: bytes) -> bytes:
    """IEC 62056-47 wrapper: version 1, source and destination wPort, length, then the APDU."""
    return struct.pack(">HHHH", 1, source_wport, destination_wport, len(apdu)) + apdu


def parse_initiate_request(data: bytes) -> tuple[int, int, int]:
    """(proposed DLMS version, proposed conformance bits, client max receive PDU size) of an InitiateRequest."""
    if not data or data[0] != 0x01:
        raise DataError("not an InitiateRequest")
    pos = 1
    if data[pos]:  # dedicated-key
        pos += 2 + data[pos + 1]
    else:
        pos += 1
    pos += 2 if data[pos] else 1  # response-allowed (DEFAULT TRUE)
    pos += 2 if data[pos] else 1  # proposed-quality-of-service
    version = data[pos]
    pos += 1
    if data[pos:pos + 3] != b"\x5f\x1f\x04":
        raise DataError("no conformance block")
    conformance = int.from_bytes(data[pos + 4:pos + 7], "big")
    max_pdu = int.from_bytes(data[pos + 7:pos + 9], "big")
    if pos + 9 != len(data):
        raise DataError("InitiateRequest of the wrong length")
    return version, conformance, max_pdu


def aare(result: int, diagnostic: int, mechanism: int | None, user_information: bytes | None) -> bytes:
    """AARE: LN context, result, acse-service-user diagnostic, the LLS mechanism when used, user-information."""
    content = ber(0xA1, ber(0x06, LN_NO_CIPHERING))
    content += ber(0xA2, ber(0x02, bytes([result])))
    content += ber(0xA3, ber(0xA1, ber(0x02, bytes([diagnostic]))))
    if mechanism:
        content += ber(0x88, b"\x07\x80") + ber(0x89, MECHANISM_OID + bytes([mechanism]))
    if user_information is not None:
        content += ber(0xBE, ber(0x04, user_information))
    return ber(0x61, content)


class HdlcLink:
    """The secondary station of an HDLC connection on a serial line: SNRM/UA, I-frames with segmentation both
    ways (window 1), RR, DISC/UA (DM when not connected)."""

    def __init__(self, meter: DlmsMeterSim):
        self.meter = meter
        self.buffer = bytearray()
        self.link = Link("hdlc")
        self.connected = False
        self.vs = self.vr = 0
        self.max_info_tx = self.max_info_rx = HDLC_MAX_INFO
        self.received = bytearray()
        self.pending: list[bytes] = []  # response segments waiting for the client's RR
        self.last_sent: bytes | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Frames to send back for the bytes received."""
        self.buffer += data
        out: list[bytes] = []
        while True:
            start = self.buffer.find(HDLC_FLAG)
            if start < 0:
                self.buffer.clear()
                return out
            del self.buffer[:start]
            if len(self.buffer) < 3:
                return out
            if self.buffer[1] & 0xF0 != 0xA0:
                del self.buffer[:1]
                continue
            total = ((self.buffer[1] & 0x07) << 8 | self.buffer[2]) + 2
            if len(self.buffer) < total:
                return out
            if self.buffer[total - 1] != HDLC_FLAG:
                del self.buffer[:1]
                continue
            content = bytes(self.buffer[1:total - 1])
            del self.buffer[:total - 1]  # the closing flag may open the next frame
            with contextlib.suppress(DataError, IndexError):
                out.extend(self.frame(content))

    def frame(self, content: bytes) -> list[bytes]:
        if crc16_x25(content[:-2]) != content[-2:]:
            return []
        destination_end = hdlc_address_end(content, 2)
        source_end = hdlc_address_end(content, destination_end)
        destination, source = content[2:destination_end], content[destination_end:source_end]
        if server_logical_address(destination) not in (SERVER_SAP, 0x7F, 0x3FFF) or len(source) != 1:
            return []
        control = content[source_end]
        information = b""
        if len(content) > source_end + 3:
            if crc16_x25(content[:source_end + 1]) != content[source_end + 1:source_end + 3]:
                return []
            information = content[source_end + 3:-2]
        segmented = bool(content[0] & 0x08)
        reply = self.reply(control, information, segmented, source[0] >> 1)
        return [hdlc_frame(source, destination, ctrl, info, seg) for ctrl, info, seg in reply]

    def reply(self, control: int, information: bytes, segmented: bool, client_sap: int) -> list[tuple]:
        """(control, information, segmented) of each frame answering one received frame."""
        kind = control & ~POLL_FINAL
        if kind == SNRM:
            params = hdlc_parameters(information)
            self.max_info_tx = min(params.get(6, HDLC_MAX_INFO), HDLC_MAX_INFO)  # client's receive = our transmit
            self.max_info_rx = min(params.get(5, HDLC_MAX_INFO), HDLC_MAX_INFO)
            self.reset(connected=True)
            return [(UA | POLL_FINAL, encode_hdlc_parameters(self.max_info_tx, self.max_info_rx), False)]
        if kind == DISC:
            was_connected = self.connected
            self.reset(connected=False)
            return [((UA if was_connected else DM) | POLL_FINAL, b"", False)]
        if not self.connected:
            return [(DM | POLL_FINAL, b"", False)] if control & POLL_FINAL else []
        if control & 0x01 == 0:  # I-frame
            return self.information(control, information, segmented, client_sap)
        if control & 0x0F == 0x01:  # RR
            if self.pending:
                return [self.next_segment()]
            return [((self.vr << 5) | POLL_FINAL | 0x01, b"", False)]
        return []

    def reset(self, connected: bool) -> None:
        self.connected = connected
        self.vs = self.vr = 0
        self.received.clear()
        self.pending.clear()
        self.last_sent = None
        self.link.associations.clear()

    def information(self, control: int, information: bytes, segmented: bool, client_sap: int) -> list[tuple]:
        ns = (control >> 1) & 0x07
        if ns != self.vr:
            if ns == (self.vr - 1) % 8 and self.last_sent is not None:
                return [self.last_sent]  # our answer was lost: send it again
            return []
        self.vr = (self.vr + 1) % 8
        self.received += information
        if segmented:
            return [((self.vr << 5) | POLL_FINAL | 0x01, b"", False)]
        apdu = bytes(self.received)
        self.received.clear()
        if apdu.startswith(LLC_REQUEST):
            apdu = apdu[3:]
        response = self.meter.handle_apdu(self.link, client_sap, apdu)
        if response is None:
            return [((self.vr << 5) | POLL_FINAL | 0x01, b"", False)]
        data = LLC_RESPONSE + response
        self.pending = [data[i:i + self.max_info_tx] for i in range(0, len(data), self.max_info_tx)]
        return [self.next_segment()]

    def next_segment(self) -> tuple:
        information = self.pending.pop(0)
        frame = ((self.vr << 5) | POLL_FINAL | (self.vs << 1), information, bool(self.pending))
        self.vs = (self.vs + 1) % 8
        self.last_sent = frame
        return frame
