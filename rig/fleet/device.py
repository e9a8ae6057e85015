"""The DLMS logical device a fleet shard's meters share: the twin meter's server (rig/sim/dlms/server.py: ACSE,
HLS-GMAC, ciphering, GET/SET/ACTION with the same access rights per association) with one set of object
definitions, answering for the meter whose connection a request came on (`current`). A request is handled
synchronously on the shard's event loop, so `current` and `security` stay the meter's for the whole request.

Objects per meter (IS 15959-2 numbering, as the twin meter; rig/sim/dlms/objects.py has their access rights):
identity (logical device name 0.0.42.0.0.255 "RIG<serial>", serial 0.0.96.1.0.255, manufacturer 0.0.96.1.1.255,
firmware 1.0.0.2.0.255; every client), clock 0.0.1.0.0.255 (every client reads, utility settings sets), active
energy import 1.0.1.8.0.255 (Wh, scaler 0), voltage 1.0.12.7.0.255 and active power 1.0.1.7.0.255 (reader and
utility settings), disconnect control 0.0.96.3.10.255 (class 70, control mode 5: remote_disconnect and
remote_reconnect by utility settings), the invocation counters 0.0.43.1.3.255 and 0.0.43.1.4.255 (every client),
the Security Setups 0.0.43.0.3.255 and 0.0.43.0.4.255 (read by utility settings; no key transfer: fleet keys are
derived from the fleet secret) and the association objects with their object lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rig.fleet.model import CONNECTED, DISCONNECTED, READY_FOR_RECONNECTION, MeterState
from rig.sim.dlms.association import ASSOCIATION_NAMES, EVERY_CLIENT, READING_CLIENTS, UTILITY, Association, Link
from rig.sim.dlms.codec import (
    DATE_TIME,
    DOUBLE_LONG_UNSIGNED,
    ENUM,
    INTEGER,
    INTEGER_FORMATS,
    LONG,
    LONG_UNSIGNED,
    OCTET_STRING,
    UNSIGNED,
    UNSPECIFIED_DATE_TIME,
    DataError,
    clamp,
    decode_date_time,
    encode_bool,
    encode_date_time,
    encode_int,
    encode_octets,
    encode_scaler_unit,
    encode_visible,
)
from rig.sim.dlms.object_list import association_objects
from rig.sim.dlms.objects import (
    CLOCK,
    IDENTITY,
    OTHER_REASON,
    SECURITY_POLICY_AUTHENTICATED_AND_ENCRYPTED,
    SUCCESS,
    TYPE_UNMATCHED,
    CosemObject,
)
from rig.sim.dlms.profiles import obis
from rig.sim.dlms.security import CounterStore, ServerSecurity
from rig.sim.dlms.server import DlmsServer

if TYPE_CHECKING:
    from rig.fleet.shard import FleetShard

GET_REQUEST = 0xC0
UTILITY_SAP = 48
CONTROL_MODE = 5
MAINS_VOLTAGE_V = 230.0


class ShardEvents:
    """The sink of the server's truth events for a shard: counts them by name and result, keeps nothing else."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.truth = self

    def event(self, name: str, **fields) -> None:
        key = f"{name}.{fields['result']}" if "result" in fields else name
        self.counts[key] = self.counts.get(key, 0) + 1


class FleetDevice(DlmsServer):
    """One DlmsServer for all the shard's meters; `answer` serves one APDU of one meter's connection."""

    def __init__(self, shard: FleetShard, password: bytes):
        self.events = ShardEvents()
        super().__init__(f"fleet-shard-{shard.layout.shard_index}", self.events, password, hdlc=False,
                         latency_s=0.0)
        self.shard = shard
        self.current: MeterState | None = None
        self.last_service = 0
        objects = fleet_objects(self)
        objects += association_objects(lambda: list(self.objects.values()), lambda: self.serving)
        self.objects = {obj.logical_name: obj for obj in objects}

    def answer(self, meter: MeterState, link: Link, client_sap: int, apdu: bytes) -> tuple[bytes | None, bool]:
        """The response to one APDU for `meter`, and whether it answered a GET."""
        self.current = meter
        if meter.security is None and client_sap == UTILITY_SAP:
            meter.security = self.security_of(meter)
        self.security = meter.security
        self.last_service = 0
        try:
            return self.handle_apdu(link, client_sap, apdu), self.last_service == GET_REQUEST
        finally:
            self.current = None
            self.security = None
            self.serving = None

    def security_of(self, meter: MeterState) -> ServerSecurity:
        master = self.shard.master_key(meter.serial)
        return ServerSecurity(meter.system_title, {"utility": meter.keys, "push": meter.keys}, master,
                              CounterStore(None))

    def _serve(self, link: Link, client_sap: int, association: Association | None, apdu: bytes) -> bytes | None:
        self.last_service = apdu[0] if apdu else 0
        return super()._serve(link, client_sap, association, apdu)

    # -- live values of the current meter ---------------------------------------------------------------------

    def meter_time_s(self) -> float:
        return self.shard.clock.now() + self.current_clock_offset()

    def current_clock_offset(self) -> float:
        return self.shard.clock_offsets.get(self.current.index, 0.0)

    def energy_wh(self) -> int:
        return int(self.shard.settle(self.current))

    def power_w(self) -> float:
        return self.shard.power_w(self.current)

    def set_time(self, data: tuple[int, object], by: str) -> int:
        tag, raw = data
        if tag not in (OCTET_STRING, DATE_TIME) or not isinstance(raw, bytes) or len(raw) != 12:
            return TYPE_UNMATCHED
        try:
            utc_s = decode_date_time(raw, self.shard.clock.utc_offset_min)
        except DataError:
            return OTHER_REASON
        self.shard.clock_offsets[self.current.index] = utc_s - self.shard.clock.now()
        return SUCCESS

    def remote_command(self, data: tuple[int, object] | None, method: str) -> int:
        """Class 70 methods 1 and 2 in control mode 5 (Blue Book transitions b, c: disconnect; d: reconnect)."""
        if data is not None and data[0] not in INTEGER_FORMATS:
            return TYPE_UNMATCHED
        meter = self.current
        state = meter.control_state
        if method == "remote_disconnect":
            target = DISCONNECTED if state in (CONNECTED, READY_FOR_RECONNECTION) else None
        else:
            target = CONNECTED if state == DISCONNECTED else None
        if target is not None:
            self.shard.switch_relay(meter, target)
        return SUCCESS


def _live(device: FleetDevice, value_of: Callable[[MeterState], bytes]) -> Callable[[], bytes]:
    return lambda: value_of(device.current)


def _register(name: str, tag: int, value_of: Callable[[], float], scaler: int, unit: str) -> CosemObject:
    def value() -> bytes:
        return encode_int(tag, clamp(tag, round(value_of() / 10 ** scaler)))
    return CosemObject(3, obis(name), {2: value, 3: lambda: encode_scaler_unit(scaler, unit)}, readers=READING_CLIENTS)


def _identity(device: FleetDevice, name: str, value_of: Callable[[MeterState], str]) -> CosemObject:
    return CosemObject(1, obis(name), {2: _live(device, lambda meter: encode_visible(value_of(meter)))},
                       readers=EVERY_CLIENT)


def fleet_objects(device: FleetDevice) -> list[CosemObject]:
    objects = [
        _identity(device, IDENTITY["logical_device_name"], lambda meter: f"RIG{meter.serial}"),
        _identity(device, IDENTITY["serial"], lambda meter: meter.serial),
        _identity(device, IDENTITY["manufacturer"], lambda meter: "Rig Twin Fleet"),
        _identity(device, IDENTITY["firmware"], lambda meter: "1.0.0"),
        _clock(device),
        _register("1.0.1.8.0.255", DOUBLE_LONG_UNSIGNED, device.energy_wh, 0, "Wh"),
        _register("1.0.12.7.0.255", LONG_UNSIGNED, lambda: MAINS_VOLTAGE_V if device.current.mains_on else 0.0,
                  -2, "V"),
        _register("1.0.1.7.0.255", DOUBLE_LONG_UNSIGNED, device.power_w, 0, "W"),
        CosemObject(70, obis("0.0.96.3.10.255"), {
            2: _live(device, lambda meter: encode_bool(meter.control_state == CONNECTED)),
            3: _live(device, lambda meter: encode_int(ENUM, meter.control_state)),
            4: lambda: encode_int(ENUM, CONTROL_MODE)},
            methods={1: lambda data, by: device.remote_command(data, "remote_disconnect"),
                     2: lambda data, by: device.remote_command(data, "remote_reconnect")},
            readers=READING_CLIENTS, writers=UTILITY),
    ]
    for role in ("utility", "push"):
        number = ASSOCIATION_NAMES[role].split(".")[4]

        def counter(role: str = role) -> bytes:
            security = device.current.security
            value = security.setups[role].highest_client_counter() if security is not None else 0
            return encode_int(DOUBLE_LONG_UNSIGNED, value)

        def client_title(role: str = role) -> bytes:
            security = device.current.security
            return encode_octets(security.setups[role].last_client_title if security is not None else b"")

        objects.append(CosemObject(1, obis(f"0.0.43.1.{number}.255"), {2: counter}, readers=EVERY_CLIENT | {role}))
        managers = frozenset({role}) | UTILITY
        objects.append(CosemObject(64, obis(f"0.0.43.0.{number}.255"), {
            2: lambda: encode_int(ENUM, SECURITY_POLICY_AUTHENTICATED_AND_ENCRYPTED),
            3: lambda: encode_int(ENUM, 0),
            4: client_title,
            5: _live(device, lambda meter: encode_octets(meter.system_title))}, readers=managers, writers=managers))
    return objects


def _clock(device: FleetDevice) -> CosemObject:
    offset_min = device.shard.clock.utc_offset_min
    getters = {
        2: lambda: encode_octets(encode_date_time(device.meter_time_s(), offset_min)),
        3: lambda: encode_int(LONG, -offset_min),
        4: lambda: encode_int(UNSIGNED, 0),
        5: lambda: encode_octets(UNSPECIFIED_DATE_TIME),
        6: lambda: encode_octets(UNSPECIFIED_DATE_TIME),
        7: lambda: encode_int(INTEGER, 0),
        8: lambda: encode_bool(False),
        9: lambda: encode_int(ENUM, 1),
    }
    return CosemObject(8, obis(CLOCK), getters, {2: device.set_time}, readers=EVERY_CLIENT, writers=UTILITY)
