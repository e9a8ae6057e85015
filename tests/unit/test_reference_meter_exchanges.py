"""Exact SCPI exchanges of the reference meter driver against a scripted loopback peer."""

import time

import pytest
from scripted_peer import Step

from drivers.reference_meter import ScpiReferenceMeter
from rig.errors import InstrumentError, InstrumentTimeout

OK = '0,"No error"'
MEASURE = "MEAS:VOLT?;CURR?;POW?;PFAC?"


@pytest.fixture
def connect(scripted):
    def make(steps, timeout_s=0.5, settings=None):
        return scripted(ScpiReferenceMeter, "reference", steps, timeout_s=timeout_s, settings=settings)

    return make


def test_identify_parses_idn(connect):
    reference, peer = connect([Step("*IDN?", "RIG-SIM,RSM-002,SIM-RSM-0001,2.01")])
    assert reference.identify().model == "RSM-002"
    peer.assert_complete()


def test_accuracy_class_from_settings(connect):
    assert connect([])[0].accuracy_class_pct == 0.02
    assert connect([], settings={"accuracy_class_pct": 0.05})[0].accuracy_class_pct == 0.05


def test_measure_is_one_chained_query(connect):
    reference, peer = connect([Step(MEASURE, "240.0121;10.00050;2400.1234;0.99998")])
    assert reference.measure() == {"voltage_v": 240.0121, "current_a": 10.0005, "power_w": 2400.1234,
                                   "power_factor": 0.99998}
    peer.assert_complete()


@pytest.mark.parametrize("reply", ["240.0;10.0;2400.0", "240.0;10.0;2400.0;1.0;5", "240.0;ten;2400.0;1.0", ""])
def test_garbled_measure_reply_is_quoted(connect, reply):
    reference, peer = connect([Step(MEASURE, reply)])
    with pytest.raises(InstrumentError) as error:
        reference.measure()
    assert str(error.value) == (f"reference ({peer.resource}): sent {MEASURE!r}, expected "
                                f"'voltage;current;power;power factor', got {reply!r}")


def test_silent_measure_times_out(connect):
    reference, peer = connect([Step(MEASURE, None)], timeout_s=0.3)
    with pytest.raises(InstrumentTimeout, match=r"no answer within 0.3 s to 'MEAS:VOLT\?;CURR\?;POW\?;PFAC\?'"):
        reference.measure()


def test_integration_start_and_stop_confirm_acceptance(connect):
    reference, peer = connect([Step("INT:STAR;:SYST:ERR?", OK), Step("INT:STAT?", "RUN"),
                               Step("INT:STOP;:SYST:ERR?", OK), Step("INT:STAT?", "STOP"),
                               Step("FETC:ENER?", "6.668000000E-01"), Step("FETC:INT:TIME?", "1.000200")])
    reference.start_integration()
    assert reference.integration_running() is True
    reference.stop_integration()
    assert reference.integration_running() is False
    assert reference.read_energy_wh() == 0.6668
    assert reference.integration_time_s() == 1.0002
    peer.assert_complete()


def test_refused_integration_start_is_an_instrument_error(connect):
    reference, peer = connect([Step("INT:STAR;:SYST:ERR?", '-113,"Undefined header; INT:STAR"')])
    with pytest.raises(InstrumentError, match=r"refused 'INT:STAR': -113"):
        reference.start_integration()


def test_garbled_integration_state_is_an_instrument_error(connect):
    reference, peer = connect([Step("INT:STAT?", "HALTED")])
    with pytest.raises(InstrumentError, match=r"sent 'INT:STAT\?', expected RUN/STOP, got 'HALTED'"):
        reference.integration_running()


def test_garbled_energy_is_an_instrument_error(connect):
    reference, peer = connect([Step("FETC:ENER?", "0.66.8")])
    with pytest.raises(InstrumentError, match=r"sent 'FETC:ENER\?', expected a number, got '0.66.8'"):
        reference.read_energy_wh()


def test_silent_energy_read_times_out(connect):
    reference, peer = connect([Step("FETC:ENER?", None)], timeout_s=0.3)
    with pytest.raises(InstrumentTimeout, match=r"no answer within 0.3 s to 'FETC:ENER\?'"):
        reference.read_energy_wh()


def test_make_safe_sends_nothing(connect):
    reference, peer = connect([])
    assert reference.make_safe() == ["nothing to switch (measuring instrument)"]
    time.sleep(0.05)
    assert peer.received == []
