"""IS 15959 push notifications of a fleet meter: the DataNotification APDU, its ciphering and its wrapper frame, for
the meter that sends it (rig/fleet/shard.py) and the head end that receives it.

A meter dials the head end's push endpoint (TCP), sends one wrapper frame per notification and closes the
connection. Layout of one frame, every integer big-endian:

    wrapper header (IEC 62056-47)  00 01 | 00 01 (source wPort: the meter's management logical device, 1)
                                   | 00 66 (destination wPort 102: the head end's push client, the twin's choice)
                                   | <2-octet APDU length>
    general-glo-ciphering          DB | 08 <meter system title, 8 octets> | <A-XDR length of the rest>
                                   | 30 (security control: suite 0, authenticated and encrypted)
                                   | <4-octet invocation counter> | <ciphertext> | <12-octet GCM tag>

The ciphertext is AES-128-GCM (rig/sim/dlms/security.py) under the meter's global unicast encryption key, nonce
= system title || invocation counter, additional authenticated data = 0x30 || authentication key; the keys are the
meter's push keys (rig/fleet/model.py derives them from the fleet secret). The system title is "RIG" and the
serial's digits as 5 octets (rig/fleet/model.py system_title_of), so a head end finds the meter, and its keys,
from the title alone. The invocation counter of a meter's pushes starts at the seconds since 2024-01-01 UTC when
its shard started and rises by one per push, so it keeps rising across shard restarts.

The deciphered plaintext is the DataNotification APDU (Green Book, IEC 62056-5-3):

    0F                                  data-notification
    <4 octets>                          long-invoke-id-and-priority: bit 31 priority high (set), bit 30 confirmed
                                        (clear: unconfirmed), bits 0-23 the meter's push sequence number (mod 2**24)
    0C <12 octets>                      date-time of sending (COSEM date-time, meter's local time with deviation)
    02 05                               notification-body: structure of 5 elements
      0A <len> <serial ASCII>             visible-string: device ID, 0.0.96.1.0.255 attribute 2 ("F00100042")
      09 0C <12 octets>                   octet-string: date-time of the event (clock 0.0.1.0.0.255 attribute 2)
      12 <2 octets>                       long-unsigned: IS 15959 event code (EVENT_NAMES: 101 power failure,
                                          102 power restored, 301 load switch disconnected, 302 connected)
      16 <1 octet>                        enum: disconnect control state, 0.0.96.3.10.255 attribute 3
                                          (0 disconnected, 1 connected, 2 ready_for_reconnection)
      06 <4 octets>                       double-long-unsigned: active energy import, 1.0.1.8.0.255 attribute 2 (Wh)

dlms-cosem 21.3.2's DataNotification.from_bytes parses the plaintext too (it reads the date-time's length octet
as its presence flag). Unciphered pushes (`keys` None in encode_frame) carry the DataNotification APDU straight in
the wrapper.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass

from rig.sim.dlms.codec import (
    DOUBLE_LONG_UNSIGNED,
    ENUM,
    LONG_UNSIGNED,
    OCTET_STRING,
    STRUCTURE,
    VISIBLE_STRING,
    DataError,
    decode_date_time,
    decode_one,
    encode_date_time,
    encode_int,
    encode_octets,
    encode_structure,
    encode_visible,
)
from rig.sim.dlms.is15959 import (
    LOAD_SWITCH_CONNECTED,
    LOAD_SWITCH_DISCONNECTED,
    POWER_FAIL_OCCURRENCE,
    POWER_FAIL_RESTORATION,
)
from rig.sim.dlms.security import (
    AUTHENTICATED_AND_ENCRYPTED,
    GENERAL_GLO_CIPHERING,
    SecurityRefused,
    build_ciphered,
    decrypt,
    encrypt,
    parse_ciphered,
)

DATA_NOTIFICATION = 0x0F
PUSH_SOURCE_WPORT = 1
PUSH_DESTINATION_WPORT = 102
PRIORITY_HIGH = 0x8000_0000
INVOKE_ID_MASK = 0x00FF_FFFF
DATE_TIME_LENGTH = 12
IST_OFFSET_MIN = 330
COUNTER_EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z: push invocation counters start at the seconds since
EVENT_NAMES = {POWER_FAIL_OCCURRENCE: "power_down", POWER_FAIL_RESTORATION: "power_up",
               LOAD_SWITCH_DISCONNECTED: "relay_disconnected", LOAD_SWITCH_CONNECTED: "relay_connected"}
EVENT_CODES = {name: code for code, name in EVENT_NAMES.items()}
MAX_FRAME = 4096


class PushError(ValueError):
    """A push frame or notification that cannot be taken apart (its message never holds a key)."""


@dataclass(frozen=True)
class Notification:
    """One push: the meter's serial, the event (IS 15959 code), when it happened and was sent (UTC seconds), the
    disconnect control state and energy register at that moment, and the push's sequence number."""

    serial: str
    event_code: int
    event_time_s: float
    control_state: int
    energy_wh: int
    sequence: int
    sent_time_s: float

    @property
    def event(self) -> str:
        return EVENT_NAMES.get(self.event_code, f"event-{self.event_code}")


def encode_notification(notification: Notification, utc_offset_min: int = IST_OFFSET_MIN) -> bytes:
    """The DataNotification APDU (plaintext) of a notification."""
    body = encode_structure(
        encode_visible(notification.serial),
        encode_octets(encode_date_time(notification.event_time_s, utc_offset_min)),
        encode_int(LONG_UNSIGNED, notification.event_code),
        encode_int(ENUM, notification.control_state),
        encode_int(DOUBLE_LONG_UNSIGNED, max(0, min(notification.energy_wh, 2**32 - 1))))
    invoke = PRIORITY_HIGH | (notification.sequence & INVOKE_ID_MASK)
    return (bytes([DATA_NOTIFICATION]) + invoke.to_bytes(4, "big") + bytes([DATE_TIME_LENGTH])
            + encode_date_time(notification.sent_time_s, utc_offset_min) + body)


def decode_notification(apdu: bytes, utc_offset_min: int = IST_OFFSET_MIN) -> Notification:
    """A DataNotification APDU (plaintext) back to its notification; PushError saying what is wrong."""
    if len(apdu) < 6 or apdu[0] != DATA_NOTIFICATION:
        raise PushError(f"not a DataNotification APDU (tag {apdu[:1].hex() or 'none'})")
    sequence = int.from_bytes(apdu[1:5], "big") & INVOKE_ID_MASK
    pos = 5
    try:
        if apdu[pos] != DATE_TIME_LENGTH:
            raise PushError("DataNotification without its 12-octet date-time")
        sent_time_s = decode_date_time(apdu[pos + 1:pos + 1 + DATE_TIME_LENGTH], utc_offset_min)
        tag, items = decode_one(apdu[pos + 1 + DATE_TIME_LENGTH:])
    except (DataError, IndexError) as exc:
        raise PushError(f"DataNotification undecodable: {exc}") from None
    expected = (VISIBLE_STRING, OCTET_STRING, LONG_UNSIGNED, ENUM, DOUBLE_LONG_UNSIGNED)
    if tag != STRUCTURE or tuple(item[0] for item in items) != expected:
        raise PushError("notification body is not the structure {visible-string, octet-string, long-unsigned, "
                        "enum, double-long-unsigned}")
    serial, event_time, event_code, control_state, energy_wh = (item[1] for item in items)
    try:
        event_time_s = decode_date_time(event_time, utc_offset_min)
    except DataError as exc:
        raise PushError(f"event date-time undecodable: {exc}") from None
    return Notification(serial.decode("ascii", "replace"), event_code, event_time_s, control_state, energy_wh,
                        sequence, sent_time_s)


def cipher_apdu(apdu: bytes, system_title: bytes, keys: tuple[bytes, bytes], invocation_counter: int) -> bytes:
    """general-glo-ciphering of a plaintext APDU under (encryption key, authentication key)."""
    sealed = encrypt(keys[0], keys[1], system_title, invocation_counter, apdu)
    return build_ciphered(GENERAL_GLO_CIPHERING, AUTHENTICATED_AND_ENCRYPTED, invocation_counter, sealed,
                          system_title)


@dataclass(frozen=True)
class Received:
    """A push frame taken apart: the sender's system title (None unciphered), invocation counter, notification."""

    system_title: bytes | None
    invocation_counter: int | None
    notification: Notification


def decipher_apdu(apdu: bytes, keys_of: Callable[[bytes], tuple[bytes, bytes] | None]) -> Received:
    """The notification in a general-glo-ciphering (or plain DataNotification) APDU; `keys_of(system_title)` gives
    the sender's (encryption key, authentication key) or None for an unknown meter. PushError when it does not
    decipher (unknown title, wrong key or tampered: the message says which, never a key)."""
    if apdu[:1] == bytes([DATA_NOTIFICATION]):
        return Received(None, None, decode_notification(apdu))
    try:
        frame = parse_ciphered(apdu)
    except DataError as exc:
        raise PushError(f"push APDU: {exc}") from None
    if frame.form != GENERAL_GLO_CIPHERING or frame.system_title is None:
        raise PushError(f"push APDU form {frame.form:#04x} is not general-glo-ciphering")
    if frame.security_control != AUTHENTICATED_AND_ENCRYPTED:
        raise PushError(f"push security control {frame.security_control:#04x} is not 0x30")
    keys = keys_of(frame.system_title)
    if keys is None:
        raise PushError(f"push from unknown system title {frame.system_title.hex()}")
    try:
        plain = decrypt(keys[0], keys[1], frame.system_title, frame.invocation_counter, frame.payload)
    except SecurityRefused as exc:
        raise PushError(f"push from {frame.system_title.hex()}: {exc.reason}") from None
    return Received(frame.system_title, frame.invocation_counter, decode_notification(plain))


def wrap_push(apdu: bytes) -> bytes:
    """The wrapper frame of a push APDU (meter wPort 1 to the head end's push wPort 102)."""
    return struct.pack(">HHHH", 1, PUSH_SOURCE_WPORT, PUSH_DESTINATION_WPORT, len(apdu)) + apdu


def encode_frame(notification: Notification, system_title: bytes, keys: tuple[bytes, bytes] | None,
                 invocation_counter: int) -> bytes:
    """The whole push as sent on the wire: wrapper around general-glo-ciphering (or plain without keys)."""
    apdu = encode_notification(notification)
    if keys is not None:
        apdu = cipher_apdu(apdu, system_title, keys, invocation_counter)
    return wrap_push(apdu)


async def read_push_apdu(reader: asyncio.StreamReader) -> bytes:
    """One wrapper frame's APDU from a push connection (IncompleteReadError at its end); PushError when the header
    is not a push's."""
    version, _source, destination, length = struct.unpack(">HHHH", await reader.readexactly(8))
    if version != 1 or length > MAX_FRAME:
        raise PushError(f"wrapper header version {version} length {length} is not a push frame")
    apdu = await reader.readexactly(length)
    if destination != PUSH_DESTINATION_WPORT:
        raise PushError(f"wrapper destination wPort {destination} is not the push client's {PUSH_DESTINATION_WPORT}")
    return apdu


def decode_frame(frame: bytes, keys_of: Callable[[bytes], tuple[bytes, bytes] | None]) -> Received:
    """A whole wrapper frame (as encode_frame makes it) back to its notification."""
    if len(frame) < 8:
        raise PushError("push frame shorter than its wrapper header")
    version, _source, destination, length = struct.unpack(">HHHH", frame[:8])
    if version != 1 or destination != PUSH_DESTINATION_WPORT or length != len(frame) - 8:
        raise PushError("wrapper header is not a push frame's")
    return decipher_apdu(frame[8:], keys_of)


class PushListener:
    """A head end's push endpoint reduced to its receiving half: accepts meters' connections on host:port, takes
    every frame apart and hands each Received (or PushError) to `on_push` (default: keeps them in `received` and
    `errors`)."""

    def __init__(self, keys_of: Callable[[bytes], tuple[bytes, bytes] | None],
                 on_push: Callable[[Received | PushError], None] | None = None):
        self.keys_of = keys_of
        self.received: list[Received] = []
        self.errors: list[PushError] = []
        self.on_push = on_push or self._keep
        self._server: asyncio.AbstractServer | None = None
        self.port: int | None = None

    def _keep(self, item: Received | PushError) -> None:
        (self.errors if isinstance(item, PushError) else self.received).append(item)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host=host, port=port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                apdu = await read_push_apdu(reader)
                try:
                    self.on_push(decipher_apdu(apdu, self.keys_of))
                except PushError as exc:
                    self.on_push(exc)
        except PushError as exc:  # a header that is not a push's: the stream cannot be followed further
            self.on_push(exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
