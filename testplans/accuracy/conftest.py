"""Accuracy plan set-up: --accuracy-plan, load points per meter group, the energiser, the error curves."""

from __future__ import annotations

from pathlib import Path

import pytest
from meter_groups import AccuracyPlan, Energiser, MeterGroup, load_plan, meter_groups

from fixtures.plugin import MEASUREMENTS_KEY, rig_session
from rig.errors import ConfigError
from rig.report.attach import attach_csv, attach_png
from rig.report.plots import ErrorPoint, error_curve, error_points_csv
from rig.standards import load_points

CHECKED_KEY = pytest.StashKey[bool]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Before the accuracy plan is collected, read it, its limits files and every group's load points: a bad file
    stops the run before any test, naming file, line and field."""
    config = collector.config
    if not isinstance(collector, pytest.Module) or CHECKED_KEY in config.stash:
        return
    config.stash[CHECKED_KEY] = True
    try:
        plan_path = Path(config.getoption("accuracy_plan"))
        load_plan(plan_path)
        for group in meter_groups(plan_path, rig_session(config).bench_file.config.positions):
            load_points(group.standard, group.rating, str(group.standard_file))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "group" not in metafunc.fixturenames:
        return
    groups = meter_groups(Path(metafunc.config.getoption("accuracy_plan")),
                          rig_session(metafunc.config).bench_file.config.positions)
    if "point" in metafunc.fixturenames:
        cases = [(group, point) for group in groups
                 for point in load_points(group.standard, group.rating, str(group.standard_file))]
        metafunc.parametrize(("group", "point"), cases,
                             ids=[f"{g.label}-{p.label}" for g, p in cases])
    else:
        metafunc.parametrize("group", groups, ids=[g.label for g in groups])


@pytest.fixture(scope="session")
def accuracy_plan(request: pytest.FixtureRequest) -> AccuracyPlan:
    return load_plan(Path(request.config.getoption("accuracy_plan")))


@pytest.fixture
def energiser(source, current) -> Energiser:
    return Energiser(source, current)


SWEEP_TEST = "test_error_at_load_point"


def _sweep_items(item: pytest.Item) -> list[pytest.Item]:
    """The load-point tests of item's meter group in this session, in run order."""
    group = item.callspec.params["group"]
    return [other for other in item.session.items if getattr(other, "originalname", None) == SWEEP_TEST
            and other.module is item.module and other.callspec.params.get("group") is group]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """At the end of a group's error sweep (its last load-point test), attach per meter the error curve of
    every point measured in this run and its table to that test's Allure result."""
    __tracebackhide__ = True
    try:
        return (yield)
    finally:
        if getattr(item, "originalname", None) == SWEEP_TEST and _sweep_items(item)[-1] is item:
            attach_error_curves(item.callspec.params["group"], _sweep_items(item))


def attach_error_curves(group: MeterGroup, items: list[pytest.Item]) -> None:
    measurements = [m for other in items if MEASUREMENTS_KEY in other.stash for m in other.stash[MEASUREMENTS_KEY].taken
                    if m.name == "error"]
    for meter in group.positions:
        points = [ErrorPoint.from_measurement(m.as_record()) for m in measurements if m.position == meter.position]
        if not points:
            continue
        label = f"position {meter.position} ({meter.serial}, class {meter.accuracy_class})"
        attach_png(f"error curve, {label}", error_curve(label, points))
        attach_csv(f"error points, {label}", error_points_csv(points))
