"""Link plan set-up: the plan data, the limits profile and the sweep, read before the first test; the `link`
fixture every plan works through (its `radio(pos)` restores the position's RF path, attenuation 0 and 4G, when a
plan ends)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep import Link, load_limits, parse_sweep

from rig.errors import ConfigError
from rig.plan import load_plan_data

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


@pytest.fixture
def link(request: pytest.FixtureRequest, bench, source) -> Link:
    """The link plans' source, HES, plan data, limits, sweep, trial counts and supply."""
    return Link(bench, source, request.config.stash[OPTIONS_KEY])

