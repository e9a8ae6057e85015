"""Meter security plan set-up: the plan data, read before the first test; the position supplied with its load
drawing current through a connected relay, and the relay connected and the load off after every test."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.plan import PlanData, load_plan_data, supply_on
from rig.roles import DisconnectControl

HERE = Path(__file__).parent
PLAN_KEY = pytest.StashKey[PlanData]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    """A bad plan file stops the run before any test, naming file and key."""
    config = collector.config
    if not isinstance(collector, pytest.Module) or PLAN_KEY in config.stash:
        return
    try:
        config.stash[PLAN_KEY] = load_plan_data(HERE / "plan.yaml")
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def security_plan(request: pytest.FixtureRequest) -> PlanData:
    """testplans/security/plan.yaml: load current, poll period and waits."""
    return request.config.stash[PLAN_KEY]


@pytest.fixture
def supplied(pos, source, security_plan):
    """Source on at the meter's Un, the relay connected (over the rig's own association), the position's load
    drawing load_a; afterwards the relay connected again and the load off."""
    relay = pos.get(DisconnectControl)
    supply_on(source, pos.un_v)
    if not relay.relay_state().connected:
        relay.remote_reconnect()
    pos.load.set_mode("CURR")
    pos.load.set_level(security_plan.load_a)
    pos.load.set_input(True)
    yield relay
    if not relay.relay_state().connected:
        relay.remote_reconnect()
    pos.load.set_input(False)
