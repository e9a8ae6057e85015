"""The twin meter's COSEM objects (a subset of the IS 15959-2 smart-meter object list): identity, clock,
registers, disconnect control (class 70), limiter (class 71), the tamper event log (profile generic, class 7), and
per ciphered association its invocation counter (class 1, 0.0.43.1.x.255, read by every client) and its Security
Setup (class 64, 0.0.43.0.x.255: key_transfer with keys wrapped under the master key).

Each object holds attribute getters (encoded A-XDR Data), setters and methods returning a Data-Access-Result or
Action-Result, and which client roles may read, and write and invoke. The access model (README, "DLMS associations
and key files"): the public client reads the identity (IDENTITY), the clock and the invocation counters; the meter
reader reads everything else a reader needs and sets and invokes nothing; utility settings reads, sets and invokes
everything; push has its own association, counter and Security Setup. The values come live from the meter's
behaviour (rig/sim/dlms/meter.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rig.sim.dlms.association import ASSOCIATION_NAMES, EVERY_CLIENT, NOBODY, READING_CLIENTS, UTILITY
from rig.sim.dlms.codec import (
    DOUBLE_LONG_UNSIGNED,
    ENUM,
    INTEGER,
    LONG,
    LONG_UNSIGNED,
    UNSIGNED,
    UNSPECIFIED_DATE_TIME,
    clamp,
    encode_array,
    encode_bool,
    encode_date_time,
    encode_int,
    encode_octets,
    encode_scaler_unit,
    encode_structure,
    encode_visible,
)
from rig.sim.dlms.profiles import CLOCK_TIME, NO_SORT_OBJECT, Capture, Row, obis, select_rows

if TYPE_CHECKING:
    from rig.sim.dlms.meter import DlmsMeterSim

# class id -> (number of attributes, number of methods) of the interface class, and its version
CLASS_SHAPES = {1: (2, 0), 3: (3, 1), 7: (8, 2), 8: (9, 6), 9: (2, 1), 15: (9, 4), 64: (5, 2), 70: (4, 2),
                71: (11, 0)}
CLASS_VERSIONS = {7: 1, 15: 1}

# Data-Access-Result / Action-Result
SUCCESS, READ_WRITE_DENIED, OBJECT_UNDEFINED, OBJECT_CLASS_INCONSISTENT = 0, 3, 4, 9
TYPE_UNMATCHED, OTHER_REASON = 12, 250

# The IS 15959 non-rollover event log and its event code object; cover open is event code 251. As remembered and
# as Gurux's India object list pairs them (0.0.99.98.5.255 "Non Roll Over Events Profile", 0.0.96.11.5.255
# "Event: Non Roll Over Events"); not verified against the standard's text, the code 251 not at all.
NON_ROLLOVER_EVENT_LOG = "0.0.99.98.5.255"
NON_ROLLOVER_EVENT_CODE = "0.0.96.11.5.255"
COVER_OPEN_EVENT = 251
CLOCK = "0.0.1.0.0.255"
# the identity the public client reads: logical device name, meter serial number, manufacturer name, firmware
# version (the name plate's other items and its profile are the reader's)
IDENTITY = {"logical_device_name": "0.0.42.0.0.255", "serial": "0.0.96.1.0.255", "manufacturer": "0.0.96.1.1.255",
            "firmware": "1.0.0.2.0.255"}


def obis_text(logical_name: bytes) -> str:
    return ".".join(str(octet) for octet in logical_name)


@dataclass
class CosemObject:
    """An object of the logical device: attribute getters (encoded Data), setters and methods returning a
    result code, and which client roles may read, and write and invoke (the reader and the public client read
    only; where an object says nothing, the reader and utility settings read it)."""

    class_id: int
    logical_name: bytes
    getters: dict[int, Callable[[], bytes]]
    setters: dict[int, Callable[[tuple[int, object], str], int]] = field(default_factory=dict)
    methods: dict[int, Callable[[tuple[int, object] | None, str], int]] = field(default_factory=dict)
    readers: frozenset[str] = READING_CLIENTS  # the public client only where it is given
    writers: frozenset[str] = NOBODY  # who sets the setters' attributes and invokes the methods
    selective: dict[int, Callable[[int, tuple[int, object]], bytes | int]] = field(default_factory=dict)
    unreadable: frozenset[int] = frozenset()  # attributes nobody may read (a secret)
    served: dict[int, frozenset[str]] = field(default_factory=dict)  # methods the server itself serves, by role

    def __post_init__(self) -> None:
        self.getters = {1: lambda: encode_octets(self.logical_name), **self.getters}


@dataclass
class EventLog:
    """An event log (profile generic) of (meter time, event code) entries in the order they happened; no rollover:
    once `profile_entries` are in use, later events are not recorded."""

    logical_name: str
    event_code_object: str
    profile_entries: int
    entries: list[tuple[float, int]] = field(default_factory=list)

    def append(self, utc_s: float, code: int) -> bool:
        """Record one event; False when the log is full."""
        if len(self.entries) >= self.profile_entries:
            return False
        self.entries.append((utc_s, code))
        return True

    def columns(self) -> list[Capture]:
        return [CLOCK_TIME, Capture(1, self.event_code_object)]

    def capture_objects(self) -> bytes:
        """Attribute 3: the clock's time (attribute 2) and the event code object's value (attribute 2)."""
        return encode_array([column.encode() for column in self.columns()])

    def buffer(self, utc_offset_min: int) -> bytes:
        """Attribute 2: one structure {date-time as octet-string, event code long-unsigned} per entry."""
        return encode_array([encode_structure(encode_octets(encode_date_time(utc_s, utc_offset_min)),
                                              encode_int(LONG_UNSIGNED, code)) for utc_s, code in self.entries])

    def last_code(self) -> int:
        return self.entries[-1][1] if self.entries else 0

    def rows(self, utc_offset_min: int) -> list[Row]:
        """The entries as profile rows (meter time, encoded columns), for selective access."""
        return [(utc_s, (encode_octets(encode_date_time(utc_s, utc_offset_min)), encode_int(LONG_UNSIGNED, code)))
                for utc_s, code in self.entries]


def register(name: str, tag: int, value_of: Callable[[], float], scaler: int, unit: str,
             readers: frozenset[str] = READING_CLIENTS) -> CosemObject:
    """A register (class 3) whose value is value_of() in units of 10**scaler `unit`."""
    def value() -> bytes:
        return encode_int(tag, clamp(tag, round(value_of() / 10 ** scaler)))
    return CosemObject(3, obis(name), {2: value, 3: lambda: encode_scaler_unit(scaler, unit)}, readers=readers)


def text(name: str, value: str) -> CosemObject:
    """An identity object (class 1, visible-string), read by every client."""
    return CosemObject(1, obis(name), {2: lambda: encode_visible(value)}, readers=EVERY_CLIENT)


def meter_objects(meter: DlmsMeterSim) -> list[CosemObject]:
    model, position = meter.model, meter.position
    return [
        text(IDENTITY["logical_device_name"], meter.logical_device_name),
        text(IDENTITY["serial"], meter.meter.serial),
        text(IDENTITY["manufacturer"], meter.manufacturer),
        text(IDENTITY["firmware"], meter.firmware),
        clock(meter),
        register("1.0.1.8.0.255", DOUBLE_LONG_UNSIGNED, meter.energy_wh, meter.energy_scaler, "Wh"),
        register("1.0.12.7.0.255", LONG_UNSIGNED, model.supply_voltage_v, -2, "V"),
        register("1.0.11.7.0.255", DOUBLE_LONG_UNSIGNED, lambda: model.position_current_a(position), -3, "A"),
        register("1.0.1.7.0.255", DOUBLE_LONG_UNSIGNED, lambda: model.position_power_w(position), 0, "W"),
        register("1.0.13.7.0.255", LONG, meter.power_factor, -3, "none"),
        register("1.0.14.7.0.255", LONG_UNSIGNED, meter.frequency_hz, -2, "Hz"),
        register("0.1.96.12.5.255", INTEGER, meter.signal_dbm, 0, "dBm"),
        disconnect_control(meter),
        limiter(meter),
        *event_log_objects(meter),
        *security_objects(meter),
    ]


def clock(meter: DlmsMeterSim) -> CosemObject:
    getters = {
        2: lambda: encode_octets(encode_date_time(meter.meter_time_s(), meter.utc_offset_min)),
        3: lambda: encode_int(LONG, -meter.utc_offset_min),
        4: lambda: encode_int(UNSIGNED, 0),
        5: lambda: encode_octets(UNSPECIFIED_DATE_TIME),
        6: lambda: encode_octets(UNSPECIFIED_DATE_TIME),
        7: lambda: encode_int(INTEGER, 0),
        8: lambda: encode_bool(False),
        9: lambda: encode_int(ENUM, 1),  # internal crystal
    }
    return CosemObject(8, obis(CLOCK), getters, {2: meter.set_time}, readers=EVERY_CLIENT, writers=UTILITY)


def disconnect_control(meter: DlmsMeterSim) -> CosemObject:
    getters = {2: lambda: encode_bool(meter.reported_output_state()),
               3: lambda: encode_int(ENUM, meter.control_state),
               4: lambda: encode_int(ENUM, meter.control_mode)}
    methods = {1: lambda data, by: meter.remote_command(data, by, "remote_disconnect"),
               2: lambda data, by: meter.remote_command(data, by, "remote_reconnect")}
    writers = UTILITY | {"reader"} if meter.hooks.reader_may_disconnect() else UTILITY
    return CosemObject(70, obis("0.0.96.3.10.255"), getters, methods=methods, readers=READING_CLIENTS,
                       writers=writers)


def limiter(meter: DlmsMeterSim) -> CosemObject:
    def threshold(value_of: Callable[[], int]) -> Callable[[], bytes]:
        return lambda: encode_int(DOUBLE_LONG_UNSIGNED, value_of())

    script = encode_octets(obis("0.0.10.0.106.255"))  # disconnector script table
    getters = {
        2: lambda: encode_structure(encode_int(LONG_UNSIGNED, 3), encode_octets(obis("1.0.1.7.0.255")),
                                    encode_int(INTEGER, 2)),
        3: threshold(lambda: meter.threshold_active),
        4: threshold(lambda: meter.threshold_normal),
        5: threshold(lambda: meter.threshold_emergency),
        6: lambda: encode_int(DOUBLE_LONG_UNSIGNED, meter.min_over_s),
        7: lambda: encode_int(DOUBLE_LONG_UNSIGNED, meter.min_under_s),
        8: lambda: encode_structure(encode_int(LONG_UNSIGNED, 0), encode_octets(UNSPECIFIED_DATE_TIME),
                                    encode_int(DOUBLE_LONG_UNSIGNED, 0)),
        9: lambda: encode_array([]),
        10: lambda: encode_bool(False),
        11: lambda: encode_structure(encode_structure(script, encode_int(LONG_UNSIGNED, 1)),
                                     encode_structure(script, encode_int(LONG_UNSIGNED, 0))),
    }
    setters = {index: (lambda data, by, index=index: meter.set_limiter(index, data, by)) for index in (3, 4, 5, 6, 7)}
    return CosemObject(71, obis("0.0.17.0.0.255"), getters, setters, readers=READING_CLIENTS, writers=UTILITY)


def event_log_objects(meter: DlmsMeterSim) -> list[CosemObject]:
    """The event log (class 7, read by the reader; capture_period 0: captured on events; sort_method 1: FIFO,
    no sort object) and its event code object (class 1: the last event code, long-unsigned). Late events that
    are due enter the log before any of it is read."""
    tamper, log = meter.tamper, meter.tamper.log

    def buffer() -> bytes:
        tamper.flush_due()
        return log.buffer(meter.utc_offset_min)

    def entries_in_use() -> bytes:
        tamper.flush_due()
        return encode_int(DOUBLE_LONG_UNSIGNED, len(log.entries))

    def last_code() -> bytes:
        tamper.flush_due()
        return encode_int(LONG_UNSIGNED, log.last_code())

    def selected(selector: int, parameters: tuple[int, object]) -> bytes | int:
        tamper.flush_due()
        return select_rows(log.columns(), log.rows(meter.utc_offset_min), selector, parameters, meter.utc_offset_min)

    getters = {
        2: buffer,
        3: log.capture_objects,
        4: lambda: encode_int(DOUBLE_LONG_UNSIGNED, 0),
        5: lambda: encode_int(ENUM, 1),
        6: lambda: NO_SORT_OBJECT,
        7: entries_in_use,
        8: lambda: encode_int(DOUBLE_LONG_UNSIGNED, log.profile_entries),
    }
    return [CosemObject(7, obis(log.logical_name), getters, readers=READING_CLIENTS, selective={2: selected}),
            CosemObject(1, obis(log.event_code_object), {2: last_code}, readers=READING_CLIENTS)]


SECURITY_POLICY_AUTHENTICATED_AND_ENCRYPTED = 3  # Security Setup version 0: all messages authenticated+encrypted


def security_objects(meter: DlmsMeterSim) -> list[CosemObject]:
    """Per ciphered association (utility settings x = 3, push x = 4): its invocation counter 0.0.43.1.x.255 (the
    highest client IC the meter accepted, double-long-unsigned, read by every client so that a client can go on
    from it before associating) and its Security Setup 0.0.43.0.x.255 (version 0: security_policy, security_suite,
    client and server system titles; key_transfer), read and invoked on its own association and by utility
    settings (the meter initiates push, so no client associates as push to manage its keys)."""
    security = meter.security
    objects = []
    for role in security.setups:
        number = ASSOCIATION_NAMES[role].split(".")[4]
        setup = security.setups[role]
        objects.append(CosemObject(1, obis(f"0.0.43.1.{number}.255"), {
            2: lambda setup=setup: encode_int(DOUBLE_LONG_UNSIGNED, setup.highest_client_counter())},
            readers=EVERY_CLIENT | {role}))
        managers = frozenset({role}) | UTILITY
        getters = {2: lambda: encode_int(ENUM, SECURITY_POLICY_AUTHENTICATED_AND_ENCRYPTED),
                   3: lambda: encode_int(ENUM, 0),
                   4: lambda setup=setup: encode_octets(setup.last_client_title),
                   5: lambda: encode_octets(security.system_title)}
        methods = {2: lambda data, by, role=role: meter.key_transfer(role, data, by)}
        objects.append(CosemObject(64, obis(f"0.0.43.0.{number}.255"), getters, methods=methods,
                                   readers=managers, writers=managers))
    return objects
