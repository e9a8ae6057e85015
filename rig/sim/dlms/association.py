"""Application associations (ACSE, IEC 62056-5-3): the AARQ judged against the meter's clients, its LLS
password and its security setups, the AARE answered, and the associations held per transport connection.

Clients as IS 15959-2 has them: the public client (SAP 16, no security), the meter reader (SAP 32, LLS password)
and utility settings (SAP 48, HLS-GMAC: mechanism 5, security suite 0, every xDLMS APDU authenticated and
encrypted with the global unicast encryption key and the authentication key; rig/sim/dlms/security.py). LN
referencing. The HLS-GMAC association is accepted pending authentication (AARE diagnostic
authentication-required, with the meter's challenge StoC); until the client's reply_to_HLS_authentication proves
it holds the keys, the association serves nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rig.sim.dlms.codec import DataError, axdr_length, read_length
from rig.sim.dlms.security import (
    GLO_INITIATE_REQUEST,
    SecurityRefused,
    ServerSecurity,
    parse_ciphered,
)

SERVER_SAP = 1
CLIENT_ROLES = {16: "public", 32: "reader", 48: "utility"}
CIPHERED_ROLES = frozenset({"utility", "push"})  # associations whose APDUs are ciphered (push: the meter's own)
EVERY_CLIENT = frozenset(CLIENT_ROLES.values())
READING_CLIENTS = frozenset({"reader", "utility"})  # the meter reader and utility settings
UTILITY = frozenset({"utility"})
NOBODY: frozenset[str] = frozenset()
# the association LN object of each association (IS 15959-2) and its number x in 0.0.43.0.x.255 / 0.0.43.1.x.255
ASSOCIATION_NAMES = {"public": "0.0.40.0.1.255", "reader": "0.0.40.0.2.255", "utility": "0.0.40.0.3.255",
                     "push": "0.0.40.0.4.255"}
OWN_ASSOCIATIONS = {role: bytes(int(part) for part in name.split(".")) for role, name in ASSOCIATION_NAMES.items()}

ACCEPTED, REJECTED_PERMANENT = 0, 1
DIAG_NULL, DIAG_NO_REASON, DIAG_CONTEXT_NOT_SUPPORTED = 0, 1, 2
DIAG_MECHANISM_NOT_RECOGNISED, DIAG_MECHANISM_REQUIRED, DIAG_AUTHENTICATION_FAILURE = 11, 12, 13
DIAG_AUTHENTICATION_REQUIRED = 14
DIAG_NAMES = {0: "null", 1: "no-reason-given", 2: "application-context-name-not-supported",
              11: "authentication-mechanism-name-not-recognised", 12: "authentication-mechanism-name-required",
              13: "authentication-failure", 14: "authentication-required"}
DLMS_OID = bytes.fromhex("60857405 08")
LN_NO_CIPHERING = DLMS_OID + b"\x01\x01"
LN_WITH_CIPHERING = DLMS_OID + b"\x01\x03"
MECHANISM_OID = DLMS_OID + b"\x02"
LLS, HLS_GMAC = 1, 5
INITIATE_ERROR = 6  # ServiceError choice: initiate
APPLICATION_REFERENCE, DECIPHERING_ERROR = 0, 6  # ServiceError choice application-reference: deciphering-error
DECIPHERING_REFUSAL = bytes([0x0E, 1, APPLICATION_REFERENCE, DECIPHERING_ERROR])  # ConfirmedServiceError
CHALLENGE_LENGTH = 16  # StoC, octets (the Green Book allows 8..64)
DLMS_VERSION_TOO_LOW, INCOMPATIBLE_CONFORMANCE, PDU_SIZE_TOO_SHORT = 1, 2, 3
# conformance block bits (IEC 62056-5-3 8.4: bit 0 is the most significant of the 24)
CONFORMANCE_GET, CONFORMANCE_SET, CONFORMANCE_ACTION = 1 << 4, 1 << 3, 1 << 0
CONFORMANCE_SELECTIVE_ACCESS, CONFORMANCE_BLOCK_TRANSFER_WITH_GET = 1 << 2, 1 << 12
CONFORMANCE_GENERAL_PROTECTION = 1 << 22
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
    client_title: bytes | None = None  # the client's system title (ciphered associations)
    client_challenge: bytes = b""  # CtoS
    server_challenge: bytes = b""  # StoC
    authenticated: bool = True  # False while HLS waits for the client's reply_to_HLS_authentication

    @property
    def ciphered(self) -> bool:
        return self.role in CIPHERED_ROLES

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


def judge_aarq(client_sap: int, fields: dict[int, bytes], password: bytes,
               security: ServerSecurity | None = None) -> Outcome:
    """The meter's answer to an AARQ from a client SAP: the public client without authentication, the reader
    with the LLS password only, utility settings with HLS-GMAC (judge_ciphered_aarq); then the proposed xDLMS
    context."""
    role = CLIENT_ROLES.get(client_sap)
    if role in CIPHERED_ROLES:
        if security is None:
            return REJECTED_PERMANENT, DIAG_NO_REASON, None, None, None
        return judge_ciphered_aarq(role, fields, security)
    if ber_inner(fields.get(0xA1, b""), 0x06) != LN_NO_CIPHERING:
        return REJECTED_PERMANENT, DIAG_CONTEXT_NOT_SUPPORTED, None, None, None
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
    outcome = _negotiate(initiate, SERVER_CONFORMANCE, mechanism)
    if len(outcome) == 5:
        return outcome
    negotiated, max_pdu, response = outcome
    return ACCEPTED, DIAG_NULL, mechanism, response, Association(client_sap, role, negotiated, max_pdu,
                                                                  mechanism or 0)


def _negotiate(initiate: bytes, offered: int, mechanism: int | None) -> tuple[int, int, bytes] | Outcome:
    """(negotiated conformance, client max PDU, InitiateResponse) of an InitiateRequest, or the refusal."""
    version, conformance, max_pdu = parse_initiate_request(initiate)
    negotiated = conformance & offered
    error = (DLMS_VERSION_TOO_LOW if version < 6 else INCOMPATIBLE_CONFORMANCE if not negotiated
             else PDU_SIZE_TOO_SHORT if 0 < max_pdu < 12 else None)
    if error is not None:
        return REJECTED_PERMANENT, DIAG_NO_REASON, mechanism, bytes([0x0E, 1, INITIATE_ERROR, error]), None
    response = (b"\x08\x00\x06\x5f\x1f\x04\x00" + negotiated.to_bytes(3, "big")
                + SERVER_MAX_PDU.to_bytes(2, "big") + b"\x00\x07")
    return negotiated, max_pdu, response


def judge_ciphered_aarq(role: str, fields: dict[int, bytes], security: ServerSecurity) -> Outcome:
    """HLS-GMAC (passes 1 and 2): the LN context with ciphering, mechanism 5, the client's system title (calling
    AP title) and challenge CtoS, and its InitiateRequest in a glo-initiate-request that deciphers under the
    association's keys with an invocation counter above the client's last. A request that does not decipher or
    whose counter is stale is refused alike (rejected-permanent, ConfirmedServiceError deciphering-error). The
    answer: accepted pending authentication (authentication-required), the meter's system title and challenge
    StoC, its InitiateResponse ciphered in a glo-initiate-response."""
    if ber_inner(fields.get(0xA1, b""), 0x06) != LN_WITH_CIPHERING:
        return REJECTED_PERMANENT, DIAG_CONTEXT_NOT_SUPPORTED, None, None, None
    requirements = fields.get(0x8A, b"")
    if not (len(requirements) >= 2 and requirements[1] & 0x80):
        return REJECTED_PERMANENT, DIAG_AUTHENTICATION_REQUIRED, None, None, None
    mechanism_oid = fields.get(0x8B)
    if mechanism_oid is None:
        return REJECTED_PERMANENT, DIAG_MECHANISM_REQUIRED, None, None, None
    if mechanism_oid != MECHANISM_OID + bytes([HLS_GMAC]):
        return REJECTED_PERMANENT, DIAG_MECHANISM_NOT_RECOGNISED, None, None, None
    title = ber_inner(fields.get(0xA6, b""), 0x04) if 0xA6 in fields else b""
    value = fields.get(0xAC)
    challenge = ber_items(value).get(0x80, b"") if value else b""
    if len(title) != 8 or not 8 <= len(challenge) <= 64:
        return REJECTED_PERMANENT, DIAG_NO_REASON, HLS_GMAC, None, None
    user_information = ber_inner(fields.get(0xBE, b""), 0x04)
    if not user_information or user_information[0] != GLO_INITIATE_REQUEST:
        return REJECTED_PERMANENT, DIAG_NO_REASON, HLS_GMAC, None, None
    try:
        initiate = security.decipher(role, title, parse_ciphered(user_information))
        outcome = _negotiate(initiate, SERVER_CONFORMANCE | CONFORMANCE_GENERAL_PROTECTION, HLS_GMAC)
    except (SecurityRefused, DataError, IndexError):
        return REJECTED_PERMANENT, DIAG_NO_REASON, HLS_GMAC, DECIPHERING_REFUSAL, None
    if len(outcome) == 5:
        return outcome
    negotiated, max_pdu, response = outcome
    association = Association(CLIENT_SAP_OF[role], role, negotiated, max_pdu, HLS_GMAC, client_title=title,
                              client_challenge=challenge, server_challenge=os.urandom(CHALLENGE_LENGTH),
                              authenticated=False)
    return (ACCEPTED, DIAG_AUTHENTICATION_REQUIRED, HLS_GMAC,
            security.cipher(role, GLO_INITIATE_REQUEST, response), association)


CLIENT_SAP_OF = {role: sap for sap, role in CLIENT_ROLES.items()}


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


def aare(result: int, diagnostic: int, mechanism: int | None, user_information: bytes | None,
         association: Association | None = None, system_title: bytes | None = None) -> bytes:
    """AARE: LN context (with ciphering for HLS-GMAC), result, acse-service-user diagnostic, the meter's system
    title (responding AP title) on a ciphered association, the mechanism when used, the meter's challenge StoC
    (responding authentication value) for HLS, user-information."""
    ciphered = mechanism == HLS_GMAC
    content = ber(0xA1, ber(0x06, LN_WITH_CIPHERING if ciphered else LN_NO_CIPHERING))
    content += ber(0xA2, ber(0x02, bytes([result])))
    content += ber(0xA3, ber(0xA1, ber(0x02, bytes([diagnostic]))))
    if ciphered and association is not None and system_title is not None:
        content += ber(0xA4, ber(0x04, system_title))
    if mechanism:
        content += ber(0x88, b"\x07\x80") + ber(0x89, MECHANISM_OID + bytes([mechanism]))
    if association is not None and association.server_challenge:
        content += ber(0xAA, ber(0x80, association.server_challenge))
    if user_information is not None:
        content += ber(0xBE, ber(0x04, user_information))
    return ber(0x61, content)
