"""The run folder: run.json, measurements.jsonl, transcript.jsonl, twin truth and Allure results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from rig.measure import Measurement

PACKAGES = ("meter-hil-rig", "pyvisa", "pyvisa-py", "pymodbus", "pyserial", "pyyaml", "pydantic",
            "allure-pytest", "pytest")


def timestamp_folder_name(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def make_run_folder(results: Path | None, base: Path) -> Path:
    """Create the run folder (default base/results/<timestamp>) and point base/results/latest at it."""
    if results is None:
        parent = base / "results"
        folder = parent / timestamp_folder_name()
        suffix = 1
        while folder.exists():
            folder = parent / f"{timestamp_folder_name()}-{suffix}"
            suffix += 1
    else:
        folder = results
    folder.mkdir(parents=True, exist_ok=True)
    latest = folder.parent / "latest"
    if results is None or latest.is_symlink():
        tmp = folder.parent / f".latest-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(folder.name)
        tmp.replace(latest)
    return folder


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=cwd,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class RunRecord:
    """Everything a run writes into its folder; measurements are fsynced as they are taken."""

    def __init__(self, folder: Path, bench_name: str, bench_path: Path, source_root: Path):
        self.folder = folder
        self.run_path = folder / "run.json"
        self.measurements_path = folder / "measurements.jsonl"
        self.transcript_path = folder / "transcript.jsonl"
        self.truth_path = folder / "twin-truth.jsonl"
        self.allure_dir = folder / "allure-results"
        self._measurements = open(self.measurements_path, "a")
        self.data = {
            "bench": {"name": bench_name, "path": str(bench_path)},
            "instruments": {},
            "meters": [],
            "safe_state": [],
            "packages": package_versions(),
            "python": platform.python_version(),
            "host": platform.node(),
            "git_revision": git_revision(source_root),
            "start": datetime.now(UTC).isoformat(),
            "end": None,
            "outcomes": {},
            "exit_status": None,
            "bench_broken": None,
        }
        self.save()

    def save(self) -> None:
        write_json_atomic(self.run_path, self.data)

    def add_measurement(self, measurement: Measurement) -> None:
        self._measurements.write(json.dumps(measurement.as_record()) + "\n")
        self._measurements.flush()
        os.fsync(self._measurements.fileno())

    def record_safe_state(self, reason: str, actions: list[dict]) -> None:
        self.data["safe_state"].append({"reason": reason, "t_wall": time.time(), "actions": actions})
        self.save()

    def finish(self, outcomes: dict[str, int], exit_status: int | None) -> None:
        self.data["end"] = datetime.now(UTC).isoformat()
        self.data["outcomes"] = outcomes
        self.data["exit_status"] = exit_status
        self.save()
        self._measurements.close()
