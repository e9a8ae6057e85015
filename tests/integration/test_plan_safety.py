"""Every exit path leaves the source OFF, judged from the twin's own truth, never from the driver."""

import signal
import subprocess
import sys
import time

import pytest
from plan_runner import PlanRun, free_port, source_output_events, write_bench

from rig.sim.truth import read_truth

ENERGISE_AND_WAIT = """
    import time

    def test_energised_then_waits(source):
        source.set_voltage(240.0)
        source.set_output(True)
        time.sleep(60)
"""


def _ends_off_by_the_rig(truth: list[dict]) -> None:
    outputs = [event for event in truth if event["event"] == "source.output"]
    assert [event["on"] for event in outputs][-2:] == [True, False]
    assert outputs[-1]["by"] == "source"  # switched by a command to the source, not by the twin stopping
    assert truth[-1]["event"] == "twin.stop" and truth[-1]["state"]["source"]["output_on"] is False


def test_test_that_raises_leaves_source_off_before_the_next_test(run_plan):
    run = run_plan("""
        def test_raises_while_energised(source):
            source.set_voltage(230.0)
            source.set_output(True)
            raise RuntimeError("plan bug while energised")

        def test_next(source):
            assert source.output_enabled() is False
    """)
    assert run.wait() == 1
    assert "1 passed" in run.output and "1 error" in run.output
    truth = run.truth()
    assert source_output_events(truth) == [True, False]
    reasons = [entry["reason"] for entry in run.run_json()["safe_state"]]
    assert reasons[0] == "start of run" and reasons[2:] == ["end of session"]
    assert reasons[1].startswith("after failed test ") and reasons[1].endswith("::test_raises_while_energised")


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_a_test_leaves_source_off(run_plan, signal_number):
    run = run_plan(ENERGISE_AND_WAIT)
    run.wait_for_truth(lambda event: event["event"] == "source.output" and event["on"])
    start = time.monotonic()
    run.signal(signal_number)
    exit_code = run.wait(timeout_s=30)
    assert time.monotonic() - start < 10
    assert exit_code == 2, run.output  # pytest: interrupted
    _ends_off_by_the_rig(run.truth())
    record = run.run_json()
    assert record["exit_status"] == 2 and record["end"] is not None
    assert record["safe_state"][-1]["reason"] == "end of session"
    assert record["safe_state"][-1]["actions"][0]["status"] == "ok"


@pytest.mark.xdist_group("sim-bench-ports")  # serves or expects the sim bench's own ports
def test_crash_of_a_plan_process_is_made_safe_by_the_next_run(tmp_path):
    """A killed run cannot clean up; the next run drives the bench safe before its first test."""
    port = free_port()
    bench = write_bench(tmp_path, autostart=False, port=port)
    truth_path = tmp_path / "external-twin-truth.jsonl"
    twin = subprocess.Popen([sys.executable, "-m", "rig.cli", "sim", "--bench", str(bench), "--truth",
                             str(truth_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert "twin: source" in twin.stdout.readline()
        killed = PlanRun(tmp_path / "killed", ENERGISE_AND_WAIT, bench)
        killed.wait_for_truth(lambda e: e["event"] == "source.output" and e["on"], truth_path=truth_path)
        killed.signal(signal.SIGKILL)
        killed.wait()
        assert source_output_events(read_truth(truth_path)) == [True]  # left live by the crash

        after = PlanRun(tmp_path / "after", """
            def test_first(source):
                assert source.output_enabled() is False
        """, bench)
        assert after.wait() == 0, after.output
        assert source_output_events(read_truth(truth_path)) == [True, False]
        assert after.run_json()["safe_state"][0]["reason"] == "start of run"
    finally:
        twin.terminate()
        twin.wait(10)


def test_second_run_on_a_held_bench_names_the_holder(run_plan, tmp_path):
    bench = write_bench(tmp_path)
    first = run_plan(ENERGISE_AND_WAIT, bench)
    first.wait_for_truth(lambda event: event["event"] == "source.output" and event["on"])
    second = run_plan("def test_nothing(source):\n    pass\n", bench)
    assert second.wait() == 4
    assert f"bench 'sim' is in use by pid {first.process.pid} on host" in second.output
    assert " since 20" in second.output
    first.signal(signal.SIGTERM)
    assert first.wait() == 2
    _ends_off_by_the_rig(first.truth())
