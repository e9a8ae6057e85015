"""Verdicts from measurements, FAIL against ERROR, a latched broken bench, bad input, results kept."""

import json
import subprocess
import sys

import pytest
from plan_runner import ROOT, free_port, source_output_events, write_bench


def test_failing_measurement_fails_the_test_after_all_are_taken(run_plan):
    run = run_plan("""
        from rig.plan import Limits

        def test_two_positions(measure):
            measure("error", 1.4, "%", Limits(-1.0, 1.0), position=2)
            measure("error", 0.3, "%", Limits(-1.0, 1.0), position=3, uncertainty=0.08)
            measure("error", -0.95, "%", Limits.within(0.0, 1.0, marginal=0.9), position=1)
    """)
    assert run.wait() == 1
    assert "1 failed" in run.output
    assert "1 measurement(s) out of limits" in run.output
    assert "error at position 2 (SIM0002) = 1.4 %, limits [-1, 1] %: FAIL" in run.output
    records = run.measurements()
    assert [(r["position"], r["meter"], r["verdict"]) for r in records] == [
        (2, "SIM0002", "fail"), (3, "SIM0003", "pass"), (1, "SIM0001", "marginal")]
    required = {"test", "name", "value", "unit", "low", "high", "verdict", "uncertainty", "position", "meter",
                "t_mono", "t_wall"}
    assert required <= set(records[1]) and records[1]["uncertainty"] == 0.08
    assert run.run_json()["outcomes"] == {"passed": 0, "failed": 1, "error": 0, "skipped": 0}


def test_measurement_steps_reach_allure_with_limits_and_status(run_plan):
    run = run_plan("""
        from rig.plan import Limits

        def test_one(measure):
            measure("voltage", 240.3, "V", Limits.within(240.0, 0.5))
            measure("frequency", 51.0, "Hz", Limits.within(50.0, 0.1))
    """)
    assert run.wait() == 1
    results = [json.loads(path.read_text()) for path in (run.results / "allure-results").glob("*-result.json")]
    assert len(results) == 1 and results[0]["status"] == "failed"
    steps = {step["name"]: step for step in results[0]["steps"]}
    assert steps["voltage = 240.3 V, limits [239.5, 240.5] V: PASS"]["status"] == "passed"
    assert steps["frequency = 51 Hz, limits [49.9, 50.1] Hz: FAIL"]["status"] == "failed"
    parameters = {p["name"]: p["value"] for p in steps["frequency = 51 Hz, limits [49.9, 50.1] Hz: FAIL"]["parameters"]}
    assert parameters["limits"] == "'[49.9, 50.1] Hz'" or parameters["limits"] == "[49.9, 50.1] Hz"


def test_instrument_fault_latches_the_bench_and_keeps_earlier_results(run_plan, tmp_path):
    run = run_plan("""
        from rig.plan import Limits

        def test_measures_then_instrument_stops_answering(source, measure):
            source.set_voltage(240.0)
            source.set_output(True)
            measure("voltage", source.measure_voltage(), "V", Limits.within(240.0, 1.1))
            source.query("SOUR:NONSENSE?")  # the instrument queues -113 and never answers

        def test_later_one(source):
            source.measure_voltage()

        def test_later_two(bench):
            pass
    """, write_bench(tmp_path, timeout_s=0.3))
    assert run.wait() == 1
    assert "3 errors" in run.output
    assert "bench broken: test_plan.py::test_measures_then_instrument_stops_answering: source" in run.output
    assert "no answer within 0.3 s to 'SOUR:NONSENSE?'" in run.output
    assert [m["verdict"] for m in run.measurements()] == ["pass"]
    record = run.run_json()
    assert record["outcomes"] == {"passed": 0, "failed": 0, "error": 3, "skipped": 0}
    assert "no answer within 0.3 s" in record["bench_broken"]
    assert source_output_events(run.truth()) == [True, False]


def test_declared_measurements_never_taken_fail_and_booleans_stay_booleans(run_plan):
    run = run_plan("""
        from rig.plan import Equals, Limits

        def test_declares(pos, measure):
            delay = measure.declare("cutoff_delay", "s", Limits(0.0, 3.0))
            measure.declare("reported_output_state", "", Equals(False))
            measure("alert_order", True, "", Equals(True))
            if pos.number == 1:
                delay.not_observed(4.5, details={"cut_seen": False})
            elif pos.number == 2:
                delay(1.2, uncertainty=0.01)
    """, None, "-k", "position1 or position2")
    assert run.wait() == 1
    assert "2 failed" in run.output
    assert "cutoff_delay at position 1 (SIM0001) = 4.5 s, limits [0, 3] s: FAIL (not observed within 4.5 s)" \
        in run.output
    assert "reported_output_state at position 2 (SIM0002): not measured, expected False: FAIL" in run.output
    records = [(r["position"], r["name"], r["value"], r["verdict"], r["note"]) for r in run.measurements()]
    assert records == [
        (1, "alert_order", True, "pass", None), (1, "cutoff_delay", 4.5, "fail", "not observed within 4.5 s"),
        (1, "reported_output_state", None, "fail", "not measured"),
        (2, "alert_order", True, "pass", None), (2, "cutoff_delay", 1.2, "pass", None),
        (2, "reported_output_state", None, "fail", "not measured")]


def test_a_meter_that_stops_answering_breaks_its_position_only(run_plan, tmp_path):
    def short_deadline(data):
        data["positions"][1]["interface"]["settings"]["deadline_s"] = 0.5

    defects = tmp_path / "defects.yaml"
    defects.write_text("positions:\n  2: {interface_dead: true}\n")
    run = run_plan("""
        def test_reads(pos):
            pos.meter.read_energy_import_kwh()

        def test_reads_again(pos, source):
            source.measure_voltage()
            pos.meter.read_energy_import_kwh()
    """, write_bench(tmp_path, edit=short_deadline), f"--twin-defects={defects}")
    assert run.wait(timeout_s=120) == 1
    assert "4 passed" in run.output and "2 errors" in run.output
    assert run.output.count("position 2 broken: meter@2 (") >= 2
    record = run.run_json()
    assert record["outcomes"] == {"passed": 4, "failed": 0, "error": 2, "skipped": 0}
    assert not record.get("bench_broken")


def test_setpoint_beyond_a_meter_rating_is_an_error_that_sends_nothing(run_plan, tmp_path):
    def lower_meter_rating(data):
        data["roles"]["source"]["limits"]["voltage_v"] = 290
        data["positions"][1]["max_voltage_factor"] = 1.1  # 264 V for position 2

    run = run_plan("""
        def test_overvoltage(source):
            source.set_voltage(270.0)

        def test_still_usable(source):
            source.set_voltage(230.0)
    """, write_bench(tmp_path, edit=lower_meter_rating))
    assert run.wait() == 1
    assert "1 passed" in run.output and "1 error" in run.output
    assert ("voltage 270 V refused: above 264 V, the rating of meter SIM0002 at position 2 (max_voltage_v)"
            in run.output)
    setpoints = [e["voltage_v"] for e in run.truth() if e["event"] == "source.voltage_setpoint"]
    assert setpoints == [230.0]


def test_bad_bench_file_stops_with_one_line_naming_file_line_and_field(run_plan, tmp_path):
    def bad_limit(data):
        data["roles"]["source"]["limits"]["voltage_v"] = "lots"

    bench = write_bench(tmp_path, edit=bad_limit)
    run = run_plan("def test_x(source):\n    pass\n", bench)
    assert run.wait() == 4
    line = next(line for line in run.output.splitlines() if "roles.source.limits.voltage_v" in line)
    assert line.startswith(f"ERROR: {bench}:") and "valid number" in line


def test_unknown_driver_names_the_role_and_known_drivers(run_plan, tmp_path):
    def unknown(data):
        data["roles"]["source"]["driver"] = "chroma99999"

    run = run_plan("def test_x(source):\n    pass\n", write_bench(tmp_path, edit=unknown))
    assert run.wait() == 4
    assert "roles.source.driver: unknown driver 'chroma99999' (known: " in run.output
    assert "chroma61500" in run.output.split("known: ")[1]


@pytest.mark.xdist_group("sim-bench-ports")  # serves or expects the sim bench's own ports
def test_unreachable_instrument_makes_every_test_an_error_naming_the_address(run_plan, tmp_path):
    port = free_port()
    run = run_plan("""
        def test_a(source):
            pass

        def test_b(source):
            pass
    """, write_bench(tmp_path, autostart=False, port=port))
    assert run.wait() == 1
    assert "2 errors" in run.output
    assert f"bench broken: source (TCPIP0::127.0.0.1::{port}::SOCKET): not reachable" in run.output
    assert run.run_json()["outcomes"]["error"] == 2


def test_rig_check_exits_non_zero_when_a_role_cannot_be_reached(tmp_path):
    port = free_port()
    bench = write_bench(tmp_path, autostart=False, port=port, only_roles=("source",))
    check = subprocess.run([sys.executable, "-m", "rig.cli", "check", str(bench)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 1
    assert f"TCPIP0::127.0.0.1::{port}::SOCKET" in check.stdout and "not reachable" in check.stdout
    assert "1 role(s) could not be reached" in check.stderr


def test_rig_check_prints_identities_of_the_twin_bench():
    check = subprocess.run([sys.executable, "-m", "rig.cli", "check", str(ROOT / "benches" / "sim.yaml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    row = next(line for line in check.stdout.splitlines() if line.startswith("source"))
    assert row.split()[3:] == ["Chroma", "ATE", "61504", "SIM61504-0001", "1.10", "ok"]
    assert "SIM0003" in check.stdout


def test_rig_run_runs_the_smoke_plan_into_a_complete_results_folder(tmp_path):
    results = tmp_path / "results" / "run1"
    run = subprocess.run([sys.executable, "-m", "rig.cli", "run", "--results", str(results), "--", "-q", "-m", "smoke",
                          "-p", "no:cacheprovider"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads((results / "run.json").read_text())
    assert record["outcomes"]["passed"] >= 5 and record["outcomes"]["failed"] == 0
    assert record["instruments"]["source"]["model"] == "61504"
    assert [m["serial"] for m in record["meters"]] == ["SIM0001", "SIM0002", "SIM0003"]
    assert record["packages"]["pymodbus"].startswith("3.16") and record["git_revision"]
    assert record["start"] < record["end"]
    for name in ("measurements.jsonl", "transcript.jsonl", "twin-truth.jsonl"):
        assert (results / name).stat().st_size > 0, name
    assert list((results / "allure-results").glob("*-result.json"))
