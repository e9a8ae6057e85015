"""Plans marked `together`: every position at once, each position's outcome its own test's, in the terminal, the
Allure results and the run record; shared steps once; a fault at one position leaves the others running."""

import json
import signal
import time

import pytest
from plan_runner import write_bench

PLAN = """
    import time
    from pathlib import Path

    import pytest

    from rig.plan import Equals, Limits, hold, once, together
    from rig.report.attach import attach_text

    pytestmark = [pytest.mark.together]
    MARKS = Path({marks!r})


    def mark(name):
        with (MARKS / name).open("a") as file:
            file.write("x")
        return time.monotonic()


    def test_every_position(pos, source, measure):
        started = time.monotonic()
        once("source on", lambda: (source.set_voltage(240.0), source.set_output(True), mark("once")))
        seen = together("all here", lambda: mark("together"))
        measure("started_before_shared_step", seen - started, "s", Limits(0.0, 30.0))
        attach_text(f"note of position {{pos.number}}", f"position {{pos.number}} ran")
        if pos.number == 2:
            measure("volts", 1.0, "V", Equals(240.0))  # position 2's meter fails
        elif pos.number == 3:
            raise RuntimeError("position 3's plan broke")  # an ERROR of position 3 only
        hold(0.2, "a short hold")
        measure("volts", source.measure_voltage(), "V", Limits.within(240.0, 2.0))
"""


@pytest.fixture
def plan_text(tmp_path):
    (tmp_path / "marks").mkdir()
    return PLAN.format(marks=str(tmp_path / "marks"))


def results_by_position(run) -> dict[int, dict]:
    results = [json.loads(p.read_text()) for p in (run.results / "allure-results").glob("*-result.json")]
    return {int(next(p["value"] for p in r["parameters"] if p["name"] == "position").strip("'").split()[0]): r
            for r in results}


def test_positions_run_at_once_and_each_reports_its_own_outcome(run_plan, plan_text, tmp_path):
    run = run_plan(plan_text)
    assert run.wait(120) == 1
    assert "1 passed, 1 failed" in run.output and "1 error" in run.output, run.output
    assert (tmp_path / "marks" / "once").read_text() == "x"  # the shared steps ran once for the three
    assert (tmp_path / "marks" / "together").read_text() == "x"
    outcomes = run.run_json()["outcomes"]
    assert outcomes == {"passed": 1, "failed": 1, "error": 1, "skipped": 0}
    by_test = {}
    for record in run.measurements():
        by_test.setdefault(record["test"].rpartition("[")[2], []).append((record["name"], record["verdict"]))
    assert by_test["position1-SIM0001]"] == [("started_before_shared_step", "pass"), ("volts", "pass")]
    assert by_test["position2-SIM0002]"] == [("started_before_shared_step", "pass"), ("volts", "fail"),
                                             ("volts", "pass")]
    assert by_test["position3-SIM0003]"] == [("started_before_shared_step", "pass")]
    allure = results_by_position(run)
    assert {n: r["status"] for n, r in allure.items()} == {1: "passed", 2: "failed", 3: "broken"}
    for number, result in allure.items():
        assert [a["name"] for a in result.get("attachments", [])] == [f"note of position {number}"]
        assert result["steps"][0]["name"].startswith("started_before_shared_step")
    assert "position 3's plan broke" in allure[3]["statusDetails"]["message"]


def test_one_position_selected_runs_alone(run_plan, plan_text):
    run = run_plan(plan_text, None, "-k", "position1")
    assert run.wait(120) == 0, run.output
    assert "1 passed, 2 deselected" in run.output
    assert [r["test"].rpartition("[")[2] for r in run.measurements()] == ["position1-SIM0001]"] * 2


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_positions_run_together_ends_them_and_leaves_the_bench_off(run_plan, signal_number):
    run = run_plan("""
        import pytest
        from rig.plan import LoadWatch, hold, once

        pytestmark = [pytest.mark.together]

        def test_every_position_waits(pos, source, measure):
            once("source on", lambda: (source.set_voltage(240.0), source.set_output(True)))
            pos.load.set_mode("CURR")
            pos.load.set_level(2.0)
            pos.load.set_input(True)
            with LoadWatch(pos.load, 2.0, 0.05):
                hold(120, "a long hold")
    """)
    run.wait_for_truth(lambda event: event["event"] == "load" and event.get("position") == 3 and event.get("on"))
    start = time.monotonic()
    run.signal(signal_number)
    exit_code = run.wait(timeout_s=60)
    assert time.monotonic() - start < 15, "the positions' threads did not end their waits"
    assert exit_code == 2, run.output
    truth = run.truth()
    final = truth[-1]
    assert final["event"] == "twin.stop" and final["state"]["source"]["output_on"] is False
    assert [e["by"] for e in truth if e["event"] == "source.output"][-1] == "source"
    loads = {number: meter["load"]["on"] for number, meter in final["state"]["meters"].items()}
    assert loads == {"1": False, "2": False, "3": False}, loads


def test_a_silent_meter_breaks_its_position_only_while_the_others_run_together(run_plan, tmp_path):
    def short_deadline(data):
        data["positions"][1]["interface"]["settings"]["deadline_s"] = 0.5

    defects = tmp_path / "defects.yaml"
    defects.write_text("positions:\n  2: {interface_dead: true}\n")
    run = run_plan("""
        import pytest
        from rig.plan import Limits, together

        pytestmark = [pytest.mark.together]

        def test_reads(pos, measure):
            measure("energy", pos.meter.read_energy_import_kwh(), "kWh", Limits(low=0.0))
            together("after the first read", lambda: None)  # the others go on without position 2

        def test_reads_again(pos, measure):
            measure("energy", pos.meter.read_energy_import_kwh(), "kWh", Limits(low=0.0))
    """, write_bench(tmp_path, edit=short_deadline), f"--twin-defects={defects}")
    assert run.wait(timeout_s=120) == 1
    assert "4 passed" in run.output and "2 errors" in run.output, run.output
    assert "position 2 broken: meter@2 (" in run.output
    record = run.run_json()
    assert record["outcomes"] == {"passed": 4, "failed": 0, "error": 2, "skipped": 0}
    assert not record.get("bench_broken")
    measured = sorted((r["test"].rpartition("::")[2], r["position"]) for r in run.measurements())
    assert measured == [("test_reads[position1-SIM0001]", 1), ("test_reads[position3-SIM0003]", 3),
                        ("test_reads_again[position1-SIM0001]", 1), ("test_reads_again[position3-SIM0003]", 3)]
