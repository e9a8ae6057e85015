"""Link plan set-up: one test per meter position with a load path and an RF attenuator of its own, the limits
profile, the sweep, and the position's RF path restored (attenuation 0, 4G) after every test."""

from __future__ import annotations

import pytest
from radio import RadioPath, load_limits, parse_sweep

from fixtures.plugin import rig_session
from rig.errors import ConfigError

OPTIONS_KEY = pytest.StashKey[dict]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Before the first link plan is collected, read the limits and check the sweep and trial counts: a bad file
    or option stops the run before any test, naming file, line and field (or the option)."""
    config = collector.config
    if not isinstance(collector, pytest.Module) or OPTIONS_KEY in config.stash:
        return
    try:
        options = {"limits": load_limits(config.getoption("link_limits")),
                   "sweep": parse_sweep(config.getoption("link_sweep"))}
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    for name in ("link_trials", "link_2g_trials"):
        trials = config.getoption(name)
        if trials < 1:
            raise pytest.UsageError(f"--{name.replace('_', '-')}: at least 1, got {trials}")
        options[name] = trials
    config.stash[OPTIONS_KEY] = options


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "position" not in metafunc.fixturenames:
        return
    positions = [m for m in rig_session(metafunc.config).bench_file.config.positions
                 if m.interface is not None and m.load is not None and m.attenuator is not None]
    metafunc.parametrize("position", positions, ids=[f"position{m.position}-{m.serial}" for m in positions])


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
def radio_path(position, bench) -> RadioPath:
    """The position's attenuator and modem (if the bench has one); attenuation 0 and 4G again afterwards."""
    modem_role = f"modem@{position.position}"
    path = RadioPath(bench[f"attenuator@{position.position}"],
                     bench[modem_role] if position.modem is not None else None)
    yield path
    path.restore()
