"""Link plan set-up: the plan data, the limits profile, the sweep, and the position's RF path restored
(attenuation 0, 4G) after every test."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep import RadioPath, load_limits, parse_sweep

from rig.errors import ConfigError
from rig.plan import PlanData, load_plan_data, supply

PLAN_FILE = Path(__file__).parent / "plan.yaml"
OPTIONS_KEY = pytest.StashKey[dict]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Before the first link plan is collected, read the plan data and the limits and check the sweep and trial
    counts: a bad file or option stops the run before any test, naming file, line and field (or the option)."""
    config = collector.config
    if not isinstance(collector, pytest.Module) or OPTIONS_KEY in config.stash:
        return
    try:
        options = {"plan": load_plan_data(PLAN_FILE), "limits": load_limits(config.getoption("link_limits")),
                   "sweep": parse_sweep(config.getoption("link_sweep"))}
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    for name in ("link_trials", "link_2g_trials"):
        trials = config.getoption(name)
        if trials < 1:
            raise pytest.UsageError(f"--{name.replace('_', '-')}: at least 1, got {trials}")
        options[name] = trials
    config.stash[OPTIONS_KEY] = options


@pytest.fixture(scope="session")
def plan(request: pytest.FixtureRequest) -> PlanData:
    """testplans/link/plan.yaml: load current, poll period, recharge."""
    return request.config.stash[OPTIONS_KEY]["plan"]


@pytest.fixture(scope="session")
def link_limits(request: pytest.FixtureRequest):
    """--link-limits PROFILE (of testplans/link/limits.yaml) or FILE.yaml:PROFILE, read before collection."""
    return request.config.stash[OPTIONS_KEY]["limits"]


@pytest.fixture(scope="session")
def link_sweep(request: pytest.FixtureRequest) -> list[float]:
    return request.config.stash[OPTIONS_KEY]["sweep"]


@pytest.fixture(scope="session")
def link_trials(request: pytest.FixtureRequest) -> int:
    return request.config.stash[OPTIONS_KEY]["link_trials"]


@pytest.fixture(scope="session")
def link_2g_trials(request: pytest.FixtureRequest) -> int:
    return request.config.stash[OPTIONS_KEY]["link_2g_trials"]


@pytest.fixture
def radio_path(pos) -> RadioPath:
    """The position's attenuator and modem (if the bench has one); attenuation 0 and 4G again afterwards."""
    path = RadioPath(pos)
    yield path
    path.restore()


@pytest.fixture
def supplied(plan: PlanData, link_limits):
    """supplied(pos, source, hes): the position supplied through its relay, nothing pending at the head end (no
    on-demand read: a slow or lossy link, which these plans provoke, may never fit one in the head end's deadline)."""

    def start(pos, source, hes) -> float:
        return supply(pos, source, hes, plan.load_a, recharge=plan.recharge, timeout_s=link_limits.trial_timeout_s,
                      read_meter=False)

    return start
