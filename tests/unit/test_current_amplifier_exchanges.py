"""Exact SCPI exchanges of the current amplifier driver against a scripted loopback peer."""

import time

import pytest
from scripted_peer import Step

from drivers.current_amplifier import ScpiCurrentAmplifier
from rig.driver import SetpointLimits
from rig.errors import InstrumentError, InstrumentTimeout, SetpointRefused

OK = '0,"No error"'
METER = "the rating of meter SIM0001 at position 1 (imax_a)"
SENTINEL = Step("*OPC?", "1")  # answered in order: what the peer received before it was all that was sent


@pytest.fixture
def connect(scripted):
    def make(steps, timeout_s=0.5):
        limits = SetpointLimits()
        limits.add("current", 0.0, 120.0, "the rating of the scpi_current_amplifier instrument")
        limits.add("phase", -180.0, 180.0, "the rating of the scpi_current_amplifier instrument")
        limits.add("current", None, 100.0, "roles.current.limits.current_a in bench.yaml")
        limits.add("current", None, 60.0, "the rating of meter SIM0001 at position 1 (imax_a)")
        return scripted(ScpiCurrentAmplifier, "current", steps, limits, timeout_s)

    return make


def test_identify_parses_idn(connect):
    amplifier, peer = connect([Step("*IDN?", "RIG-SIM,PCA-120,SIM-PCA-0001,1.00")])
    identity = amplifier.identify()
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "RIG-SIM", "PCA-120", "SIM-PCA-0001", "1.00")
    peer.assert_complete()


def test_set_current_and_phase_send_setting_and_check_error_queue(connect):
    amplifier, peer = connect([Step("SOUR:CURR 10.0000;:SYST:ERR?", OK), Step("SOUR:PHAS 60.000;:SYST:ERR?", OK),
                               Step("SOUR:PHAS -36.870;:SYST:ERR?", OK)])
    amplifier.set_current(10.0)
    amplifier.set_phase(60.0)
    amplifier.set_phase(-36.87)
    peer.assert_complete()


def test_output_on_rechecks_the_current_setpoint_first(connect):
    amplifier, peer = connect([Step("SOUR:CURR?", "10.0000"), Step("OUTP ON;:SYST:ERR?", OK)])
    amplifier.set_output(True)
    peer.assert_complete()


def test_output_off_sends_no_setpoint_check(connect):
    amplifier, peer = connect([Step("OUTP OFF;:SYST:ERR?", OK)])
    amplifier.set_output(False)
    peer.assert_complete()


def test_output_on_refused_when_the_instrument_holds_a_current_beyond_a_meter_rating(connect):
    amplifier, peer = connect([Step("SOUR:CURR?", "80.0000")])
    with pytest.raises(SetpointRefused, match=r"above 60 A, the rating of meter SIM0001 at position 1 \(imax_a\)"):
        amplifier.set_output(True)
    time.sleep(0.05)
    assert peer.received == ["SOUR:CURR?"]


@pytest.mark.parametrize(("call", "value", "bound"), [
    ("set_current", 61.0, "above 60 A, the rating of meter SIM0001"),
    ("set_current", -1.0, "below 0 A, the rating of the scpi_current_amplifier instrument"),
    ("set_current", float("nan"), "not a number"),
    ("set_phase", 181.0, "above 180 deg"),
    ("set_phase", -200.0, "below -180 deg"),
])
def test_setpoint_beyond_limit_is_refused_before_anything_is_sent(connect, call, value, bound):
    amplifier, peer = connect([])
    with pytest.raises(SetpointRefused) as refused:
        getattr(amplifier, call)(value)
    message = str(refused.value)
    assert message.startswith(f"current ({peer.resource}): ") and bound in message
    time.sleep(0.05)
    assert peer.received == []


def test_instrument_refusal_is_an_instrument_error(connect):
    amplifier, peer = connect([Step("SOUR:CURR 50.0000;:SYST:ERR?", '-222,"Data out of range"')])
    with pytest.raises(InstrumentError, match=r"refused 'SOUR:CURR 50.0000': -222"):
        amplifier.set_current(50.0)
    peer.assert_complete()


def test_garbled_current_reading_names_role_address_command_and_reply(connect):
    amplifier, peer = connect([Step("MEAS:CURR?", "1O.0O1")])
    with pytest.raises(InstrumentError) as error:
        amplifier.measure_current()
    assert str(error.value) == f"current ({peer.resource}): sent 'MEAS:CURR?', expected a number, got '1O.0O1'"


def test_garbled_output_state_is_an_instrument_error(connect):
    amplifier, peer = connect([Step("OUTP?", "MAYBE")])
    with pytest.raises(InstrumentError, match=r"sent 'OUTP\?', expected ON/OFF, got 'MAYBE'"):
        amplifier.output_enabled()


def test_garbled_error_queue_entry_is_an_instrument_error(connect):
    amplifier, peer = connect([Step("SOUR:CURR 5.0000;:SYST:ERR?", "garbage")])
    with pytest.raises(InstrumentError, match=r"expected an error-queue entry, got 'garbage'"):
        amplifier.set_current(5.0)


def test_silent_instrument_times_out_naming_address_and_command(connect):
    amplifier, peer = connect([Step("MEAS:CURR?", None)], timeout_s=0.3)
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=r"no answer within 0.3 s to 'MEAS:CURR\?'") as error:
        amplifier.measure_current()
    assert time.monotonic() - start < 2.0
    assert peer.resource in str(error.value)


def test_readbacks(connect):
    amplifier, peer = connect([Step("OUTP?", "ON"), Step("SOUR:PHAS?", "60.000"), Step("MEAS:CURR?", "9.99987"),
                               Step("MEAS:PHAS?", "60.000")])
    assert amplifier.output_enabled() is True
    assert amplifier.phase_setpoint() == 60.0
    assert amplifier.measure_current() == 9.99987
    assert amplifier.measure_phase() == 60.0
    peer.assert_complete()


def test_make_safe_switches_output_off_confirms_and_zeroes_the_current(connect):
    amplifier, peer = connect([Step("OUTP OFF;:SYST:ERR?", OK), Step("OUTP?", "OFF"),
                               Step("SOUR:CURR 0.0000;:SYST:ERR?", OK)])
    assert amplifier.make_safe() == ["output OFF (confirmed by OUTP?)", "current setpoint 0 A"]
    peer.assert_complete()


def test_make_safe_fails_when_output_stays_on(connect):
    amplifier, peer = connect([Step("OUTP OFF;:SYST:ERR?", OK), Step("OUTP?", "ON")])
    with pytest.raises(InstrumentError, match="output still ON"):
        amplifier.make_safe()
    time.sleep(0.05)
    assert peer.received == ["OUTP OFF;:SYST:ERR?", "OUTP?"]


def test_make_safe_fails_when_the_instrument_refuses_output_off(connect):
    amplifier, peer = connect([Step("OUTP OFF;:SYST:ERR?", '-221,"Settings conflict"')])
    with pytest.raises(InstrumentError, match=r"refused 'OUTP OFF': -221"):
        amplifier.make_safe()


@pytest.mark.parametrize(("send", "message", "refused"), [
    ("command", "SOUR:CURR 61", f"current 61 A refused: above 60 A, {METER} (in 'SOUR:CURR 61'; nothing sent)"),
    ("command", "CURR 61A", "current 61 A refused"),
    ("command", ":source:current:level:immediate:amplitude 0.061KA", "current 61 A refused"),
    ("command", "SOUR:PHAS 10;:CURR 61", "current 61 A refused"),
    ("command", "SOUR:CURR 121", "current 121 A refused: above 120 A, the rating of the scpi_current_amplifier"),
    ("command", "SOUR:CURR 61000MA", "current '61000MA' in 'SOUR:CURR 61000MA' refused: not a number in A"),
    ("write", "SOUR:CURR 61", "current 61 A refused"),
    ("query", "SOUR:CURR 61;:SOUR:CURR?", "current 61 A refused"),
])
def test_a_raw_current_beyond_a_limit_is_refused_and_nothing_is_sent(connect, send, message, refused):
    amplifier, peer = connect([SENTINEL])
    with pytest.raises(SetpointRefused) as error:
        getattr(amplifier, send)(message)
    assert str(error.value).startswith(f"current ({peer.resource}): ")
    assert refused in str(error.value)
    assert amplifier.query("*OPC?") == "1"
    assert peer.received == ["*OPC?"]


def test_a_raw_output_on_is_refused_after_reading_back_a_current_beyond_a_meter_rating(connect):
    amplifier, peer = connect([Step("SOUR:CURR?", "80.0000"), SENTINEL])
    with pytest.raises(SetpointRefused) as error:
        amplifier.write("OUTP:STAT 1")
    assert str(error.value) == (f"current ({peer.resource}): current 80 A refused: above 60 A, {METER} (held by "
                                f"the instrument, read back before 'OUTP:STAT 1'; not sent)")
    assert amplifier.query("*OPC?") == "1"
    assert peer.received == ["SOUR:CURR?", "*OPC?"]


def test_raw_phase_is_left_to_the_instrument(connect):
    amplifier, peer = connect([Step("SOUR:PHAS 181;:SYST:ERR?", '-222,"Data out of range"')])
    with pytest.raises(InstrumentError, match=r"refused 'SOUR:PHAS 181': -222"):
        amplifier.command("SOUR:PHAS 181")
    peer.assert_complete()
