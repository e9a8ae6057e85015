"""Application associations (ACSE, IEC 62056-5-3): the AARQ judged against the meter's clients and its LLS
password, the AARE answered, and the associations held per transport connection.

Clients: the public client (SAP 16, no security) and the meter reader (SAP 32, LLS password); LN referencing,
no ciphering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rig.sim.dlms.codec import DataError, axdr_length, read_length

SERVER_SAP = 1
CLIENT_ROLES = {16: "public", 32: "reader"}
BOTH = frozenset(CLIENT_ROLES.values())
READER = frozenset({"reader"})
NOBODY: frozenset[str] = frozenset()

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
# conformance block bits (IEC 62056-5-3 8.4: bit 0 is the most significant of the 24)
CONFORMANCE_GET, CONFORMANCE_SET, CONFORMANCE_ACTION = 1 << 4, 1 << 3, 1 << 0
CONFORMANCE_SELECTIVE_ACCESS, CONFORMANCE_BLOCK_TRANSFER_WITH_GET = 1 << 2, 1 << 12
SERVER_CONFORMANCE = (CONFORMANCE_GET | CONFORMANCE_SET | CONFORMANCE_ACTION | CONFORMANCE_SELECTIVE_ACCESS
                      | CONFORMANCE_BLOCK_TRANSFER_WITH_GET)
SERVER_MAX_PDU = 1024


@dataclass
class LongGet:
    """A GET answer sent in blocks (block transfer with GET): the encoded Data and the last block sent."""

    invoke: int
    data: bytes
    block_size: int
    last_sent: int = 0


@dataclass
class Association:
    client_sap: int
    role: str
    conformance: int
    client_max_pdu: int
    mechanism: int = 0
    long_get: LongGet | None = None

    def max_apdu(self) -> int:
        """The longest APDU the meter sends on this association: the client's max receive PDU size (0: no
        limit), and never more than the meter's own."""
        return min(self.client_max_pdu or 0xFFFF, SERVER_MAX_PDU)


@dataclass
class Link:
    """One transport connection: its application associations by client SAP."""

    transport: str
    associations: dict[int, Association] = field(default_factory=dict)


# (result, diagnostic, mechanism echoed, user-information, Association or None)
Outcome = tuple[int, int, int | None, bytes | None, Association | None]


# -- BER --------------------------------------------------------------------------------------------------------


def ber(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + axdr_length(len(value)) + value


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


# -- AARQ / AARE ------------------------------------------------------------------------------------------------


def aarq_fields(aarq: bytes) -> dict[int, bytes]:
    """The elements of an AARQ APDU by tag; DataError when it is none."""
    if aarq[0] != 0x60:
        raise DataError("not an AARQ")
    length, pos = read_length(aarq, 1)
    return ber_items(aarq[pos:pos + length])


def judge_aarq(client_sap: int, fields: dict[int, bytes], password: bytes) -> Outcome:
    """The meter's answer to an AARQ from a client SAP: the public client without authentication, the reader
    with the LLS password only; then the proposed xDLMS context."""
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
    refusal = _authentication_refusal(role, authenticated, mechanism_oid, mechanism, fields, password)
    if refusal is not None:
        return refusal
    initiate = ber_inner(fields.get(0xBE, b""), 0x04)
    version, conformance, max_pdu = parse_initiate_request(initiate)
    negotiated = conformance & SERVER_CONFORMANCE
    error = (DLMS_VERSION_TOO_LOW if version < 6 else INCOMPATIBLE_CONFORMANCE if not negotiated
             else PDU_SIZE_TOO_SHORT if 0 < max_pdu < 12 else None)
    if error is not None:
        return REJECTED_PERMANENT, DIAG_NO_REASON, mechanism, bytes([0x0E, 1, INITIATE_ERROR, error]), None
    response = (b"\x08\x00\x06\x5f\x1f\x04\x00" + negotiated.to_bytes(3, "big")
                + SERVER_MAX_PDU.to_bytes(2, "big") + b"\x00\x07")
    return ACCEPTED, DIAG_NULL, mechanism, response, Association(client_sap, role, negotiated, max_pdu,
                                                                  mechanism or 0)


def _authentication_refusal(role: str, authenticated: bool, mechanism_oid: bytes | None, mechanism: int | None,
                            fields: dict[int, bytes], password: bytes) -> Outcome | None:
    """Why the client's authentication is refused (None: it is not)."""
    if role == "public":
        if mechanism not in (None, 0):
            return REJECTED_PERMANENT, DIAG_MECHANISM_NOT_RECOGNISED, None, None, None
        return None
    if not authenticated:
        return REJECTED_PERMANENT, DIAG_AUTHENTICATION_REQUIRED, None, None, None
    if mechanism_oid is None:
        return REJECTED_PERMANENT, DIAG_MECHANISM_REQUIRED, None, None, None
    if mechanism != LLS:
        return REJECTED_PERMANENT, DIAG_MECHANISM_NOT_RECOGNISED, None, None, None
    value = fields.get(0xAC)
    if (ber_items(value).get(0x80) if value else None) != password:
        return REJECTED_PERMANENT, DIAG_AUTHENTICATION_FAILURE, LLS, None, None
    return None


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
