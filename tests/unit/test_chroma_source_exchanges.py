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
ROLE_LIMIT = "roles.source.limits.voltage_v in bench.yaml"
SENTINEL = Step("*OPC?", "1")  # answered in order: what the peer received before it was all that was sent


@pytest.fixture
def connect(scripted):
    def make(steps, timeout_s=0.5):
        limits = SetpointLimits()
        limits.add("voltage", 0.0, 300.0, "the rating of the chroma61500 instrument")
        limits.add("voltage", None, 264.0, ROLE_LIMIT)
        limits.add("frequency", 15.0, 1000.0, "the rating of the chroma61500 instrument")
        limits.add("frequency", 45.0, 55.0, "roles.source.limits.frequency_hz in bench.yaml")
        return scripted(Chroma61500Source, "source", steps, limits, timeout_s)

    return make


def test_identify_parses_idn(connect):
    source, peer = connect([Step("*IDN?", "Chroma ATE,61504,615040001234,1.10")])
    identity = source.identify()
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "Chroma ATE", "61504", "615040001234", "1.10")
    peer.assert_complete()


def test_identify_keeps_the_firmware_versions_the_61500_lists_after_its_serial(connect):
    source, peer = connect([Step("*IDN?", "Chroma ATE,61504,615040001234,1.00,1.01,1.02")])
    identity = source.identify()
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "Chroma ATE", "61504", "615040001234", "1.00,1.01,1.02")
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


@pytest.mark.parametrize(("entry", "meaning"), [
    ('-101,"Invalid character"', "a command error: the instrument could not parse the message"),
    ('-108,"Parameter not allowed; SOUR:FREQ 50.000,1"', "a command error: the instrument could not parse the message"),
    ('-109,"Missing parameter"', "a command error: the instrument could not parse the message"),
    ('-120,"Numeric data error"', "a command error: the instrument could not parse the message"),
    ('-131,"Invalid suffix"', "a command error: the instrument could not parse the message"),
    ('-222,"Data out of range"',
     "an execution error: the instrument parsed the message but could not carry it out"),
    ('-350,"Queue overflow"', "a device-specific error"),
    ('12,"Over temperature"', "an error the instrument defines"),
])
def test_every_error_the_instrument_reports_names_role_address_command_and_its_class(connect, entry, meaning):
    source, peer = connect([Step("SOUR:FREQ 50.000;:SYST:ERR?", entry)])
    with pytest.raises(InstrumentError) as error:
        source.set_frequency(50.0)
    assert type(error.value) is InstrumentError
    assert str(error.value) == f"source ({peer.resource}): refused 'SOUR:FREQ 50.000': {entry} ({meaning})"
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


def test_late_reply_of_an_interrupted_query_is_never_read_as_another_answer(connect, tmp_path):
    """The instrument answers the timed-out query only once the next one arrives: on the old session."""
    source, peer = connect([Step("MEAS:VOLT:ACDC?", "229.9", late=True), Step("MEAS:FREQ?", "50.00"),
                            Step("SOUR:VOLT:AC?", "230.000")], timeout_s=0.3)
    with pytest.raises(InstrumentTimeout):
        source.measure_voltage()
    assert source.measure_frequency() == 50.0
    assert source.voltage_setpoint() == 230.0
    peer.assert_complete()
    assert peer.released == [b"229.9\n"]
    assert peer.connections == 2
    source.transcript.flush()
    notes = [json.loads(line).get("note") for line in (tmp_path / "transcript.jsonl").read_text().splitlines()]
    assert [note for note in notes if note and ("opened" in note or "closed" in note)] == [
        f"opened {peer.resource}",
        f"closed {peer.resource} after a timeout on 'MEAS:VOLT:ACDC?'; the next exchange reconnects",
        f"reopened {peer.resource}"]


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


def test_a_raw_setting_beyond_a_limit_is_refused_and_nothing_is_sent(connect):
    source, peer = connect([SENTINEL])
    with pytest.raises(SetpointRefused) as refused:
        source.command("SOUR:VOLT:AC 299")
    assert str(refused.value) == (f"source ({peer.resource}): voltage 299 V refused: above 264 V, {ROLE_LIMIT} "
                                  f"(in 'SOUR:VOLT:AC 299'; nothing sent)")
    assert source.query("*OPC?") == "1"
    assert peer.received == ["*OPC?"]


@pytest.mark.parametrize(("send", "message", "refused"), [
    ("command", ":sour:volt:lev:imm:ampl:ac 299", "voltage 299 V refused: above 264 V"),
    ("command", "SOURCE:VOLTAGE:AC 299V", "voltage 299 V refused"),
    ("command", "VOLT:AC 0.299KV", "voltage 299 V refused"),
    ("command", "VOLT:AC\t299000MV", "voltage 299 V refused"),
    ("command", "SOUR:FREQ 50;:SOUR:VOLT:AC 299", "voltage 299 V refused"),
    ("command", "VOLT:AC 230;AC 299", "voltage 299 V refused"),
    ("command", "SOUR:VOLT 299", "voltage 299 V refused"),
    ("command", "SOUR:VOLT:DC 299", "voltage 299 V refused"),
    ("command", "SOUR:VOLT:AC 301", "voltage 301 V refused: above 300 V, the rating of the chroma61500"),
    ("command", "SOUR:FREQ 60", "frequency 60 Hz refused: above 55 Hz, roles.source.limits.frequency_hz"),
    ("command", "FREQ 0.04KHZ", "frequency 40 Hz refused: below 45 Hz"),
    ("command", "SOUR:VOLT:AC MAX", "voltage 'MAX' in 'SOUR:VOLT:AC MAX' refused: not a number in V this driver "
                                    "can check; nothing sent"),
    ("command", "SOUR:VOLT:AC #H12B", "voltage '#H12B' in 'SOUR:VOLT:AC #H12B' refused: not a number"),
    ("write", "SOUR:VOLT:AC 299", "voltage 299 V refused"),
    ("write", "SOUR:VOLT:AC 299\nOUTP ON", "voltage 299 V refused"),
    ("query", "SOUR:VOLT:AC 299;:SOUR:VOLT:AC?", "voltage 299 V refused"),
])
def test_every_spelling_and_path_of_a_raw_setting_is_checked_before_sending(connect, send, message, refused):
    source, peer = connect([SENTINEL])
    with pytest.raises(SetpointRefused, match=refused):
        getattr(source, send)(message)
    assert source.query("*OPC?") == "1"
    assert peer.received == ["*OPC?"]


@pytest.mark.parametrize(("message", "switching"), [("OUTP ON", "OUTP ON"), ("OUTP 1", "OUTP 1"),
                                                    ("OUTPUT:STATE ON", "OUTPUT:STATE ON"),
                                                    (":outp:stat on", ":outp:stat on"), ("OUTP1 ON", "OUTP1 ON"),
                                                    ("SOUR:FREQ 50;:OUTP ON", ":OUTP ON")])
def test_a_raw_output_on_is_refused_after_reading_back_a_voltage_beyond_the_limit(connect, message, switching):
    source, peer = connect([Step("SOUR:VOLT:AC?", "280.000"), SENTINEL])
    with pytest.raises(SetpointRefused) as refused:
        source.write(message)
    assert str(refused.value) == (f"source ({peer.resource}): voltage 280 V refused: above 264 V, {ROLE_LIMIT} "
                                  f"(held by the instrument, read back before {switching!r}; not sent)")
    assert source.query("*OPC?") == "1"
    assert peer.received == ["SOUR:VOLT:AC?", "*OPC?"]


def test_after_a_refused_raw_setting_a_raw_output_on_checks_what_the_instrument_still_holds(connect):
    source, peer = connect([Step("SOUR:VOLT:AC?", "230.000"), Step("OUTP ON"), SENTINEL])
    with pytest.raises(SetpointRefused):
        source.command("SOUR:VOLT:AC 299")
    source.write("OUTP ON")
    assert source.query("*OPC?") == "1"
    assert peer.received == ["SOUR:VOLT:AC?", "OUTP ON", "*OPC?"]
    peer.assert_complete()


def test_raw_settings_within_the_limits_and_output_off_go_out_as_written(connect):
    source, peer = connect([Step("SOUR:VOLT:AC 230V;FREQ 50;:SYST:ERR?", OK), Step("OUTP OFF"),
                            Step("outp 0;:SYST:ERR?", OK)])
    source.command("SOUR:VOLT:AC 230V;FREQ 50")
    source.write("OUTP OFF")
    source.command("outp 0")
    peer.assert_complete()
