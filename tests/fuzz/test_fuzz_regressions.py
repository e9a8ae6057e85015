"""Crashes the fuzzing found, each as its smallest case: each must now give the parser's own clear error, naming what
was wrong."""

from __future__ import annotations

import json

import httpx
import pytest
from peers import HttpReplyPeer
from servers import hes_headers
from targets import DLMS_SEEDS, TARGETS, TWIN_DLMS_SEEDS, run_case

from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.errors import ConfigError, InstrumentError
from rig.plan.data import load_plan_data
from rig.sim.dlms import codec
from rig.transcript import Transcript

pytestmark = pytest.mark.xdist_group("fuzz")


def crash_of(name: str, data: bytes, fuzz_context):
    target = TARGETS[name]
    return run_case(target, target.make(fuzz_context), data)


# -- AT, YAML, profile scalers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [b"\r\n+CESQ: 99,99,255,255," + b"9" * 5000 + b",50\r\n\r\nOK\r\n",
                                   b"\r\n+CEREG: " + b"1" * 5000 + b"\r\n+CESQ: 99,99,255,255,20,50\r\n\r\nOK\r\n"])
def test_the_modem_driver_refuses_a_number_of_thousands_of_digits_as_garbage(reply, fuzz_context):
    """int() refuses more than 4300 digits with ValueError; the driver now sees no integer and quotes the line."""
    parse = TARGETS["rig.at.reply"].make(fuzz_context)
    with pytest.raises(Exception) as raised:
        parse(b"\x01" + reply)
    assert type(raised.value).__name__ == "InstrumentError"
    assert "expected" in str(raised.value) and "+CESQ" in str(raised.value)


def test_the_twin_modem_answers_error_to_a_number_of_thousands_of_digits(fuzz_context):
    parse = TARGETS["twin.at"].make(fuzz_context)
    answers = parse(b"AT+IPR=" + b"1" * 5000 + b"\rATS3=" + b"1" * 5000 + b"\rAT\r")
    assert answers[0].endswith(b"\r\n+CME ERROR: 50\r\n")
    assert answers[1].endswith(b"\r\nERROR\r\n")
    assert answers[2].endswith(b"\r\nOK\r\n")


@pytest.mark.parametrize(("text", "message"), [
    (b"a: 1\nb: 2020-13-45\n", ":2: '2020-13-45': not a value its form or tag allows (month must be in 1..12)"),
    (b"a: !!int abc\n", ":1: 'abc': not a value its form or tag allows (invalid literal for int()"),
    (b"a: !!timestamp 2020-01-01x\n", ":1: '2020-01-01x': not a value its form or tag allows"),
    (b"a: " + b"[" * 5000, ": plan data is nested too deeply to read"),
    (b"a: &x [*x]\n", ":1: plan data holds an alias inside its own anchor"),
    (b"a: &x {b: [*x]}\n", ":1: plan data holds an alias inside its own anchor"),
])
def test_a_yaml_file_pyyaml_cannot_construct_is_a_config_error_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "plan.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as raised:
        load_plan_data(path)
    assert str(raised.value).startswith(f"{path}{message}")


def test_an_alias_used_twice_is_no_cycle(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"a: &x [1, 2]\nb: [*x, *x]\n")
    assert load_plan_data(path).b == [[1, 2], [1, 2]]


def _profile_with_scaler(scaler: bytes) -> bytes:
    """The profile seed {capture_objects, buffer, scaler profile's} with the energy column's scaler replaced."""
    return DLMS_SEEDS[-1].replace(codec.encode_scaler_unit(-3, "Wh"),
                        codec.encode_structure(scaler, codec.encode_int(codec.ENUM, 30)))


def test_a_scaler_beyond_an_integer_is_refused_instead_of_raising_ten_to_its_power(fuzz_context):
    """A profile column scaled by 10**(2**62) never finished; a scaler outside -128..127 is no scaler_unit now."""
    parse = TARGETS["rig.dlms.profile"].make(fuzz_context)
    with pytest.raises(Exception) as raised:
        parse(_profile_with_scaler(codec.encode_int(codec.LONG64, -2**62)))
    assert type(raised.value).__name__ == "InstrumentError"
    assert "column 1.0.1.8.0.255: no scaler_unit in 1.0.94.91.4.255" in str(raised.value)


def test_a_scaler_within_an_integer_still_scales(fuzz_context):
    profile = TARGETS["rig.dlms.profile"].make(fuzz_context)(_profile_with_scaler(codec.encode_int(codec.INTEGER, -3)))
    assert profile.rows[0].values[1] == pytest.approx(1.234)
    assert profile.columns[1].unit == "Wh"


def _register_host(scaler: bytes, value: bytes):
    """DlmsMeter's register reading, answered from a scaler_unit and a value (as A-XDR) instead of a meter."""
    from drivers.dlms_meter import DlmsMeter, decode_value

    class RegisterHost(DlmsMeter):
        def __init__(self):
            self.answers = {3: codec.encode_structure(scaler, codec.encode_int(codec.ENUM, 30)), 2: value}

        def _where(self) -> str:
            return "meter@1 (fuzz)"

        def _get_value(self, _session, _logical_name, _class_id, index, _access=None):
            return decode_value(self.answers[index])

    return RegisterHost(), type("Session", (), {"scalers": {}})()


def test_a_register_scaler_beyond_an_integer_is_refused_instead_of_overflowing():
    """10.0 ** 400 raised OverflowError; a scaler outside -128..127 is no scaler_unit now."""
    host, session = _register_host(codec.encode_int(codec.LONG, 400), codec.encode_int(codec.DOUBLE_LONG_UNSIGNED, 1))
    with pytest.raises(InstrumentError) as raised:
        host._register(session, "1.0.1.8.0.255", (30,))
    assert str(raised.value) == ("meter@1 (fuzz): 1.0.1.8.0.255 scaler_unit is [400, 30], not {scaler -128..127, "
                                 "unit 0..255}")


def test_a_register_scaler_at_the_end_of_its_range_still_scales():
    host, session = _register_host(codec.encode_int(codec.INTEGER, 127),
                                   codec.encode_int(codec.DOUBLE_LONG_UNSIGNED, 2))
    assert host._register(session, "1.0.1.8.0.255", (30,)) == pytest.approx(2e127)


DEEP_ARRAY = b"\x01\x01" * 3000 + b"\x00"  # 3,000 arrays inside each other


def nested_arrays(depth: int) -> bytes:
    return b"\x01\x01" * depth + b"\x00"


# -- A-XDR nesting: the rig's decoder and the twin's -------------------------------------------------------------------


def test_rig_dlms_decode_of_deeply_nested_arrays_is_a_clear_error(fuzz_context):
    from drivers.dlms_meter import MAX_DATA_DEPTH, decode_value
    assert crash_of("rig.dlms.data", DEEP_ARRAY, fuzz_context) is None
    with pytest.raises(ValueError, match=r"^A-XDR data nested deeper than 64 levels$"):
        decode_value(DEEP_ARRAY)
    with pytest.raises(ValueError, match=r"^A-XDR data nested deeper than 64 levels$"):
        decode_value(nested_arrays(MAX_DATA_DEPTH + 1))
    value = decode_value(nested_arrays(MAX_DATA_DEPTH))
    for _ in range(MAX_DATA_DEPTH):
        (value,) = value
    assert value is None


def test_a_profile_nested_too_deeply_is_an_instrument_error(fuzz_context):
    parse = TARGETS["rig.dlms.profile"].make(fuzz_context)
    with pytest.raises(InstrumentError, match=r"cannot decode: A-XDR data nested deeper than 64 levels"):
        parse(DEEP_ARRAY)


def test_twin_dlms_decode_of_deeply_nested_arrays_is_a_clear_error(fuzz_context):
    assert crash_of("twin.dlms.codec", DEEP_ARRAY, fuzz_context) is None
    with pytest.raises(codec.DataError, match=r"^A-XDR data nested deeper than 64 levels$"):
        codec.decode_one(DEEP_ARRAY)
    assert codec.decode_one(nested_arrays(codec.MAX_DATA_DEPTH))[0] == codec.ARRAY


def _get_request(class_id: int, logical_name: str, index: int, access: bytes) -> bytes:
    obis = bytes(int(part) for part in logical_name.split("."))
    return bytes([0xC0, 1, 0xC1]) + class_id.to_bytes(2, "big") + obis + bytes([index]) + access


def test_the_twin_meter_refuses_a_selective_access_nested_too_deeply_and_serves_the_next_request(fuzz_context):
    """The recursion once escaped handle_apdu and ended the connection's task; now the GET is answered
    type-unmatched and the association goes on."""
    from rig.sim.dlms.association import SERVER_CONFORMANCE, Association, Link
    meter = fuzz_context.twin.twin.instruments["meter@1"]
    link = Link("fuzz")
    link.associations[32] = Association(32, "reader", SERVER_CONFORMANCE, 0x1E1D)
    deep = _get_request(7, "1.0.99.1.0.255", 2, b"\x01\x01" + DEEP_ARRAY)
    energy = _get_request(3, "1.0.1.8.0.255", 2, b"\x00")
    refused, answered = (fuzz_context.twin.call(meter.handle_apdu, link, 32, apdu) for apdu in (deep, energy))
    assert refused == bytes.fromhex("c401c1010c")  # GET-Response-Normal, data-access-result type-unmatched (12)
    assert answered[:4] == bytes.fromhex("c401c100")  # GET-Response-Normal with data
    assert answered[4] == codec.DOUBLE_LONG_UNSIGNED


# -- HDLC: negotiated information field length, inter-octet time-out ---------------------------------------------------

SERVER_ADDRESS, CLIENT_ADDRESS = b"\x02\x23", b"\x21"  # logical device 1, physical 17; public client 16


def _on_twin(fuzz_context, feed):
    """feed(link) run on the twin's loop with a fresh HDLC link to meter@1."""
    from rig.sim.dlms.hdlc import HdlcLink
    meter = fuzz_context.twin.twin.instruments["meter@1"]
    return fuzz_context.twin.call(lambda: feed(HdlcLink(meter)))


def test_twin_hdlc_snrm_proposing_max_info_0_gets_the_least_length_32(fuzz_context):
    """Max info 0 once made the segmentation a range() of step 0 (ValueError) at the next answer; now the twin
    agrees to 32 octets (IEC 62056-46 and IC 23: 32..2030) and segments its answers so."""
    from rig.sim.dlms.hdlc import LLC_REQUEST, hdlc_frame, hdlc_parameters
    snrm = hdlc_frame(SERVER_ADDRESS, CLIENT_ADDRESS, 0x93, bytes.fromhex("818006 050100 060100"))
    assert crash_of("twin.dlms.hdlc", snrm, fuzz_context) is None
    aarq = hdlc_frame(SERVER_ADDRESS, CLIENT_ADDRESS, 0x10, LLC_REQUEST + TWIN_DLMS_SEEDS[0][1:])
    (ua,), (first,) = _on_twin(fuzz_context, lambda link: (link.feed(snrm), link.feed(aarq)))
    assert hdlc_parameters(ua[9:-3]) == {5: 32, 6: 32, 7: 1, 8: 1}
    assert first[1] & 0x08  # segmented: more follows on RR
    assert len(first[9:-3]) == 32  # flag, format 2, client 1, server 2, control, HCS 2 | information | FCS 2, flag


@pytest.mark.parametrize(("proposed", "agreed"), [(None, 128), (0, 32), (31, 32), (32, 32), (100, 100), (5000, 128)])
def test_twin_hdlc_max_info_kept_within_its_range(proposed, agreed):
    from rig.sim.dlms.hdlc import negotiated_max_info
    assert negotiated_max_info(proposed) == agreed


def test_twin_hdlc_drops_a_partial_frame_after_the_inter_octet_timeout(fuzz_context):
    """A frame whose length field promises 2,047 octets swallows what follows until the inter-octet time-out
    (1 s on the twin) passes without an octet; then the partial frame is dropped and an SNRM is answered."""
    from rig.sim.dlms.hdlc import INTER_OCTET_TIMEOUT_S, UA, encode_hdlc_parameters, hdlc_frame
    snrm = hdlc_frame(SERVER_ADDRESS, CLIENT_ADDRESS, 0x93)
    partial = bytes.fromhex("7e a7ff 21 0223 10".replace(" ", ""))

    def feed(link):
        return [link.feed(partial, now=100.0), link.feed(snrm, now=100.5),
                link.feed(snrm, now=100.5 + INTER_OCTET_TIMEOUT_S + 0.01)]

    opened, within, after = _on_twin(fuzz_context, feed)
    assert (opened, within) == ([], [])
    assert INTER_OCTET_TIMEOUT_S == 1.0
    assert after == [hdlc_frame(CLIENT_ADDRESS, SERVER_ADDRESS, UA | 0x10, encode_hdlc_parameters(128, 128))]


# -- twin HES: bodies -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "message"), [
    (b"[" * 100_000, "the body is not valid JSON: nested too deeply to read"),
    (b'{"amount": 12.1e999999999999999999999}',
     "the body is not valid JSON: a number beyond decimal arithmetic (InvalidOperation)"),
])
def test_twin_hes_body_beyond_the_json_decoder_is_a_400(body, message, fuzz_context):
    from rig.sim.hes.api_base import ApiError
    assert crash_of("twin.hes.body", b"\x00" + body, fuzz_context) is None
    with pytest.raises(ApiError) as raised:
        TARGETS["twin.hes.body"].make(fuzz_context)(b"\x00" + body)
    assert (raised.value.status, str(raised.value)) == (400, message)


def test_twin_hes_answers_400_and_422_over_http_and_keeps_its_clock(fuzz_context):
    """Each of these once answered 500 (a RecursionError in the body's parsing or the audit's reading of a group
    command's accounts, decimal.InvalidOperation) or, for a time 2,025 years back, left the HES's clock unreadable."""
    base = fuzz_context.twin.resources["hes"]
    with httpx.Client(base_url=base, headers=hes_headers(fuzz_context), timeout=5) as client:
        before = client.get("/clock").json()["offset_s"]
        deep = client.post("/accounts/SIM0001/recharge", content=b"[" * 100_000,
                           headers={"Content-Type": "application/json"})
        group = client.post("/group-commands", content=b"[" * 100_000, headers={"Content-Type": "application/json"})
        huge = client.post("/accounts/SIM0001/recharge", json={"amount": 1e308})
        exponent = client.post("/accounts/SIM0001/recharge", content=b'{"amount": 1e999999999}',
                               headers={"Content-Type": "application/json"})
        ancient = client.put("/clock", json={"local_time": "0001-01-01T00:00:00"})
        after = client.get("/clock")
    assert (deep.status_code, deep.json()["error"]) == (400, "the body is not valid JSON: nested too deeply to read")
    assert (group.status_code, group.json()["error"]) == (400, deep.json()["error"])  # its audit entry: no accounts
    assert huge.status_code == 422 and huge.json()["field"] == "amount"
    assert exponent.status_code == 422 and exponent.json()["field"] == "amount"
    assert ancient.status_code == 422 and ancient.json()["field"] == "local_time"
    assert ancient.json()["error"].startswith("local_time: '0001-01-01T00:00:00' is more than 316224000 s from")
    assert after.status_code == 200 and after.json()["offset_s"] == before


# -- the rig's HES driver: answers of the wrong shape ------------------------------------------------------------------


@pytest.mark.parametrize(("parse", "answer", "message"), [
    ("account_of", {}, "HES account: account is missing"),
    ("account_of", {"account": "SIM0001"}, "HES account: balance is missing"),
    ("account_of", [], "HES account: answered [], expected a JSON object"),
    ("account_of", "x", "HES account: answered 'x', expected a JSON object"),
    ("account_of", {"account": "A", "balance": "1.00", "emergency_credit": 5},
     "HES account: emergency_credit is 5, expected a JSON object"),
    ("account_of", {"account": "A", "balance": "1.00", "last_energy_wh": [1]},
     "HES account: last_energy_wh is [1], expected a finite number"),
    ("account_of", {"account": {"id": 1}, "balance": "1.00"}, "HES account: account is {'id': 1}, expected a string"),
    ("credited_of", 0, "HES recharge: answered 0, expected a JSON object"),
    ("credited_of", {"account": {"account": "A", "balance": "x"}},
     "HES recharge: account.balance must be a decimal amount, got 'x'"),
    ("credited_of", {"account": {"account": "A", "balance": "1"}, "reconnect": {"id": "c"}},
     "HES recharge: reconnect.account is missing"),
    ("command_of", [], "HES command: answered [], expected a JSON object"),
    ("command_of", {"id": "c", "account": "A", "action": "connect", "status": "queued", "attempts": "x"},
     "HES command: attempts is 'x', expected an integer"),
    ("command_of", {"id": "c", "account": "A", "action": "connect", "status": None},
     "HES command: status is null"),
    ("group_of", {"id": "g", "refused": [{"reason": "r"}]}, "HES group command: refused[0].account is missing"),
    ("group_of", {"id": "g", "commands": [{"id": "c"}]}, "HES group command: commands[0].account is missing"),
    ("group_of", {"id": "g", "held": "SIM0001"}, "HES group command: held is 'SIM0001', expected a list"),
    ("alert_of", {"seq": "2026-13-45", "account": "A", "threshold_pct": 30, "balance": "1.00"},
     "HES alert: seq is '2026-13-45', expected an integer"),
    ("alert_of", {"seq": 1, "account": "A", "threshold_pct": True, "balance": "1.00"},
     "HES alert: threshold_pct is True, expected a finite number"),
    ("audit_entry_of", {"seq": 1, "outcome": "done", "status": "x"},
     "HES audit entry: status is 'x', expected an integer"),
    ("audit_entry_of", {"seq": 1, "outcome": "done", "status": 200, "accounts": [1]},
     "HES audit entry: accounts[0] is 1, expected a string"),
    ("local_time_of", {"local_time": "2026-13-45T25:61:00"},
     "HES clock: local_time is '2026-13-45T25:61:00', expected an ISO 8601 time"),
    ("local_time_of", {}, "HES clock: local_time is missing"),
])
def test_rig_hes_answer_of_the_wrong_shape_is_a_clear_error(parse, answer, message):
    from drivers import hes
    with pytest.raises(hes.HesAnswerError) as raised:
        getattr(hes, parse)(answer)
    assert str(raised.value) == message


@pytest.mark.parametrize("answer", [{}, {"account": "SIM0001"}, [], "x", {"account": "A", "balance": "1.00",
                                                                           "emergency_credit": 5}])
def test_rig_hes_account_answer_of_the_wrong_shape_is_no_crash(answer, fuzz_context):
    assert crash_of("rig.hes.answer", b"\x00" + json.dumps(answer).encode(), fuzz_context) is None


TOKEN = "Zq3-fuzz-bearer-token-0123456789abcdef"


@pytest.fixture
def hes_on_peer():
    from drivers.hes import HesClient
    peer = HttpReplyPeer()
    config = RoleConfig(driver="hes_http", resource=peer.resource, timeout_s=2)
    client = HesClient("hes", config, SetpointLimits(), Transcript(None), {"token": TOKEN})
    client.open()
    yield client, peer
    client.close()
    peer.close()


@pytest.mark.parametrize(("call", "reply", "message"), [
    (lambda c: c.account("SIM0001"), b'{"account": "SIM0001"}', "GET /accounts/SIM0001 answer: balance is missing"),
    (lambda c: c.clock(), b"[]", "GET /clock answer: answered [], expected a JSON object"),
    (lambda c: c.clock(), json.dumps({"local_time": TOKEN}).encode(),
     "GET /clock answer: local_time is '***', expected an ISO 8601 time"),
    (lambda c: c.set_clock_offset(5), b'{"offset_s": 5}', "PUT /clock answer: local_time is missing"),
    (lambda c: c.accounts(), b'{"accounts": []}',
     "GET /accounts answer: answered {'accounts': []}, expected a JSON array"),
    (lambda c: c.audit(), b'[{"seq": 1, "outcome": "done"}]', "GET /audit answer: [0].status is missing"),
    (lambda c: c.approval_above_meters(), b'{"approval_above_meters": "ten"}',
     "GET /status answer: approval_above_meters is 'ten', expected an integer"),
    (lambda c: c.policy_name(), b"[1]", "GET /status answer: answered [1], expected a JSON object"),
    (lambda c: c.tariff(), b'{"per_kwh": {}}', "GET /tariff answer: per_kwh must be a decimal amount, got {}"),
    (lambda c: c.identify(), b'{"manufacturer": "m"}', "GET /version answer: product is missing"),
    (lambda c: c.clock(), b"[" * 100_000, "'GET /clock' answered 200 with JSON nested too deeply to decode"),
])
def test_the_hes_driver_names_role_address_request_and_field_and_never_the_token(hes_on_peer, call, reply, message):
    from drivers.hes import HesAnswerError
    client, peer = hes_on_peer
    peer.reply = reply
    with pytest.raises(HesAnswerError) as raised:
        call(client)
    assert str(raised.value) == f"hes ({peer.resource}): {message}"
    assert TOKEN not in str(raised.value)


def test_the_hes_driver_reads_a_well_shaped_answer_after_a_wrong_one(hes_on_peer):
    client, peer = hes_on_peer
    peer.reply = b"[" * 100_000
    with pytest.raises(InstrumentError):
        client.clock()
    peer.reply = b'{"local_time": "2026-03-10T12:00:00.000+05:30", "offset_s": 0}'
    assert client.clock().isoformat() == "2026-03-10T12:00:00+05:30"
