"""The twin served in the test's own process, on an event loop in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import pytest
from plan_runner import write_bench

from rig.bench import Bench
from rig.config import BenchFile, load_bench
from rig.sim.defects import Defects
from rig.sim.truth import read_truth
from rig.sim.twin import Twin
from rig.transcript import Transcript

RUN_TIMEOUT_S = 30.0  # a start or stop takes milliseconds; a busy 2-core machine running a fleet can take seconds


class TwinOnThread:
    """Base of in-process twin helpers: start_twin() serves a bench's simulators on free loopback ports;
    run() and call() reach the model on the twin's own loop (its only thread)."""

    def start_twin(self, bench_file: BenchFile, truth_path: Path, defects: Defects | None = None) -> dict[str, str]:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.twin = Twin(bench_file, truth_path, ephemeral_ports=True, defects=defects)
        self.model = self.twin.model
        self.resources = self.run(self.twin.start())
        return self.resources

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(RUN_TIMEOUT_S)

    def call(self, function, *args):
        """Run function on the twin's loop and return its result."""
        async def on_loop():
            return function(*args)
        return self.run(on_loop())

    def wait_for(self, predicate, what: str, timeout_s: float = 5.0) -> dict:
        """The first event in self.truth_path that predicate accepts, waited for up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in read_truth(self.truth_path) if predicate(e)]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no truth event {what} within {timeout_s} s in {self.truth_path}")

    def stop_twin(self) -> None:
        self.run(self.twin.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class OpenBenchOnTwin(TwinOnThread):
    """A copy of the sim bench (write_bench's only_roles and edit) served in process, and the rig's bench opened on
    it: `bench[role]` are the real drivers, `truth(event)` the twin's record of that event."""

    def __init__(self, folder: Path, only_roles: tuple[str, ...] | None = None, edit=None):
        self.truth_path = folder / "truth.jsonl"
        self.bench_file = load_bench(write_bench(folder, only_roles=only_roles, edit=edit))
        self.start_twin(self.bench_file, self.truth_path)
        self.transcript = Transcript(folder / "transcript.jsonl")
        self.bench = Bench(self.bench_file, self.transcript, self.resources)
        self.bench.open()

    def truth(self, event: str) -> list[dict]:
        return [entry for entry in read_truth(self.truth_path) if entry["event"] == event]

    def close(self) -> None:
        self.bench.close()
        self.transcript.close()
        self.stop_twin()


@contextlib.contextmanager
def twin_starter(twin_class, folder: Path):
    """start(*args, **options) -> a new twin_class(folder / 'twinN', *args, **options); every twin started is closed
    when the block ends (a test's fixture: `with twin_starter(MyTwin, tmp_path) as start: yield start`)."""
    twins = []

    def start(*args, **options):
        twin = twin_class(folder / f"twin{len(twins)}", *args, **options)
        twins.append(twin)
        return twin

    try:
        yield start
    finally:
        for twin in twins:
            twin.close()


def starter_fixture(twin_class):
    """A fixture that yields twin_starter(twin_class, tmp_path)'s start (`start_twin = starter_fixture(MyTwin)`)."""
    @pytest.fixture
    def start(tmp_path):
        with twin_starter(twin_class, tmp_path) as start:
            yield start
    return start
