"""HDLC (IEC 62056-46) on the meter's optical port: frames of format type 3, CRC-16/X.25, the negotiation
parameters, and the secondary station that carries xDLMS APDUs in I-frames."""

from __future__ import annotations

import contextlib
import time
from typing import Protocol

from rig.sim.dlms.association import SERVER_SAP, Link
from rig.sim.dlms.codec import DataError

LLC_REQUEST, LLC_RESPONSE = b"\xe6\xe6\x00", b"\xe6\xe7\x00"
HDLC_FLAG = 0x7E
SNRM, DISC, UA, DM = 0x83, 0x43, 0x63, 0x0F
POLL_FINAL = 0x10
HDLC_MAX_INFO = 128  # the twin's own limit of an information field, and the default (IEC 62056-46)
MIN_MAX_INFO = 32  # the least maximum information field length a client may negotiate (IC 23, 32..2030)
INTER_OCTET_TIMEOUT_S = 1.0  # IC 23 inter_octet_time_out (20..6000 ms, default 25 ms): the twin allows 1 s


class ApduHandler(Protocol):
    """What answers the APDUs an HDLC link carries: the meter's DLMS server."""

    def handle_apdu(self, link: Link, client_sap: int, apdu: bytes) -> bytes | None: ...


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


def negotiated_max_info(proposed: int | None) -> int:
    """The maximum information field length the twin agrees to for a client's proposal: the default when none,
    else the proposal kept within MIN_MAX_INFO..HDLC_MAX_INFO (a proposal of 0 would give empty segments)."""
    if proposed is None:
        return HDLC_MAX_INFO
    return max(MIN_MAX_INFO, min(proposed, HDLC_MAX_INFO))


def encode_hdlc_parameters(max_info_tx: int, max_info_rx: int, window_tx: int = 1, window_rx: int = 1) -> bytes:
    def value(ident: int, number: int, size: int | None = None) -> bytes:
        size = size or (1 if number < 0x100 else 2)
        return bytes([ident, size]) + number.to_bytes(size, "big")

    group = value(5, max_info_tx) + value(6, max_info_rx) + value(7, window_tx, 4) + value(8, window_rx, 4)
    return bytes([0x81, 0x80, len(group)]) + group


class HdlcLink:
    """The secondary station of an HDLC connection on a serial line: SNRM/UA (maximum information field lengths
    negotiated within 32..128), I-frames with segmentation both ways (window 1), RR, DISC/UA (DM when not
    connected); a partial frame left without an octet for INTER_OCTET_TIMEOUT_S is discarded."""

    def __init__(self, server: ApduHandler):
        self.server = server
        self.buffer = bytearray()
        self.link = Link("hdlc")
        self.connected = False
        self.vs = self.vr = 0
        self.max_info_tx = self.max_info_rx = HDLC_MAX_INFO
        self.received = bytearray()
        self.pending: list[bytes] = []  # response segments waiting for the client's RR
        self.last_sent: bytes | None = None
        self.last_octet_at = 0.0  # monotonic time of the last octet received

    def feed(self, data: bytes, now: float | None = None) -> list[bytes]:
        """Frames to send back for the bytes received (at monotonic time `now`). A partial frame that waited
        longer than the inter-octet time-out for its next octet is discarded first."""
        now = time.monotonic() if now is None else now
        if self.buffer and now - self.last_octet_at > INTER_OCTET_TIMEOUT_S:
            self.buffer.clear()
        self.last_octet_at = now
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
            self.max_info_tx = negotiated_max_info(params.get(6))  # the client's receive is our transmit
            self.max_info_rx = negotiated_max_info(params.get(5))
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
        response = self.server.handle_apdu(self.link, client_sap, apdu)
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
