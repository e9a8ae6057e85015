"""Fixtures shared by the rig's tests."""

import signal
from pathlib import Path

import pytest
from plan_runner import PlanRun, write_bench


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
