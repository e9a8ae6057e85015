"""Exact SCPI exchanges of the Chroma 63800 AC load driver against a scripted loopback peer."""

import time

import pytest
from scripted_peer import Step

from drivers.ac_load import Chroma63800Load
from rig.driver import SetpointLimits
from rig.errors import ConfigError, InstrumentError, SetpointRefused

OK = '0,"No error"'
METER = "the rating of meter SIM0001 at position 1 (imax_a)"
RATING = "the rating of the chroma63800 instrument"
SENTINEL = Step("*OPC?", "1")  # answered in order: what the peer received before it was all that was sent


@pytest.fixture
def connect(scripted):
    def make(steps, settings=None, power_limit_w=None):
        limits = SetpointLimits()
        for quantity, (low, high) in Chroma63800Load.RATINGS.items():
            limits.add(quantity, low, high, "the rating of the chroma63800 instrument")
        limits.add("current", None, 30.0, METER)
        if power_limit_w is not None:
            limits.add("power", None, power_limit_w, "roles.load@1.limits.power_w in bench.yaml")
        return scripted(Chroma63800Load, "load@1", steps, limits, settings=settings)

    return make


def nothing_more_sent(peer, expected):
    time.sleep(0.05)
    assert peer.received == expected


def test_identify_parses_idn(connect):
    load, peer = connect([Step("*IDN?", "Chroma ATE,63803,638030001234,1.20")])
    identity = load.identify()
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "Chroma ATE", "63803", "638030001234", "1.20")
    peer.assert_complete()


@pytest.mark.parametrize("mode", ["CURR", "POW", "RES", "curr"])
def test_set_mode_sends_the_mode_and_checks_the_error_queue(connect, mode):
    load, peer = connect([Step(f"MODE {mode.upper()};:SYST:ERR?", OK)])
    load.set_mode(mode)
    peer.assert_complete()


def test_a_mode_the_driver_does_not_drive_is_refused_before_sending(connect):
    load, peer = connect([])
    with pytest.raises(SetpointRefused, match=r"load@1 \(.*\): mode 'RLC' refused: this driver drives CURR, POW, RES"):
        load.set_mode("RLC")
    nothing_more_sent(peer, [])


@pytest.mark.parametrize(("mode", "value", "sent"), [("CURR", 5.0, "CURR:STAT:L1 5.0000"),
                                                     ("POW", 1200.0, "POW:STAT:L1 1200.000"),
                                                     ("RES", 48.0, "RES:STAT:L1 48.0000")])
def test_set_level_asks_the_mode_then_sends_that_modes_level(connect, mode, value, sent):
    load, peer = connect([Step("MODE?", mode), Step(f"{sent};:SYST:ERR?", OK)])
    load.set_level(value)
    peer.assert_complete()


def test_current_beyond_the_meters_imax_is_refused_before_sending(connect):
    load, peer = connect([Step("MODE?", "CURR")])
    with pytest.raises(SetpointRefused) as refused:
        load.set_level(31.0)
    assert str(refused.value) == f"load@1 ({peer.resource}): current 31 A refused: above 30 A, {METER}"
    nothing_more_sent(peer, ["MODE?"])


def test_current_beyond_the_load_rating_is_refused_before_sending(connect):
    load, peer = connect([Step("MODE?", "CURR")])
    load.limits.bounds["current"] = [b for b in load.limits.bounds["current"] if b.origin != METER]
    with pytest.raises(SetpointRefused, match=r"current 37 A refused: above 36 A, the rating of the chroma63800"):
        load.set_level(37.0)
    nothing_more_sent(peer, ["MODE?"])


def test_power_beyond_rating_or_role_limit_is_refused_before_sending(connect):
    load, peer = connect([Step("MODE?", "POW"), Step("MODE?", "POW")], power_limit_w=2000.0)
    with pytest.raises(SetpointRefused, match=r"power 3700 W refused: above 3600 W, the rating of the chroma63800"):
        load.set_level(3700.0)
    with pytest.raises(SetpointRefused, match=r"power 2500 W refused: above 2000 W, roles.load@1.limits.power_w"):
        load.set_level(2500.0)
    nothing_more_sent(peer, ["MODE?", "MODE?"])


def test_resistance_is_refused_by_the_current_it_draws_at_the_highest_voltage(connect):
    load, peer = connect([Step("MODE?", "RES"), Step("MODE?", "RES")])
    with pytest.raises(SetpointRefused) as refused:
        load.set_level(10.0)  # 350 V / 10 ohm = 35 A > the meter's 30 A
    assert str(refused.value) == (f"load@1 ({peer.resource}): resistance 10 ohm refused: it draws 35 A at 350 V, "
                                  f"above 30 A, {METER}")
    with pytest.raises(SetpointRefused, match=r"resistance 0 ohm refused: not above 0 ohm"):
        load.set_level(0.0)
    nothing_more_sent(peer, ["MODE?", "MODE?"])


def test_input_on_rechecks_the_level_the_instrument_holds(connect):
    load, peer = connect([Step("MODE?", "CURR"), Step("CURR:STAT:L1?", "5.0000"), Step("LOAD ON;:SYST:ERR?", OK)])
    load.set_input(True)
    peer.assert_complete()


def test_input_on_refused_when_the_instrument_holds_a_current_beyond_imax(connect):
    load, peer = connect([Step("MODE?", "CURR"), Step("CURR:STAT:L1?", "33.0000")])
    with pytest.raises(SetpointRefused, match=r"current 33 A refused: above 30 A"):
        load.set_input(True)
    nothing_more_sent(peer, ["MODE?", "CURR:STAT:L1?"])


def test_input_off_is_sent_without_checks(connect):
    load, peer = connect([Step("LOAD OFF;:SYST:ERR?", OK)])
    load.set_input(False)
    peer.assert_complete()


def test_unknown_mode_reply_is_an_instrument_error(connect):
    load, peer = connect([Step("MODE?", "CCH")])
    with pytest.raises(InstrumentError, match=r"sent 'MODE\?', expected one of CURR, POW, RES, got 'CCH'"):
        load.set_level(1.0)


def test_instrument_refusal_is_an_instrument_error(connect):
    load, peer = connect([Step("MODE?", "CURR"), Step("CURR:STAT:L1 5.0000;:SYST:ERR?", '-222,"Data out of range"')])
    with pytest.raises(InstrumentError, match=r"refused 'CURR:STAT:L1 5.0000': -222"):
        load.set_level(5.0)
    peer.assert_complete()


def test_measurements(connect):
    load, peer = connect([Step("MEAS:CURR?", "5.0012"), Step("MEAS:POW?", "1200.3"), Step("MEAS:VOLT?", "240.01"),
                          Step("LOAD?", "1"), Step("LOAD?", "OFF")])
    assert load.measure_current() == 5.0012
    assert load.measure_power() == 1200.3
    assert load.measure_voltage() == 240.01
    assert load.input_enabled() is True
    assert load.input_enabled() is False
    peer.assert_complete()


def test_make_safe_switches_the_input_off_and_confirms(connect):
    load, peer = connect([Step("LOAD OFF;:SYST:ERR?", OK), Step("LOAD?", "OFF")])
    assert load.make_safe() == ["input OFF (confirmed by LOAD?)"]
    peer.assert_complete()


def test_make_safe_fails_when_the_input_stays_on(connect):
    load, peer = connect([Step("LOAD OFF;:SYST:ERR?", OK), Step("LOAD?", "ON")])
    with pytest.raises(InstrumentError, match=r"load@1 \(.*\): input still ON after 'LOAD OFF'"):
        load.make_safe()


def test_current_sample_latency_comes_from_settings(connect):
    assert connect([])[0].current_sample_latency_s == 0.002
    assert connect([], settings={"current_sample_latency_s": 0.015})[0].current_sample_latency_s == 0.015
    with pytest.raises(ConfigError, match=r"roles.load@1.settings.current_sample_latency_s: Input should be a valid "
                                          r"number, unable to parse string as a number \(got 'soon'\)"):
        connect([], settings={"current_sample_latency_s": "soon"})
    with pytest.raises(ConfigError, match=r"roles.load@1.settings.current_sample_latency_s: Input should be greater "
                                          r"than or equal to 0 \(got -0.1\)"):
        connect([], settings={"current_sample_latency_s": -0.1})


@pytest.mark.parametrize(("send", "message", "refused"), [
    ("command", "CURR 37", f"current 37 A refused: above 36 A, {RATING} (in 'CURR 37'; nothing sent)"),
    ("command", "CURR:STAT:L1 31", f"current 31 A refused: above 30 A, {METER}"),
    ("command", "current:static:l2 31A", "current 31 A refused: above 30 A"),
    ("command", "CURR:STAT:L1 0.031KA", "current 31 A refused"),
    ("command", "LOAD:MODE POW;:POW:STAT:L1 3700", f"power 3700 W refused: above 3600 W, {RATING}"),
    ("command", "MODE RES;:RES 5", "resistance 5 ohm refused: it draws 70 A at 350 V, above 36 A"),
    ("command", "RES:STAT:L1 0", "resistance 0 ohm refused: not above 0 ohm"),
    ("command", "CURR:STAT:L1 MAX", "current 'MAX' in 'CURR:STAT:L1 MAX' refused: not a number in A"),
    ("command", "CURR 5MA", "current '5MA' in 'CURR 5MA' refused: not a number"),
    ("command", "LOAD:SHOR ON", "'LOAD:SHOR ON' refused: a shorted input draws a current no level bounds; nothing"),
    ("command", "SCIR ON", "'SCIR ON' refused: a shorted input draws a current no level bounds; nothing"),
    ("command", "LOAD:SCIRCUIT 1", "'LOAD:SCIRCUIT 1' refused: a shorted input draws a current"),
    ("write", "CURR:STAT:L1 31", "current 31 A refused"),
    ("query", "CURR:STAT:L1 31;:CURR:STAT:L1?", "current 31 A refused"),
])
def test_a_raw_level_beyond_a_limit_is_refused_and_nothing_is_sent(connect, send, message, refused):
    load, peer = connect([SENTINEL])
    with pytest.raises(SetpointRefused) as error:
        getattr(load, send)(message)
    assert str(error.value).startswith(f"load@1 ({peer.resource}): ")
    assert refused in str(error.value)
    assert load.query("*OPC?") == "1"
    assert peer.received == ["*OPC?"]


@pytest.mark.parametrize(("mode", "level", "refused"), [
    ("CURR", "33.0000", f"current 33 A refused: above 30 A, {METER}"),
    ("RES", "5.0000", f"resistance 5 ohm refused: it draws 70 A at 350 V, above 36 A, {RATING}"),
])
def test_a_raw_input_on_is_refused_after_reading_back_a_level_beyond_the_limits(connect, mode, level, refused):
    load, peer = connect([Step("MODE?", mode), Step(f"{mode}:STAT:L1?", level), SENTINEL])
    with pytest.raises(SetpointRefused) as error:
        load.write("LOAD:STAT ON")
    assert str(error.value) == (f"load@1 ({peer.resource}): {refused} (held by the instrument, read back before "
                                f"'LOAD:STAT ON'; not sent)")
    assert load.query("*OPC?") == "1"
    assert peer.received == ["MODE?", f"{mode}:STAT:L1?", "*OPC?"]


def test_a_raw_input_on_within_the_limits_is_sent_after_the_read_back(connect):
    load, peer = connect([Step("MODE?", "POW"), Step("POW:STAT:L1?", "1200.0000"), Step("LOAD ON;:SYST:ERR?", OK),
                          Step("LOAD OFF"), SENTINEL])
    load.command("LOAD ON")
    load.write("LOAD OFF")
    assert load.query("*OPC?") == "1"
    assert peer.received == ["MODE?", "POW:STAT:L1?", "LOAD ON;:SYST:ERR?", "LOAD OFF", "*OPC?"]
    peer.assert_complete()
