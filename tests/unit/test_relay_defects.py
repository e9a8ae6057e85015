"""The twin's relay defects (relay_open_delay_s, relay_stuck, relay_state_inverted, load_limit_ignored,
relay_state_volatile) on a controlled clock."""

import random

import pytest

from rig.sim.defects import MeterDefects
from rig.sim.dlms.meter import DlmsMeterSim, NoAnswer
from rig.sim.model import PhysicalModel, SimMeter
from rig.sim.truth import TruthLog, read_truth

CLOCK = [0.0]


def make_model(truth_path, defects: MeterDefects) -> PhysicalModel:
    model = PhysicalModel(truth=TruthLog(truth_path), rng=random.Random(1),
                          meters=[SimMeter(1, "SIM0001", 240.0, 10.0, 5.0, 1000.0, defects)])
    CLOCK[0] = 0.0
    model.clock = lambda: CLOCK[0]
    model.last_t = 0.0
    model.set_source_voltage(240.0, "test")
    model.set_source_output(True, "test")
    model.set_load(1, "test", on=True, mode="CURR", setpoint=5.0)
    return model


def at(model, seconds):
    CLOCK[0] = seconds
    model.now()


def test_a_delayed_relay_opens_at_its_instant_and_the_energy_stops_there(tmp_path):
    model = make_model(tmp_path / "t.jsonl", MeterDefects(relay_open_delay_s=2.0))
    at(model, 1.0)
    model.set_relay(1, False, "test")
    at(model, 2.5)
    assert model.meter(1).relay_closed and model.position_current_a(1) == pytest.approx(5.0)
    at(model, 10.0)
    assert not model.meter(1).relay_closed and model.position_current_a(1) == 0.0
    assert model.meter(1).true_energy_wh == pytest.approx(240.0 * 5.0 * 3.0 / 3600)  # flowed until t = 3 s
    opened = [e for e in read_truth(tmp_path / "t.jsonl") if e["event"] == "relay"]
    assert [(e["closed"], e["at_mono"], e["defect"]) for e in opened] == [(False, 3.0, "relay_open_delay_s")]


def test_a_close_decision_cancels_a_delayed_opening(tmp_path):
    model = make_model(tmp_path / "t.jsonl", MeterDefects(relay_open_delay_s=2.0))
    model.set_relay(1, False, "test")
    at(model, 1.0)
    model.set_relay(1, True, "test")
    at(model, 5.0)
    assert model.meter(1).relay_closed and model.meter(1).relay_opens_at is None


@pytest.mark.parametrize("stuck", ["closed", "open"])
def test_a_stuck_relay_never_moves(tmp_path, stuck):
    model = make_model(tmp_path / "t.jsonl", MeterDefects(relay_stuck=stuck))
    for closed in (False, True, False):
        model.set_relay(1, closed, "test")
        assert model.meter(1).relay_closed is (stuck == "closed")
        assert model.meter(1).relay_commanded is closed
    assert model.position_current_a(1) == (5.0 if stuck == "closed" else 0.0)
    events = read_truth(tmp_path / "t.jsonl")
    assert not [e for e in events if e["event"] == "relay"]
    assert all(e["defect"] == "relay_stuck" for e in events if e["event"] == "relay.stuck")


def test_an_inverted_meter_reports_the_opposite_of_its_relay(tmp_path):
    model = make_model(tmp_path / "t.jsonl", MeterDefects(relay_state_inverted=True))
    meter = DlmsMeterSim("meter@1", model, {})
    assert meter.reported_output_state() is False
    meter.remote_disconnect("test")
    assert not model.meter(1).relay_closed and meter.reported_output_state() is True


def test_a_meter_ignoring_its_load_limit_never_trips(tmp_path):
    model = make_model(tmp_path / "t.jsonl", MeterDefects(load_limit_ignored=True))
    meter = DlmsMeterSim("meter@1", model, {"limiter_threshold_w": 1000, "limiter_duration_s": 1})
    for now in (0.0, 0.5, 1.5, 5.0):
        meter.check_limiter(now)
    assert model.meter(1).relay_closed and meter.control_state == 1
    ignored = [e for e in read_truth(tmp_path / "t.jsonl") if e["event"] == "limiter.ignored"]
    assert len(ignored) == 1 and ignored[0]["defect"] == "load_limit_ignored"


@pytest.mark.parametrize(("volatile", "after_power_up"), [(False, 0), (True, 1)])
def test_a_meter_without_supply_does_not_answer_and_keeps_its_state_unless_volatile(tmp_path, volatile,
                                                                                    after_power_up):
    model = make_model(tmp_path / "t.jsonl", MeterDefects(relay_state_volatile=volatile))
    meter = DlmsMeterSim("meter@1", model, {"powered_by_source": True, "boot_s": 0.5})
    meter.remote_disconnect("test")
    model.set_source_output(False, "test")
    with pytest.raises(NoAnswer, match="no supply voltage"):
        meter.remote_reconnect("test")
    model.set_source_output(True, "test")
    with pytest.raises(NoAnswer, match="booting"):
        meter.remote_reconnect("test")
    assert meter.control_state == after_power_up and model.meter(1).relay_closed is bool(after_power_up)
    at(model, 0.6)
    assert meter.remote_reconnect("test") == 0 and meter.control_state == 1
