"""Tamper plan set-up: the plan data and the limits profile, read before the first test; the cover closed after
every test."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.plan import PlanData, load_plan_data

HERE = Path(__file__).parent
PLAN_KEY = pytest.StashKey[PlanData]()
LIMITS_KEY = pytest.StashKey[PlanData]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    """A bad plan or limits file stops the run before any test, naming file and key."""
    config = collector.config
    if not isinstance(collector, pytest.Module) or LIMITS_KEY in config.stash:
        return
    path, _, profile = config.getoption("tamper_limits").rpartition(":")
    try:
        config.stash[PLAN_KEY] = load_plan_data(HERE / "plan.yaml")
        profiles = load_plan_data(Path(path) if path else HERE / "limits.yaml").profiles
        config.stash[LIMITS_KEY] = getattr(profiles, profile)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def plan(request: pytest.FixtureRequest) -> PlanData:
    """testplans/tamper/plan.yaml: event codes and waits."""
    return request.config.stash[PLAN_KEY]


@pytest.fixture(scope="session")
def tamper_limits(request: pytest.FixtureRequest) -> PlanData:
    """--tamper-limits PROFILE (of testplans/tamper/limits.yaml) or FILE.yaml:PROFILE."""
    return request.config.stash[LIMITS_KEY]


@pytest.fixture
def closed_cover(pos):
    """The position's cover closed before the test and again after it (a tamper plan leaves no meter open)."""
    pos.cover.close_cover()
    yield pos.cover
    pos.cover.close_cover()
