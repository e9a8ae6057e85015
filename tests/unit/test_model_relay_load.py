"""The twin model's relays and per-position loads, on a controlled clock."""

import random

import pytest

from rig.sim.model import PhysicalModel, SimMeter
from rig.sim.truth import TruthLog, read_truth

CLOCK = [0.0]


@pytest.fixture
def truth_path(tmp_path):
    return tmp_path / "truth.jsonl"


@pytest.fixture
def model(truth_path):
    truth = TruthLog(truth_path)
    meters = [SimMeter(position, f"SIM{position:04d}", 240.0, 10.0, 5.0, 1000.0) for position in (1, 2, 3)]
    model = PhysicalModel(truth=truth, rng=random.Random(1), meters=meters)
    CLOCK[0] = 0.0
    model.clock = lambda: CLOCK[0]
    model.last_t = 0.0
    yield model
    truth.close()


def at(model, seconds):
    """Move the model's clock to `seconds` and advance the model to it."""
    CLOCK[0] = seconds
    model.now()


def energise(model, voltage_v=240.0):
    model.set_source_voltage(voltage_v, "test")
    model.set_source_output(True, "test")


def energy(model, position):
    return model.meter(position).true_energy_wh


@pytest.mark.parametrize(("mode", "setpoint", "voltage_v"), [("CURR", 5.0, 240.0), ("POW", 1200.0, 240.0),
                                                             ("RES", 48.0, 240.0), ("CURR", 5.0, 230.0),
                                                             ("POW", 1150.0, 230.0), ("RES", 46.0, 230.0)])
def test_each_mode_draws_its_current_and_the_meter_registers_the_energy(model, mode, setpoint, voltage_v):
    energise(model, voltage_v)
    model.set_load(1, "test", on=True, mode=mode, setpoint=setpoint)
    assert model.position_current_a(1) == pytest.approx(5.0)
    assert model.position_power_w(1) == pytest.approx(5.0 * voltage_v)
    assert model.position_current_a(2) == 0.0 and model.position_current_a(3) == 0.0
    at(model, 3600.0)
    assert energy(model, 1) == pytest.approx(5.0 * voltage_v)  # Wh in one hour
    assert energy(model, 2) == 0.0 and energy(model, 3) == 0.0
    assert model.circuit_energy_wh == 0.0  # the load path is not the phantom-load loop


def test_no_current_with_the_load_off_or_the_source_off(model):
    model.set_load(1, "test", on=False, mode="CURR", setpoint=5.0)
    energise(model)
    assert model.position_current_a(1) == 0.0
    model.set_load(1, "test", on=True)
    assert model.position_current_a(1) == 5.0
    model.set_source_output(False, "test")
    assert model.position_current_a(1) == 0.0
    at(model, 100.0)
    assert energy(model, 1) == 0.0


def test_an_open_relay_stops_its_load_current_and_energy(model):
    energise(model)
    model.set_load(1, "test", on=True, mode="CURR", setpoint=5.0)
    at(model, 1800.0)
    assert energy(model, 1) == pytest.approx(600.0)
    model.set_relay(1, False, "test")
    assert model.position_current_a(1) == 0.0 and model.position_power_w(1) == 0.0
    at(model, 3600.0)
    assert energy(model, 1) == pytest.approx(600.0)
    model.set_relay(1, True, "test")
    assert model.position_current_a(1) == 5.0
    at(model, 5400.0)
    assert energy(model, 1) == pytest.approx(1200.0)


def test_an_open_relay_breaks_the_phantom_loop_of_every_position(model):
    energise(model)
    model.set_current(10.0, 0.0, "test")
    model.set_current_output(True, "test")
    model.set_load(1, "test", on=True, mode="CURR", setpoint=5.0)
    at(model, 10.0)  # 200 settling time constants
    assert model.circuit_current_a() == pytest.approx(10.0)
    assert [model.position_current_a(p) for p in (1, 2, 3)] == pytest.approx([15.0, 10.0, 10.0])
    before = {p: energy(model, p) for p in (1, 2, 3)}
    circuit_before = model.circuit_energy_wh
    model.set_relay(2, False, "test")
    assert model.series_loop_closed() is False
    assert model.circuit_current_a() == 0.0
    assert [model.position_current_a(p) for p in (1, 2, 3)] == [5.0, 0.0, 0.0]  # position 1 keeps its own load
    at(model, 10.0 + 3600.0)
    assert model.circuit_energy_wh == circuit_before
    assert energy(model, 1) - before[1] == pytest.approx(1200.0)
    assert energy(model, 2) == before[2] and energy(model, 3) == before[3]
    model.set_relay(2, True, "test")
    at(model, 10.0 + 2 * 3600.0)
    assert energy(model, 3) - before[3] == pytest.approx(2400.0, rel=1e-4)  # 10 A at 240 V for an hour again


def test_relay_and_load_changes_are_truth_events(model, truth_path):
    model.set_load(2, "load@2", on=True, mode="POW", setpoint=1200.0)
    model.set_relay(2, False, "meter@2")
    model.set_relay(2, False, "meter@2")  # no change, no event
    model.set_relay(2, True, "test")
    model.set_load(2, "load@2", on=False)
    truth = read_truth(truth_path)
    loads = [{k: e[k] for k in ("position", "on", "mode", "setpoint", "by")} for e in truth if e["event"] == "load"]
    assert loads == [{"position": 2, "on": True, "mode": "POW", "setpoint": 1200.0, "by": "load@2"},
                     {"position": 2, "on": False, "mode": "POW", "setpoint": 1200.0, "by": "load@2"}]
    relays = [e for e in truth if e["event"] == "relay"]
    assert [(e["position"], e["closed"], e["by"]) for e in relays] == [(2, False, "meter@2"), (2, True, "test")]
    assert all(isinstance(e["t_mono"], float) for e in relays)
    assert relays[0]["t_mono"] <= relays[1]["t_mono"]
