"""Exact SCPI exchanges of the Chroma 61500 source driver against a scripted loopback peer."""

import json
import time

import pytest
from scripted_peer import Step

from drivers.chroma_source import Chroma61500Source
from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.errors import InstrumentError, InstrumentTimeout, SetpointRefused
from rig.transcript import Transcript

OK = '0,"No error"'


@pytest.fixture
def connect(scripted):
    def make(steps, timeout_s=0.5):
        limits = SetpointLimits()
        limits.add("voltage", 0.0, 300.0, "the rating of the chroma61500 instrument")
        limits.add("voltage", None, 264.0, "roles.source.limits.voltage_v in bench.yaml")
        return scripted(Chroma61500Source, "source", steps, limits, timeout_s)

    return make


def test_identify_parses_idn(connect):
    source, peer = connect([Step("*IDN?", "Chroma ATE,61504,615040001234,1.10")])
    identity = source.identify()
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "Chroma ATE", "61504", "615040001234", "1.10")
    peer.assert_complete()


def test_set_voltage_sends_setting_and_checks_error_queue_in_one_message(connect):
    source, peer = connect([Step("SOUR:VOLT:AC 230.000;:SYST:ERR?", OK)])
    source.set_voltage(230.0)
    peer.assert_complete()


def test_output_on_rechecks_the_voltage_setpoint_first(connect):
    source, peer = connect([Step("SOUR:VOLT:AC?", "230.000"), Step("OUTP ON;:SYST:ERR?", OK)])
    source.set_output(True)
    peer.assert_complete()


def test_output_on_refused_when_the_instrument_holds_a_voltage_beyond_the_limit(connect):
    source, peer = connect([Step("SOUR:VOLT:AC?", "280.000")])
    with pytest.raises(SetpointRefused, match=r"above 264 V, roles.source.limits.voltage_v"):
        source.set_output(True)
    time.sleep(0.05)
    assert peer.received == ["SOUR:VOLT:AC?"]


def test_setpoint_beyond_limit_is_refused_before_anything_is_sent(connect):
    source, peer = connect([])
    with pytest.raises(SetpointRefused) as refused:
        source.set_voltage(270.0)
    message = str(refused.value)
    assert "source" in message and peer.resource in message and "270 V" in message and "264 V" in message
    time.sleep(0.05)
    assert peer.received == []


def test_instrument_refusal_is_an_instrument_error(connect):
    source, peer = connect([Step("SOUR:FREQ 50.000;:SYST:ERR?", '-222,"Data out of range"')])
    with pytest.raises(InstrumentError, match=r"refused 'SOUR:FREQ 50.000': -222"):
        source.set_frequency(50.0)
    peer.assert_complete()


def test_garbage_reading_names_role_address_command_and_reply(connect):
    source, peer = connect([Step("MEAS:VOLT:ACDC?", "#$%garbage")])
    with pytest.raises(InstrumentError) as error:
        source.measure_voltage()
    message = str(error.value)
    assert message == (f"source ({peer.resource}): sent 'MEAS:VOLT:ACDC?', expected a number, got '#$%garbage'")


def test_silent_instrument_times_out_naming_address_and_command(connect):
    source, peer = connect([Step("MEAS:VOLT:ACDC?", None)], timeout_s=0.3)
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=r"no answer within 0.3 s to 'MEAS:VOLT:ACDC\?'") as error:
        source.measure_voltage()
    assert time.monotonic() - start < 2.0
    assert peer.resource in str(error.value)


def test_late_reply_of_an_interrupted_query_is_discarded(connect):
    source, peer = connect([Step("MEAS:VOLT:ACDC?", "229.9", delay_s=0.5), Step("MEAS:FREQ?", "50.00")],
                           timeout_s=0.3)
    with pytest.raises(InstrumentTimeout):
        source.measure_voltage()
    time.sleep(0.4)  # the late answer 229.9 is now waiting in the socket
    assert source.measure_frequency() == 50.0
    peer.assert_complete()


def test_make_safe_switches_output_off_and_confirms(connect):
    source, peer = connect([Step("OUTP OFF;:SYST:ERR?", OK), Step("OUTP?", "OFF")])
    assert source.make_safe() == ["output OFF (confirmed by OUTP?)"]
    peer.assert_complete()


def test_make_safe_fails_when_output_stays_on(connect):
    source, peer = connect([Step("OUTP OFF;:SYST:ERR?", OK), Step("OUTP?", "ON")])
    with pytest.raises(InstrumentError, match="output still ON"):
        source.make_safe()


def test_every_exchange_is_transcripted(connect, tmp_path):
    source, peer = connect([Step("SOUR:VOLT:AC 240.000;:SYST:ERR?", OK), Step("MEAS:VOLT:ACDC?", "240.02")])
    source.set_voltage(240.0)
    assert source.measure_voltage() == 240.02
    source.transcript.flush()
    lines = [json.loads(line) for line in (tmp_path / "transcript.jsonl").read_text().splitlines()]
    exchanges = [(entry["role"], entry["sent"], entry["received"]) for entry in lines if entry["sent"]]
    assert exchanges == [("source", "SOUR:VOLT:AC 240.000;:SYST:ERR?", OK),
                         ("source", "MEAS:VOLT:ACDC?", "240.02")]
    assert all(isinstance(entry["t_mono"], float) for entry in lines)


def test_unreachable_resource_names_the_address(tmp_path):
    config = RoleConfig(driver="chroma61500", resource="TCPIP0::127.0.0.1::1::SOCKET", timeout_s=0.5)
    source = Chroma61500Source("source", config, SetpointLimits(), Transcript(None))
    with pytest.raises(InstrumentError) as error:
        source.open()
        source.identify()
    assert str(error.value) == ("source (TCPIP0::127.0.0.1::1::SOCKET): not reachable (Connection refused) "
                                "when sending '*IDN?'")
