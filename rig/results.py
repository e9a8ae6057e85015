"""The run folder: run.json, measurements.jsonl, transcript.jsonl, twin truth and Allure results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from rig.errors import ConfigError
from rig.measure import Measurement

PACKAGES = ("meter-hil-rig", "pyvisa", "pyvisa-py", "pymodbus", "pyserial", "pyyaml", "pydantic",
            "allure-pytest", "pytest")


def timestamp_folder_name(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def make_run_folder(results: Path | None, base: Path) -> Path:
    """Create the run folder (default base/results/<timestamp>) and point base/results/latest at it.

    A folder given by the user must be new or empty: one folder holds one run, so a certificate or a history
    row made from it can never mix two runs."""
    if results is None:
        parent = base / "results"
        folder = parent / timestamp_folder_name()
        suffix = 1
        while folder.exists():
            folder = parent / f"{timestamp_folder_name()}-{suffix}"
            suffix += 1
    else:
        folder = results
        if folder.is_dir() and any(folder.iterdir()):
            raise ConfigError(f"results folder {folder} is not empty: a run folder holds one run; "
                              f"give a new folder (or none: results/<timestamp>)")
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"results folder {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        latest = folder.parent / "latest"
        if results is None or latest.is_symlink():
            tmp = folder.parent / f".latest-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(folder.name)
            tmp.replace(latest)
    except OSError as exc:
        raise ConfigError(f"results folder {folder} cannot be written: {exc.strerror or exc}") from None
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
    """Write data as JSON beside path, then rename it over path: path is always whole, old or new."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class RunRecord:
    """Everything a run writes into its folder; measurements are fsynced as they are taken.

    Once the run has started, a run.json that cannot be written (a full disk) is reported once on stderr and
    kept in `write_errors`; the run, and above all its safe state, goes on. The last run.json written stays whole
    (it is replaced atomically)."""

    def __init__(self, folder: Path, bench_name: str, bench_path: Path, source_root: Path):
        self.folder = folder
        self.run_path = folder / "run.json"
        self.measurements_path = folder / "measurements.jsonl"
        self.transcript_path = folder / "transcript.jsonl"
        self.truth_path = folder / "twin-truth.jsonl"
        self.allure_dir = folder / "allure-results"
        self.write_errors: list[str] = []
        try:
            self._measurements = open(self.measurements_path, "a")
        except OSError as exc:
            raise ConfigError(f"results folder {folder} cannot be written: {exc.strerror or exc}") from None
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
        try:
            write_json_atomic(self.run_path, self.data)
        except OSError as exc:
            raise ConfigError(f"results folder {folder} cannot be written: {exc.strerror or exc}") from None

    def save(self) -> bool:
        """Write run.json; False (reported) if it could not be written."""
        try:
            write_json_atomic(self.run_path, self.data)
            return True
        except OSError as exc:
            self.note_write_error(f"{self.run_path}: not written: {exc.strerror or exc}")
            return False

    def note_write_error(self, message: str) -> None:
        if message not in self.write_errors:
            self.write_errors.append(message)
            try:
                print(f"rig: {message}", file=sys.stderr, flush=True)
            except OSError:
                pass

    def add_measurement(self, measurement: Measurement) -> None:
        try:
            self._measurements.write(json.dumps(measurement.as_record()) + "\n")
            self._measurements.flush()
            os.fsync(self._measurements.fileno())
        except OSError as exc:
            self.note_write_error(f"{self.measurements_path}: {measurement.name} not written: {exc.strerror or exc}")
            raise

    def record_safe_state(self, reason: str, actions: list[dict]) -> None:
        self.data["safe_state"].append({"reason": reason, "t_wall": time.time(), "actions": actions})
        self.save()

    def finish(self, outcomes: dict[str, int], exit_status: int | None) -> None:
        self.data["end"] = datetime.now(UTC).isoformat()
        self.data["outcomes"] = outcomes
        self.data["exit_status"] = exit_status
        self.data["write_errors"] = list(self.write_errors)
        self.save()
        try:
            self._measurements.close()
        except OSError as exc:
            self.note_write_error(f"{self.measurements_path}: not completed: {exc.strerror or exc}")
