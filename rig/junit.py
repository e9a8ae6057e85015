"""JUnit XML of a run in its run folder (pytest's --junitxml), with the rig's FAIL and ERROR kept apart.

pytest writes each position's outcome of a plan test as a testcase of its own; a test that failed because the rig
or an instrument did (ERROR in the rig's outcomes) is turned from a <failure> into an <error>, so a CI server
tells a bad meter from a broken bench as the run's own summary does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _pytest.junitxml import mangle_test_address

JUNIT_FILE = "junit.xml"


class JunitIntoRunFolder:
    """pytest plugin for `rig run`: --junitxml into the run folder once the rig's session has made it."""

    def __init__(self) -> None:
        self.rig_errors: set[str] = set()

    def pytest_configure(self, config: pytest.Config) -> None:
        from fixtures.plugin import RIG_KEY

        rig = config.stash.get(RIG_KEY, None)
        if rig is not None and not config.option.xmlpath:
            config.option.xmlpath = str(rig.record.folder / JUNIT_FILE)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.failed and getattr(report, "rig_error", False):
            self.rig_errors.add(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        path = Path(config.option.xmlpath) if config.option.xmlpath else None
        if self.rig_errors and path is not None and path.exists():
            mark_rig_errors(path, self.rig_errors)


def mark_rig_errors(path: Path, nodeids: set[str]) -> None:
    """Each listed test's <failure> in the JUnit file becomes an <error>, its suite's counts following."""
    names = set()
    for nodeid in nodeids:
        parts = mangle_test_address(nodeid)
        names.add((".".join(parts[:-1]), parts[-1]))
    tree = ET.parse(path)
    for suite in tree.getroot().iter("testsuite"):
        for case in suite.iter("testcase"):
            failure = case.find("failure")
            if failure is not None and _matches(case, names):
                failure.tag = "error"
                suite.set("failures", str(int(suite.get("failures", "0")) - 1))
                suite.set("errors", str(int(suite.get("errors", "0")) + 1))
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _matches(case: ET.Element, names: set[tuple[str, str]]) -> bool:
    """A testcase of one of the tests: same name, and a classname that is the test's (or ends with it, when
    --junit-prefix put something in front)."""
    classname, name = case.get("classname", ""), case.get("name", "")
    return any(name == test and (classname == cls or classname.endswith("." + cls)) for cls, test in names)
