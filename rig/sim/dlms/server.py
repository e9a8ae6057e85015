"""The DLMS/COSEM server of a twin meter: xDLMS services (GET normal with selective access and block transfer,
SET and ACTION normal) on its object model, the associations, and its two transports: the IEC 62056-47 TCP wrapper
on a loopback port and, with `hdlc`, HDLC on a pty whose path is `pty_path`. Either drops a connection idle for
`inactivity_timeout_s` (the wrapper closes the socket, HDLC returns to the disconnected mode).

A GET answer longer than the association's PDU size (the client's max receive PDU size, at most the meter's
SERVER_MAX_PDU) goes as GET-Response-With-Datablock (Green Book, IEC 62056-5-3: last-block, block-number, raw-data)
when the client negotiated block-transfer-with-get; GET-Request-Next acknowledging the last block sent gets the next,
any other number data-block-number-invalid, and one with no transfer under way no-long-get-in-progress.

On a ciphered association (utility settings) every xDLMS request must come ciphered (general-glo-ciphering or
glo-xxx-request) and is answered in the same form; one the meter cannot accept gets an unciphered
Exception-Response (service-not-allowed, deciphering-error or invocation-counter-error: rig/sim/dlms/security.py).
Until HLS-GMAC is complete the association serves only reply_to_HLS_authentication (method 1 of the current
association 0.0.40.0.0.255 or of its own association object)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tty

from rig.sim.dlms.association import (
    ACCEPTED,
    CLIENT_ROLES,
    CONFORMANCE_ACTION,
    CONFORMANCE_BLOCK_TRANSFER_WITH_GET,
    CONFORMANCE_GET,
    CONFORMANCE_SELECTIVE_ACCESS,
    CONFORMANCE_SET,
    DIAG_NAMES,
    DIAG_NO_REASON,
    OWN_ASSOCIATIONS,
    REJECTED_PERMANENT,
    SERVER_SAP,
    Association,
    Link,
    LongGet,
    aare,
    aarq_fields,
    judge_aarq,
)
from rig.sim.dlms.codec import OCTET_STRING, DataError, axdr_length, decode_one, encode_octets
from rig.sim.dlms.hdlc import HdlcLink
from rig.sim.dlms.objects import (
    CLASS_SHAPES,
    OBJECT_CLASS_INCONSISTENT,
    OBJECT_UNDEFINED,
    OTHER_REASON,
    READ_WRITE_DENIED,
    TYPE_UNMATCHED,
    CosemObject,
)
from rig.sim.dlms.security import (
    CIPHERED_REQUESTS,
    DECIPHERING_ERROR,
    GENERAL_GLO_CIPHERING,
    GLO_REQUESTS,
    SecurityRefused,
    ServerSecurity,
    parse_ciphered,
)
from rig.sim.model import PhysicalModel

CURRENT_ASSOCIATION_LN = bytes([0, 0, 40, 0, 0, 255])
# Exception-Response: state-error, service-error
SERVICE_NOT_ALLOWED, SERVICE_UNKNOWN = 1, 2
OPERATION_NOT_POSSIBLE, SERVICE_NOT_SUPPORTED, SERVICE_OTHER_REASON = 1, 2, 3
SERVICE_CONFORMANCE = {0xC0: CONFORMANCE_GET, 0xC1: CONFORMANCE_SET, 0xC3: CONFORMANCE_ACTION}
# Data-Access-Result of a GET-Request-Next that has no block to answer with
NO_LONG_GET_IN_PROGRESS, DATA_BLOCK_NUMBER_INVALID = 16, 19
BLOCK_OVERHEAD = 12  # GET-Response-With-Datablock around its raw data: tag, choice, invoke, last, number, length
# IS 15959 / IEC 62056-47 practice closes an idle connection after ~120 s; the twin's default is longer so that a
# rig holding one association open across a whole run is not cut off between its reads
DEFAULT_INACTIVITY_TIMEOUT_S = 120.0


def exception_response(state_error: int, service_error: int) -> bytes:
    return bytes([0xD8, state_error, service_error])


def wrap(source_wport: int, destination_wport: int, apdu: bytes) -> bytes:
    """IEC 62056-47 wrapper: version 1, source and destination wPort, length, then the APDU."""
    return struct.pack(">HHHH", 1, source_wport, destination_wport, len(apdu)) + apdu


class DlmsServer:
    """One logical device (server SAP 1) answering on its transports. A meter supplies `objects` and says when its
    port answers (`port_answering`); a connection opened before a power loss (`power_epoch`) dies at its first
    request after it unless the port reads from the battery (`battery_reading`)."""

    transport = "dlms"

    def __init__(self, role: str, model: PhysicalModel, password: bytes, hdlc: bool, latency_s: float,
                 security: ServerSecurity | None = None):
        self.role = role
        self.model = model
        self.password = password
        self.security = security
        self.hdlc = hdlc
        self.latency_s = latency_s
        self.objects: dict[bytes, CosemObject] = {}
        self.power_epoch = 0
        self.battery_reading = True
        self.inactivity_timeout_s = DEFAULT_INACTIVITY_TIMEOUT_S
        self.serving: Association | None = None  # the association of the request being answered
        self.pty_path: str | None = None
        self.port: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pty_fds: tuple[int, int] | None = None
        self._hdlc_link: HdlcLink | None = None
        self._hdlc_idle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def port_answering(self) -> bool:
        return True

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
        if tag in CIPHERED_REQUESTS:
            return self._ciphered(link, client_sap, association, apdu)
        if association is not None and association.ciphered:
            return exception_response(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE)  # plain APDU, ciphered policy
        return self._serve(link, client_sap, association, apdu)

    def _ciphered(self, link: Link, client_sap: int, association: Association | None, apdu: bytes) -> bytes | None:
        """A ciphered request: deciphered, served, and its answer ciphered in the same form."""
        if association is None or not association.ciphered or self.security is None:
            return exception_response(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE)
        try:
            frame = parse_ciphered(apdu)
            plain = self.security.decipher(association.role, association.client_title, frame)
            if frame.form in GLO_REQUESTS and plain[:1] != bytes([GLO_REQUESTS[frame.form]]):
                raise SecurityRefused(DECIPHERING_ERROR, "glo-request holding another service")
        except (DataError, SecurityRefused) as exc:
            reason = exc.reason if isinstance(exc, SecurityRefused) else str(exc)
            self.model.truth.event("dlms.ciphered_refused", role=self.role, transport=link.transport,
                                   client_sap=client_sap, reason=reason)
            code = exc.service_error if isinstance(exc, SecurityRefused) else DECIPHERING_ERROR
            return exception_response(SERVICE_NOT_ALLOWED, code)
        response = self._serve(link, client_sap, association, plain)
        if response is None:
            return None
        if response[0] == 0xD8 and frame.form != GENERAL_GLO_CIPHERING:
            return response  # no glo- form of an Exception-Response
        ciphered = self.security.cipher(association.role, frame.form, response)
        self.security.commit_keys()  # keys transferred by this request take effect after its answer
        return ciphered

    def _serve(self, link: Link, client_sap: int, association: Association | None, apdu: bytes) -> bytes | None:
        """The answer to a plain (or deciphered) xDLMS request."""
        tag = apdu[0] if apdu else 0
        if tag not in SERVICE_CONFORMANCE:
            return exception_response(SERVICE_UNKNOWN, SERVICE_NOT_SUPPORTED)
        if association is None:
            return exception_response(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE)
        if not association.authenticated:
            return self._reply_to_hls(link, client_sap, association, apdu)
        if not association.conformance & SERVICE_CONFORMANCE[tag]:
            return exception_response(SERVICE_NOT_ALLOWED, SERVICE_NOT_SUPPORTED)
        if tag == 0xC0 and len(apdu) == 7 and apdu[1] == 2:
            return self._get_next(association, apdu[2], int.from_bytes(apdu[3:7], "big"))
        if len(apdu) < 13 or apdu[1] != 1:
            return exception_response(SERVICE_NOT_ALLOWED, SERVICE_NOT_SUPPORTED)
        association.long_get = None  # a new request ends a GET answered in blocks
        self.serving = association
        invoke = apdu[2]
        class_id = int.from_bytes(apdu[3:5], "big")
        logical_name, index, rest = apdu[5:11], apdu[11], apdu[12:]
        by = f"{CLIENT_ROLES[client_sap]} client {client_sap}"
        if tag == 0xC0:
            return self._get_answer(association, invoke, self._get(association, class_id, logical_name, index, rest))
        if tag == 0xC1:
            return bytes([0xC5, 1, invoke, self._set(association.role, class_id, logical_name, index, rest, by)])
        result = self._action(association.role, class_id, logical_name, index, rest, by)
        if isinstance(result, tuple):
            return bytes([0xC7, 1, invoke, result[0], 1, 0]) + result[1]
        return bytes([0xC7, 1, invoke, result, 0])

    def _reply_to_hls(self, link: Link, client_sap: int, association: Association, apdu: bytes) -> bytes:
        """HLS-GMAC passes 3 and 4: the client's f(StoC) in reply_to_HLS_authentication is checked; when it
        holds, the association is authenticated and the answer carries the meter's f(CtoS); when it does not, the
        association is released. Any other request before it is refused."""
        own = OWN_ASSOCIATIONS.get(association.role)
        if not (len(apdu) >= 13 and apdu[:2] == b"\xc3\x01" and apdu[3:5] == b"\x00\x0f" and apdu[11] == 1
                and apdu[5:11] in (CURRENT_ASSOCIATION_LN, own)):
            return exception_response(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE)
        invoke = apdu[2]
        try:
            tag, answer = decode_one(apdu[13:]) if apdu[12] == 1 else (None, None)
        except (DataError, IndexError):
            tag, answer = None, None
        valid = tag == OCTET_STRING and self.security.client_answer_valid(
            association.role, association.client_title, association.server_challenge, answer)
        self.model.truth.event("dlms.hls", role=self.role, transport=link.transport, client_sap=client_sap,
                               result="authenticated" if valid else "refused")
        if not valid:
            link.associations.pop(client_sap, None)
            return bytes([0xC7, 1, invoke, OTHER_REASON, 0])
        association.authenticated = True
        proof = self.security.server_answer(association.role, association.client_challenge)
        return bytes([0xC7, 1, invoke, 0, 1, 0]) + encode_octets(proof)

    def _get_answer(self, association: Association, invoke: int, response: bytes | int) -> bytes:
        """GET-Response-Normal, or its first block (GET-Response-With-Datablock) when the answer is longer than
        the association's PDU size and block transfer was negotiated."""
        if isinstance(response, int):
            return bytes([0xC4, 1, invoke, 1, response])
        answer = bytes([0xC4, 1, invoke, 0]) + response
        limit = association.max_apdu()
        if len(answer) <= limit:
            return answer
        if not association.conformance & CONFORMANCE_BLOCK_TRANSFER_WITH_GET:
            return bytes([0xC4, 1, invoke, 1, OTHER_REASON])
        association.long_get = LongGet(invoke, response, max(limit - BLOCK_OVERHEAD, 16))
        return self._next_block(association)

    def _next_block(self, association: Association) -> bytes:
        long_get = association.long_get
        number = long_get.last_sent + 1
        start = (number - 1) * long_get.block_size
        chunk = long_get.data[start:start + long_get.block_size]
        last = start + long_get.block_size >= len(long_get.data)
        long_get.last_sent = number
        if last:
            association.long_get = None
        return (bytes([0xC4, 2, long_get.invoke, int(last)]) + number.to_bytes(4, "big") + b"\x00"
                + axdr_length(len(chunk)) + chunk)

    def _get_next(self, association: Association, invoke: int, acknowledged: int) -> bytes:
        """GET-Request-Next: the block after the one the client acknowledges, or the standard refusal."""
        long_get = association.long_get
        if long_get is not None and acknowledged == long_get.last_sent:
            return self._next_block(association)
        association.long_get = None
        result = NO_LONG_GET_IN_PROGRESS if long_get is None else DATA_BLOCK_NUMBER_INVALID
        return bytes([0xC4, 2, invoke, 1]) + acknowledged.to_bytes(4, "big") + bytes([1, result])

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

    def _get(self, association: Association, class_id: int, logical_name: bytes, index: int,
             rest: bytes) -> bytes | int:
        obj = self._lookup(class_id, logical_name, index, method=False)
        if isinstance(obj, int):
            return obj
        if association.role not in obj.readers or index not in obj.getters or index in obj.unreadable:
            return READ_WRITE_DENIED
        if rest[:1] == b"\x00":
            return obj.getters[index]()
        if not association.conformance & CONFORMANCE_SELECTIVE_ACCESS or index not in obj.selective:
            return OTHER_REASON
        try:
            selector, parameters = rest[1], decode_one(rest[2:])
        except (DataError, IndexError):
            return TYPE_UNMATCHED
        return obj.selective[index](selector, parameters)

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

    def _action(self, role: str, class_id: int, logical_name: bytes, index: int, rest: bytes,
                by: str) -> int | tuple[int, bytes]:
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

    def _associate(self, link: Link, client_sap: int, aarq: bytes) -> bytes:
        try:
            outcome = judge_aarq(client_sap, aarq_fields(aarq), self.password, self.security)
        except (DataError, IndexError, KeyError):
            outcome = (REJECTED_PERMANENT, DIAG_NO_REASON, None, None, None)
        result, diagnostic, mechanism, user_information, association = outcome
        link.associations.pop(client_sap, None)
        if association is not None:
            link.associations[client_sap] = association
        self.model.truth.event("dlms.association", role=self.role, transport=link.transport, client_sap=client_sap,
                               result="accepted" if result == ACCEPTED else "rejected-permanent",
                               diagnostic=DIAG_NAMES.get(diagnostic, str(diagnostic)))
        return aare(result, diagnostic, mechanism, user_information, association,
                    self.security.system_title if self.security is not None else None)

    # -- transports -------------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Serve the TCP wrapper on host:port (0: any free port), the HDLC pty too with `hdlc`; return the port."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve_tcp, host=host, port=port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.hdlc:
            self._open_pty()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._hdlc_idle is not None:
            self._hdlc_idle.cancel()
            self._hdlc_idle = None
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
                try:
                    version, source, destination, apdu = await asyncio.wait_for(
                        self._read_wrapped(reader), self.inactivity_timeout_s or None)
                except TimeoutError:
                    self.model.truth.event("dlms.inactivity_timeout", role=self.role, transport=link.transport,
                                           idle_s=self.inactivity_timeout_s)
                    break
                if not self.port_answering():
                    continue  # nothing answers on a dead port
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

    @staticmethod
    async def _read_wrapped(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
        """One wrapper frame: version, source wPort, destination wPort, APDU."""
        version, source, destination, length = struct.unpack(">HHHH", await reader.readexactly(8))
        return version, source, destination, await reader.readexactly(length)

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty_fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        self._hdlc_link = HdlcLink(self)
        self._loop.add_reader(master, self._pty_readable)

    def _restart_hdlc_idle(self) -> None:
        """IEC 62056-46 inactivity time-out: a connected HDLC link idle that long is disconnected (NDM)."""
        if self._hdlc_idle is not None:
            self._hdlc_idle.cancel()
            self._hdlc_idle = None
        if self._hdlc_link.connected and self.inactivity_timeout_s:
            self._hdlc_idle = self._loop.call_later(self.inactivity_timeout_s, self._hdlc_timed_out)

    def _hdlc_timed_out(self) -> None:
        self._hdlc_idle = None
        self._hdlc_link.reset(connected=False)
        self.model.truth.event("dlms.inactivity_timeout", role=self.role, transport="hdlc",
                               idle_s=self.inactivity_timeout_s)

    def _pty_readable(self) -> None:
        master = self._pty_fds[0]
        try:
            data = os.read(master, 4096)
        except OSError:
            return
        if not self.port_answering():
            return  # nothing answers on a dead port
        frames = self._hdlc_link.feed(data)
        self._restart_hdlc_idle()
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
