"""The RCDAT driver against the twin's attenuators, over HTTP (position 1) and Telnet (position 2); the radio link
in the model and the twin's truth as the judge."""

import pytest
from twin_thread import OpenBenchOnTwin

from rig.errors import SetpointRefused
from rig.sim.lines import TelnetLines
from rig.sim.truth import read_truth

ROLES = {"attenuator@1": 1, "attenuator@2": 2}


def with_attenuators(data):
    """Only the source and the attenuators of positions 1 (HTTP) and 2 (Telnet); position 1 limited to 100 dB."""
    for position, scheme in ((1, "http"), (2, "telnet")):
        data["positions"][position - 1]["attenuator"] = {
            "driver": "rcdat", "resource": f"{scheme}://127.0.0.1:0", "safe": {"attenuation_db": 10},
            **({"limits": {"attenuation_db": {"min": 0, "max": 100}}} if position == 1 else {})}
        data["twin"]["instruments"][f"attenuator@{position}"] = {"model": "RCDAT-6000-110",
                                                                 "serial": f"SIM1160000{position}"}


class AttenuatorTwin(OpenBenchOnTwin):
    def __init__(self, folder):
        super().__init__(folder, only_roles=("source",), edit=with_attenuators)

    def attenuation_events(self, position):
        return [(e["attenuation_db"], e["by"]) for e in read_truth(self.truth_path)
                if e["event"] == "link.attenuation" and e["position"] == position]

    def link(self, position):
        return self.call(lambda: (self.model.radio(position).attenuation_db,
                                  self.model.radio(position).signal().rsrp_dbm))



@pytest.fixture
def twin(tmp_path):
    twin = AttenuatorTwin(tmp_path)
    yield twin
    twin.close()


def test_the_twin_serves_each_transport_its_resource_names(twin):
    assert twin.resources["attenuator@1"].startswith("http://127.0.0.1:")
    assert twin.resources["attenuator@2"].startswith("telnet://127.0.0.1:")
    for role in ROLES:
        identity = twin.bench.identities[role]
        assert (identity.manufacturer, identity.model, identity.firmware) == ("Mini-Circuits", "RCDAT-6000-110", "C9")
    assert twin.bench.identities["attenuator@2"].serial == "SIM11600002"


@pytest.mark.parametrize("role", ROLES)
def test_bench_start_drives_the_safe_value_and_30_db_gives_rsrp_minus_100(twin, role):
    position = ROLES[role]
    assert twin.attenuation_events(position) == [(10.0, role)]  # the bench's safe state at start
    attenuator = twin.bench[role]
    attenuator.set_attenuation(30)
    assert attenuator.attenuation() == 30.0
    assert twin.link(position) == (30.0, -100.0)  # cell -70 dBm - 30 dB
    assert twin.attenuation_events(position)[-1] == (30.0, role)


@pytest.mark.parametrize("role", ROLES)
def test_out_of_range_is_refused_before_sending_and_the_link_keeps_its_value(twin, role):
    position = ROLES[role]
    attenuator = twin.bench[role]
    attenuator.set_attenuation(30.25)
    events = twin.attenuation_events(position)
    above = {"attenuator@1": "above 100 dB, roles.attenuator@1.limits.attenuation_db in bench.yaml",
             "attenuator@2": "above 110 dB, the range of the RCDAT-6000-110"}[role]
    for value, reason in ((110.25, above),
                          (30.1, "not on the 0.25 dB step of the RCDAT-6000-110"),
                          (-1.0, "below 0 dB")):
        with pytest.raises(SetpointRefused, match=rf"{role} \(.*\): attenuation {value:g} dB refused: {reason}"):
            attenuator.set_attenuation(value)
    assert twin.attenuation_events(position) == events  # nothing reached the twin
    assert twin.link(position) == (30.25, -100.25)


def test_the_roles_limit_is_refused_before_sending(twin):
    with pytest.raises(SetpointRefused, match=r"attenuator@1 \(.*\): attenuation 100.25 dB refused: above 100 dB, "
                                              r"roles.attenuator@1.limits.attenuation_db in bench.yaml"):
        twin.bench["attenuator@1"].set_attenuation(100.25)
    twin.bench["attenuator@2"].set_attenuation(100.25)  # position 2 has no such limit
    assert twin.link(1)[0] == 10.0 and twin.link(2)[0] == 100.25


@pytest.mark.parametrize("role", ROLES)
def test_the_twin_answers_raw_commands_as_the_real_unit(twin, role):
    """Past the driver's checks: 0 for an invalid value (no change), 2 and the maximum above the range."""
    position = ROLES[role]
    attenuator = twin.bench[role]
    assert attenuator.exchange("SETATT=30.1") == "0"
    assert attenuator.exchange("SETATT=abc") == "0"
    assert twin.link(position)[0] == 10.0
    assert attenuator.exchange("SETATT=120") == "2"
    assert twin.link(position)[0] == 110.0
    assert attenuator.exchange("ATT?") == "110.00"
    assert attenuator.exchange("XYZ?") == "-99 Unrecognized Command"


def test_closing_the_bench_returns_every_attenuator_to_its_safe_value(twin):
    twin.bench["attenuator@1"].set_attenuation(45)
    twin.bench["attenuator@2"].set_attenuation(50.5)
    actions = twin.bench.close("test")
    assert {a["role"]: a["done"] for a in actions if a["role"] in ROLES} == {
        role: ["attenuation 10 dB (confirmed by ATT?)"] for role in ROLES}
    assert twin.link(1)[0] == 10.0 and twin.link(2)[0] == 10.0


@pytest.mark.parametrize(("stream", "lines", "answer"), [
    (b":ATT?\r\n:SN?\r\0:MN?\r:FIRMWARE?\n", [b":ATT?", b":SN?", b":MN?", b":FIRMWARE?"], b""),
    (b"\xff\xfd\x03\xff\xfb\x18\xff\xfe\x01\xff\xfc\x05:ATT?\r\n", [b":ATT?"], b"\xff\xfc\x03\xff\xfe\x18"),
    (b"\xff\xfa\x1f\x00\x50\xff\xff\x00\x18\xff\xf0:A\xff\xf1TT?\r\n", [b":ATT?"], b""),
    (b"a\xff\xffb\r\n", [b"a\xffb"], b""),
    (b":SETATT=23", [], b""),
], ids=["line-ends", "options-refused", "subnegotiation-and-nop", "iac-iac", "fragment"])
def test_the_telnet_decoder_byte_by_byte_and_whole(stream, lines, answer):
    whole = TelnetLines().feed(stream)
    decoder, by_byte = TelnetLines(), ([], b"")
    for byte in stream:
        got, refused = decoder.feed(bytes([byte]))
        by_byte = (by_byte[0] + got, by_byte[1] + refused)
    assert whole == by_byte == (lines, answer)
