"""The operator station in headless Chromium: serials typed as a scanner types them, Start, the batch on the twin
(`rig run -m smoke` underneath), PASS per position with the report link; an overdue reference calibration refuses
the start until a reason is typed, and the reason is kept in the run."""

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from plan_runner import ROOT, free_port, write_bench

from rig.errors import ConfigError
from rig.report.browser import find_chromium, headless_chromium, open_page
from rig.station.run_options import parse_serials
from rig.station.server import Batch, position_view

# timing-sensitive: `make test` runs these alone, after the tests that share the cores
pytestmark = pytest.mark.serial

BATCH_S = 90  # smoke plan on the twin and the report, on a busy 2-core machine
SERIALS = {1: "ST-0001", 2: "ST-0002", 3: "ST-0003"}


@pytest.fixture(scope="module")
def chromium():
    if find_chromium() is None:
        pytest.skip("chromium not found: apt-get install chromium")
    if shutil.which("node") is None:
        pytest.skip("node not found: the Allure 3 CLI (npm package allure) needs Node.js")
    with headless_chromium() as port:
        yield port


class StationProcess:
    """`rig station` serving a bench on a free port, in its own process."""

    def __init__(self, folder: Path, bench: Path):
        self.port = free_port()
        self.results = folder / "results"
        self.log = open(folder / "station.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rig.cli", "station", "--bench", str(bench), "--port", str(self.port),
             "--results", str(self.results), "-m", "smoke"], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(self.url + "api/state", timeout=2) as answer:
                    json.load(answer)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"station did not serve: {(folder / 'station.log').read_text()}") from None
                time.sleep(0.1)

    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "api/state", timeout=5) as answer:
            return json.load(answer)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def station(tmp_path):
    started: list[StationProcess] = []

    def start(edit=None) -> StationProcess:
        started.append(StationProcess(tmp_path, write_bench(tmp_path, edit=edit)))
        return started[-1]

    yield start
    for process in started:
        process.stop()


async def scan_serials(page, serials: dict[int, str]) -> list[str]:
    """Type each serial and Enter into the focused field, as a scanner does; the element focused after each."""
    await page.wait_for("() => !!document.getElementById('serial-1')", "the serial fields", 20)
    await page.focus("#serial-1")
    focused = []
    for number in sorted(serials):
        await page.type_text(serials[number])
        await page.press_key("Enter")
        focused.append(await page.evaluate("() => document.activeElement.id"))
    return focused


async def wait_for_verdicts(page, numbers, timeout_s: float) -> dict[int, str]:
    verdicts = {}
    for number in numbers:
        verdicts[number] = await page.wait_for(
            "(n) => { const v = document.getElementById('verdict-' + n)?.innerText; "
            "return ['PASS', 'FAIL', 'ERROR'].includes(v) ? v : null; }", f"position {number}'s verdict", timeout_s,
            number)
    return verdicts


def test_batch_on_the_twin_passes_every_position_with_its_report(chromium, station):
    """Serials scanned (Enter moves to the next field, the last to Start), Start clicked: the smoke batch runs
    on the twin with those serials, each position shows PASS with its measurements, and the report is linked."""
    rig_station = station()

    async def operate():
        async with open_page(chromium, rig_station.url) as page:
            focused = await scan_serials(page, SERIALS)
            await page.click("#start")
            live = await page.wait_for_text("#progress-1", " · test_", BATCH_S)  # the test running now
            verdicts = await wait_for_verdicts(page, SERIALS, BATCH_S)
            report = await page.wait_for("() => document.getElementById('report-link')?.getAttribute('href')",
                                         "the report link", BATCH_S)
            return (focused, live, verdicts, report, await page.text("#position-2"), await page.text("#batch-line"),
                    await page.evaluate("() => document.querySelectorAll('#measurements-1 tr').length"))

    focused, live, verdicts, report, position_2, batch_line, rows = asyncio.run(operate())
    assert focused == ["serial-2", "serial-3", "start"]
    assert " of 5 tests · test_" in live
    assert verdicts == {1: "PASS", 2: "PASS", 3: "PASS"}
    assert "Position 2 · ST-0002" in position_2 and "5 of 5 tests" in position_2
    assert "output_voltage" in position_2 and "PASS" in position_2
    assert rows > 1  # a header and the measurements
    assert "rig run exit 0" in batch_line
    run_folder = Path(rig_station.state()["batch"]["run_folder"])
    assert report == f"/results/{run_folder.name}/report/index.html"
    with urllib.request.urlopen(rig_station.url.rstrip("/") + report, timeout=10) as answer:
        assert answer.status == 200 and b"<html" in answer.read(2000).lower()
    record = json.loads((run_folder / "run.json").read_text())
    assert record["serials_entered"] == {"1": "ST-0001", "2": "ST-0002", "3": "ST-0003"}
    assert [m["serial"] for m in record["meters"]] == ["ST-0001", "ST-0002", "ST-0003"]
    assert record["outcomes"]["passed"] == 5 and record["exit_status"] == 0
    assert not list(rig_station.results.parent.glob(".bench-serials-*"))  # the run's bench copy is gone


def overdue_reference(data: dict) -> None:
    data["roles"]["reference"]["calibration"] = {"date": "2024-01-15", "certificate": "CAL-OLD-7", "due": "2025-01-15"}


def test_overdue_calibration_refuses_until_a_reason_is_given_and_records_it(chromium, station):
    """A missing serial and an overdue reference refuse the start (no run made); with a reason typed the batch
    runs and run.json keeps the reason and the instrument."""
    rig_station = station(edit=overdue_reference)
    reason = "reference compared against the lab standard today, deviation 0.004 %"

    async def operate():
        async with open_page(chromium, rig_station.url) as page:
            await page.wait_for("() => document.getElementById('calibration')?.hidden === false",
                                "the calibration warning", 20)
            warning = await page.text("#calibration")
            await scan_serials(page, {1: "ST-0001", 2: "ST-0002"})
            await page.click("#start")
            missing = await page.wait_for_text("#message", "position 3", 20)
            await page.focus("#serial-3")
            await page.type_text("ST-0003")
            await page.click("#start")
            refused = await page.wait_for_text("#message", "calibration overdue", 20)
            started_before = rig_station.state()["batch"], list(rig_station.results.glob("station-*"))
            await page.focus("#override-reason")
            await page.type_text(reason)
            await page.click("#start")
            line = await page.wait_for_text("#batch-line", "calibration override", 20)
            verdicts = await wait_for_verdicts(page, SERIALS, BATCH_S)
            return warning, missing, refused, started_before, line, verdicts

    warning, missing, refused, started_before, line, verdicts = asyncio.run(operate())
    assert "reference: calibration due 2025-01-15 (CAL-OLD-7)" in warning
    assert "position 3: enter or scan the meter's serial" in missing
    assert "calibration overdue: reference (due 2025-01-15, CAL-OLD-7)" in refused
    assert started_before == (None, [])
    assert reason in line
    assert verdicts == {1: "PASS", 2: "PASS", 3: "PASS"}
    run_folder = Path(rig_station.state()["batch"]["run_folder"])
    notes = json.loads((run_folder / "run.json").read_text())["notes"]
    assert notes == [f"calibration overdue, accepted by the operator: reference (due 2025-01-15, CAL-OLD-7); "
                     f"reason: {reason}"]


def test_serials_of_the_command_line_are_checked_against_the_bench(tmp_path):
    """`rig run --serial` names the value at fault: no position, a position the bench lacks, a serial twice."""
    bench = write_bench(tmp_path)
    assert parse_serials(["1=AB-1", "3= AB-3 "], bench) == {1: "AB-1", 3: "AB-3"}
    for values, message in ((["AB-1"], "give POSITION=SERIAL"), (["7=AB-7"], "has no position 7 (positions: 1, 2, 3)"),
                            (["1=A", "1=B"], "position 1 given twice"), (["1=A", "2=A"], "serial A given for more")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_serials(values, bench)
    done = subprocess.run([sys.executable, "-m", "rig.cli", "run", "--bench", str(bench), "--serial", "9=X"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"--serial '9=X': {bench} has no position 9" in done.stderr


def test_a_position_fails_on_its_own_failures_and_bench_wide_ones():
    """A position's verdict: its own tests and measurements and the bench-wide tests; a run that did not finish
    or a test the rig could not run is ERROR, never PASS."""
    batch = Batch(1, {1: "A", 2: "B"}, Path("run"), Path("status.json"), Path("log"), exit_code=1)
    status = {"finished": True, "tests": [{"id": "t.py::wide", "position": None},
                                          {"id": "t.py::each[position1-A]", "position": 1},
                                          {"id": "t.py::each[position2-B]", "position": 2}],
              "outcomes": {"t.py::wide": "passed", "t.py::each[position1-A]": "failed",
                           "t.py::each[position2-B]": "passed"}}
    measured = [{"test": "t.py::each[position2-B]", "name": "error", "value": 1.2, "unit": "%", "verdict": "pass",
                 "position": 2}]
    assert [position_view(n, batch, status, measured)["verdict"] for n in (1, 2)] == ["FAIL", "PASS"]
    failing = measured + [{"test": "t.py::wide", "name": "v", "value": 0, "unit": "V", "verdict": "fail",
                           "position": None}]
    assert position_view(2, batch, status, failing)["verdict"] == "FAIL"
    errored = {**status, "outcomes": {**status["outcomes"], "t.py::wide": "error", "t.py::each[position1-A]": "passed"}}
    assert position_view(1, batch, errored, measured)["verdict"] == "ERROR"
    assert position_view(2, batch, {**status, "finished": False}, measured)["verdict"] == "ERROR"
