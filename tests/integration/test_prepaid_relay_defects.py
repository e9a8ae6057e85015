"""The load limiter, power cycle and cutoff plans on the twin: pass on the good twin, fail on each relay defect
of position 1 (and the emergency credit plan on an HES that ignores emergency credit)."""

from decimal import Decimal

import pytest
import yaml
from plan_runner import PLANS, write_bench

CUTOFF = PLANS / "prepaid" / "test_cutoff.py"
LIMITER = PLANS / "prepaid" / "test_load_limiter.py"
POWER_CYCLE = PLANS / "prepaid" / "test_power_cycle.py"
EMERGENCY = PLANS / "prepaid" / "test_emergency_credit.py"


def defects_file(tmp_path, defects: dict):
    path = tmp_path / "defects.yaml"
    path.write_text(yaml.safe_dump(defects))
    return f"--twin-defects={path}"


def position1(defects: dict) -> dict:
    return {"positions": {1: defects}}


def quick_limits(tmp_path, **changes):
    limits = yaml.safe_load((PLANS / "prepaid" / "limits.yaml").read_text())
    limits["profiles"]["quick"] = {**limits["profiles"]["twin"], **changes}
    path = tmp_path / "limits.yaml"
    path.write_text(yaml.safe_dump(limits))
    return f"--prepaid-limits={path}:quick"


def by_name(run) -> dict:
    return {m["name"]: m for m in run.measurements()}


def test_limiter_plan_passes_on_the_good_twin(run_plan, tmp_path):
    run = run_plan(LIMITER, write_bench(tmp_path), "-k", "position1")
    assert run.wait(timeout_s=120) == 0, run.output
    measured = by_name(run)
    delay = measured["limiter_trip_delay"]
    assert delay["verdict"] == "pass" and 2.0 - delay["uncertainty"] <= delay["value"] <= 2.5
    assert delay["details"]["min_over_threshold_duration_s"] == 2  # read from the meter (benches/sim.yaml)
    assert measured["current_below_threshold"]["value"] > 2.9
    trips = [e for e in run.truth() if e["event"] == "limiter.trip"]
    assert [(e["position"], e["threshold_w"]) for e in trips] == [(1, 1081)]
    restored = [e["value"] for e in run.truth() if e["event"] == "limiter.set" and e["attribute"] == "threshold_normal"]
    assert restored == [1081, 100000]  # set for the test, restored after it


def test_limiter_plan_fails_on_a_meter_that_ignores_the_load_limit(run_plan, tmp_path):
    run = run_plan(LIMITER, write_bench(tmp_path), "-k", "position1",
                   defects_file(tmp_path, position1({"load_limit_ignored": True})))
    assert run.wait(timeout_s=120) == 1, run.output
    measured = by_name(run)
    delay = measured["limiter_trip_delay"]
    assert delay["verdict"] == "fail" and delay["details"]["trip_seen"] is False and delay["value"] > 7
    assert measured["reported_output_state"]["verdict"] == "fail"
    assert [e["defect"] for e in run.truth() if e["event"] == "limiter.ignored"] == ["load_limit_ignored"]
    assert "1 failed" in run.output


def test_power_cycle_plan_passes_on_the_good_twin(run_plan, tmp_path):
    run = run_plan(POWER_CYCLE, write_bench(tmp_path), "-k", "position1")
    assert run.wait(timeout_s=120) == 0, run.output
    pending = next(m for m in run.measurements() if m["name"] == "reconnect_after_power_return")
    assert 0 < pending["value"] < 3
    assert pending["details"]["command_at_power_return"]["status"] == "retrying"
    assert pending["details"]["command"]["status"] == "executed" and pending["details"]["command"]["attempts"] >= 2
    retried = [e for e in run.truth() if e["event"] == "hes.command" and e["action"] == "connect"
               and e["status"] == "retrying"]
    assert retried and all(e["error"] for e in retried)  # unanswered while the meter had no supply
    power = [(e["position"], e["on"]) for e in run.truth() if e["event"] == "meter.power" and e["position"] == 1]
    assert power[:5] == [(1, True), (1, False), (1, True), (1, False), (1, True)]  # on, then a cycle per case


def test_power_cycle_plan_fails_on_a_meter_that_reconnects_at_power_up(run_plan, tmp_path):
    run = run_plan(POWER_CYCLE, write_bench(tmp_path), "-k", "position1 and stays",
                   defects_file(tmp_path, position1({"relay_state_volatile": True})))
    assert run.wait(timeout_s=120) == 1, run.output
    measured = by_name(run)
    assert measured["current_after_power_return"]["verdict"] == "fail"
    assert measured["current_after_power_return"]["value"] > 4.5
    assert measured["reported_control_state"]["value"] == 1
    assert any(e["event"] == "disconnect_control" and e["transition"] == "volatile" for e in run.truth())


def test_power_cycle_plan_fails_on_a_relay_stuck_open(run_plan, tmp_path):
    """The meter says connected, the HES has credit, the source is on, and no current flows: the meter fails
    (FAIL, not ERROR), and the plan stops there."""
    run = run_plan(POWER_CYCLE, write_bench(tmp_path), "-k", "position1 and pending",
                   defects_file(tmp_path, position1({"relay_stuck": "open"})))
    assert run.wait(timeout_s=120) == 1, run.output
    measured = by_name(run)
    flows = measured["current_with_meter_connected"]
    assert flows["verdict"] == "fail" and flows["value"] < 0.1
    assert flows["details"]["control_state"] == 1 and flows["details"]["output_state"] is False
    assert [name for name, m in measured.items() if m["value"] is not None] == ["current_with_meter_connected"]
    assert all(m["note"] == "not measured" for m in measured.values() if m["value"] is None)  # declared, never taken
    assert "1 failed" in run.output and "error" not in run.output.splitlines()[-1]


def test_cutoff_plan_fails_on_a_relay_stuck_closed(run_plan, tmp_path):
    run = run_plan(CUTOFF, write_bench(tmp_path), "-k", "position1",
                   quick_limits(tmp_path, cutoff_after_exhaustion_max_s=3),
                   defects_file(tmp_path, position1({"relay_stuck": "closed"})))
    assert run.wait(timeout_s=120) == 1, run.output
    measured = by_name(run)
    delay = measured["cutoff_delay"]
    assert delay["verdict"] == "fail" and delay["details"]["cut_seen"] is False and delay["value"] > 13
    assert measured["reported_output_state"]["value"] == 1
    assert any(e["event"] == "relay.stuck" and not e["commanded_closed"] for e in run.truth())
    assert not [e for e in run.truth() if e["event"] == "relay" and e["position"] == 1]


def test_cutoff_plan_fails_on_a_meter_reporting_its_relay_inverted(run_plan, tmp_path):
    run = run_plan(CUTOFF, write_bench(tmp_path), "-k", "position1",
                   defects_file(tmp_path, position1({"relay_state_inverted": True})))
    assert run.wait(timeout_s=120) == 1, run.output
    measured = by_name(run)
    assert measured["cutoff_delay"]["verdict"] == "pass"  # the physics is right
    assert measured["reported_output_state"]["verdict"] == "fail" and measured["reported_output_state"]["value"] == 1
    assert measured["reported_output_state"]["details"]["control_state"] == 0


def test_cutoff_plan_fails_on_a_relay_that_opens_late(run_plan, tmp_path):
    run = run_plan(CUTOFF, write_bench(tmp_path), "-k", "position1",
                   quick_limits(tmp_path, cutoff_after_exhaustion_max_s=3),
                   defects_file(tmp_path, position1({"relay_open_delay_s": 4})))
    assert run.wait(timeout_s=120) == 1, run.output
    delay = by_name(run)["cutoff_delay"]
    assert delay["verdict"] == "fail" and 4.0 <= delay["value"] <= 5.5
    opened = [e for e in run.truth() if e["event"] == "relay" and e.get("defect") == "relay_open_delay_s"]
    opening = [e for e in run.truth() if e["event"] == "relay.opening"]
    assert len(opened) == len(opening) == 1
    assert opened[0]["at_mono"] - opening[0]["t_mono"] == pytest.approx(4.0, abs=0.01)


def test_emergency_credit_plan_fails_on_an_hes_that_ignores_emergency_credit(run_plan, tmp_path):
    run = run_plan(EMERGENCY, write_bench(tmp_path), "-k", "position1",
                   defects_file(tmp_path, {"hes": {"ignore_emergency_credit": True}}))
    assert run.wait(timeout_s=120) == 1, run.output
    measured = by_name(run)
    assert measured["emergency_credit_granted"]["verdict"] == "pass"
    held = measured["current_during_emergency_credit"]
    assert held["verdict"] == "fail" and held["value"] < 1
    ignored = [e for e in run.truth() if e["event"] == "hes.emergency_credit_ignored"]
    assert len(ignored) == 1 and Decimal(ignored[0]["emergency_credit_left"]) > 0  # an amount: "50.00"
