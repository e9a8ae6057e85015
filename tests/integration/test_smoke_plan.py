"""The smoke plan fails on a twin whose source misbehaves, not only passes on a good one."""

from plan_runner import PLANS, write_bench

SMOKE = PLANS / "test_bench_smoke.py"


def test_smoke_plan_fails_on_a_source_reading_one_percent_high(run_plan, tmp_path):
    def gain_error(data):
        data["twin"]["instruments"]["source"]["voltage_gain_error"] = 0.01

    run = run_plan(SMOKE, write_bench(tmp_path, edit=gain_error))
    assert run.wait(timeout_s=120) == 1
    assert "3 failed, 2 passed" in run.output
    failing = [m for m in run.measurements() if m["verdict"] == "fail"]
    assert [(m["name"], m["expected"]) for m in failing] == [("output_voltage", 230.0), ("output_voltage", 240.0),
                                                             ("output_voltage", 253.0)]


def test_smoke_plan_errors_when_the_source_will_not_switch_off(run_plan, tmp_path):
    def stuck(data):
        data["twin"]["instruments"]["source"]["output_stuck_on"] = True

    run = run_plan(SMOKE, write_bench(tmp_path, edit=stuck))
    assert run.wait(timeout_s=120) == 1
    assert "output still ON after 'OUTP OFF'" in run.output
    record = run.run_json()
    assert "output still ON" in record["bench_broken"]
    assert record["outcomes"] == {"passed": 4, "failed": 0, "error": 1, "skipped": 0}
