"""Association LN objects (class 15, version 1; Blue Book 4.4.3): the current association 0.0.40.0.0.255, which
is whichever association the request arrives on, and one object per association as IS 15959-2 lists them
(0.0.40.0.1.255 public client, 0.0.40.0.2.255 meter reader, 0.0.40.0.3.255 utility settings, 0.0.40.0.4.255
push; utility settings and push with the LN context with ciphering and mechanism 5, HLS-GMAC). Each object's
object_list holds the objects its client may use, with that client's access rights: attribute access 0 no access,
1 read-only, 2 write-only, 3 read-and-write, with access selectors [1, 2] on the attributes that take selective
access; method access 0 no access, 1 access. The rights listed are the ones the meter enforces (the same
readers and writers of each object), so a client's object list names exactly what it may do.

A client reads the current association and its own association object; utility settings reads them all. The
HLS-GMAC associations invoke reply_to_HLS_authentication (method 1) of the current association and of their own
association object.
"""

from __future__ import annotations

from collections.abc import Callable

from rig.sim.dlms.association import (
    ASSOCIATION_NAMES,
    CIPHERED_ROLES,
    CLIENT_SAP_OF,
    EVERY_CLIENT,
    LN_NO_CIPHERING,
    LN_WITH_CIPHERING,
    MECHANISM_OID,
    SERVER_CONFORMANCE,
    SERVER_MAX_PDU,
    SERVER_SAP,
    UTILITY,
    Association,
)
from rig.sim.dlms.codec import (
    BIT_STRING,
    ENUM,
    INTEGER,
    LONG_UNSIGNED,
    NULL,
    UNSIGNED,
    encode_array,
    encode_int,
    encode_octets,
    encode_structure,
)
from rig.sim.dlms.objects import CLASS_SHAPES, CLASS_VERSIONS, CosemObject
from rig.sim.dlms.profiles import obis

CURRENT_ASSOCIATION = "0.0.40.0.0.255"
MECHANISMS = {"public": 0, "reader": 1, "utility": 5, "push": 5}  # no security, LLS, HLS-GMAC
NON_ASSOCIATED, ASSOCIATED = 0, 2
SECRET, SECURITY_SETUP_REFERENCE = 7, 9
READ_ONLY, WRITE_ONLY = 1, 2
REPLY_TO_HLS_AUTHENTICATION = 1  # Association LN method 1


def access_rights(obj: CosemObject, role: str) -> bytes:
    """access_rights of one object for a client role: {attribute_access, method_access}."""
    attributes, methods = CLASS_SHAPES[obj.class_id]
    attribute_items = []
    for index in range(1, attributes + 1):
        readable = role in obj.readers and index in obj.getters and index not in obj.unreadable
        writable = role in obj.writers and index in obj.setters
        mode = (READ_ONLY if readable else 0) | (WRITE_ONLY if writable else 0)
        selectors = (encode_array([encode_int(INTEGER, 1), encode_int(INTEGER, 2)])
                     if readable and index in obj.selective else bytes([NULL]))
        attribute_items.append(encode_structure(encode_int(INTEGER, index), encode_int(ENUM, mode), selectors))
    method_items = [encode_structure(encode_int(INTEGER, index), encode_int(ENUM, 1 if may_invoke(obj, role, index)
                                                                            else 0))
                    for index in range(1, methods + 1)]
    return encode_structure(encode_array(attribute_items), encode_array(method_items))


def may_invoke(obj: CosemObject, role: str, index: int) -> bool:
    """The role may invoke method `index` of the object (one of its methods, or one the server serves itself)."""
    return (role in obj.writers and index in obj.methods) or role in obj.served.get(index, ())


def object_list(objects: list[CosemObject], role: str) -> bytes:
    """Attribute 2: {class_id, version, logical_name, access_rights} of each object the role may use."""
    return encode_array([encode_structure(encode_int(LONG_UNSIGNED, obj.class_id),
                                          encode_int(UNSIGNED, CLASS_VERSIONS.get(obj.class_id, 0)),
                                          encode_octets(obj.logical_name), access_rights(obj, role))
                         for obj in objects if role in obj.readers or role in obj.writers])


def xdlms_context(conformance: int, max_send_pdu: int) -> bytes:
    """Attribute 5: {conformance, max_receive_pdu_size, max_send_pdu_size, dlms_version_number,
    quality_of_service, cyphering_info}."""
    return encode_structure(bytes([BIT_STRING, 24]) + conformance.to_bytes(3, "big"),
                            encode_int(LONG_UNSIGNED, SERVER_MAX_PDU), encode_int(LONG_UNSIGNED, max_send_pdu),
                            encode_int(UNSIGNED, 6), encode_int(INTEGER, 0), encode_octets(b""))


def association_objects(objects: Callable[[], list[CosemObject]],
                        serving: Callable[[], Association | None]) -> list[CosemObject]:
    """The current association object and one per client; `objects` is the logical device's object list,
    `serving` the association of the request being answered."""
    def current_role() -> str:
        association = serving()
        return association.role if association else "public"

    def getters(role_of: Callable[[], str], fixed: bool) -> dict[int, Callable[[], bytes]]:
        def conformance_and_pdu() -> tuple[int, int]:
            association = serving()
            if fixed or association is None:
                return SERVER_CONFORMANCE, SERVER_MAX_PDU
            return association.conformance, association.max_apdu()

        def status() -> int:
            association = serving()
            return ASSOCIATED if association is not None and association.role == role_of() else NON_ASSOCIATED

        return {
            2: lambda: object_list(objects(), role_of()),
            3: lambda: encode_structure(encode_int(INTEGER, CLIENT_SAP_OF.get(role_of(), 0)),
                                        encode_int(LONG_UNSIGNED, SERVER_SAP)),
            4: lambda: encode_octets(LN_WITH_CIPHERING if role_of() in CIPHERED_ROLES else LN_NO_CIPHERING),
            5: lambda: xdlms_context(*conformance_and_pdu()),
            6: lambda: encode_octets(MECHANISM_OID + bytes([MECHANISMS[role_of()]])),
            8: lambda: encode_int(ENUM, status()),
        }

    unreadable = frozenset({SECRET, SECURITY_SETUP_REFERENCE})
    hls_reply = {REPLY_TO_HLS_AUTHENTICATION: CIPHERED_ROLES}
    current = CosemObject(15, obis(CURRENT_ASSOCIATION), getters(current_role, fixed=False), unreadable=unreadable,
                          readers=EVERY_CLIENT, served=hls_reply)
    per_client = [CosemObject(15, obis(name), getters(lambda role=role: role, fixed=True), unreadable=unreadable,
                              readers=frozenset({role}) | UTILITY,
                              served={REPLY_TO_HLS_AUTHENTICATION: frozenset({role}) & CIPHERED_ROLES})
                  for role, name in ASSOCIATION_NAMES.items()]
    return [current, *per_client]
