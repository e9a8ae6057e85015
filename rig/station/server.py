"""`rig station`: the operator's page on 127.0.0.1. A batch is one `rig run` of the bench's plans with the
serials entered; its progress comes from the run's status file and run folder, each position's verdict stays
on the page until the next batch starts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from aiohttp import web

from rig.certificate import calibrations
from rig.config import BenchFile, load_bench
from rig.errors import RigError
from rig.station.run_options import SERIAL

PAGE = Path(__file__).with_name("page.html")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MEASUREMENTS_SHOWN = 12  # per position, the latest
OUTPUT_TAIL = 4000  # characters of the run's output shown when it ended in error
REPORT_TIMEOUT_S = 300


@dataclass
class Batch:
    """One start of the station: the serials entered, the run's folder, its status file and process."""

    number: int
    serials: dict[int, str]
    run_folder: Path
    status_file: Path
    log: Path
    override_reason: str | None = None
    phase: str = "running"  # running, report, done
    exit_code: int | None = None
    report: Path | None = None
    report_error: str | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    report_process: asyncio.subprocess.Process | None = field(default=None, repr=False)


def overdue_calibrations(bench_file: BenchFile, today: date | None = None) -> list[dict]:
    """[{role, due, certificate}] of every instrument whose calibration was due before today."""
    today = today or date.today()
    return [{"role": role, "due": cal["due"], "certificate": cal.get("certificate")}
            for role, cal in calibrations(bench_file.config).items()
            if cal.get("due") and date.fromisoformat(cal["due"]) < today]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not yet written, or being replaced


def read_measurements(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line still being written
    return rows


def position_view(number: int, batch: Batch, status: dict | None, measurements: list[dict]) -> dict:
    """What the page shows of one position: its tests done, the current one and its wait, its measurements and,
    once the run is over, its verdict."""
    status = status or {}
    tests = [t["id"] for t in status.get("tests", []) if t["position"] in (None, number)]
    outcomes = {test: status.get("outcomes", {}).get(test) for test in tests}
    mine = [m for m in measurements if m.get("position") in (None, number)]
    current = status.get("current")
    wait = status.get("wait") if current in tests else None
    view = {"position": number, "serial": batch.serials.get(number), "tests_total": len(tests),
            "tests_done": sum(1 for outcome in outcomes.values() if outcome),
            "current": current.rpartition("::")[2] if current in tests else None,
            "wait": wait["text"] if wait else None, "remaining_s": wait["remaining_s"] if wait else None,
            "measurements": [{"test": m["test"].rpartition("::")[2], "name": m["name"], "value": m["value"],
                              "unit": m["unit"], "verdict": m["verdict"]} for m in mine[-MEASUREMENTS_SHOWN:]],
            "failed_measurements": sum(1 for m in mine if m["verdict"] == "fail"),
            "verdict": None}
    if batch.exit_code is not None or status.get("finished"):
        view["verdict"] = position_verdict(outcomes, view["failed_measurements"], batch, status)
    return view


def position_verdict(outcomes: dict[str, str | None], failed_measurements: int, batch: Batch,
                     status: dict) -> str:
    """PASS: every test of the position (and every bench-wide test) ran and passed or was skipped, and none of
    its measurements failed; FAIL: a test or measurement failed; ERROR: the rig could not test it."""
    values = list(outcomes.values())
    if failed_measurements or "failed" in values:
        return "FAIL"
    if not status.get("finished") or "error" in values or not values or None in values:
        return "ERROR"
    return "PASS" if "passed" in values else "ERROR"


class Station:
    """The station's state and its batches; one batch at a time."""

    def __init__(self, bench_path: Path, results: Path, marker: str | None, plans: Path):
        self.bench_path = bench_path.resolve()
        self.results = results.resolve()
        self.marker = marker
        self.plans = plans.resolve()
        self.batch: Batch | None = None
        self.batches = 0
        self.bench_file = load_bench(self.bench_path)  # a bench file that cannot be read stops the station now

    def running(self) -> bool:
        return self.batch is not None and self.batch.phase != "done"

    def state(self) -> dict:
        self.bench_file = load_bench(self.bench_path)
        config = self.bench_file.config
        state = {"bench": config.name, "bench_path": str(self.bench_path), "selection": self.marker or "all plans",
                 "positions": [{"position": m.position, "serial": m.serial} for m in config.positions],
                 "overdue": overdue_calibrations(self.bench_file), "running": self.running(), "batch": None}
        if self.batch is not None:
            state["batch"] = self.batch_view(self.batch)
        return state

    def batch_view(self, batch: Batch) -> dict:
        status = read_json(batch.status_file)
        measurements = read_measurements(batch.run_folder / "measurements.jsonl")
        numbers = sorted(batch.serials)
        view = {"number": batch.number, "phase": batch.phase, "exit_code": batch.exit_code,
                "run_folder": str(batch.run_folder), "override_reason": batch.override_reason,
                "positions": [position_view(n, batch, status, measurements) for n in numbers],
                "report": self.link(batch.report) if batch.report else None, "report_error": batch.report_error,
                "certificates": [], "output": None}
        certificates = batch.run_folder / "certificates"
        if batch.phase == "done" and certificates.is_dir():
            view["certificates"] = [{"name": p.name, "href": self.link(p)} for p in sorted(certificates.iterdir())
                                    if p.suffix in (".html", ".pdf")]
        if batch.phase == "done" and not (status or {}).get("finished"):
            view["output"] = batch.log.read_text(errors="replace")[-OUTPUT_TAIL:] if batch.log.exists() else ""
        return view

    def link(self, path: Path) -> str:
        return "/results/" + path.relative_to(self.results).as_posix()

    def check_start(self, serials: dict, override_reason: str | None) -> tuple[dict[int, str], str | None]:
        """The serials of a start request by position, and the note of an accepted overdue calibration; a
        web.HTTPException with the reason the batch cannot start."""
        if self.running():
            raise _refused(409, f"batch {self.batch.number} is still running")
        self.bench_file = load_bench(self.bench_path)
        entered = {}
        for position in self.bench_file.config.positions:
            serial = str(serials.get(str(position.position), "")).strip()
            if not serial:
                raise _refused(400, f"position {position.position}: enter or scan the meter's serial")
            if not SERIAL.match(serial):
                raise _refused(400, f"position {position.position}: {serial!r} is not a serial "
                                    f"(letters, digits, . _ / -)")
            if serial in entered.values():
                raise _refused(400, f"position {position.position}: serial {serial} is already at position "
                                    f"{next(n for n, s in entered.items() if s == serial)}")
            entered[position.position] = serial
        overdue = overdue_calibrations(self.bench_file)
        if not overdue:
            return entered, None
        listed = ", ".join(f"{o['role']} (due {o['due']}{', ' + o['certificate'] if o['certificate'] else ''})"
                           for o in overdue)
        reason = (override_reason or "").strip()
        if not reason:
            raise _refused(409, f"calibration overdue: {listed} in {self.bench_path}; recalibrate, or override "
                                f"with a reason")
        return entered, f"calibration overdue, accepted by the operator: {listed}; reason: {reason}"

    async def start(self, serials: dict[int, str], note: str | None, reason: str | None) -> Batch:
        self.batches += 1
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = self.results / f"station-{stamp}-{self.batches}"
        station_dir = self.results / ".station"
        station_dir.mkdir(parents=True, exist_ok=True)
        batch = Batch(self.batches, serials, folder, station_dir / f"{folder.name}.status.json",
                      station_dir / f"{folder.name}.log", override_reason=reason)
        command = [sys.executable, "-m", "rig.cli", "run", "--bench", str(self.bench_path), "--plans",
                   str(self.plans), "--results", str(folder), "--status-file", str(batch.status_file)]
        command += [f"--serial={n}={s}" for n, s in sorted(serials.items())]
        command += [f"--note={note}"] if note else []
        command += ["--", "-q", "-p", "no:cacheprovider"] + (["-m", self.marker] if self.marker else [])
        with open(batch.log, "wb") as log:
            batch.process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                                 stdout=log, stderr=asyncio.subprocess.STDOUT,
                                                                 cwd=PROJECT_ROOT)
        self.batch = batch
        asyncio.get_running_loop().create_task(self._follow(batch))
        return batch

    async def _follow(self, batch: Batch) -> None:
        """Wait for the run, then build its report."""
        batch.exit_code = await batch.process.wait()
        if (batch.run_folder / "allure-results").is_dir():
            batch.phase = "report"
            await self._build_report(batch)
        batch.phase = "done"

    async def _build_report(self, batch: Batch) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rig.cli", "report", str(batch.run_folder), "--no-screenshot",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=PROJECT_ROOT, start_new_session=True)  # its own group: Allure's node process goes with it
        batch.report_process = process
        try:
            output, _ = await asyncio.wait_for(process.communicate(), REPORT_TIMEOUT_S)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            batch.report_error = f"report not built within {REPORT_TIMEOUT_S} s"
            return
        index = batch.run_folder / "report" / "index.html"
        if process.returncode == 0 and index.exists():
            batch.report = index
        else:
            batch.report_error = output.decode(errors="replace").strip()[-500:] or f"exit {process.returncode}"

    async def stop(self) -> None:
        """The station is closing: a batch still running is interrupted (its bench made safe by the run), a
        report being built is stopped."""
        batch = self.batch
        if batch is None:
            return
        for process, how in ((batch.process, signal.SIGINT), (batch.report_process, signal.SIGTERM)):
            if process is None or process.returncode is not None:
                continue
            if process is batch.report_process:
                os.killpg(process.pid, how)
            else:
                process.send_signal(how)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def _refused(status: int, message: str) -> web.HTTPException:
    kind = web.HTTPConflict if status == 409 else web.HTTPBadRequest
    return kind(text=json.dumps({"error": message}), content_type="application/json")


def make_app(station: Station) -> web.Application:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(), content_type="text/html")

    async def state(_request: web.Request) -> web.Response:
        return web.json_response(station.state())

    async def start(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise _refused(400, "the start request is not JSON") from None
        reason = (body.get("override_reason") or "").strip() or None
        try:
            serials, note = station.check_start(body.get("serials") or {}, reason)
        except RigError as exc:  # the bench file, changed since, no longer loads
            raise _refused(400, str(exc)) from None
        batch = await station.start(serials, note, reason if note else None)
        return web.json_response({"batch": batch.number, "run_folder": str(batch.run_folder)})

    async def on_shutdown(_app: web.Application) -> None:
        await station.stop()

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/api/state", state)
    app.router.add_post("/api/start", start)
    station.results.mkdir(parents=True, exist_ok=True)
    app.router.add_static("/results/", station.results, show_index=False, follow_symlinks=False)
    app.on_shutdown.append(on_shutdown)
    return app


def serve(bench: Path, port: int, results: Path, marker: str | None, plans: Path) -> None:
    station = Station(bench, results, marker, plans)
    print(f"station: bench {station.bench_file.config.name!r} on http://127.0.0.1:{port}/ "
          f"(plans: {station.marker or 'all'}; results in {station.results})", flush=True)
    web.run_app(make_app(station), host="127.0.0.1", port=port, print=None, handle_signals=True)


