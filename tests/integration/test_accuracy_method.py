"""Why the accuracy method gates on pulse edges: against the twin, whose reference has command latency,
a naive start/stop gating shows the skew error that the rig's method does not; and bad input to the plan."""

import math
import time

import pytest
import yaml
from plan_runner import PLANS, write_bench

from rig.accuracy import GatedMeasurement, error_pct, wait_until_settled
from rig.bench import Bench
from rig.config import load_bench
from rig.sim.launcher import TwinProcess
from rig.sim.truth import read_truth
from rig.transcript import Transcript

# timing-sensitive: `make test` runs these alone, after the tests that share the cores
pytestmark = pytest.mark.serial

K = 1e6  # the twin's test-output constant


@pytest.fixture
def energised(tmp_path):
    bench_file = load_bench(write_bench(tmp_path))
    twin = TwinProcess(bench_file.path, tmp_path / "truth.jsonl")
    bench = Bench(bench_file, Transcript(None), twin.resources)
    bench.open()
    bench["source"].set_voltage(240.0)
    bench["source"].set_output(True)
    bench["current"].set_current(10.0)
    bench["current"].set_output(True)
    wait_until_settled(bench["reference"], 2400.0, min_settle_s=0.5, tolerance_pct=0.05, timeout_s=10)
    yield bench
    bench.close()
    twin.stop()


def naive_error_pct(counter, reference, duration_s: float) -> float:
    """Reset the counter, start the reference, wait, stop the reference, read the counter."""
    counter.reset([1])
    reference.start_integration()
    time.sleep(duration_s)
    reference.stop_integration()
    pulses = counter.read_counts()[1]
    return error_pct(pulses * 1000 / K, reference.read_energy_wh())


def test_naive_gating_shows_the_skew_and_edge_gating_does_not(energised):
    counter, reference = energised["counter"], energised["reference"]
    naive = naive_error_pct(counter, reference, duration_s=5.0)
    # the reference starts ~20 ms after the counter and stops ~20 ms before it is read: ~0.4 % at 2.4 kW
    assert 0.2 < naive < 0.8
    gated = GatedMeasurement(counter, reference, {1: K, 2: K, 3: K}, limit_pct=1.0, power_w=2400.0).run()
    assert all(abs(window.error_pct) < 0.05 for window in gated.values()), gated


def accuracy_run(run_plan, tmp_path, plan: dict, standard: dict | None = None, *selection, edit=None):
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    if standard is not None:
        (tmp_path / "custom.yaml").write_text(yaml.safe_dump(standard))
    else:
        (tmp_path / "iec62053-21.yaml").write_text((PLANS / "accuracy" / "iec62053-21.yaml").read_text())
    return run_plan(PLANS / "accuracy", write_bench(tmp_path, edit=edit), f"--accuracy-plan={plan_path}",
                    *selection)


def test_load_point_beyond_the_meters_imax_is_refused_before_anything_is_energised(run_plan, tmp_path):
    standard = yaml.safe_load((PLANS / "accuracy" / "iec62053-21.yaml").read_text())
    standard["load_points"] = [{"name": "1.2 Imax", "of": "imax", "factor": 1.2}]
    standard["power_factors"] = ["1"]
    standard["classes"]["1"]["limits"] = [{"pf": ["1"], "from": 0.05, "to": 20.0, "limit_pct": 1.0}]
    run = accuracy_run(run_plan, tmp_path, {"standards": {"1": "custom.yaml"}}, standard, "-k", "load_point")
    assert run.wait(timeout_s=120) == 1
    assert "1 error" in run.output
    assert "current 72 A refused: above 60 A, the rating of meter SIM0001 at position 1 (imax_a)" in run.output
    switched_on = [e for e in read_truth(run.results / "twin-truth.jsonl")
                   if e["event"] in ("source.output", "current.output") and e["on"]]
    assert switched_on == []


def test_reference_that_will_not_settle_is_an_error_not_a_failure(run_plan, tmp_path):
    def noisy_reference(data):
        data["twin"]["instruments"]["reference"]["accuracy_class_pct"] = 3.0

    plan = {"standards": {"1": "iec62053-21.yaml"}, "method": {"settle_timeout_s": 1.0}}
    run = accuracy_run(run_plan, tmp_path, plan, None, "-k", "240V-Ib-PF1", edit=noisy_reference)
    assert run.wait(timeout_s=120) == 1
    assert run.output.splitlines()[-1].startswith("21 deselected, 1 error in")
    assert "reference reading did not settle within 1 s" in run.output
    assert run.run_json()["outcomes"] == {"passed": 0, "failed": 0, "error": 1, "skipped": 0}
    assert (run.results / "measurements.jsonl").read_text() == ""


def test_expected_power_check_catches_a_current_that_does_not_flow(energised):
    energised["current"].set_output(False)
    with pytest.raises(Exception, match="reference reading did not settle within 0.5 s"):
        wait_until_settled(energised["reference"], 2400.0, min_settle_s=0.1, tolerance_pct=0.05, timeout_s=0.5)
    assert math.isclose(energised["reference"].measure()["power_w"], 0.0, abs_tol=0.5)
