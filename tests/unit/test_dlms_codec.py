"""DLMS/COSEM byte exchanges, checked octet by octet against the layouts of IEC 62056-46/-47/-53 and the Green
Book: what dlms-cosem's client sends, what the twin's meter answers, and that each side parses the other."""

import random
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from dlms_clients import utility
from dlms_cosem import cosem, enumerations
from dlms_cosem.clients.blocking_tcp_transport import BlockingTcpTransport
from dlms_cosem.connection import DlmsConnection
from dlms_cosem.crc import CRCCCITT
from dlms_cosem.hdlc import address, frames
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.wrappers import WrapperHeader

from drivers.dlms_meter import date_time_from_bytes, date_time_to_bytes, decode_value, parse_resource
from rig.config import RoleConfig
from rig.driver import SetpointLimits, driver_class
from rig.errors import ConfigError
from rig.sim.defects import LinkDefects
from rig.sim.dlms.association import Link
from rig.sim.dlms.codec import (
    INTEGER,
    LONG_UNSIGNED,
    STRUCTURE,
    DataError,
    decode_date_time,
    decode_one,
    encode_array,
    encode_bool,
    encode_date_time,
    encode_int,
    encode_octets,
    encode_structure,
    encode_visible,
    read_length,
)
from rig.sim.dlms.hdlc import LLC_REQUEST, LLC_RESPONSE, HdlcLink, crc16_x25, hdlc_frame, hdlc_parameters
from rig.sim.dlms.meter import CONNECTED, DISCONNECTED, READY_FOR_RECONNECTION, DlmsMeterSim
from rig.sim.dlms.objects import CLASS_SHAPES, READ_WRITE_DENIED, obis, obis_text
from rig.sim.dlms.server import wrap
from rig.sim.link import LinkSettings, RadioLink
from rig.sim.model import PhysicalModel, SimMeter
from rig.sim.truth import TruthLog, read_truth
from rig.transcript import Transcript

H = bytes.fromhex

AARQ_LLS = H(
    "6036"                          # AARQ [APPLICATION 0], 54 octets
    "a109 0607 60857405080101"      # application-context-name: Logical_Name_Referencing_No_Ciphering
    "8a02 0780"                     # sender-acse-requirements: authentication functional unit
    "8b07 60857405080201"           # mechanism-name: low-level-security
    "ac0a 8008 3132333435363738"    # calling-authentication-value: charstring "12345678"
    "be10 040e"                     # user-information: OCTET STRING of 14
    "01 00 00 00 06"                # InitiateRequest: no dedicated-key, response-allowed default, no QoS, DLMS 6
    "5f1f 04 00 20525f"             # proposed-conformance [APPLICATION 31] BIT STRING (24)
    "ffff")                         # client-max-receive-pdu-size 65535
AARE_ACCEPTED_LLS = H(
    "6136"                          # AARE [APPLICATION 1], 54 octets
    "a109 0607 60857405080101"      # application-context-name
    "a203 0201 00"                  # result: accepted
    "a305 a103 0201 00"             # result-source-diagnostic: acse-service-user null
    "8802 0780"                     # responder-acse-requirements: authentication
    "8907 60857405080201"           # mechanism-name: low-level-security
    "be10 040e"                     # user-information: OCTET STRING of 14
    "08 00 06"                      # InitiateResponse: no QoS, DLMS 6
    "5f1f 04 00 00101d"             # negotiated-conformance: block-transfer-with-get, get, set, selective-access,
    #                                 action
    "0400 0007")                    # server-max-receive-pdu-size 1024, vaa-name 0x0007 (LN)
AARE_WRONG_PASSWORD = H(
    "6124"
    "a109 0607 60857405080101"
    "a203 0201 01"                  # result: rejected-permanent
    "a305 a103 0201 0d"             # result-source-diagnostic: acse-service-user authentication-failure
    "8802 0780"
    "8907 60857405080201")
GET_ENERGY = H("c0 01 c1 0003 0100010800ff 02 00")  # GET.request normal, invoke 1 (confirmed, high), class 3,
#                                                     1.0.1.8.0.255, attribute 2, no selective access
ENERGY_12345_WH = H("c4 01 c1 00 06 00003039")     # GET.response normal, Data: double-long-unsigned 12345


def make_model(truth_path=None, clock=None) -> PhysicalModel:
    meters = [SimMeter(1, "SIM0001", 240.0, 10.0, 5.0, 1000.0)]
    model = PhysicalModel(truth=TruthLog(truth_path), rng=random.Random(1), meters=meters)
    if clock is not None:
        model.clock = clock
        model.last_t = clock()
    model.radios[1] = RadioLink(1, LinkSettings(), LinkDefects(), model.truth, random.Random(2), model.clock)
    return model


def make_sim(settings=None, truth_path=None, clock=None) -> DlmsMeterSim:
    return DlmsMeterSim("meter@1", make_model(truth_path, clock), settings or {})


def client_aarq(password: bytes | None) -> bytes:
    mechanism = enumerations.AuthenticationMechanism.LLS if password else None
    aarq = DlmsConnection(client_system_title=None, authentication_method=mechanism, password=password).get_aarq()
    aarq.system_title = None
    return aarq.to_bytes()


def associated(meter: DlmsMeterSim, client_sap: int = 32) -> Link:
    link = Link("tcp")
    password = b"12345678" if client_sap == 32 else None
    assert meter.handle_apdu(link, client_sap, client_aarq(password))[13:18] == H("a203020100")  # accepted
    return link


# -- TCP wrapper (IEC 62056-47) -----------------------------------------------------------------------------------


def test_wrapper_header_names_version_wports_and_length():
    transport = BlockingTcpTransport("127.0.0.1", 4059, client_logical_address=32, server_logical_address=1)
    request = transport.wrap(GET_ENERGY)
    assert request == H("0001 0020 0001 000d") + GET_ENERGY  # version 1, source wPort 32, destination 1, 13 octets
    answer = wrap(1, 32, ENERGY_12345_WH)
    assert answer == H("0001 0001 0020 0009") + ENERGY_12345_WH
    header = WrapperHeader.from_bytes(answer[:8])
    assert (header.version, header.source_wport, header.destination_wport, header.length) == (1, 1, 32, 9)


# -- association (ACSE) ---------------------------------------------------------------------------------------------


def test_the_clients_lls_aarq_is_the_standard_layout():
    assert client_aarq(b"12345678") == AARQ_LLS


def associate(meter, expected_aare: bytes):
    """AARQ_LLS on a new TCP link; asserts the meter answers expected_aare; returns the link and the parsed AARE."""
    link = Link("tcp")
    aare = meter.handle_apdu(link, 32, AARQ_LLS)
    assert aare == expected_aare
    return link, acse.ApplicationAssociationResponse.from_bytes(aare)


def test_lls_aarq_is_accepted_with_the_negotiated_context():
    meter = make_sim()
    link, parsed = associate(meter, AARE_ACCEPTED_LLS)
    assert parsed.result is enumerations.AssociationResult.ACCEPTED
    assert parsed.authentication is enumerations.AuthenticationMechanism.LLS
    conformance = parsed.user_information.content.negotiated_conformance
    assert (conformance.get, conformance.set, conformance.action, conformance.selective_access,
            conformance.block_transfer_with_get_or_read) == (True, True, True, True, True)
    assert link.associations[32].role == "reader"


def test_wrong_password_is_rejected_with_authentication_failure(tmp_path):
    meter = make_sim({"lls_password": "secret99"}, truth_path=tmp_path / "truth.jsonl")
    link, parsed = associate(meter, AARE_WRONG_PASSWORD)
    assert parsed.result is enumerations.AssociationResult.REJECTED_PERMANENT
    assert parsed.result_source_diagnostics is enumerations.AcseServiceUserDiagnostics.AUTHENTICATION_FAILED
    assert link.associations == {}
    assert meter.handle_apdu(link, 32, GET_ENERGY) == H("d8 01 01")  # no association: service-not-allowed
    event = read_truth(tmp_path / "truth.jsonl")[-1]
    assert (event["event"], event["result"], event["diagnostic"]) == ("dlms.association", "rejected-permanent",
                                                                      "authentication-failure")


@pytest.mark.parametrize(("client_sap", "password", "diagnostic"), [
    (32, None, 14),         # the reader without authentication: authentication-required
    (16, b"12345678", 11),  # the public client offering LLS: mechanism not recognised
    (48, None, 2),          # utility settings without ciphering: application-context-name-not-supported
    (64, None, 1),          # a client SAP the meter does not know: no-reason-given
])
def test_associations_the_meter_does_not_offer_are_rejected(client_sap, password, diagnostic):
    aare = make_sim().handle_apdu(Link("tcp"), client_sap, client_aarq(password))
    parsed = acse.ApplicationAssociationResponse.from_bytes(aare)
    assert (parsed.result, int(parsed.result_source_diagnostics)) == (enumerations.AssociationResult
                                                                      .REJECTED_PERMANENT, diagnostic)


def test_ciphered_context_and_old_dlms_version_are_rejected():
    meter = make_sim()
    ciphered = AARQ_LLS.replace(H("60857405080101"), H("60857405080103"))
    aare = meter.handle_apdu(Link("tcp"), 32, ciphered)
    assert aare[13:25] == H("a203020101 a305a103020102")  # rejected: application-context-name-not-supported
    version_5 = AARQ_LLS.replace(H("0100000006"), H("0100000005"))
    aare = meter.handle_apdu(Link("tcp"), 32, version_5)
    assert aare.endswith(H("be06 0404 0e010601"))  # ConfirmedServiceError: initiate-error dlms-version-too-low
    assert acse.ApplicationAssociationResponse.from_bytes(aare).result is \
        enumerations.AssociationResult.REJECTED_PERMANENT


def test_release_answers_rlre_normal():
    meter = make_sim()
    link = associated(meter)
    assert meter.handle_apdu(link, 32, H("6203800100")) == H("6303800100")
    assert link.associations == {}


# -- GET / SET / ACTION (xDLMS) -------------------------------------------------------------------------------------


def test_get_energy_register_value_and_scaler_unit():
    meter = make_sim()
    meter.meter.register_energy_wh = 12345.9
    request = xdlms.GetRequestNormal(cosem.CosemAttribute(enumerations.CosemInterface.REGISTER,
                                                          cosem.Obis(1, 0, 1, 8, 0, 255), 2)).to_bytes()
    assert request == GET_ENERGY
    assert meter.handle_apdu(associated(meter, 16), 16, request) == H("c4 01 c1 01 03")  # public: read-write-denied
    link = associated(meter, 32)
    answer = meter.handle_apdu(link, 32, request)
    assert answer == ENERGY_12345_WH
    parsed = xdlms.GetResponseFactory.from_bytes(answer)
    assert isinstance(parsed, xdlms.GetResponseNormal) and parsed.data == H("0600003039")
    scaler_unit = meter.handle_apdu(link, 32, GET_ENERGY[:11] + H("03 00"))
    assert scaler_unit == H("c4 01 c1 00 0202 0f00 161e")  # structure {integer 0, enum 30 (Wh)}


@pytest.mark.parametrize(("request_hex", "result"), [
    ("c0 01 c1 0003 0100010900ff 02 00", 4),  # no such object: object-undefined
    ("c0 01 c1 0001 0100010800ff 02 00", 9),  # the energy register is not a class 1 Data: object-class-inconsistent
    ("c0 01 c1 0003 0100010800ff 04 00", 4),  # a register has 3 attributes: object-undefined
    ("c0 01 c1 0003 01000c0700ff 02 00", 3),  # the public client may not read the voltage: read-write-denied
    ("c0 01 c1 0046 000060030aff 02 00", 3),  # ... nor the disconnect control
    ("c0 01 c1 0001 00005e5b09ff 02 00", 3),  # ... nor the name plate's meter type
    ("c0 01 c1 0007 00005e5b0aff 02 00", 3),  # ... nor the name plate profile
    ("c0 01 c1 0007 0000636205ff 02 00", 3),  # ... nor the event log
    ("c0 01 c1 000f 0000280002ff 02 00", 3),  # ... nor the meter reader's association object
    ("c0 01 c1 0040 00002b0003ff 02 00", 3),  # ... nor the utility settings' Security Setup
])
def test_get_errors_are_data_access_results(request_hex, result):
    meter = make_sim()
    answer = meter.handle_apdu(associated(meter, 16), 16, H(request_hex))
    assert answer == H("c4 01 c1 01") + bytes([result])
    assert xdlms.GetResponseFactory.from_bytes(answer).error == enumerations.DataAccessResult(result)


def test_unsupported_services_get_an_exception_response():
    meter = make_sim()
    link = associated(meter)
    assert meter.handle_apdu(link, 32, H("c0 03 c1 01 0003 0100010800ff 02 00")) == H("d8 01 02")  # GET-with-list
    # a ciphered glo-get-request on the reader's unciphered association: service-not-allowed, operation-not-possible
    assert meter.handle_apdu(link, 32, H("c8 00")) == H("d8 01 01")


def test_set_clock_and_the_access_rights(tmp_path):
    meter = make_sim(truth_path=tmp_path / "truth.jsonl")
    target = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = date_time_to_bytes(target, 330)
    assert value == H("07ee 01 02 03 08 22 05 00 feb6 00")  # 2030-01-02 (Wednesday) 08:34:05.00 IST, dev -330
    request = H("c1 01 c1 0008 0000010000ff 02 00 090c") + value
    assert meter.handle_apdu(associated(meter, 16), 16, request) == H("c5 01 c1 03")  # public: read-write-denied
    assert meter.handle_apdu(associated(meter), 32, request) == H("c5 01 c1 03")  # the reader: read-write-denied
    assert meter.clock_offset_s == 0.0
    client = utility(meter)
    assert client.plain(request) == H("c5 01 c1 00")  # utility settings sets it
    assert xdlms.SetResponseFactory.from_bytes(H("c5 01 c1 00")).result is enumerations.DataAccessResult.SUCCESS
    assert meter.clock_offset_s == pytest.approx(target.timestamp() - datetime.now(UTC).timestamp(), abs=2)
    for link, sap in ((associated(meter, 16), 16), (associated(meter), 32)):  # the public client and the reader read it
        read = meter.handle_apdu(link, sap, H("c0 01 c1 0008 0000010000ff 02 00"))
        assert read[:6] == H("c4 01 c1 00 090c")
        assert abs(date_time_from_bytes(read[6:], 0) - target) < timedelta(seconds=2)
    (event,) = [e for e in read_truth(tmp_path / "truth.jsonl") if e["event"] == "clock.set"]
    assert (event["meter_time"][:19], event["by"]) == ("2030-01-02T03:04:05", "utility client 48")
    assert client.plain(request[:-13] + H("1100")) == H("c5 01 c1 0c")  # type-unmatched


def test_only_utility_settings_sets_the_limiter():
    meter = make_sim()
    request = H("c1 01 c1 0047 0000110000ff 04 00 06 00000bb8")  # threshold_normal 3000 W
    assert meter.handle_apdu(associated(meter), 32, request) == H("c5 01 c1 03")  # the reader: read-write-denied
    assert meter.handle_apdu(associated(meter), 32, H("c0 01 c1 0047 0000110000ff 04 00")) == \
        H("c4 01 c1 00 06 000186a0")  # but reads it: 100000 W
    assert utility(meter).plain(request) == H("c5 01 c1 00")
    assert meter.threshold_normal == meter.threshold_active == 3000


def test_remote_disconnect_is_an_action_with_integer_zero(tmp_path):
    meter = make_sim(truth_path=tmp_path / "truth.jsonl")
    request = xdlms.ActionRequestNormal(cosem.CosemMethod(enumerations.CosemInterface.DISCONNECT_CONTROL,
                                                          cosem.Obis(0, 0, 96, 3, 10, 255), 1), H("0f00")).to_bytes()
    assert request == H("c3 01 c0 0046 000060030aff 01 01 0f00")  # method 1, parameters present: integer 0
    assert meter.handle_apdu(associated(meter, 16), 16, request) == H("c7 01 c0 03 00")  # public: read-write-denied
    assert meter.meter.relay_closed
    answer = meter.handle_apdu(associated(meter), 32, request)
    assert answer == H("c7 01 c0 03 00")  # the meter reader too: only utility settings may (test_dlms_security.py)
    assert isinstance(xdlms.ActionResponseFactory.from_bytes(answer), xdlms.ActionResponseNormal)
    assert meter.meter.relay_closed
    assert [e for e in read_truth(tmp_path / "truth.jsonl") if e["event"] == "relay"] == []


# -- disconnect control state machine (Blue Book, class 70) ---------------------------------------------------------


@pytest.mark.parametrize(("mode", "after_reconnect"), [(1, 1), (2, 2), (3, 1), (4, 2), (5, 1), (6, 2)])
def test_remote_reconnect_follows_the_control_mode(mode, after_reconnect):
    meter = make_sim({"control_mode": mode})
    assert meter.remote_disconnect("test") == 0 and meter.control_state == DISCONNECTED
    assert meter.remote_disconnect("test") == 0 and meter.control_state == DISCONNECTED  # nothing to do
    assert meter.remote_reconnect("test") == 0
    assert meter.control_state == after_reconnect  # d: connected (1, 3, 5); a: ready_for_reconnection (2, 4, 6)
    assert meter.meter.relay_closed == (after_reconnect == CONNECTED)
    assert meter.remote_disconnect("test") == 0 and meter.control_state == DISCONNECTED  # b or c


def test_control_mode_0_is_always_connected():
    meter = make_sim({"control_mode": 0})
    assert meter.remote_disconnect("test") == READ_WRITE_DENIED
    assert meter.control_state == CONNECTED and meter.meter.relay_closed


def test_limiter_trips_after_the_minimum_over_threshold_duration(tmp_path):
    now = [1000.0]
    meter = make_sim({"limiter_threshold_w": 1000, "limiter_duration_s": 2}, tmp_path / "truth.jsonl",
                     clock=lambda: now[0])
    model = meter.model
    model.set_source_voltage(240.0, "test")
    model.set_source_output(True, "test")
    model.set_current(10.0, 0.0, "test")
    model.set_current_output(True, "test")
    now[0] += 10  # settled: 2400 W
    meter.check_limiter(now[0])
    now[0] += 1.95
    meter.check_limiter(now[0])
    assert meter.meter.relay_closed
    now[0] += 0.05
    meter.check_limiter(now[0])
    assert not meter.meter.relay_closed and meter.control_state == READY_FOR_RECONNECTION
    events = read_truth(tmp_path / "truth.jsonl")
    trip = next(e for e in events if e["event"] == "limiter.trip")
    assert (trip["power_w"], trip["threshold_w"], trip["over_s"]) == (pytest.approx(2400.0), 1000, pytest.approx(2))
    assert [(e["closed"], e["by"]) for e in events if e["event"] == "relay"] == [(False, "meter@1 limiter")]


# -- HDLC (IEC 62056-46) --------------------------------------------------------------------------------------------

SERVER, CLIENT_32 = address.HdlcAddress(1, None, "server"), address.HdlcAddress(32, None, "client")
UA_PARAMETERS = H("818012 050180 060180 0704 00000001 0804 00000001")  # max info 128 both ways, windows 1


def test_crc_is_the_x25_fcs_of_the_standards_snrm_example():
    assert crc16_x25(H("a007 03 21 93")) == H("0f01")  # 7E A0 07 03 21 93 0F 01 7E
    payload = H("a01e 41 03 73")
    assert crc16_x25(payload) == CRCCCITT().calculate_for(payload)


def test_snrm_gets_ua_with_the_negotiated_parameters():
    link = HdlcLink(make_sim())
    snrm = frames.SetNormalResponseModeFrame(destination_address=SERVER, source_address=CLIENT_32).to_bytes()
    assert snrm == H("7e a007 03 41 93 5a64 7e")  # format 3 length 7, server 1, client 32, SNRM|P, FCS
    (ua,) = link.feed(snrm)
    header = H("a01e 41 03 73")  # length 30, to client 32, from server 1, UA|F
    hcs = CRCCCITT().calculate_for(header)
    assert ua == H("7e") + header + hcs + UA_PARAMETERS + CRCCCITT().calculate_for(header + hcs + UA_PARAMETERS) \
        + H("7e")
    assert frames.UnNumberedAcknowledgmentFrame.from_bytes(ua).payload == UA_PARAMETERS


def test_i_frames_carry_the_apdus_with_llc_and_sequence_numbers():
    meter = make_sim()
    meter.meter.register_energy_wh = 12345.0
    link = HdlcLink(meter)
    link.feed(frames.SetNormalResponseModeFrame(destination_address=SERVER, source_address=CLIENT_32).to_bytes())

    def request(apdu: bytes, ssn: int) -> bytes:
        frame = frames.InformationFrame(SERVER, CLIENT_32, LLC_REQUEST + apdu, send_sequence_number=ssn,
                                        receive_sequence_number=ssn, final=True)
        (answer,) = link.feed(frame.to_bytes())
        return answer

    aare = frames.InformationFrame.from_bytes(request(AARQ_LLS, 0))
    assert (aare.send_sequence_number, aare.receive_sequence_number, aare.final) == (0, 1, True)
    assert aare.payload == LLC_RESPONSE + AARE_ACCEPTED_LLS
    answer = request(GET_ENERGY, 1)
    header = H("a015 41 03 52")  # length 21; control 0x52: N(R) 2, F, N(S) 1, I-frame
    assert answer[:6] == H("7e") + header
    assert answer[6:8] == CRCCCITT().calculate_for(header)
    assert answer[8:-3] == LLC_RESPONSE + ENERGY_12345_WH
    # DISC is answered by UA without information, a second DISC by DM
    disc = frames.DisconnectFrame(SERVER, CLIENT_32).to_bytes()
    assert link.feed(disc) == [hdlc_frame(H("41"), H("03"), 0x73)]
    assert link.feed(disc) == [hdlc_frame(H("41"), H("03"), 0x1F)]


def test_long_answers_are_segmented_and_sent_on_rr():
    link = HdlcLink(make_sim())
    snrm = hdlc_frame(H("03"), H("41"), 0x93, H("818012 050180 060120 0704 00000001 0804 00000001"))
    (ua,) = link.feed(snrm)  # the client receives at most 32 octets of information
    assert hdlc_parameters(ua[8:-3]) == {5: 32, 6: 128, 7: 1, 8: 1}
    first = link.feed(frames.InformationFrame(SERVER, CLIENT_32, LLC_REQUEST + AARQ_LLS).to_bytes())
    segments = []
    while first:
        frame = frames.InformationFrame.from_bytes(first[0])
        segments.append(frame.payload)
        if not frame.segmented:
            break
        rr = frames.ReceiveReadyFrame(SERVER, CLIENT_32, receive_sequence_number=len(segments)).to_bytes()
        first = link.feed(rr)
    assert [len(segment) for segment in segments] == [32, 27]
    assert b"".join(segments) == LLC_RESPONSE + AARE_ACCEPTED_LLS


def test_frames_for_another_logical_device_or_with_a_bad_fcs_are_ignored():
    link = HdlcLink(make_sim())
    assert link.feed(hdlc_frame(H("05"), H("41"), 0x93)) == []  # logical device 2
    good = hdlc_frame(H("03"), H("41"), 0x93)
    assert link.feed(good[:-3] + b"\x00\x00\x7e") == []
    assert len(link.feed(b"\x00\x7e" + good)) == 1  # noise before the flag is skipped


# -- data -----------------------------------------------------------------------------------------------------------


def test_a_xdr_values_decode_as_the_twin_encodes_them():
    encoded = encode_structure(encode_int(LONG_UNSIGNED, 3), encode_octets(obis("1.0.1.7.0.255")),
                                   encode_int(INTEGER, -2), encode_visible("RIGSIM0001"),
                                   encode_bool(True), encode_array([]))
    assert encoded == H("0206 120003 0906 0100010700ff 0ffe 0a0a 52494753494d30303031 0301 0100")
    assert decode_value(encoded) == [3, H("0100010700ff"), -2, "RIGSIM0001", True, []]
    assert decode_one(encoded)[0] == STRUCTURE
    with pytest.raises(DataError):
        decode_one(encoded[:-1])


def test_date_time_deviation_is_minutes_from_local_time_to_utc():
    raw = encode_date_time(datetime(2026, 3, 1, 18, 30, tzinfo=UTC).timestamp(), 330)
    assert raw == H("07ea 03 02 01 00 00 00 00 feb6 00")  # Monday 2026-03-02 00:00 IST, deviation -330
    moment = date_time_from_bytes(raw, 0)
    assert moment == datetime(2026, 3, 1, 18, 30, tzinfo=UTC)
    assert moment.utcoffset() == timedelta(minutes=330)
    unspecified = raw[:9] + struct.pack(">h", -0x8000) + raw[11:]
    assert date_time_from_bytes(unspecified, 330).tzinfo == timezone(timedelta(minutes=330))
    assert decode_date_time(unspecified, 330) == moment.timestamp()


# -- IS 15959-2 object model: association LN, profiles, selective access, block transfer -------------------------

GET_OBJECT_LIST = H("c0 01 c1 000f 0000280000ff 02 00")  # GET association LN 0.0.40.0.0.255 attribute 2
BLOCK_LOAD = H("0100630100ff")  # 1.0.99.1.0.255
T0 = datetime(2026, 3, 2, 6, 30, tzinfo=UTC).timestamp()  # 12:00 IST


def on(meter: DlmsMeterSim, link: Link, client_sap: int) -> Callable[[bytes], bytes]:
    """Send plain APDUs on an unciphered association."""
    return lambda apdu: meter.handle_apdu(link, client_sap, apdu)


def get_in_blocks(send: Callable[[bytes], bytes], request: bytes, limit: int) -> list[bytes]:
    """The raw data of each GET-Response-With-Datablock answering request, each APDU at most limit octets,
    asked for with GET-Request-Next acknowledging the block before (the Data of a GET-Response-Normal when the
    answer fits in one)."""
    blocks, number = [], 0
    answer = send(request)
    if answer[:4] == H("c4 01 c1 00"):
        assert len(answer) <= limit
        return [answer[4:]]
    while True:
        assert len(answer) <= limit
        assert answer[:3] == H("c4 02 c1") and int.from_bytes(answer[4:8], "big") == number + 1
        number += 1
        assert answer[8] == 0  # raw-data
        length, pos = read_length(answer, 9)
        assert pos + length == len(answer)
        blocks.append(answer[pos:])
        if answer[3]:  # last-block
            return blocks
        answer = send(H("c0 02 c1") + number.to_bytes(4, "big"))


def object_list_of(meter: DlmsMeterSim, client_sap: int, request: bytes = GET_OBJECT_LIST) -> dict[str, tuple]:
    """{logical name: (class, version, access rights)} of an object list, read by a client."""
    send = utility(meter).plain if client_sap == 48 else on(meter, associated(meter, client_sap), client_sap)
    data = b"".join(get_in_blocks(send, request, 1024))
    tag, entries = decode_one(data)
    assert tag == 1  # array of object_list_element
    return {".".join(map(str, ln)): (class_id, version, rights)
            for (_, class_id), (_, version), (_, ln), (_, rights) in (entry[1] for entry in entries)}


PUBLIC_OBJECTS = {"0.0.40.0.0.255", "0.0.40.0.1.255",  # the current association and its own
                  "0.0.42.0.0.255", "0.0.96.1.0.255", "0.0.96.1.1.255", "1.0.0.2.0.255",  # identity
                  "0.0.1.0.0.255", "0.0.43.1.3.255", "0.0.43.1.4.255"}  # clock, invocation counters


def modes(rights) -> tuple[dict[int, int], dict[int, int]]:
    """({attribute: access mode}, {method: access mode}) of an access_rights structure."""
    (_, attributes), (_, methods) = rights
    return ({item[1][0][1]: item[1][1][1] for item in attributes}, {item[1][0][1]: item[1][1][1] for item in methods})


def test_each_client_lists_exactly_the_objects_and_rights_it_has():
    meter = make_sim()
    public, reader, utility_list = (object_list_of(meter, sap) for sap in (16, 32, 48))
    assert set(public) == PUBLIC_OBJECTS
    assert reader["0.0.40.0.0.255"][:2] == (15, 1) and reader["1.0.99.1.0.255"][:2] == (7, 1)
    assert {"0.0.96.3.10.255", "0.0.17.0.0.255", "0.0.10.0.1.255", "0.0.94.91.10.255", "1.0.94.91.0.255",
            "1.0.98.1.0.255", "0.0.99.98.5.255", "1.0.1.8.0.255", "0.0.40.0.2.255"} <= set(reader)
    assert not {"0.0.40.0.1.255", "0.0.40.0.3.255", "0.0.43.0.3.255", "0.0.43.0.4.255"} & set(reader)
    assert set(utility_list) == {obis_text(name) for name in meter.objects}  # everything
    for client in (public, reader):  # reads only: no write access, no method access
        for name, (_, _, rights) in client.items():
            attributes, methods = modes(rights)
            assert set(attributes.values()) <= {0, 1} and set(methods.values()) == ({0} if methods else set()), name
    assert modes(public["0.0.1.0.0.255"][2])[0][2] == modes(reader["0.0.1.0.0.255"][2])[0][2] == 1  # clock: read
    attributes, methods = modes(reader["1.0.99.1.0.255"][2])
    assert reader["1.0.99.1.0.255"][2][0][1][1][1] == [(15, 2), (22, 1), (1, [(15, 1), (15, 2)])]  # selectors 1, 2
    assert methods == {1: 0, 2: 0}  # reset and capture: no access
    utility_rights = {name: modes(rights) for name, (_, _, rights) in utility_list.items()}
    assert utility_rights["0.0.1.0.0.255"][0][2] == 3  # utility settings reads and sets the time
    assert [utility_rights["0.0.17.0.0.255"][0][index] for index in (2, 3, 4, 5, 6, 7)] == [1, 3, 3, 3, 3, 3]
    assert utility_rights["0.0.96.3.10.255"][1] == {1: 1, 2: 1}  # remote disconnect and reconnect
    assert utility_rights["0.0.10.0.1.255"][1] == {1: 1}  # the MD reset
    assert utility_rights["0.0.43.0.3.255"][1] == {1: 0, 2: 1}  # key_transfer
    assert utility_rights["0.0.40.0.0.255"][1] == {1: 1, 2: 0, 3: 0, 4: 0}  # reply_to_HLS_authentication


@pytest.mark.parametrize("client_sap", [16, 32])
def test_the_object_list_is_what_the_meter_enforces(client_sap):
    """Every attribute of every object is read, set and invoked by the public client and the meter reader: the
    meter answers each GET as the client's object list says, and refuses every SET and ACTION."""
    meter = make_sim()
    listed = object_list_of(meter, client_sap)
    send = on(meter, associated(meter, client_sap), client_sap)
    for logical_name, obj in meter.objects.items():
        name, (attributes, methods) = obis_text(logical_name), CLASS_SHAPES[obj.class_id]
        readable = modes(listed[name][2])[0] if name in listed else {}
        address = obj.class_id.to_bytes(2, "big") + logical_name
        for index in range(1, attributes + 1):
            answer = send(H("c0 01 c1") + address + bytes([index, 0]))
            if readable.get(index):  # answered: normal, or the first block of a long answer
                assert answer[:4] in (H("c4 01 c1 00"), H("c4 02 c1 00")), (name, index)
            else:
                assert answer == H("c4 01 c1 01 03"), (name, index)  # read-write-denied
            assert send(H("c1 01 c1") + address + bytes([index, 0]) + H("1200 01")) == H("c5 01 c1 03"), (name, index)
        for index in range(1, methods + 1):
            assert send(H("c3 01 c1") + address + bytes([index, 1]) + H("0f00")) == H("c7 01 c1 03 00"), (name, index)
    assert meter.meter.relay_closed and meter.profiles.billing_count == 0


def test_the_association_object_describes_the_association_in_use():
    meter = make_sim()
    link = associated(meter, 32)

    def get(attribute: int) -> bytes:
        return meter.handle_apdu(link, 32, H("c0 01 c1 000f 0000280000ff") + bytes([attribute, 0]))

    assert get(3) == H("c4 01 c1 00 0202 0f20 120001")  # associated_partners_id {client SAP 32, server SAP 1}
    assert get(4) == H("c4 01 c1 00 0907 60857405080101")  # LN referencing, no ciphering
    assert get(5) == H("c4 01 c1 00 0206 0418 00101d 120400 120400 1106 0f00 0900")  # xDLMS context info
    assert get(6) == H("c4 01 c1 00 0907 60857405080201")  # low-level security
    assert get(7) == H("c4 01 c1 01 03")  # the secret: read-write-denied
    assert get(8) == H("c4 01 c1 00 1602")  # associated


def captured_block_load(meter: DlmsMeterSim, count: int) -> None:
    meter.meter.register_energy_wh = 0.0
    for n in range(count):
        meter.meter.register_energy_wh += 10.0 * (n + 1)
        meter.profiles.capture("1.0.99.1.0.255", T0 + n)


def test_a_profile_is_read_by_entry_and_by_range():
    meter = make_sim()
    meter.profiles.block_start_wh = 0.0
    meter.model.supply_voltage_v = lambda: 0.0  # no supply: no samples, average voltage 0
    captured_block_load(meter, 4)
    link = associated(meter)
    get_buffer = H("c0 01 c1 0007") + BLOCK_LOAD + H("02")
    by_entry = meter.handle_apdu(link, 32, get_buffer + H("01 02 0204 0600000002 0600000003 120003 120003"))
    # entries 2..3, column 3 (block energy, 0.1 Wh): 20 Wh and 30 Wh
    assert by_entry == H("c4 01 c1 00 0102 0201 06000000c8 0201 060000012c")
    clock = H("0204 1200 08 0906 0000010000ff 0f02 120000")
    from_to = H("090c 07ea0302 01 0c0001 00 feb6 00 090c 07ea0302 01 0c0002 00 feb6 00")  # 12:00:01..12:00:02 IST
    by_range = meter.handle_apdu(link, 32, get_buffer + H("01 01 0204") + clock + from_to + H("0100"))
    stamps = [encode_date_time(T0 + n, 330) for n in (1, 2)]
    assert by_range == (H("c4 01 c1 00 0102") + b"".join(
        H("0203 090c") + stamp + H("12 0000") + H("06") + (10 * (n + 1) * 10).to_bytes(4, "big")
        for n, stamp in zip((1, 2), stamps, strict=True)))
    energy_only = H("0101 0204 1200 03 0906 0100011d00ff 0f02 120000")
    assert meter.handle_apdu(link, 32, get_buffer + H("01 01 0204") + clock + from_to + energy_only) == \
        H("c4 01 c1 00 0102 0201 06000000c8 0201 060000012c")
    not_a_column = H("0204 1200 03 0906 0100010800ff 0f02 120000")  # the energy register restricts nothing here
    assert meter.handle_apdu(link, 32, get_buffer + H("01 01 0204") + not_a_column + from_to + H("0100")) == \
        H("c4 01 c1 01 fa")  # other-reason
    assert meter.handle_apdu(link, 32, get_buffer + H("01 03 00")) == H("c4 01 c1 01 fa")  # no selector 3


def test_a_long_answer_is_sent_in_blocks_of_the_clients_pdu_size():
    meter = make_sim()
    link = Link("tcp")
    small_pdu = AARQ_LLS[:-2] + H("0080")  # client-max-receive-pdu-size 128
    assert meter.handle_apdu(link, 32, small_pdu)[13:18] == H("a203020100")
    whole = b"".join(get_in_blocks(on(meter, associated(meter), 32), GET_OBJECT_LIST, 1024))  # the meter's own PDU
    blocks = get_in_blocks(on(meter, link, 32), GET_OBJECT_LIST, 128)
    assert b"".join(blocks) == whole and len(blocks) > 5
    assert [len(block) for block in blocks[:-1]] == [128 - 12] * (len(blocks) - 1)
    assert meter.handle_apdu(link, 32, H("c0 02 c1 00000001")) == H("c4 02 c1 01 00000001 01 10")
    meter.handle_apdu(link, 32, GET_OBJECT_LIST)
    assert meter.handle_apdu(link, 32, H("c0 02 c1 00000003")) == H("c4 02 c1 01 00000003 01 13")


def test_events_enter_their_logs_with_the_is15959_codes():
    meter = make_sim()
    link = associated(meter)
    meter.remote_disconnect("test")
    meter.remote_reconnect("test")
    control = meter.handle_apdu(link, 32, H("c0 01 c1 0007 0000636206ff 02 00"))
    _, rows = decode_one(control[4:])
    assert [row[1][1] for row in rows] == [(18, 301), (18, 302)]  # load switch disconnected, connected
    now = encode_date_time(T0, 330)
    assert utility(meter).plain(H("c1 01 c1 0008 0000010000ff 02 00 090c") + now) == H("c5 01 c1 00")
    transactions = meter.handle_apdu(link, 32, H("c0 01 c1 0007 0000636203ff 02 00"))
    assert [row[1][1] for row in decode_one(transactions[4:])[1]] == [(18, 151)]  # real time clock changed
    last_code = meter.handle_apdu(link, 32, H("c0 01 c1 0001 0000600b06ff 02 00"))
    assert last_code == H("c4 01 c1 00 12 012e")


def test_an_md_reset_captures_a_billing_entry():
    meter = make_sim()
    meter.meter.register_energy_wh = 1234.0
    link = associated(meter)
    reset = H("c3 01 c1 0009 00000a0001ff 01 01 120001")
    assert meter.handle_apdu(associated(meter, 16), 16, reset) == H("c7 01 c1 03 00")  # the public client may not
    assert meter.handle_apdu(link, 32, reset) == H("c7 01 c1 03 00")  # nor the meter reader
    client = utility(meter)
    assert client.plain(reset) == H("c7 01 c1 00 00")
    assert client.plain(H("c3 01 c1 0009 00000a0001ff 01 01 120002")) == H("c7 01 c1 fa 00")
    billing = meter.handle_apdu(link, 32, H("c0 01 c1 0007 0100620100ff 02 00"))
    (_, (row,)) = decode_one(billing[4:])
    assert row[1][2] == (6, 1234)  # cumulative energy import, Wh
    assert meter.handle_apdu(link, 32, H("c0 01 c1 0001 0000000100ff 02 00")) == H("c4 01 c1 00 12 0001")


# -- driver settings ------------------------------------------------------------------------------------------------


def make_driver(resource="tcp://127.0.0.1:4059", secrets=None, **settings):
    config = RoleConfig(driver="dlms_meter", resource=resource, settings=settings)
    return driver_class("dlms_meter")("meter@1", config, SetpointLimits(), Transcript(None), secrets)


def test_resources_name_the_transport():
    assert parse_resource("tcp://10.0.0.7", "m") == ("tcp", "10.0.0.7", 4059)
    assert parse_resource("tcp://127.0.0.1:5000", "m") == ("tcp", "127.0.0.1", 5000)
    assert parse_resource("TCPIP0::127.0.0.1::5000::SOCKET", "m") == ("tcp", "127.0.0.1", 5000)
    assert parse_resource("/dev/ttyUSB0", "m") == ("hdlc", "/dev/ttyUSB0", 0)
    assert parse_resource("ASRL/dev/pts/3::INSTR", "m") == ("hdlc", "/dev/pts/3", 0)
    with pytest.raises(ConfigError, match=r"roles\.m\.resource: a DLMS meter is reached at"):
        parse_resource("http://meter", "m")


def test_settings_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match=r"roles\.meter@1\.secrets\.encryption_key: required for HLS-GMAC"):
        make_driver(client="reader", authentication="hls-gmac")
    with pytest.raises(ConfigError, match=r"roles\.meter@1\.secrets\.authentication_key: not a key in hex digits$"):
        make_driver(client="utility", secrets={"encryption_key": "00" * 16, "authentication_key": "secret-value"})
    with pytest.raises(ConfigError, match=r"roles\.meter@1\.secrets\.lls_password: required for LLS"):
        make_driver(client="reader")
    with pytest.raises(ConfigError, match=r"settings\.client: 'admin' is not one of public, reader, utility"):
        make_driver(client="admin")
    driver = make_driver(client="reader", secrets={"lls_password": "12345678"})
    assert (driver.client_sap, driver.authentication, driver.deadline_s) == (32, "lls", 5.0)
    assert driver.make_safe() == ["meter: nothing to switch on the meter's side (its relay is left as it is)"]


@pytest.mark.parametrize(("client", "secrets", "association"), [
    ("reader", {"lls_password": "12345678"}, r"the meter reader association \(SAP 32, lls\)"),
    ("public", {}, r"the public client association \(SAP 16, none\)"),
])
def test_settings_and_commands_on_a_reading_association_are_refused_unsent(client, secrets, association):
    transcript = Transcript(None)
    config = RoleConfig(driver="dlms_meter", resource="tcp://127.0.0.1:9", settings={"client": client})
    driver = driver_class("dlms_meter")("meter@1", config, SetpointLimits(), transcript, secrets)
    prefix = r"meter@1 \(tcp://127\.0\.0\.1:9\): " + association + " may not "
    for action, what in ((driver.remote_disconnect, "operate the disconnect control"),
                         (driver.remote_reconnect, "operate the disconnect control"),
                         (lambda: driver.set_clock(datetime.now(UTC)), "set the clock"),
                         (lambda: driver.set_limiter(1000.0, 5), "set the load limiter")):
        with pytest.raises(ConfigError, match=prefix + what + r": configure roles\.meter@1\.settings client: "
                                                               r"utility with its keys"):
            action()
    assert driver._session is None  # no connection was made
