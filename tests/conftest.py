"""Fixtures shared by the rig's tests."""

import signal
from pathlib import Path

import pytest
from plan_runner import PlanRun, write_bench
from scripted_peer import ScriptedScpiPeer

from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.transcript import Transcript


@pytest.fixture
def run_plan(tmp_path):
    """run_plan(source, bench=None, *args) -> a started PlanRun; killed at teardown if still running."""
    runs: list[PlanRun] = []

    def start(plan: str | Path, bench: Path | None = None, *extra: str, folder: Path | None = None) -> PlanRun:
        where = folder or tmp_path / f"run{len(runs)}"
        where.mkdir(parents=True, exist_ok=True)
        run = PlanRun(where, plan, bench or write_bench(tmp_path), extra)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGKILL)
            run.process.wait()


@pytest.fixture
def twin(start_twin):
    """The first twin of the test module's start_twin fixture, with its defaults."""
    return start_twin()


@pytest.fixture
def opened():
    """opened(driver, peer) -> (driver, peer) with the driver opened; both closed at teardown."""
    pairs = []

    def open_pair(driver, peer):
        pairs.append((driver, peer))
        driver.open()
        return driver, peer

    yield open_pair
    for driver, peer in pairs:
        driver.close()
        peer.close()


@pytest.fixture
def scripted(tmp_path, opened):
    """scripted(cls, role, steps, limits=None, timeout_s=0.5, settings=None) -> (driver, peer): a driver opened
    against a loopback peer that expects exactly `steps`; both closed at teardown."""

    def make(cls, role: str, steps, limits: SetpointLimits | None = None, timeout_s: float = 0.5,
             settings: dict | None = None):
        peer = ScriptedScpiPeer(steps)
        config = RoleConfig(driver=cls.__name__, resource=peer.resource, timeout_s=timeout_s, settings=settings or {})
        return opened(cls(role, config, limits or SetpointLimits(), Transcript(tmp_path / "transcript.jsonl")), peer)

    return make
