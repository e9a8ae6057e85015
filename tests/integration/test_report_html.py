"""The offline HTML report of a short run (smoke + one accuracy point, position 2 out of limits on a defective
twin), built by `rig report`'s code path and read back from headless Chromium; the prepaid plans' current trace."""

import csv
import io
import json
import re
import shutil

import pytest
from PIL import Image
from plan_runner import PLANS

from rig.report.browser import WINDOW, find_chromium, view_report
from rig.report.html import build_html

# timing-sensitive: `make test` runs these alone, after the tests that share the cores
pytestmark = pytest.mark.serial

POINT = "test_error_at_load_point[class1-10-60A-240V-Ib-PF1]"
DEFECTS = """
positions:
  2:
    error_pct:
      - {current_a: [9, 11], pf: "1", value: 1.8}
"""


def allure_results(run) -> list[dict]:
    return [json.loads(path.read_text()) for path in (run.results / "allure-results").glob("*-result.json")]


@pytest.fixture
def browser():
    if shutil.which("node") is None:
        pytest.skip("node not found: the Allure 3 CLI (npm package allure) needs Node.js")
    if find_chromium() is None:
        pytest.skip("chromium not found: apt-get install chromium (.ci/run does)")


def test_report_shows_plans_and_error_curves_in_chromium(browser, run_plan, tmp_path):
    defects = tmp_path / "defects.yaml"
    defects.write_text(DEFECTS)
    run = run_plan(PLANS, None, "-k", "test_bench_smoke or 240V-Ib-PF1", f"--twin-defects={defects}")
    assert run.wait(120) == 1, run.output  # position 2 out of limits: the run fails, the report is still built
    statuses = {r["name"]: r["status"] for r in allure_results(run)}
    assert statuses[POINT] == "failed" and statuses["test_every_role_identifies"] == "passed"
    allure_dir = run.results / "allure-results"
    assert "instrument.source=Chroma ATE 61504" in (allure_dir / "environment.properties").read_text()
    assert "Meter out of limits" in (allure_dir / "categories.json").read_text()

    index = build_html(run.results)
    assert index == run.results / "report" / "index.html"
    screenshot = run.results / "report-screenshot.png"
    view = view_report(index, screenshot, test_names=("test_error_at_load_point",))
    print(f"report: {index}\nscreenshot: {screenshot}")

    assert view.sections[:2] == ["Metering accuracy", "Error at load points"]  # failed epics first
    assert {"Bench", "Smoke"} <= set(view.sections)
    assert POINT in view.leaves and "test_every_role_identifies" in view.leaves
    assert "test_source_holds_voltage[240.0]" in view.leaves
    assert view.test == POINT
    curves = sorted((image["name"], image["width"], image["height"]) for image in view.images)
    assert [(name.split("error curve, ")[1].split(")")[0] + ")", w, h) for name, w, h in curves] == [
        (f"position {n} (SIM000{n}, class 1)", 800, 450) for n in (1, 2, 3)]
    assert "Category: Meter out of limits" in view.text
    shown = re.search(r"error at position 2 \(SIM0002\) = ([-+]?\d+\.\d+)", view.text)
    assert shown and abs(float(shown.group(1)) - 1.8) < 0.05 and "%: FAIL" in view.text  # the twin's 1.8 % defect
    shot = Image.open(screenshot)
    assert shot.size == WINDOW


def test_prepaid_cutoff_attaches_its_current_trace(run_plan):
    run = run_plan(PLANS, None, "-k", "test_cutoff and position1")
    assert run.wait(60) == 0, run.output
    (result,) = allure_results(run)
    attachments = {a["name"]: run.results / "allure-results" / a["source"] for a in result["attachments"]}
    assert Image.open(attachments["load@1 current against time"]).size[0] == 800
    events = list(csv.DictReader(io.StringIO(attachments["load@1 current against time (events)"].read_text())))
    assert [e["event"] for e in events] == ["exhaustion", "cut", "recharge", "restore"]  # in time order
    readings = list(csv.DictReader(io.StringIO(attachments["load@1 current against time (readings)"].read_text())))
    restore_at = float(events[3]["t_mono_s"])
    after_restore = [float(r["value_A"]) for r in readings if float(r["t_mono_s"]) > restore_at]
    between = [float(r["value_A"]) for r in readings
               if float(events[1]["t_mono_s"]) < float(r["t_mono_s"]) < float(events[2]["t_mono_s"])]
    assert after_restore and min(after_restore) > 4.5  # the load's 5 A flows again
    assert between and max(between) < 0.5  # cut
