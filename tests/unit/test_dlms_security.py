"""The twin meter's DLMS security, exchange by exchange (Green Book, IEC 62056-5-3: HLS-GMAC, security suite 0):
dlms-cosem's client as utility settings (client SAP 48) against the meter's association model, the ciphered APDU
layouts, and what the meter refuses: a replayed frame, a stale invocation counter, a wrong key, a bad tag, a
reader reaching for the relay. Key change through Security Setup (class 64) with an RFC 3394 wrapped key."""

import json

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from dlms_clients import AK, CLIENT_TITLE, EK, HLS_REPLY, METER_TITLE, UTILITY, Client
from dlms_cosem import cosem, dlms_data, enumerations, security, state
from dlms_cosem.protocol import acse, xdlms
from test_dlms_codec import H, associated, make_model, make_sim

from rig.sim.defects import MeterDefects
from rig.sim.dlms.codec import encode_array, encode_int, encode_octets, encode_structure
from rig.sim.dlms.meter import DlmsMeterSim
from rig.sim.dlms.security import EXAMPLE_MASTER_KEY, decrypt, encrypt, gmac
from rig.sim.truth import read_truth

CLOCK = cosem.CosemAttribute(enumerations.CosemInterface(8), cosem.Obis(0, 0, 1, 0, 0, 255), 2)
DISCONNECT = cosem.CosemMethod(enumerations.CosemInterface(70), cosem.Obis(0, 0, 96, 3, 10, 255), 1)


def utility_meter(tmp_path=None, **defects) -> DlmsMeterSim:
    model = make_model(tmp_path / "truth.jsonl" if tmp_path else None)
    if defects:
        model.meters[0].defects = MeterDefects(**defects)
    return DlmsMeterSim("meter@1", model, {})


def truth(tmp_path, name: str) -> list[dict]:
    return [event for event in read_truth(tmp_path / "truth.jsonl") if event["event"] == name]


def test_hls_gmac_four_passes_with_their_layouts(tmp_path):
    meter = utility_meter(tmp_path)
    client = Client(meter)
    aare, answer = client.associate()
    aarq = client.sent[0]
    assert aarq[:2] == H("606d")
    assert H("a109 0607 60857405080103") in aarq  # application context: LN referencing with ciphering
    assert H("a60a 0408") + CLIENT_TITLE in aarq  # calling AP title: the client's system title
    assert H("8a02 0780 8b07 60857405080205") in aarq  # authentication functional unit, mechanism 5 (HLS-GMAC)
    assert H("ac22 8020") + client.connection.client_to_meter_challenge in aarq  # CtoS, 32 octets
    assert H("be23 0421 211f 30 00000001") in aarq  # glo-initiate-request: SC 0x30, IC 1, 26 octets ciphered+tag
    # pass 2: accepted pending authentication, the meter's system title and its challenge StoC (16 octets)
    assert (aare.result, int(aare.result_source_diagnostics)) == (enumerations.AssociationResult.ACCEPTED, 14)
    assert aare.system_title == METER_TITLE and len(aare.authentication_value) == 16
    assert isinstance(aare.user_information.content, xdlms.InitiateResponse)  # deciphered by the client
    assert aare.user_information.content.negotiated_conformance.general_protection
    # pass 3: general-glo-ciphering with the client's system title, IC 2, holding f(StoC) under IC 2
    reply = client.sent[1]
    assert reply[:12] == H("db 08") + CLIENT_TITLE + H("31 30") and reply[12:16] == H("00000002")
    plain = decrypt(EK, AK, CLIENT_TITLE, 2, reply[16:])
    f_stoc = H("10 00000002") + gmac(EK, AK, CLIENT_TITLE, 2, aare.authentication_value)
    assert plain == H("c3 01 c0 000f 0000280000ff 01 01 0911") + f_stoc
    # pass 4: success with f(CtoS) under the meter's system title, verified by the client
    assert isinstance(answer, xdlms.ActionResponseNormalWithData)
    assert client.connection.state.current_state is state.READY
    assert [e["result"] for e in truth(tmp_path, "dlms.hls")] == ["authenticated"]


def test_ciphered_requests_are_answered_ciphered_in_the_same_form():
    meter = utility_meter()
    client = Client(meter)
    client.associate()
    answer = client.exchange(xdlms.GetRequestNormal(
        cosem.CosemAttribute(enumerations.CosemInterface(1), cosem.Obis(0, 0, 96, 1, 0, 255), 2)))
    assert answer.data == H("0a07") + b"SIM0001"
    # service-specific glo-get-request (0xC8): answered with glo-get-response (0xCC), no system title
    counter = client.connection.client_invocation_counter
    request = H("c0 01 c1 0001 0000600100ff 02 00")
    ciphered = H("c8 1e 30") + counter.to_bytes(4, "big") + encrypt(EK, AK, CLIENT_TITLE, counter, request)
    glo = meter.handle_apdu(client.link, UTILITY, ciphered)
    assert glo[:3] == H("cc 1e 30")
    meter_counter = int.from_bytes(glo[3:7], "big")
    assert decrypt(EK, AK, METER_TITLE, meter_counter, glo[7:]) == H("c4 01 c1 00 0a07") + b"SIM0001"


def test_utility_settings_may_switch_the_relay_and_the_reader_may_not(tmp_path):
    meter = utility_meter(tmp_path)
    request = xdlms.ActionRequestNormal(DISCONNECT, H("0f00"))
    reader = associated(meter, 32)
    assert meter.handle_apdu(reader, 32, request.to_bytes()) == H("c7 01 c0 03 00")  # read-write-denied
    assert meter.meter.relay_closed
    client = Client(meter)
    client.associate()
    answer = client.exchange(request)
    assert isinstance(answer, xdlms.ActionResponseNormal) and answer.status is enumerations.ActionResultStatus.SUCCESS
    assert not meter.meter.relay_closed
    assert [(e["closed"], e["by"]) for e in truth(tmp_path, "relay")] == [(False, "meter@1 remote_disconnect")]
    assert [e["by"] for e in truth(tmp_path, "disconnect_control")] == ["utility client 48"]


def test_the_reader_can_disconnect_defect_opens_the_relay_to_the_reader():
    meter = utility_meter(reader_can_disconnect=True)
    answer = meter.handle_apdu(associated(meter, 32), 32, xdlms.ActionRequestNormal(DISCONNECT, H("0f00")).to_bytes())
    assert answer == H("c7 01 c0 00 00") and not meter.meter.relay_closed


def test_a_replayed_frame_is_refused_and_answered_with_an_invocation_counter_error(tmp_path):
    meter = utility_meter(tmp_path)
    client = Client(meter)
    client.associate()
    captured = client.connection.send(xdlms.GetRequestNormal(CLOCK))
    first = client.raw(captured)
    assert first[0] == 0xDB
    assert client.raw(captured) == H("d8 01 06")  # service-not-allowed, invocation-counter-error
    (refusal,) = truth(tmp_path, "dlms.ciphered_refused")
    assert refusal["reason"] == "invocation counter 3 not above 3"
    # the stale counter of a freshly ciphered frame is refused alike
    stale = xdlms.GeneralGlobalCipher(CLIENT_TITLE, security.SecurityControlField(0, True, True), 2,
                                      encrypt(EK, AK, CLIENT_TITLE, 2, xdlms.GetRequestNormal(CLOCK).to_bytes()))
    assert client.raw(stale.to_bytes()) == H("d8 01 06")


def test_the_accepts_replay_defect_answers_a_replay():
    meter = utility_meter(accepts_replay=True)
    client = Client(meter)
    client.associate()
    captured = client.connection.send(xdlms.GetRequestNormal(CLOCK))
    client.raw(captured)
    assert client.raw(captured)[0] == 0xDB  # answered, ciphered


@pytest.mark.parametrize("damage", ["wrong_authentication_key", "wrong_encryption_key", "flipped_tag_bit"])
def test_a_wrong_key_or_a_bad_tag_is_refused_alike(damage, tmp_path):
    meter = utility_meter(tmp_path)
    keys = {"wrong_authentication_key": (EK, AK[:-1] + b"\x00"), "wrong_encryption_key": (AK, AK)}.get(damage,
                                                                                                       (EK, AK))
    client = Client(meter, keys)
    aarq = client.connection.send(client.connection.get_aarq())
    if damage == "flipped_tag_bit":
        aarq = aarq[:-1] + bytes([aarq[-1] ^ 1])
    aare = client.raw(aarq)
    # rejected-permanent, no-reason-given, ConfirmedServiceError initiateError application-reference
    # deciphering-error: the same octets whatever went wrong
    assert aare == H("612c a109 0607 60857405080103 a203 0201 01 a305 a103 0201 01 8802 0780 8907 60857405080205"
                     "be06 0404 0e010006")
    parsed = acse.ApplicationAssociationResponse.from_bytes(aare)
    assert parsed.user_information.content.error is enumerations.ApplicationReferenceError.DECIPHERING_ERROR
    assert truth(tmp_path, "dlms.association")[0]["result"] == "rejected-permanent"


def test_a_bad_tag_inside_an_association_gets_a_deciphering_error():
    meter = utility_meter()
    client = Client(meter)
    client.associate()
    frame = bytearray(client.connection.send(xdlms.GetRequestNormal(CLOCK)))
    frame[-1] ^= 0x80
    assert client.raw(bytes(frame)) == H("d8 01 05")  # service-not-allowed, deciphering-error
    assert client.raw(xdlms.GetRequestNormal(CLOCK).to_bytes()) == H("d8 01 01")  # unciphered: not on this policy


def test_a_wrong_hls_answer_releases_the_association():
    meter = utility_meter()
    client = Client(meter)
    client.exchange(client.connection.get_aarq())
    wrong = H("10 00000002") + bytes(12)
    answer = client.exchange(xdlms.ActionRequestNormal(HLS_REPLY, dlms_data.OctetStringData(wrong).to_bytes()))
    assert isinstance(answer, xdlms.ActionResponseNormal)
    assert answer.status is enumerations.ActionResultStatus.OTHER_REASON
    assert UTILITY not in client.link.associations


def test_nothing_but_the_hls_reply_is_served_before_authentication():
    meter = utility_meter()
    client = Client(meter)
    client.exchange(client.connection.get_aarq())
    get = encrypt(EK, AK, CLIENT_TITLE, 2, xdlms.GetRequestNormal(CLOCK).to_bytes())
    answer = client.raw(xdlms.GeneralGlobalCipher(CLIENT_TITLE, security.SecurityControlField(0, True, True), 2,
                                                  get).to_bytes())
    plain = decrypt(EK, AK, METER_TITLE, int.from_bytes(answer[12:16], "big"), answer[16:])
    assert plain == H("d8 01 01")  # service-not-allowed, operation-not-possible


def test_the_ignores_hls_tag_defect_accepts_a_wrong_authentication_key():
    meter = utility_meter(ignores_hls_tag=True)
    client = Client(meter, (EK, AK[:-1] + b"\x00"))
    answer = client.raw(client.connection.send(client.connection.get_aarq()))
    assert acse.ApplicationAssociationResponse.from_bytes(answer).result is enumerations.AssociationResult.ACCEPTED


def test_the_public_client_reads_the_invocation_counter_and_a_restart_keeps_it(tmp_path):
    settings = {"state_dir": str(tmp_path / "state")}
    meter = DlmsMeterSim("meter@1", make_model(), settings)
    client = Client(meter, counter=41)
    client.associate()  # ICs 41 (AARQ) and 42 (HLS reply)
    public = associated(meter, 16)
    read = meter.handle_apdu(public, 16, H("c0 01 c1 0001 00002b0103ff 02 00"))
    assert read == H("c4 01 c1 00 06 0000002a")  # double-long-unsigned 42
    saved = json.loads((tmp_path / "state" / "meter-1-invocation-counters.json").read_text())
    assert saved["utility"]["clients"] == {CLIENT_TITLE.hex(): 42}
    assert "key" not in json.dumps(saved).lower() and EK.hex() not in json.dumps(saved)
    restarted = DlmsMeterSim("meter@1", make_model(), settings)
    again = Client(restarted, counter=42)  # not above 42: refused after the restart too
    aare = again.raw(again.connection.send(again.connection.get_aarq()))
    assert aare.endswith(H("0e010006"))
    assert Client(restarted, counter=43).associate()[1].status is enumerations.ActionResultStatus.SUCCESS


def test_the_public_client_may_read_the_counter_but_not_the_security_setup():
    meter = make_sim()
    public = associated(meter, 16)
    assert meter.handle_apdu(public, 16, H("c0 01 c1 0001 00002b0103ff 02 00"))[:4] == H("c4 01 c1 00")
    assert meter.handle_apdu(public, 16, H("c0 01 c1 0040 00002b0003ff 05 00")) == H("c4 01 c1 01 03")


def test_key_transfer_wraps_the_new_key_under_the_master_key(tmp_path):
    meter = utility_meter(tmp_path)
    client = Client(meter)
    client.associate()
    new_key = H("00112233445566778899AABBCCDDEEF0")
    wrapped = aes_key_wrap(EXAMPLE_MASTER_KEY, new_key)
    assert len(wrapped) == 24
    transfer = encode_array([encode_structure(encode_int(22, 0), encode_octets(wrapped))])
    method = cosem.CosemMethod(enumerations.CosemInterface(64), cosem.Obis(0, 0, 43, 0, 3, 255), 2)
    answer = client.exchange(xdlms.ActionRequestNormal(method, transfer))  # answered under the old key
    assert answer.status is enumerations.ActionResultStatus.SUCCESS
    assert meter.security.setup("utility").encryption_key == new_key
    event = truth(tmp_path, "dlms.key_transfer")[0]
    assert (event["keys"], event["result"]) == (["global unicast encryption key"], "accepted")
    assert new_key.hex() not in (tmp_path / "truth.jsonl").read_text().lower()
    assert Client(meter, (new_key, AK)).associate()[1].status is enumerations.ActionResultStatus.SUCCESS
    refused = Client(meter, (EK, AK), counter=100)
    assert refused.raw(refused.connection.send(refused.connection.get_aarq())).endswith(H("0e010006"))
    bad = encode_array([encode_structure(encode_int(22, 0), encode_octets(aes_key_wrap(AK, new_key)))])
    client = Client(meter, (new_key, AK), counter=200)
    client.associate()
    assert client.exchange(xdlms.ActionRequestNormal(method, bad)).status is \
        enumerations.ActionResultStatus.OTHER_REASON  # not wrapped under the master key
    assert meter.security.setup("utility").encryption_key == new_key
