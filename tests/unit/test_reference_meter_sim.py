"""The simulated reference meter driven by program messages, on a model whose clock the test sets."""

import math
import random
import statistics

import pytest

from rig.sim.model import PhysicalModel
from rig.sim.reference_meter import ReferenceMeterSim
from rig.sim.truth import TruthLog

GAIN = 0.005 / 100


@pytest.fixture
def clock():
    return [0.0]


def make_model(clock, voltage_v=240.0, current_a=10.0, phase_deg=0.0, settle_tau_s=0.0):
    model = PhysicalModel(truth=TruthLog(None), rng=random.Random(7))
    model.clock = lambda: clock[0]
    model.last_t = 0.0
    model.current.settle_tau_s = settle_tau_s
    model.set_source_voltage(voltage_v, by="test")
    model.set_source_output(True, by="test")
    model.set_current(current_a, phase_deg, by="test")
    model.set_current_output(True, by="test")
    return model


def energy(meter):
    return float(meter.handle("FETC:ENER?"))


def test_idn_default_and_override(clock):
    model = make_model(clock)
    assert ReferenceMeterSim("reference", model, {}).handle("*IDN?") == "RIG-SIM,RSM-002,SIM-RSM-0001,2.01"
    assert ReferenceMeterSim("reference", model, {"idn": "A,B,C,D"}).handle("*IDN?") == "A,B,C,D"


def test_energy_over_an_hour_at_240_v_10_a_unity_power_factor(clock):
    meter = ReferenceMeterSim("reference", make_model(clock), {})
    clock[0] = 5.0
    assert meter.handle("INT:STAR;:SYST:ERR?") == '0,"No error"'
    clock[0] = 3605.0
    assert energy(meter) == pytest.approx(2400.0 * (1 + GAIN), rel=1e-9)
    assert float(meter.handle("FETC:INT:TIME?")) == pytest.approx(3600.0)


def test_energy_at_phase_60_is_half(clock):
    meter = ReferenceMeterSim("reference", make_model(clock, phase_deg=60.0), {"gain_error_pct": 0.0})
    meter.handle("INT:STAR")
    clock[0] = 3600.0
    assert energy(meter) == pytest.approx(1200.0, rel=1e-9)


def test_gain_error_from_settings(clock):
    meter = ReferenceMeterSim("reference", make_model(clock), {"gain_error_pct": -0.01})
    meter.handle("INT:STAR")
    clock[0] = 360.0
    assert energy(meter) == pytest.approx(240.0 * (1 - 0.0001), rel=1e-9)


def test_integration_counts_while_running_and_freezes_at_stop(clock):
    meter = ReferenceMeterSim("reference", make_model(clock), {"gain_error_pct": 0.0})
    assert meter.handle("INT:STAT?") == "STOP"
    assert energy(meter) == 0.0
    meter.handle("INT:STAR")
    assert meter.handle("INT:STAT?") == "RUN"
    clock[0] = 1800.0
    assert energy(meter) == pytest.approx(1200.0)
    clock[0] = 3600.0
    meter.handle("INT:STOP")
    assert meter.handle("INT:STAT?") == "STOP"
    clock[0] = 7200.0
    assert energy(meter) == pytest.approx(2400.0)
    assert float(meter.handle("FETC:INT:TIME?")) == pytest.approx(3600.0)
    meter.handle("INT:STOP")  # a second stop changes nothing
    assert energy(meter) == pytest.approx(2400.0)


def test_start_clears_and_restarts_at_the_instant_it_is_processed(clock):
    meter = ReferenceMeterSim("reference", make_model(clock), {"gain_error_pct": 0.0})
    meter.handle("INT:STAR")
    clock[0] = 3600.0
    meter.handle("INT:STOP")
    clock[0] = 4000.0
    meter.handle("INT:STAR")
    assert energy(meter) == 0.0
    assert float(meter.handle("FETC:INT:TIME?")) == 0.0
    clock[0] = 4360.0
    assert energy(meter) == pytest.approx(240.0)


def test_energy_follows_the_settling_current(clock):
    model = make_model(clock, current_a=0.0, settle_tau_s=0.05)
    meter = ReferenceMeterSim("reference", model, {"gain_error_pct": 0.0})
    meter.handle("INT:STAR")
    model.set_current(10.0, 0.0, by="test")
    clock[0] = 10.0
    # the settling costs tau seconds of full current
    assert energy(meter) == pytest.approx(240.0 * 10.0 * (10.0 - 0.05) / 3600.0, rel=1e-9)


def test_energy_is_zero_without_voltage(clock):
    model = make_model(clock)
    meter = ReferenceMeterSim("reference", model, {})
    model.set_source_output(False, by="test")
    meter.handle("INT:STAR")
    clock[0] = 100.0
    assert energy(meter) == 0.0


def test_reset_stops_and_clears_the_integration(clock):
    meter = ReferenceMeterSim("reference", make_model(clock), {})
    meter.handle("INT:STAR")
    clock[0] = 10.0
    meter.handle("*RST")
    assert meter.handle("INT:STAT?") == "STOP"
    assert energy(meter) == 0.0


def test_chained_measure_query_answers_one_line(clock):
    meter = ReferenceMeterSim("reference", make_model(clock, phase_deg=60.0), {})
    clock[0] = 1.0
    reply = meter.handle("MEAS:VOLT?;CURR?;POW?;PFAC?")
    voltage, current, power, power_factor = (float(field) for field in reply.split(";"))
    assert voltage == pytest.approx(240.0, rel=5e-4)
    assert current == pytest.approx(10.0, rel=5e-4)
    assert power == pytest.approx(1200.0, rel=5e-4)
    assert power_factor == pytest.approx(0.5, rel=5e-4)
    assert meter.handle("SYST:ERR?") == '0,"No error"'


def test_long_forms_and_fetch(clock):
    meter = ReferenceMeterSim("reference", make_model(clock), {})
    reply = meter.handle("FETCH:SCALAR:VOLTAGE:AC?;:MEASURE:POWER:AC:REAL?;:MEAS:POW:AC:PFAC?")
    assert len(reply.split(";")) == 3
    assert meter.handle("SYST:ERR?") == '0,"No error"'


def test_readings_have_the_gain_error_and_class_noise(clock):
    meter = ReferenceMeterSim("reference", make_model(clock), {"accuracy_class_pct": 0.03, "gain_error_pct": 0.01})
    readings = [float(meter.handle("MEAS:VOLT?")) for _ in range(4000)]
    assert statistics.fmean(readings) == pytest.approx(240.0 * 1.0001, abs=0.0005)
    assert statistics.stdev(readings) == pytest.approx(240.0 * 0.0001, rel=0.05)


def test_power_factor_and_readings_are_zero_when_nothing_flows(clock):
    model = make_model(clock)
    meter = ReferenceMeterSim("reference", model, {})
    model.set_current_output(False, by="test")
    model.set_source_output(False, by="test")
    clock[0] = 10.0
    assert meter.handle("MEAS:VOLT?;CURR?;POW?;PFAC?") == "0.0000;0.00000;0.0000;0.00000"


def test_capacitive_power_factor(clock):
    phase = -math.degrees(math.acos(0.8))
    meter = ReferenceMeterSim("reference", make_model(clock, phase_deg=phase), {})
    clock[0] = 1.0
    assert float(meter.handle("MEAS:PFAC?")) == pytest.approx(0.8, rel=5e-4)


def test_latency_draws_a_fresh_jitter_at_every_read(clock):
    meter = ReferenceMeterSim("reference", make_model(clock), {})
    draws = [meter.latency_s for _ in range(200)]
    assert all(0.02 <= draw <= 0.022 for draw in draws)
    assert len(set(draws)) == len(draws)
    fixed = ReferenceMeterSim("reference", make_model(clock), {"latency_s": 0.1, "latency_jitter_s": 0})
    assert fixed.latency_s == 0.1
