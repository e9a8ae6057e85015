"""What `rig run` takes from an operator station: meter serials entered for the batch (`--serial`), notes kept
in run.json (`--note`, e.g. a calibration override's reason) and a live status file (`--status-file`)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import yaml

from rig import progress
from rig.errors import ConfigError
from rig.results import write_json_atomic

SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
STATUS_WRITE_S = 0.3  # a waiting measurement's status is written at most this often


def parse_serials(values: list[str], bench_path: Path) -> dict[int, str]:
    """['1=SIM0001', ...] -> {1: 'SIM0001'}; ConfigError naming the value for a malformed one, a position the
    bench lacks or a serial given twice."""
    positions = {item["position"] for item in (yaml.safe_load(bench_path.read_text()) or {}).get("positions", [])}
    serials: dict[int, str] = {}
    for value in values:
        number, sep, serial = value.partition("=")
        if not sep or not number.strip().isdigit() or not SERIAL.match(serial.strip()):
            raise ConfigError(f"--serial {value!r}: give POSITION=SERIAL (serial: letters, digits, . _ / -)")
        position, serial = int(number), serial.strip()
        if position not in positions:
            raise ConfigError(f"--serial {value!r}: {bench_path} has no position {position} "
                              f"(positions: {', '.join(map(str, sorted(positions))) or 'none'})")
        if position in serials:
            raise ConfigError(f"--serial {value!r}: position {position} given twice")
        serials[position] = serial
    repeated = sorted({s for s in serials.values() if list(serials.values()).count(s) > 1})
    if repeated:
        raise ConfigError(f"--serial: serial {repeated[0]} given for more than one position")
    return serials


def bench_with_serials(bench_path: Path, serials: dict[int, str]) -> Path:
    """A copy of the bench file beside it (so its relative paths still hold) whose positions carry `serials`;
    the caller removes it when the run is over."""
    data = yaml.safe_load(bench_path.read_text())
    for item in data.get("positions", []):
        if item["position"] in serials:
            item["serial"] = serials[item["position"]]
    copy = bench_path.parent / f".{bench_path.stem}-serials-{os.getpid()}.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def position_of_test(nodeid: str) -> int | None:
    """The bench position a test runs for (its `pos` parameter id 'position<N>-<serial>'), None: bench-wide."""
    found = re.search(r"[\[-]position(\d+)-", nodeid)
    return int(found.group(1)) if found else None


class StationRun:
    """pytest plugin of a run started with station options: records the bench file and serials entered and the
    notes in run.json, and keeps a status file (tests, outcomes, the current wait) up to date."""

    def __init__(self, bench_path: Path, serials: dict[int, str], notes: list[str], status_file: Path | None):
        self.bench_path = bench_path
        self.serials = serials
        self.notes = notes
        self.status_file = status_file
        self.status: dict = {"tests": [], "outcomes": {}, "current": None, "wait": None, "finished": False,
                             "exit_status": None, "run_folder": None}
        self._written_at = 0.0
        self._inner: progress.ProgressSink | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        from fixtures.plugin import RIG_KEY

        rig = config.stash.get(RIG_KEY, None)
        if rig is None:
            return
        self.status["run_folder"] = str(rig.record.folder)
        data = rig.record.data
        if self.serials:
            data["bench"]["path"] = str(self.bench_path)
            data["serials_entered"] = {str(k): v for k, v in sorted(self.serials.items())}
        if self.notes:
            data["notes"] = list(self.notes)
        rig.record.save()
        self._write(force=True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self) -> None:
        self._inner = progress._sink
        progress.install(self)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.status["tests"] = [{"id": item.nodeid, "position": position_of_test(item.nodeid)}
                                for item in session.items]
        self._write(force=True)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.status["current"] = nodeid
        self.status["wait"] = None
        self._write(force=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcomes = self.status["outcomes"]
        if report.failed:
            outcome = "failed" if report.when == "call" and not getattr(report, "rig_error", False) else "error"
            if outcomes.get(report.nodeid) != "failed":
                outcomes[report.nodeid] = outcome
        elif report.skipped and report.nodeid not in outcomes:
            outcomes[report.nodeid] = "skipped"
        elif report.when == "call" and report.passed:
            outcomes[report.nodeid] = "passed"
        self._write(force=True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, exitstatus: int) -> None:
        self.status.update(current=None, wait=None, finished=True, exit_status=int(exitstatus))
        self._write(force=True)

    # progress sink: the terminal's, and the status file
    def show(self, status: progress.Status) -> None:
        if self._inner is not None:
            self._inner.show(status)
        self.status["wait"] = {"text": status.text(), "done": status.done, "total": status.total,
                               "unit": status.unit, "remaining_s": status.remaining_s}
        self._write()

    def clear(self) -> None:
        if self._inner is not None:
            self._inner.clear()
        self.status["wait"] = None

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.status_file is None or (not force and now - self._written_at < STATUS_WRITE_S):
            return
        self._written_at = now
        try:
            write_json_atomic(self.status_file, self.status)
        except OSError:
            pass  # the station's view lags; the run itself goes on
