"""DLMS/COSEM smart meters (IS 15959 / IS 16444) through dlms-cosem 21.3.2's client, every call under a deadline.

Transports: the IEC 62056-47 TCP wrapper (resource 'tcp://host:port', port 4059 by default; the VISA form
'TCPIP0::host::port::SOCKET' is accepted too) and IEC 62056-46 HDLC over a serial line (resource a device path
such as '/dev/ttyUSB0' or a pty, or 'ASRL<path>::INSTR').

Clients (IS 15959-2): public (SAP 16, no security), reader (SAP 32, LLS) and utility settings (SAP 48, HLS-GMAC:
security suite 0, every APDU authenticated and encrypted with the global keys of the bench's secret files; the
invocation counter is read over the public client before each ciphered association and kept).
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, TypeVar

import serial
from dlms_cosem import cosem, dlms_data, enumerations, state
from dlms_cosem.clients.blocking_tcp_transport import BlockingTcpTransport
from dlms_cosem.clients.dlms_client import DlmsClient
from dlms_cosem.clients.hdlc_transport import SerialHdlcTransport
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.exceptions import CommunicationError
from dlms_cosem.hdlc import connection as hdlc_connection
from dlms_cosem.hdlc import frames
from dlms_cosem.protocol import acse, xdlms
from pydantic import Field

from drivers.dlms_profiles import NAME_PLATE, SCALER_PROFILES, DateRange, DlmsProfiles, is_scaler_unit
from drivers.dlms_security import DlmsSecurityProbes
from rig.config import DriverSettings, RoleConfig
from rig.driver import Driver, Identity
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout, SetpointRefused
from rig.resources import Accepts
from rig.roles import (
    ControlState,
    DisconnectControl,
    EventLog,
    LimiterSettings,
    LoadLimiter,
    MeterEvent,
    MeterReadout,
    RelayState,
    SignalReport,
)
from rig.roles.profiles import IS15959_PROFILES

T = TypeVar("T")

DEFAULT_PORT = 4059
CLIENT_SAPS = {"public": 16, "reader": 32, "utility": 48}
AUTHENTICATIONS = {"none": None, "lls": enumerations.AuthenticationMechanism.LLS,
                   "hls-gmac": enumerations.AuthenticationMechanism.HLS_GMAC}
DEFAULT_AUTHENTICATION = {"public": "none", "reader": "lls", "utility": "hls-gmac"}
PUBLIC_SAP = 16
UTILITY_SAP = 48
# the IS 15959-2 associations by client SAP, as a refusal names them
ASSOCIATION_NAMES = {16: "the public client association", 32: "the meter reader association",
                     48: "the utility settings association"}
# the invocation counter of each ciphered association (IS 15959-2), read by the public client
INVOCATION_COUNTERS = {48: "0.0.43.1.3.255"}
KEY_SECRETS = ("encryption_key", "authentication_key")
DEFAULT_SYSTEM_TITLE = "524947484c303031"  # "RIGHL001": the client's system title, 8 octets
# dlms-cosem logs every deciphered APDU at WARNING: keep deciphered traffic out of the rig's logs
logging.getLogger("dlms_cosem.connection").setLevel(logging.ERROR)
IST_OFFSET_MIN = 330
DISCONNECT_WAIT_S = 0.5
SERIAL_POLL_S = 0.05

LOGICAL_DEVICE_NAME = "0.0.42.0.0.255"
METER_SERIAL = "0.0.96.1.0.255"
MANUFACTURER_NAME = "0.0.96.1.1.255"
FIRMWARE_VERSION = "1.0.0.2.0.255"
CLOCK = "0.0.1.0.0.255"
ENERGY_IMPORT = "1.0.1.8.0.255"
VOLTAGE = "1.0.12.7.0.255"
CURRENT = "1.0.11.7.0.255"
ACTIVE_POWER = "1.0.1.7.0.255"
POWER_FACTOR = "1.0.13.7.0.255"
SIGNAL_STRENGTH = "0.1.96.12.5.255"
DISCONNECT_CONTROL = "0.0.96.3.10.255"
LIMITER = "0.0.17.0.0.255"
NON_ROLLOVER_EVENT_LOG = "0.0.99.98.5.255"  # IS 15959 event profile holding tamper events such as cover open
DATA, REGISTER, EXTENDED_REGISTER, CLOCK_CLASS, DISCONNECT_CLASS, LIMITER_CLASS = 1, 3, 4, 8, 70, 71
PROFILE_GENERIC = 7
# The meter's COSEM objects the driver knows (IS 15959): logical name -> (what it is, interface class).
# `read(obis, attribute)` reads any attribute of these (or of any object, given its class).
OBJECTS: dict[str, tuple[str, int]] = {
    LOGICAL_DEVICE_NAME: ("logical device name", DATA), METER_SERIAL: ("meter serial number", DATA),
    MANUFACTURER_NAME: ("manufacturer name", DATA), FIRMWARE_VERSION: ("firmware version", DATA),
    CLOCK: ("clock", CLOCK_CLASS), ENERGY_IMPORT: ("cumulative energy import", REGISTER),
    VOLTAGE: ("voltage", REGISTER), CURRENT: ("current", REGISTER), ACTIVE_POWER: ("active power", REGISTER),
    POWER_FACTOR: ("power factor", REGISTER), SIGNAL_STRENGTH: ("signal strength", REGISTER),
    DISCONNECT_CONTROL: ("disconnect control", DISCONNECT_CLASS), LIMITER: ("load limiter", LIMITER_CLASS),
    NON_ROLLOVER_EVENT_LOG: ("non-rollover event log", PROFILE_GENERIC),
    **{logical_name: (f"{part.replace('_', ' ')} (name plate)", DATA) for part, logical_name in NAME_PLATE.items()
       if logical_name not in (METER_SERIAL, MANUFACTURER_NAME, FIRMWARE_VERSION)},
    **{logical_name: (f"{name.replace('_', ' ')} profile", PROFILE_GENERIC)
       for name, logical_name in IS15959_PROFILES.items() if logical_name != NON_ROLLOVER_EVENT_LOG},
    **{logical_name: ("scaler profile", PROFILE_GENERIC) for logical_name in set(SCALER_PROFILES.values())},
}
EVENT_POLL_S = 0.25
UNIT_WH, UNIT_W, UNIT_A, UNIT_V, UNIT_DBM, NO_UNIT = 30, 27, 33, 35, 70, 255

DATA_ACCESS_RESULTS = {0: "success", 1: "hardware-fault", 2: "temporary-failure", 3: "read-write-denied",
                       4: "object-undefined", 9: "object-class-inconsistent", 11: "object-unavailable",
                       12: "type-unmatched", 13: "scope-of-access-violated", 14: "data-block-unavailable",
                       15: "long-get-aborted", 16: "no-long-get-in-progress", 17: "long-set-aborted",
                       18: "no-long-set-in-progress", 19: "data-block-number-invalid", 250: "other-reason"}
ACSE_DIAGNOSTICS = {0: "null", 1: "no-reason-given", 2: "application-context-name-not-supported",
                    11: "authentication-mechanism-name-not-recognised", 12: "authentication-mechanism-name-required",
                    13: "authentication-failure", 14: "authentication-required"}
RESULTS = {0: "accepted", 1: "rejected-permanent", 2: "rejected-transient"}

# A-XDR tags the decoder knows: fixed-size integers (struct format) and the rest by their length
INTEGER_FORMATS = {15: ">b", 16: ">h", 17: ">B", 18: ">H", 5: ">i", 6: ">I", 20: ">q", 21: ">Q", 22: ">B"}
FIXED_SIZES = {3: 1, 23: 4, 24: 8, 25: 12, 26: 5, 27: 4}
OCTET_STRING, VISIBLE_STRING, UTF8_STRING = 9, 10, 12


RESOURCES = Accepts(("tcp", "socket", "serial"), "a DLMS meter is reached at 'tcp://host:port' (TCP wrapper) or a "
                                                 "serial device path such as '/dev/ttyUSB0' (HDLC)",
                    default_port=DEFAULT_PORT)


def parse_resource(resource: str, role: str) -> tuple[str, str, int]:
    """('tcp', host, port) or ('hdlc', serial path, 0)."""
    where = RESOURCES.parse(resource, role)
    return ("hdlc", where.path, 0) if "serial" in where.kinds else ("tcp", where.host, where.port)


MAX_DATA_DEPTH = 64  # arrays and structures inside each other; COSEM objects nest a few levels at most


def decode_data(data: bytes, pos: int = 0, depth: int = 0) -> tuple[Any, int]:
    """One A-XDR Data element -> (Python value, next position): ints, floats, bools, str for visible and UTF-8
    strings, bytes for octet strings and the date/time types, lists for arrays and structures (nested at most
    MAX_DATA_DEPTH levels: deeper is a ValueError, not a recursion without end)."""
    tag = data[pos]
    pos += 1
    if tag == 0:
        return None, pos
    if tag in (1, 2):
        return _decode_items(data, pos, depth)
    if tag in (4, OCTET_STRING, VISIBLE_STRING, UTF8_STRING, 13):
        length, pos = _length(data, pos)
        if tag == 4:
            length = (length + 7) // 8
        raw = bytes(data[pos:pos + length])
        if len(raw) != length:
            raise ValueError("string runs past the end of the data")
        if tag in (VISIBLE_STRING, UTF8_STRING):
            return raw.decode("utf-8" if tag == UTF8_STRING else "ascii", errors="replace"), pos + length
        return raw, pos + length
    if tag in INTEGER_FORMATS:
        size = struct.calcsize(INTEGER_FORMATS[tag])
        return struct.unpack(INTEGER_FORMATS[tag], data[pos:pos + size])[0], pos + size
    if tag in FIXED_SIZES:
        raw = bytes(data[pos:pos + FIXED_SIZES[tag]])
        if tag == 3:
            return raw != b"\x00", pos + 1
        if tag in (23, 24):
            return struct.unpack(">f" if tag == 23 else ">d", raw)[0], pos + len(raw)
        return raw, pos + len(raw)
    raise ValueError(f"unknown A-XDR data tag {tag}")


def _decode_items(data: bytes, pos: int, depth: int) -> tuple[list, int]:
    """The elements of an array or structure whose length is at pos."""
    if depth >= MAX_DATA_DEPTH:
        raise ValueError(f"A-XDR data nested deeper than {MAX_DATA_DEPTH} levels")
    count, pos = _length(data, pos)
    items = []
    for _ in range(count):
        item, pos = decode_data(data, pos, depth + 1)
        items.append(item)
    return items, pos


def _length(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    size = first & 0x7F
    return int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size


def decode_value(data: bytes) -> Any:
    value, end = decode_data(data)
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes after the value")
    return value


def date_time_from_bytes(raw: bytes, default_offset_min: int) -> datetime:
    """A 12-octet COSEM date-time; an unspecified deviation means the meter's configured time zone."""
    year, month, day, _weekday, hour, minute, second, hundredths, deviation, _status = struct.unpack(
        ">HBBBBBBBhB", raw)
    offset_min = default_offset_min if deviation == -0x8000 else -deviation
    return datetime(year, month, day, hour, minute, second, 0 if hundredths == 0xFF else hundredths * 10000,
                    tzinfo=timezone(timedelta(minutes=offset_min)))


def date_time_to_bytes(moment: datetime, offset_min: int) -> bytes:
    """12 octets in the meter's time zone; deviation in minutes from local time to UTC (IST: -330)."""
    local = moment.astimezone(timezone(timedelta(minutes=offset_min)))
    return (struct.pack(">HBBB", local.year, local.month, local.day, local.isoweekday())
            + struct.pack(">BBBB", local.hour, local.minute, local.second, local.microsecond // 10000)
            + struct.pack(">hB", -offset_min, 0))


def obis(text: str) -> cosem.Obis:
    return cosem.Obis(*(int(part) for part in text.split(".")))


def text_of(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii") if value.isascii() and value.decode("ascii").isprintable() else value.hex()
    return str(value)


class _TcpTransport(BlockingTcpTransport):
    """The library's transport, but a meter that closes the connection is an error, not an endless loop."""

    def _recv_bytes(self, amount: int) -> bytes:
        data = b""
        while len(data) < amount:
            chunk = self.tcp_socket.recv(amount - len(data))
            if not chunk:
                raise ConnectionError("connection closed by the meter")
            data += chunk
        return data

    def abort(self) -> None:
        sock, self.tcp_socket = self.tcp_socket, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class _HdlcTransport(SerialHdlcTransport):
    """The library's HDLC transport, opening the port on connect and tolerant of the UA or DM to a DISC."""

    def connect(self):
        if not self._serial.is_open:
            self._serial.open()
        self._serial.reset_input_buffer()  # a late answer to an abandoned request must not meet the UA
        return super().connect()

    def disconnect(self) -> None:
        disc = frames.DisconnectFrame(destination_address=self.server_hdlc_address,
                                      source_address=self.client_hdlc_address)
        self._serial.write(disc.to_bytes())
        reply, deadline = b"", time.monotonic() + DISCONNECT_WAIT_S
        while reply.count(frames.HDLC_FLAG) < 2 and time.monotonic() < deadline:
            reply += self._serial.read(64)
        self.hdlc_connection = hdlc_connection.HdlcConnection(self.server_hdlc_address, self.client_hdlc_address)

    def abort(self) -> None:
        try:
            self._serial.close()
        except (OSError, serial.SerialException):
            pass


class _Refused(InstrumentError):
    """The meter answered with a negative result; the association is still usable."""


@dataclass
class _Session:
    """One transport connection and its application association."""

    client: DlmsClient
    kind: str
    client_sap: int = 0
    authentication: str = "none"
    associated: bool = False
    pending: tuple[str | None, str, float] | None = None  # (sent hex, what, monotonic time) awaiting an answer
    aborted: bool = False
    scalers: dict[str, tuple[int, int]] = field(default_factory=dict)
    cache: dict[tuple, Any] = field(default_factory=dict)  # what is static for the association (capture objects)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def io(self):
        return self.client.io_interface

    def abort(self) -> None:
        self.aborted = True
        self.io.abort()


class DlmsSettings(DriverSettings):
    """Settings of a DLMS meter's data port (see DlmsMeter)."""

    client: str = "public"
    authentication: str | None = None  # default: the client's
    client_sap: Annotated[int, Field(ge=0)] | None = None  # default: the client's
    server_sap: Annotated[int, Field(ge=0)] = 1
    server_physical_address: Annotated[int, Field(ge=0)] | None = None
    baudrate: Annotated[int, Field(gt=0)] = 9600
    deadline_s: Annotated[float, Field(gt=0)] = 5.0
    max_pdu_size: Annotated[int, Field(ge=64, le=65535)] = 65535
    idle_release_s: Annotated[float, Field(gt=0)] = 100.0
    utc_offset_min: Annotated[int, Field(ge=-720, le=840)] = IST_OFFSET_MIN
    system_title: str = DEFAULT_SYSTEM_TITLE


def parse_secret_key(value: str | None, where: str) -> bytes:
    """A 128-bit key from its 32 hex digits; ConfigError naming where it comes from, never its value."""
    if not value:
        raise ConfigError(f"{where}: required for HLS-GMAC (32 hex digits in a secret file)")
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        raise ConfigError(f"{where}: not a key in hex digits") from None
    if len(key) != 16:
        raise ConfigError(f"{where}: a security suite 0 key is 16 octets (32 hex digits), got {len(key)} octets")
    return key


class DlmsMeter(Driver, MeterReadout, DisconnectControl, LoadLimiter, SignalReport, EventLog, DlmsProfiles,
                DlmsSecurityProbes):
    """A DLMS/COSEM meter on its data port (role 'meter@<position>'); it reads IS 15959 profiles and the name plate
    (drivers/dlms_profiles.py).

    Settings: `client` ('public', SAP 16, no security; 'reader', SAP 32, LLS with the secret `lls_password`; or
    'utility', SAP 48, HLS-GMAC with the secrets `encryption_key` and `authentication_key`, 32 hex digits each),
    `authentication` ('none', 'lls' or 'hls-gmac'), `client_sap` and `server_sap` (logical device, default 1) to
    override, `system_title` (the client's, 16 hex digits), `server_physical_address` (HDLC), `baudrate` (HDLC,
    default 9600),
    `deadline_s` (every call, default 5), `max_pdu_size` (client-max-receive-pdu-size proposed in the AARQ, default
    65535: a meter sends longer replies in blocks), `idle_release_s` (an association idle this long is released and
    a new one made before the next call, default 100: meters close a connection idle for about 120 s),
    `utc_offset_min` (the meter's time zone when its clock leaves the deviation unspecified, default 330: IST).
    Every APDU is one transcript exchange in hex (the LLS password and the keys replaced by '***'; ciphered APDUs
    as sent); a call that overruns its deadline raises InstrumentTimeout naming what was sent. Before each HLS-GMAC
    association the public client reads the association's invocation counter (0.0.43.1.3.255) and the client goes
    on from above it and above the last one it used. The security probes of drivers/dlms_security.py
    (MeterSecurity) need the reader's password and the utility keys.

    Access (IS 15959-2): the public client reads the identity and the clock; the reader reads registers, profiles,
    name plate, event logs and the relay and limiter state; setting the clock or the limiter and switching the
    relay need utility settings: on another client they raise ConfigError naming the association, unsent.
    """

    SETTINGS_MODEL = DlmsSettings
    ACCEPTS = RESOURCES

    def __init__(self, role: str, config: RoleConfig, *args, **kwargs):
        super().__init__(role, config, *args, **kwargs)
        settings = self.settings
        self.client_name = settings.client
        if self.client_name not in CLIENT_SAPS:
            raise ConfigError(f"roles.{self.role}.settings.client: {self.client_name!r} is not one of "
                              f"{', '.join(CLIENT_SAPS)}")
        self.authentication = (settings.authentication or DEFAULT_AUTHENTICATION[self.client_name]).lower()
        if self.authentication not in AUTHENTICATIONS:
            raise ConfigError(f"roles.{self.role}.settings.authentication: {self.authentication!r} is not one of "
                              f"none, lls, hls-gmac")
        self.password: bytes | None = None
        if self.authentication == "lls":
            password = self.secrets.get("lls_password")
            if not password:
                raise ConfigError(f"roles.{self.role}.secrets.lls_password: required for LLS authentication "
                                  f"(client {self.client_name})")
            self.password = password.encode()
        self.keys: tuple[bytes, bytes] | None = None
        if self.authentication == "hls-gmac" or all(self.secrets.get(name) for name in KEY_SECRETS):
            self.keys = tuple(parse_secret_key(self.secrets.get(name), f"roles.{self.role}.secrets.{name}")
                              for name in KEY_SECRETS)
            for key in self.keys:
                self.transcript.add_secret(key.hex())
                self.transcript.add_secret(key.hex().upper())
        try:
            self.system_title = bytes.fromhex(settings.system_title)
        except ValueError:
            self.system_title = b""
        if len(self.system_title) != 8:
            raise ConfigError(f"roles.{self.role}.settings.system_title: {settings.system_title!r} is not 8 octets "
                              f"in hex")
        self.invocation_counter = 0  # the last one this client used on its ciphered association
        self.client_sap = settings.client_sap if settings.client_sap is not None else CLIENT_SAPS[self.client_name]
        self.server_sap = settings.server_sap
        self.physical_address = settings.server_physical_address
        self.baudrate = settings.baudrate
        self.deadline_s = settings.deadline_s
        self.max_pdu_size = settings.max_pdu_size
        self.idle_release_s = settings.idle_release_s
        self.utc_offset_min = settings.utc_offset_min
        self.kind, self.host, self.port = parse_resource(self.address, self.role)
        self._session: _Session | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def open(self) -> None:
        self._call("open", lambda session: None)
        self.transcript.record(self.role, None, None, note=f"opened {self.address} client {self.client_sap} "
                                                           f"({self.client_name}, {self.authentication})")

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            self._release(session)

    def _release(self, session: _Session) -> None:
        """Release the association (RLRQ) and close its connection, within a short deadline, quietly."""
        def release() -> None:
            if session.associated:
                self._exchange(session, session.client.dlms_connection.get_rlrq(), "RLRQ")
            session.io.disconnect()

        worker = threading.Thread(target=lambda: _quietly(release), daemon=True, name=f"dlms close {self.role}")
        worker.start()
        worker.join(min(self.deadline_s, 2.0))
        session.abort()

    def make_safe(self) -> list[str]:
        return ["meter: nothing to switch on the meter's side (its relay is left as it is)"]

    # -- the deadline -----------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.role} ({self.address})"

    def _call(self, name: str, body: Callable[[_Session], T]) -> T:
        """Run body on the association (opening it first if needed) in a worker, under the deadline."""
        with self._lock:
            session = self._session
            if session is not None and time.monotonic() - session.last_used > self.idle_release_s:
                self.transcript.record(self.role, None, None, note=f"association idle for "
                                       f"{time.monotonic() - session.last_used:.0f} s: released, a new one made")
                self._session = None
                self._release(session)
                session = None
            if session is None:
                session = self._session = self._new_session()
            session.last_used = time.monotonic()
            outcome: list[tuple[bool, Any]] = []

            def work() -> None:
                try:
                    if not session.associated:
                        self._associate(session)
                    outcome.append((True, body(session)))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    outcome.append((False, exc))

            worker = threading.Thread(target=work, daemon=True, name=f"dlms {self.role}")
            worker.start()
            worker.join(self.deadline_s)
            if not outcome:
                self._drop(session)
                sent, what, t_sent = session.pending or (None, "connect", time.monotonic())
                self.transcript.record(self.role, sent, None, t_mono=t_sent,
                                       note=f"no answer within {self.deadline_s:g} s")
                raise InstrumentTimeout(f"{self._where()}: no answer within {self.deadline_s:g} s to {what} "
                                        f"({name})")
            ok, value = outcome[0]
            session.last_used = time.monotonic()
            if ok:
                return value
            if isinstance(value, InstrumentError) and not isinstance(value, _Refused):
                self._drop(session)
            raise value

    def _drop(self, session: _Session) -> None:
        if self._session is session:
            self._session = None
        session.abort()

    def _new_session(self, client_sap: int | None = None, authentication: str | None = None,
                     password: bytes | None = None, keys: tuple[bytes, bytes] | None = None) -> _Session:
        """A connection (not yet opened) for this driver's client, or for another client of the same meter."""
        client_sap = self.client_sap if client_sap is None else client_sap
        authentication = authentication or self.authentication
        if authentication == self.authentication and password is None:
            password = self.password
        if authentication == "hls-gmac" and keys is None:
            keys = self.keys
        if self.kind == "tcp":
            io = _TcpTransport(host=self.host, port=self.port, client_logical_address=client_sap,
                               server_logical_address=self.server_sap, timeout=self.deadline_s + 1.0)
        else:
            port = serial.Serial()
            port.port, port.baudrate, port.timeout = self.host, self.baudrate, SERIAL_POLL_S
            io = _HdlcTransport(client_logical_address=client_sap, server_logical_address=self.server_sap,
                                serial_port=self.host, serial_baud_rate=self.baudrate,
                                server_physical_address=self.physical_address, serial=port)
        ciphered = authentication == "hls-gmac"
        client = DlmsClient(client_logical_address=client_sap, server_logical_address=self.server_sap,
                            io_interface=io, authentication_method=AUTHENTICATIONS[authentication],
                            password=password if authentication == "lls" else None,
                            encryption_key=keys[0] if ciphered else None,
                            authentication_key=keys[1] if ciphered else None,
                            client_system_title=self.system_title if ciphered else None,
                            max_pdu_size=self.max_pdu_size)
        return _Session(client, self.kind, client_sap=client_sap, authentication=authentication)

    # -- exchanges --------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self.password.hex(), "***") if self.password else text

    def _associate(self, session: _Session) -> None:
        if session.authentication == "hls-gmac":
            self._continue_invocation_counter(session)
        self._open_link(session)
        connection = session.client.dlms_connection
        aarq = connection.get_aarq()
        if session.authentication != "hls-gmac":
            aarq.system_title = None  # no ciphering and no HLS: the calling AP title stays out
        what = f"AARQ (client {session.client_sap}, {session.authentication})"
        aare = self._exchange(session, aarq, what)
        if not isinstance(aare, acse.ApplicationAssociationResponse):
            raise InstrumentError(f"{self._where()}: sent an AARQ, got {type(aare).__name__} instead of an AARE")
        if aare.result is not enumerations.AssociationResult.ACCEPTED:
            raise self._association_refused(aare, session)
        if connection.state.current_state is state.SHOULD_SEND_HLS_SEVER_CHALLENGE_RESULT:
            self._authenticate(session)
        session.associated = True

    def _continue_invocation_counter(self, session: _Session) -> None:
        """Before a ciphered association: the public client reads the association's invocation counter; this
        client goes on above it and above the last one it used."""
        name = INVOCATION_COUNTERS.get(session.client_sap)
        if name is None:
            return
        public = self._new_session(PUBLIC_SAP, "none")
        try:
            self._associate(public)
            value = self._get_value(public, name, DATA, 2)
        finally:
            _quietly(lambda: self._exchange(public, public.client.dlms_connection.get_rlrq(), "RLRQ"))
            _quietly(public.io.disconnect)
            public.abort()
        if isinstance(value, bool) or not isinstance(value, int):
            raise InstrumentError(f"{self._where()}: invocation counter {name} is {value!r}, not an integer")
        session.client.dlms_connection.client_invocation_counter = max(value, self.invocation_counter) + 1

    def _authenticate(self, session: _Session) -> None:
        """HLS-GMAC passes 3 and 4: reply_to_HLS_authentication with f(StoC); the meter's f(CtoS) checked."""
        connection = session.client.dlms_connection
        method = cosem.CosemMethod(enumerations.CosemInterface.ASSOCIATION_LN, obis("0.0.40.0.0.255"), 1)
        reply = xdlms.ActionRequestNormal(method, dlms_data.OctetStringData(connection.get_hls_reply()).to_bytes())
        answer = self._exchange(session, reply, "reply_to_HLS_authentication")
        self.invocation_counter = connection.client_invocation_counter - 1
        if connection.state.current_state is not state.READY:
            refusal = (f"the meter refused the client's reply ({_describe_action(answer)})"
                       if not isinstance(answer, xdlms.ActionResponseNormalWithData) or
                       answer.status != enumerations.ActionResultStatus.SUCCESS
                       else "the meter's answer to the client's challenge does not verify")
            raise InstrumentError(f"{self._where()}: HLS-GMAC authentication of client {session.client_sap} "
                                  f"failed: {refusal}")

    def _association_refused(self, aare, session: _Session) -> InstrumentError:
        diagnostic = int(aare.result_source_diagnostics)
        refusal = (f"association {RESULTS.get(int(aare.result), aare.result)}, "
                   f"{ACSE_DIAGNOSTICS.get(diagnostic, diagnostic)}")
        content = aare.user_information.content if aare.user_information else None
        if isinstance(content, xdlms.ConfirmedServiceError):
            refusal += f", xDLMS {content.error.name.lower().replace('_', '-')}"
        if isinstance(aare.result_source_diagnostics, enumerations.AcseServiceUserDiagnostics) and \
                diagnostic == enumerations.AcseServiceUserDiagnostics.AUTHENTICATION_FAILED:
            return InstrumentError(f"{self._where()}: authentication failed: the meter refused the LLS password "
                                   f"of client {session.client_sap} ({refusal})")
        return InstrumentError(f"{self._where()}: the meter refused the association of client "
                               f"{session.client_sap} ({refusal})")

    def _open_link(self, session: _Session) -> None:
        io = session.io
        t_sent = time.monotonic()
        if session.kind == "hdlc":
            snrm = frames.SetNormalResponseModeFrame(destination_address=io.server_hdlc_address,
                                                     source_address=io.client_hdlc_address).to_bytes().hex()
            session.pending = (snrm, "HDLC SNRM", t_sent)
            try:
                ua = io.connect()
            except Exception as exc:  # noqa: BLE001 - pyserial and the library raise many kinds
                self.transcript.record(self.role, snrm, None, t_mono=t_sent, note=str(exc))
                raise InstrumentError(f"{self._where()}: cannot open the HDLC link: {exc}") from None
            self.transcript.record(self.role, snrm, ua.to_bytes().hex(), t_mono=t_sent)
        else:
            session.pending = (None, f"TCP connect to {self.host}:{self.port}", t_sent)
            try:
                io.connect()
            except CommunicationError as exc:
                reason = exc.__cause__ or exc
                self.transcript.record(self.role, None, None, t_mono=t_sent, note=f"cannot connect: {reason}")
                raise InstrumentError(f"{self._where()}: cannot connect: {reason}") from None

    def _exchange(self, session: _Session, apdu, what: str):
        """Send one APDU and return the meter's parsed answer; transcript it in hex."""
        if session.aborted:
            raise InstrumentError(f"{self._where()}: connection abandoned before {what}")
        connection = session.client.dlms_connection
        try:
            data = connection.send(apdu)
        except Exception as exc:  # noqa: BLE001 - the library's state machine refuses out of sequence
            raise InstrumentError(f"{self._where()}: cannot send {what}: {exc}") from None
        if session.authentication == "hls-gmac":
            self.invocation_counter = max(self.invocation_counter, connection.client_invocation_counter - 1)
        sent = self._redact(data.hex())
        t_sent = time.monotonic()
        session.pending = (sent, what, t_sent)
        try:
            answer = bytes(session.io.send(data))
        except Exception as exc:  # noqa: BLE001 - socket, serial and library errors alike
            reason = exc.__cause__ or exc
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note=str(reason))
            if session.aborted:
                raise InstrumentError(f"{self._where()}: connection abandoned during {what}") from None
            if isinstance(reason, socket.timeout):
                raise InstrumentTimeout(f"{self._where()}: no answer to {what}") from None
            raise InstrumentError(f"{self._where()}: exchange {what} failed: {reason}") from None
        session.pending = None
        self.transcript.record(self.role, sent, answer.hex(), t_mono=t_sent)
        try:
            session.client.dlms_connection.receive_data(answer)
            return session.client.dlms_connection.next_event()
        except Exception as exc:  # noqa: BLE001 - the library's parsers raise many kinds
            raise InstrumentError(f"{self._where()}: bad answer to {what}: {answer.hex()} ({exc})") from None

    @staticmethod
    def _attribute(logical_name: str, class_id: int, index: int) -> cosem.CosemAttribute:
        return cosem.CosemAttribute(enumerations.CosemInterface(class_id), obis(logical_name), index)

    def _get(self, session: _Session, logical_name: str, class_id: int, index: int, access=None) -> bytes:
        """The A-XDR data of one attribute (`access`: a selective access descriptor), reassembled from the blocks of
        a GET-Response-with-datablock: each block acknowledged with GET-Request-next carrying its number, the
        numbers counting from 1 (DLMS UA 1000-2, GET service with block transfer). dlms-cosem's DlmsClient.get
        loops the same way, but here every APDU is one transcript exchange under the deadline, and the block
        numbers, which the library does not check, are held to their sequence."""
        what = f"GET {logical_name} class {class_id} attribute {index}" + (f" {_access_text(access)}" if access else "")
        answer = self._exchange(session, xdlms.GetRequestNormal(self._attribute(logical_name, class_id, index),
                                                                access_selection=access), what)
        data, expected = bytearray(), 1
        while isinstance(answer, xdlms.GetResponseWithBlock | xdlms.GetResponseLastBlock |
                         xdlms.GetResponseLastBlockWithError):
            if answer.block_number != expected:
                raise InstrumentError(f"{self._where()}: {what}: block {answer.block_number} came where block "
                                      f"{expected} was due")
            if not isinstance(answer, xdlms.GetResponseWithBlock):
                break
            data += answer.data
            answer = self._exchange(session, xdlms.GetRequestNext(
                block_number=answer.block_number, invoke_id_and_priority=answer.invoke_id_and_priority), what)
            expected += 1
        if isinstance(answer, xdlms.GetResponseNormal | xdlms.GetResponseLastBlock):
            return bytes(data + answer.data)
        if isinstance(answer, xdlms.GetResponseNormalWithError | xdlms.GetResponseLastBlockWithError):
            raise _Refused(f"{self._where()}: refused {what}: {DATA_ACCESS_RESULTS.get(int(answer.error))}")
        raise self._unexpected(answer, what)

    def _get_value(self, session: _Session, logical_name: str, class_id: int, index: int, access=None) -> Any:
        data = self._get(session, logical_name, class_id, index, access)
        try:
            return decode_value(data)
        except (ValueError, IndexError, struct.error) as exc:
            raise InstrumentError(f"{self._where()}: GET {logical_name} attribute {index}: cannot decode "
                                  f"{data.hex()}: {exc}") from None

    def _get_optional(self, session: _Session, logical_name: str, class_id: int, index: int) -> Any:
        """The attribute's value, or None where the meter refuses it (an object it does not have)."""
        try:
            return self._get_value(session, logical_name, class_id, index)
        except _Refused:
            return None

    @staticmethod
    def _selective_access(session: _Session) -> bool:
        """Selective access was negotiated for this association (conformance bit 21)."""
        return bool(session.client.dlms_connection.conformance.selective_access)

    def _date_time(self, raw: Any) -> datetime:
        if not isinstance(raw, bytes) or len(raw) != 12:
            raise ValueError("not a 12-octet date-time")
        return date_time_from_bytes(raw, self.utc_offset_min)

    def _set(self, session: _Session, logical_name: str, class_id: int, index: int, data: bytes) -> None:
        what = f"SET {logical_name} class {class_id} attribute {index}"
        answer = self._exchange(session, xdlms.SetRequestNormal(self._attribute(logical_name, class_id, index),
                                                                data), what)
        if not isinstance(answer, xdlms.SetResponseNormal):
            raise self._unexpected(answer, what)
        if answer.result != enumerations.DataAccessResult.SUCCESS:
            raise _Refused(f"{self._where()}: refused {what}: {DATA_ACCESS_RESULTS.get(int(answer.result))}")

    def _action(self, session: _Session, logical_name: str, class_id: int, index: int, label: str) -> None:
        what = f"ACTION {logical_name} class {class_id} method {index} ({label})"
        method = cosem.CosemMethod(enumerations.CosemInterface(class_id), obis(logical_name), index)
        answer = self._exchange(session, xdlms.ActionRequestNormal(method, dlms_data.IntegerData(0).to_bytes()),
                                what)
        if isinstance(answer, xdlms.ActionResponseNormalWithError):
            raise _Refused(f"{self._where()}: refused {what}: {DATA_ACCESS_RESULTS.get(int(answer.error))}")
        if not isinstance(answer, xdlms.ActionResponseNormal | xdlms.ActionResponseNormalWithData):
            raise self._unexpected(answer, what)
        if answer.status != enumerations.ActionResultStatus.SUCCESS:
            raise _Refused(f"{self._where()}: refused {what}: {DATA_ACCESS_RESULTS.get(int(answer.status))}")

    def _unexpected(self, answer, what: str) -> InstrumentError:
        if isinstance(answer, xdlms.ExceptionResponse):
            return InstrumentError(f"{self._where()}: {what}: exception-response {answer.state_error.name.lower()}"
                                   f"/{answer.service_error.name.lower()}")
        return InstrumentError(f"{self._where()}: {what}: unexpected answer {type(answer).__name__}")

    def _scaler_unit(self, session: _Session, logical_name: str, class_id: int = REGISTER) -> tuple[int, int]:
        if logical_name not in session.scalers:
            value = self._get_value(session, logical_name, class_id, 3)
            if not is_scaler_unit(value):
                raise InstrumentError(f"{self._where()}: {logical_name} scaler_unit is {value!r}, not "
                                      f"{{scaler -128..127, unit 0..255}}")
            session.scalers[logical_name] = (value[0], value[1])
        return session.scalers[logical_name]

    def _register(self, session: _Session, logical_name: str, units: tuple[int, ...]) -> float:
        """A register's value in its unit, scaled."""
        scaler, unit = self._scaler_unit(session, logical_name)
        if unit not in units:
            raise InstrumentError(f"{self._where()}: {logical_name} is in unit {unit}, expected "
                                  f"{' or '.join(map(str, units))}")
        value = self._get_value(session, logical_name, REGISTER, 2)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InstrumentError(f"{self._where()}: {logical_name} value is {value!r}, not a number")
        return value * 10.0 ** scaler

    # -- what tests ask -----------------------------------------------------------------------------------------

    def identify(self) -> Identity:
        def body(session: _Session) -> Identity:
            texts = {}
            for part, logical_name in (("ldn", LOGICAL_DEVICE_NAME), ("manufacturer", MANUFACTURER_NAME),
                                       ("serial", METER_SERIAL), ("firmware", FIRMWARE_VERSION)):
                try:
                    texts[part] = text_of(self._get_value(session, logical_name, DATA, 2))
                except _Refused:
                    texts[part] = "-"
            manufacturer = texts["manufacturer"] if texts["manufacturer"] != "-" else texts["ldn"][:3] or "-"
            raw = " ".join(f"{part}={value!r}" for part, value in texts.items())
            return Identity(manufacturer, texts["ldn"], texts["serial"], texts["firmware"], raw=raw)
        return self._call("identify", body)

    def read_clock(self) -> datetime:
        def body(session: _Session) -> datetime:
            value = self._get_value(session, CLOCK, CLOCK_CLASS, 2)
            if not isinstance(value, bytes) or len(value) != 12:
                raise InstrumentError(f"{self._where()}: clock time is {value!r}, not a 12-octet date-time")
            try:
                return date_time_from_bytes(value, self.utc_offset_min)
            except ValueError as exc:
                raise InstrumentError(f"{self._where()}: clock time {value.hex()} is not a date-time: {exc}") from None
        return self._call("read_clock", body)

    def _require_utility(self, what: str) -> None:
        """Settings and commands are for utility settings only (IS 15959-2): a ConfigError naming this client's
        association before anything is sent."""
        if self.client_sap == UTILITY_SAP and self.authentication == "hls-gmac":
            return
        association = ASSOCIATION_NAMES.get(self.client_sap, f"the association of client {self.client_sap}")
        raise ConfigError(f"{self._where()}: {association} (SAP {self.client_sap}, {self.authentication}) may not "
                          f"{what}: configure roles.{self.role}.settings client: utility with its keys "
                          f"(secrets encryption_key and authentication_key)")

    def set_clock(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("set_clock needs a timezone-aware datetime")
        self._require_utility("set the clock")
        data = dlms_data.OctetStringData(date_time_to_bytes(moment, self.utc_offset_min)).to_bytes()
        self._call("set_clock", lambda session: self._set(session, CLOCK, CLOCK_CLASS, 2, data))

    def read_energy_import_kwh(self) -> float:
        return self._call("read_energy_import_kwh",
                          lambda session: self._register(session, ENERGY_IMPORT, (UNIT_WH,)) / 1000.0)

    def read_instantaneous(self) -> dict[str, float]:
        def body(session: _Session) -> dict[str, float]:
            return {"voltage_v": self._register(session, VOLTAGE, (UNIT_V,)),
                    "current_a": self._register(session, CURRENT, (UNIT_A,)),
                    "power_w": self._register(session, ACTIVE_POWER, (UNIT_W,)),
                    "power_factor": self._register(session, POWER_FACTOR, (NO_UNIT,))}
        return self._call("read_instantaneous", body)

    def read_signal_dbm(self) -> float:
        return self._call("read_signal_dbm", lambda session: self._register(session, SIGNAL_STRENGTH, (UNIT_DBM,)))

    def relay_state(self) -> RelayState:
        def body(session: _Session) -> RelayState:
            values = [self._get_value(session, DISCONNECT_CONTROL, DISCONNECT_CLASS, index) for index in (2, 3, 4)]
            if not isinstance(values[0], bool) or not all(isinstance(v, int) for v in values[1:]) \
                    or values[1] not in set(ControlState):
                raise InstrumentError(f"{self._where()}: disconnect control attributes 2..4 are {values!r}")
            return RelayState(values[0], ControlState(values[1]), values[2])
        return self._call("relay_state", body)

    def remote_disconnect(self) -> None:
        self._require_utility("operate the disconnect control")
        self._call("remote_disconnect",
                   lambda session: self._action(session, DISCONNECT_CONTROL, DISCONNECT_CLASS, 1, "remote_disconnect"))

    def remote_reconnect(self) -> None:
        self._require_utility("operate the disconnect control")
        self._call("remote_reconnect",
                   lambda session: self._action(session, DISCONNECT_CONTROL, DISCONNECT_CLASS, 2, "remote_reconnect"))

    def _limiter_scaler(self, session: _Session) -> int:
        """Scaler of the limiter's monitored value: its thresholds share the value's type and scaling."""
        monitored = self._get_value(session, LIMITER, LIMITER_CLASS, 2)
        try:
            class_id, logical_name, index = monitored
            logical_name = ".".join(str(octet) for octet in logical_name)
        except (TypeError, ValueError):
            raise InstrumentError(f"{self._where()}: limiter monitored_value is {monitored!r}") from None
        if class_id not in (REGISTER, EXTENDED_REGISTER) or index != 2:
            return 0
        scaler, unit = self._scaler_unit(session, logical_name, class_id)
        if unit != UNIT_W:
            raise InstrumentError(f"{self._where()}: the limiter monitors {logical_name} in unit {unit}, not W")
        return scaler

    def read_limiter(self) -> LimiterSettings:
        def body(session: _Session) -> LimiterSettings:
            scale = 10.0 ** self._limiter_scaler(session)
            values = {name: self._get_value(session, LIMITER, LIMITER_CLASS, index)
                      for name, index in (("threshold_active_w", 3), ("threshold_normal_w", 4),
                                          ("min_over_threshold_duration_s", 6), ("min_under_threshold_duration_s", 7))}
            for name, value in values.items():
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise InstrumentError(f"{self._where()}: limiter {name} is {value!r}, not a number")
            return LimiterSettings(**{name: value * scale if name.endswith("_w") else float(value)
                                      for name, value in values.items()})
        return self._call("read_limiter", body)

    def set_limiter(self, threshold_w: float, duration_s: float) -> None:
        """threshold_normal (attribute 4, the active threshold while no emergency profile runs) and
        min_over_threshold_duration (attribute 6)."""
        self.check_setpoint("power", threshold_w, "W")
        self._require_utility("set the load limiter")
        if not 0 <= duration_s < 2**32 or duration_s != duration_s:
            raise SetpointRefused(f"{self._where()}: limiter duration {duration_s} s refused: outside 0..2^32 s")

        def body(session: _Session) -> None:
            raw = round(threshold_w / 10.0 ** self._limiter_scaler(session))
            tag = self._get(session, LIMITER, LIMITER_CLASS, 4)[0]
            if tag not in INTEGER_FORMATS:
                raise InstrumentError(f"{self._where()}: limiter threshold_normal has data type {tag}, not an "
                                      f"integer")
            try:
                data = bytes([tag]) + struct.pack(INTEGER_FORMATS[tag], raw)
            except struct.error:
                raise SetpointRefused(f"{self._where()}: limiter threshold {threshold_w:g} W refused: does not fit "
                                      f"the meter's data type {tag}") from None
            self._set(session, LIMITER, LIMITER_CLASS, 4, data)
            self._set(session, LIMITER, LIMITER_CLASS, 6,
                      dlms_data.DoubleLongUnsignedData(math.floor(duration_s)).to_bytes())
        self._call("set_limiter", body)


    def read(self, logical_name: str, attribute: int, class_id: int | None = None) -> Any:
        """Attribute `attribute` of the COSEM object `logical_name` ('0.0.96.1.0.255'), decoded from A-XDR (ints,
        floats, bools, str, bytes for octet strings and date-times, lists for arrays and structures). The class
        comes from OBJECTS unless given."""
        if class_id is None:
            if logical_name not in OBJECTS:
                raise ConfigError(f"{self._where()}: {logical_name} is not in the driver's object map: give its "
                                  f"class_id")
            class_id = OBJECTS[logical_name][1]
        return self._call(f"read {logical_name} attribute {attribute}",
                          lambda session: self._get_value(session, logical_name, class_id, attribute))

    # -- event log ------------------------------------------------------------------------------------------

    def events_since(self, instant: datetime) -> list[MeterEvent]:
        """The non-rollover event log's entries stamped at or after `instant`, read as a profile from `instant` on;
        its capture objects say which columns hold the clock's time and the event code."""
        def body(session: _Session) -> list[MeterEvent]:
            log = self._read_profile(session, NON_ROLLOVER_EVENT_LOG, DateRange(instant, None))
            code_at = self._event_code_column(log.columns)
            events = []
            for row in log.rows:
                if row.at is None or not isinstance(row.values[code_at], int):
                    raise InstrumentError(f"{self._where()}: event log entry {row.values!r} is not (time, code) as "
                                          f"its capture objects say")
                events.append(MeterEvent(row.values[code_at], row.at))
            return [event for event in events if event.at >= instant]
        return self._call("events_since", body)

    def _event_code_column(self, columns) -> int:
        """Column of the event code (an IS 15959 event code object 0.0.96.11.x.255, attribute 2)."""
        names = [(column.class_id, column.logical_name, column.attribute) for column in columns]
        try:
            names.index((CLOCK_CLASS, CLOCK, 2))
            return next(index for index, (class_id, name, attribute) in enumerate(names)
                        if class_id == DATA and name.startswith("0.0.96.11.") and attribute == 2)
        except (ValueError, StopIteration):
            raise InstrumentError(f"{self._where()}: event log {NON_ROLLOVER_EVENT_LOG} captures {names!r}, not "
                                  f"the clock and an event code") from None

    def wait_for_event(self, code: int, since: datetime, timeout_s: float) -> MeterEvent | None:
        deadline = time.monotonic() + timeout_s
        while True:
            found = next((event for event in self.events_since(since) if event.code == code), None)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(min(EVENT_POLL_S, max(0.0, deadline - time.monotonic())))


def _access_text(access) -> str:
    if isinstance(access, RangeDescriptor):
        return f"from {access.from_value.isoformat()} to {access.to_value.isoformat()}"
    return f"entries {access.from_entry} to {access.to_entry or 'the last'}"


def _describe_action(answer) -> str:
    status = getattr(answer, "status", None) or getattr(answer, "error", None)
    return f"{type(answer).__name__} {getattr(status, 'name', status)}".lower()


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 - closing: nothing left to report to
        pass
