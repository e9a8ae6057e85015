"""Faults around a run: a full disk, a latched bench, signal storms, SIGINT ignored, reused or unwritable results
folders, a second run or `rig check` on a copy of the bench file. The bench ends safe, judged by the twin."""

import os
import signal
import subprocess
import sys
import time

import pytest
from plan_runner import PlanRun, free_port, source_output_events, write_bench

from rig.config import load_bench
from rig.lock import BenchLock
from rig.sim.fault_proxy import ProxyThread
from rig.sim.truth import read_truth

ENERGISE_AND_WAIT = """
    import time

    def test_energised_then_waits(source):
        source.set_voltage(240.0)
        source.set_output(True)
        time.sleep(60)
"""

FILL_THE_DISK = """
    from pathlib import Path

    from rig.plan import Limits

    def test_fills_the_disk_while_energised(source):
        source.set_voltage(240.0)
        source.set_output(True)
        with open(Path("results") / "filler", "wb") as filler:
            while True:
                filler.write(b"x" * 4096)
                filler.flush()

    def test_measures_on_a_full_disk(source, measure):
        measure("voltage", source.measure_voltage(), "V", Limits(low=0))
"""


def _served_source_twin(folder):
    """A bench of the source only, served by `rig sim` with its truth outside the run folder."""
    folder.mkdir(exist_ok=True)
    bench = write_bench(folder, autostart=False, port=free_port(), only_roles=("source",))
    truth = folder / "served-truth.jsonl"
    twin = subprocess.Popen([sys.executable, "-m", "rig.cli", "sim", "--bench", str(bench), "--truth", str(truth)],
                            stdout=subprocess.PIPE, text=True)
    assert "twin: source" in twin.stdout.readline()
    return bench, truth, twin


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs (the full disk) needs root")
def test_a_full_disk_never_leaves_the_source_on(tmp_path):
    bench, truth, twin = _served_source_twin(tmp_path)
    results = tmp_path / "run" / "results"
    results.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(results)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        twin.terminate()
        twin.wait(10)
        pytest.skip(f"a small tmpfs cannot be mounted here: {mounted.stderr.strip()}")
    try:
        run = PlanRun(tmp_path / "run", FILL_THE_DISK, bench, results=results)
        exit_code = run.wait(timeout_s=60)
        events = read_truth(truth)
    finally:
        subprocess.run(["umount", "-l", str(results)], check=False)
        twin.terminate()
        twin.wait(10)
    assert exit_code == 1, run.output
    assert source_output_events(events) == [True, False]
    assert [e["by"] for e in events if e["event"] == "source.output"] == ["source", "source"]
    assert "run.json: not written: No space left on device" in run.output
    assert "allure-results: Allure results not written: No space left on device" in run.output
    assert "measurements.jsonl: voltage not written: No space left on device" in run.output
    assert "2 errors in" in run.output and "INTERNALERROR" not in run.output  # the rig's fault, not the meter's


def test_a_latched_bench_is_made_safe_once_then_the_rest_is_reported_at_once(run_plan):
    run = run_plan("""
        def test_breaks_the_bench(source):
            source.set_voltage(230.0)
            source.set_output(True)
            source.query_float("*IDN?")  # a reply that is not a number: a driver fault latches the bench

        def test_second(source):
            pass

        def test_third(source):
            pass
    """)
    assert run.wait() == 1
    assert "3 errors" in run.output
    assert run.output.count("bench broken: ") >= 2
    reasons = [entry["reason"] for entry in run.run_json()["safe_state"]]
    assert reasons[0] == "start of run" and reasons[-1] == "end of session"
    assert len(reasons) == 3 and reasons[1].endswith("::test_breaks_the_bench")
    assert source_output_events(run.truth()) == [True, False]


def _ends_off_and_recorded(run: PlanRun) -> None:
    outputs = [event for event in run.truth() if event["event"] == "source.output"]
    assert [event["on"] for event in outputs][-2:] == [True, False] and outputs[-1]["by"] == "source"
    record = run.run_json()
    assert record["end"] is not None and record["exit_status"] == 2
    assert record["outcomes"] == {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    assert "Traceback (most recent call last)" not in run.output and "INTERNALERROR" not in run.output


@pytest.mark.parametrize("gaps_s", [[0.4], [0.05] * 12], ids=["double-ctrl-c", "ctrl-c-storm"])
def test_ctrl_c_again_while_stopping_is_told_and_ignored(run_plan, gaps_s):
    run = run_plan(ENERGISE_AND_WAIT)
    run.wait_for_truth(lambda event: event["event"] == "source.output" and event["on"])
    run.signal(signal.SIGINT)
    for gap_s in gaps_s:
        time.sleep(gap_s)
        if run.process.poll() is None:
            run.signal(signal.SIGINT)
    assert run.wait(timeout_s=30) == 2, run.output
    _ends_off_and_recorded(run)


def test_sigint_is_acted_on_when_the_run_was_started_with_it_ignored(tmp_path):
    """A background job of a non-interactive shell starts with SIGINT ignored; the rig still stops safely."""
    run = PlanRun(tmp_path / "run", ENERGISE_AND_WAIT, write_bench(tmp_path),
                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        run.wait_for_truth(lambda event: event["event"] == "source.output" and event["on"])
        run.signal(signal.SIGINT)
        assert run.wait(timeout_s=30) == 2, run.output
        _ends_off_and_recorded(run)
    finally:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def test_a_results_folder_in_use_is_refused_and_left_as_it_was(run_plan, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "run.json").write_text("{}")
    run = run_plan("def test_nothing(source):\n    pass\n", None, f"--results={used}")
    assert run.wait() == 4
    assert f"results folder {used} is not empty: a run folder holds one run" in run.output
    assert sorted(p.name for p in used.iterdir()) == ["run.json"]


def test_an_unwritable_results_folder_is_one_line(run_plan, tmp_path):
    (tmp_path / "a-file").write_text("")
    run = run_plan("def test_nothing(source):\n    pass\n", None, f"--results={tmp_path / 'a-file' / 'run'}")
    assert run.wait() == 4
    assert f"results folder {tmp_path / 'a-file' / 'run'} cannot be written: Not a directory" in run.output
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output


def test_a_copy_of_a_served_bench_file_cannot_drive_its_instruments_during_a_run(tmp_path):
    """Locks follow the instruments' addresses, not the bench file: a copy of the file, and `rig check`, are
    refused while a run holds them, naming the holder."""
    original = write_bench(tmp_path, "bench.yaml", autostart=False, port=free_port())
    copy = tmp_path / "copy.yaml"
    copy.write_text(original.read_text())
    holder = BenchLock.for_bench(load_bench(original))
    holder.acquire()
    try:
        check = subprocess.run([sys.executable, "-m", "rig.cli", "check", str(copy)], capture_output=True,
                               text=True, timeout=60)
        run = PlanRun(tmp_path / "run", "def test_nothing(source):\n    pass\n", copy)
        assert run.wait() == 4, run.output
    finally:
        holder.release()
    expected = f"of bench 'sim' is in use by bench 'sim' ({original}), pid {os.getpid()} on host "
    assert check.returncode == 2 and expected in check.stderr, check.stderr
    assert expected in run.output
    assert not (tmp_path / "run" / "results").exists()
    assert list((tmp_path / "locks").iterdir()) == []  # released locks leave no files behind


def _counter_channels_twelve(data) -> None:
    data["roles"]["counter"]["settings"]["channels"] = "twelve"


def test_a_bad_setting_stops_check_and_run_before_anything_is_opened_or_written(tmp_path):
    bench = write_bench(tmp_path, edit=_counter_channels_twelve)
    check = subprocess.run([sys.executable, "-m", "rig.cli", "check", str(bench)], capture_output=True, text=True,
                           timeout=60)
    run = PlanRun(tmp_path / "run", "def test_nothing(source):\n    pass\n", bench)
    assert run.wait() == 4, run.output
    assert check.returncode == 2 and "valid" not in check.stdout
    assert check.stderr.startswith(f"rig: error: {bench}:")
    assert "roles.counter.settings.channels" in check.stderr and len(check.stderr.splitlines()) == 1
    assert "roles.counter.settings.channels" in run.output and "Traceback" not in run.output
    assert not (tmp_path / "run" / "results").exists()


def test_a_run_whose_bench_is_not_confirmed_safe_at_the_end_is_no_pass(tmp_path):
    """The tests pass, then the source freezes: the end-of-session safe state times out, and the run says so
    and exits 1 (run.json too), never 0."""
    twin_bench, _truth, twin = _served_source_twin(tmp_path / "twin")
    twin_port = int(load_bench(twin_bench).config.roles["source"].resource.split("::")[2])
    with ProxyThread(("127.0.0.1", twin_port)) as proxy:

        def through_the_proxy(data):
            data["roles"]["source"]["resource"] = f"TCPIP0::127.0.0.1::{proxy.port}::SOCKET"
            data["roles"]["source"]["safe_timeout_s"] = 1.0

        bench = write_bench(tmp_path, "proxied.yaml", autostart=False, only_roles=("source",), edit=through_the_proxy)
        try:
            run = PlanRun(tmp_path / "run", """
                import time
                from pathlib import Path

                def test_energises_and_passes(source):
                    source.set_voltage(230.0)
                    source.set_output(True)
                    Path("energised").touch()
                    deadline = time.monotonic() + 30
                    while not Path("frozen").exists() and time.monotonic() < deadline:
                        time.sleep(0.05)
            """, bench)
            deadline = time.monotonic() + 30
            while not (tmp_path / "run" / "energised").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            proxy.set_mode("freeze")
            (tmp_path / "run" / "frozen").touch()
            exit_code = run.wait()
        finally:
            twin.terminate()
            twin.wait(10)
    assert exit_code == 1, run.output
    assert "1 passed" in run.output
    assert "bench NOT confirmed safe at the end of the session: source (TCPIP0::127.0.0.1:" in run.output
    assert "no safe state within 1 s" in run.output
    record = run.run_json()
    assert record["exit_status"] == 1 and record["outcomes"]["passed"] == 1
    assert record["safe_state"][-1]["actions"][0]["status"] == "timeout"
