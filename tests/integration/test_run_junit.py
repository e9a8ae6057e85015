"""`rig run` leaves JUnit XML in its run folder: one testcase per position of each plan test, with its outcome (a
meter out of limits a failure, the rig failing an error)."""

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

from plan_runner import write_bench

PLAN = """
    import pytest
    from rig.errors import ConfigError
    from rig.plan import Limits

    def test_error(pos, measure):
        measure("error", 1.5 if pos.number == 2 else 0.2, "%", Limits(-1.0, 1.0))

    def test_cover(pos):
        if pos.number == 3:
            pytest.skip("no cover switch at position 3")
        if pos.number == 1:
            raise ConfigError("cover@1: no switch configured")  # the rig failed, not the meter: ERROR
"""


def test_junit_xml_holds_each_position_as_a_testcase(tmp_path):
    plan = tmp_path / "plans" / "test_positions.py"
    plan.parent.mkdir()
    plan.write_text(textwrap.dedent(PLAN))
    bench = write_bench(tmp_path, only_roles=("source",))
    folder = tmp_path / "results" / "r1"
    done = subprocess.run([sys.executable, "-m", "rig.cli", "run", "--bench", str(bench), "--results", str(folder),
                           "--plans", str(plan), "--", "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")
    assert {key: suite.get(key) for key in ("tests", "failures", "errors", "skipped")} == {
        "tests": "6", "failures": "1", "errors": "1", "skipped": "1"}
    outcomes = {case.get("name"): next((child.tag for child in case if child.tag in ("failure", "error", "skipped")),
                                       "passed") for case in suite.iter("testcase")}
    assert outcomes == {
        "test_error[position1-SIM0001]": "passed", "test_error[position2-SIM0002]": "failure",
        "test_error[position3-SIM0003]": "passed", "test_cover[position1-SIM0001]": "error",
        "test_cover[position2-SIM0002]": "passed", "test_cover[position3-SIM0003]": "skipped"}
    failure = next(case for case in suite.iter("testcase") if case.find("failure") is not None).find("failure")
    assert "error at position 2 (SIM0002) = 1.5 %, limits [-1, 1] %: FAIL" in failure.get("message")
    error = next(case for case in suite.iter("testcase") if case.find("error") is not None).find("error")
    assert "cover@1: no switch configured" in error.get("message")
    assert "outcomes: 3 passed, 1 failed, 1 error, 1 skipped" in done.stdout
