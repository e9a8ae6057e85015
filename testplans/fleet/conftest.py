"""Fleet plan set-up: the plan data and the limits profile, read before the first test; the `fleet_plans` fixture
every plan works through (the fleet started and registered with the head end once per run, then brought to the
baseline before each plan). Fleet plans run after every other plan: the head end keeps reading its fleet meters
once they are registered, a load the other plans should not share."""

from __future__ import annotations

import pytest
from fleetplan import PLAN_FILE, FleetPlans, load_limits

from rig.errors import ConfigError
from rig.plan import load_plan_data

OPTIONS_KEY = pytest.StashKey[dict]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Before the first fleet plan is collected, read the plan data and the limits: a bad file or option stops the
    run before any test, naming file, line and field."""
    config = collector.config
    if not isinstance(collector, pytest.Module) or OPTIONS_KEY in config.stash:
        return
    try:
        config.stash[OPTIONS_KEY] = {"plan": load_plan_data(PLAN_FILE),
                                     "limits": load_limits(config.getoption("fleet_limits"))}
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fleet plans last, every other plan in its order."""
    items.sort(key=lambda item: item.get_closest_marker("fleet") is not None)


@pytest.fixture
def fleet_plans(request: pytest.FixtureRequest, fleet, hes) -> FleetPlans:
    """The fleet (started and registered once per run), the head end, the plan data and the limits; the fleet at
    its baseline."""
    options = request.config.stash[OPTIONS_KEY]
    plans = FleetPlans(fleet, hes, options["plan"], options["limits"])
    plans.ensure_started()
    plans.baseline()
    return plans
