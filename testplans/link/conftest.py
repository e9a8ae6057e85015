"""Link plan set-up: one test per meter position with a load path and an RF attenuator of its own, the limits
profile, the sweep, and the position's RF path restored (attenuation 0, 4G) after every test."""

from __future__ import annotations

import pytest
from radio import RadioPath, load_limits, parse_sweep

from fixtures.plugin import rig_session


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "position" not in metafunc.fixturenames:
        return
    positions = [m for m in rig_session(metafunc.config).bench_file.config.positions
                 if m.interface is not None and m.load is not None and m.attenuator is not None]
    metafunc.parametrize("position", positions, ids=[f"position{m.position}-{m.serial}" for m in positions])


@pytest.fixture(scope="session")
def link_limits(request: pytest.FixtureRequest):
    """--link-limits PROFILE (of testplans/link/limits.yaml) or FILE.yaml:PROFILE."""
    return load_limits(request.config.getoption("link_limits"))


@pytest.fixture(scope="session")
def link_sweep(request: pytest.FixtureRequest) -> list[float]:
    return parse_sweep(request.config.getoption("link_sweep"))


@pytest.fixture(scope="session")
def link_trials(request: pytest.FixtureRequest) -> int:
    trials = request.config.getoption("link_trials")
    if trials < 1:
        raise pytest.UsageError(f"--link-trials: at least 1, got {trials}")
    return trials


@pytest.fixture(scope="session")
def link_2g_trials(request: pytest.FixtureRequest) -> int:
    trials = request.config.getoption("link_2g_trials")
    if trials < 1:
        raise pytest.UsageError(f"--link-2g-trials: at least 1, got {trials}")
    return trials


@pytest.fixture
def radio_path(position, bench) -> RadioPath:
    """The position's attenuator and modem (if the bench has one); attenuation 0 and 4G again afterwards."""
    modem_role = f"modem@{position.position}"
    path = RadioPath(bench[f"attenuator@{position.position}"],
                     bench[modem_role] if position.modem is not None else None)
    yield path
    path.restore()
