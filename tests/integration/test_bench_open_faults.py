"""A bench that opens only in part is still driven safe: every role that opens is made safe, whatever failed."""

from pathlib import Path

import pytest
from plan_runner import free_port, write_bench
from twin_thread import TwinOnThread

from drivers.pulse_counter import Adam6051Counter
from rig.bench import Bench
from rig.config import load_bench
from rig.errors import BenchBroken, PositionBroken
from rig.sim.truth import read_truth
from rig.transcript import Transcript


class LiveTwin(TwinOnThread):
    """The sim bench's twin in process, left energised by a run that never made it safe (a killed run)."""

    def __init__(self, folder):
        folder.mkdir()
        self.truth_path = folder / "truth.jsonl"
        self.bench_file = load_bench(write_bench(folder))
        self.start_twin(self.bench_file, self.truth_path)

    def leave_energised(self, folder) -> None:
        bench = Bench(self.bench_file, Transcript(folder / "killed-transcript.jsonl"), self.resources)
        bench.open()
        bench["source"].set_voltage(230.0)
        bench["source"].set_output(True)
        load = bench["load@1"]
        load.set_mode("CURR")
        load.set_level(2.0)
        load.set_input(True)
        for driver in bench.drivers.values():  # the connections die with the process; nothing is switched off
            driver.close()

    def last(self, event: str, **match) -> dict:
        events = [e for e in read_truth(self.truth_path)
                  if e["event"] == event and all(e.get(k) == v for k, v in match.items())]
        return events[-1]


@pytest.fixture
def live_twin(tmp_path):
    twin = LiveTwin(tmp_path / "twin")
    twin.leave_energised(tmp_path)
    assert twin.last("source.output")["on"] is True
    assert twin.last("load", position=1)["on"] is True
    yield twin
    twin.stop_twin()


def test_an_unreachable_role_does_not_stop_the_start_of_run_safe_state(live_twin, tmp_path):
    """After a killed run, meter@1 on a closed port: load@1, opened after it, and the source still end OFF."""
    resources = dict(live_twin.resources, **{"meter@1": f"tcp://127.0.0.1:{free_port()}"})
    bench = Bench(live_twin.bench_file, Transcript(tmp_path / "transcript.jsonl"), resources)
    bench.open()  # a meter under test that does not answer breaks its own position, not the bench
    try:
        assert bench.broken is None
        with pytest.raises(PositionBroken, match=r"position 1 broken: meter@1 \(tcp://127\.0\.0\.1:\d+\): "):
            bench["load@1"]
        load, source = live_twin.last("load", position=1), live_twin.last("source.output")
        assert (load["on"], load["by"]) == (False, "load@1")
        assert (source["on"], source["by"]) == (False, "source")
        assert "meter@1" not in bench.identities and {"load@1", "meter@2", "source"} <= set(bench.identities)
    finally:
        bench.close()


def test_a_driver_bug_while_opening_names_the_role_and_the_rest_is_made_safe(live_twin, tmp_path, monkeypatch):
    """An exception that is not the rig's own (a driver's ValueError) breaks the bench naming the role; it does
    not leave the roles after it unopened and live."""

    def broken_open(self):
        raise ValueError("invalid literal for int() with base 10: 'twelve'")

    monkeypatch.setattr(Adam6051Counter, "open", broken_open)
    bench = Bench(live_twin.bench_file, Transcript(tmp_path / "transcript.jsonl"), live_twin.resources)
    with pytest.raises(BenchBroken) as info:
        bench.open()
    try:
        assert "counter (tcp://127.0.0.1:" in str(info.value)
        assert "cannot open: ValueError: invalid literal for int() with base 10: 'twelve'" in str(info.value)
        assert live_twin.last("load", position=1)["on"] is False
        assert live_twin.last("source.output")["on"] is False
        assert "load@3" in bench.drivers
    finally:
        bench.close()


def test_recording_that_fails_never_stops_the_safe_state(live_twin, tmp_path):
    """Safe-state records that cannot be written (/dev/full: ENOSPC on every flush) are reported, and every role
    is still made safe, in order."""
    written = []

    def record_that_fails(reason, actions):
        written.append(reason)
        raise OSError(28, "No space left on device")

    transcript = Transcript(Path("/dev/full"))
    bench = Bench(live_twin.bench_file, transcript, live_twin.resources, record_that_fails)
    bench.open()
    try:
        assert written == ["start of run"]
        assert transcript.write_error is not None and "No space left on device" in transcript.write_error
        assert live_twin.last("load", position=1)["on"] is False
        assert live_twin.last("source.output")["on"] is False
        assert bench.broken is None
    finally:
        bench.close()
