"""Accuracy plan set-up: --accuracy-plan, load points per meter group, the energiser."""

from __future__ import annotations

from pathlib import Path

import pytest
from meter_groups import AccuracyPlan, Energiser, load_plan, meter_groups

from fixtures.plugin import rig_session
from rig.standards import load_points


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
