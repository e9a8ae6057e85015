"""Prepaid plan set-up: one test per meter position with its own load path, the limits profile, supply."""

from __future__ import annotations

import pytest

from fixtures.plugin import rig_session
from rig.prepaid import PrepaidLimits, load_limits


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "position" not in metafunc.fixturenames:
        return
    positions = [m for m in rig_session(metafunc.config).bench_file.config.positions
                 if m.interface is not None and m.load is not None]
    metafunc.parametrize("position", positions, ids=[f"position{m.position}-{m.serial}" for m in positions])


@pytest.fixture(scope="session")
def prepaid_limits(request: pytest.FixtureRequest) -> PrepaidLimits:
    """--prepaid-limits PROFILE (of testplans/prepaid/limits.yaml) or FILE.yaml:PROFILE."""
    path, _, profile = request.config.getoption("prepaid_limits").rpartition(":")
    return load_limits(profile, path or None)
