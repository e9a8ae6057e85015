"""Prepaid plan set-up: one test per meter position with its own load path, the limits profile, the policy."""

from __future__ import annotations

import pytest

from drivers.hes import HesHttpError
from fixtures.plugin import rig_session
from rig.errors import ConfigError
from rig.prepaid import POLICY_DIR, PrepaidLimits, PrepaidPolicy, load_limits, load_policy

DEFAULT_POLICY = "uppcl"
POLICY_KEY = pytest.StashKey[PrepaidPolicy]()
LIMITS_KEY = pytest.StashKey[PrepaidLimits]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Before the first prepaid plan is collected, read the limits and the policy (or, when the HES is to name
    it, every policy file it could name): a bad file stops the run before any test, naming file, line and field."""
    config = collector.config
    if not isinstance(collector, pytest.Module) or LIMITS_KEY in config.stash:
        return
    try:
        path, _, profile = config.getoption("prepaid_limits").rpartition(":")
        config.stash[LIMITS_KEY] = load_limits(profile, path or None)
        option = config.getoption("prepaid_policy")
        if option:
            config.stash[POLICY_KEY] = load_policy(option)
        else:
            for policy_file in sorted(POLICY_DIR.glob("*.yaml")):
                load_policy(policy_file)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "position" not in metafunc.fixturenames:
        return
    positions = [m for m in rig_session(metafunc.config).bench_file.config.positions
                 if m.interface is not None and m.load is not None]
    metafunc.parametrize("position", positions, ids=[f"position{m.position}-{m.serial}" for m in positions])


@pytest.fixture(scope="session")
def prepaid_limits(request: pytest.FixtureRequest) -> PrepaidLimits:
    """--prepaid-limits PROFILE (of testplans/prepaid/limits.yaml) or FILE.yaml:PROFILE, read before collection."""
    return request.config.stash[LIMITS_KEY]


def policy_the_hes_runs(hes) -> PrepaidPolicy:
    """The policy the HES names in GET /status, matched to a file of testplans/prepaid/policies by file name or
    policy name; uppcl when the HES API does not say."""
    try:
        name = hes.status().get("policy")
    except HesHttpError as exc:
        if exc.status != 404:
            raise
        name = None
    if not name:
        return load_policy(DEFAULT_POLICY)
    for path in sorted(POLICY_DIR.glob("*.yaml")):
        policy = load_policy(path)
        if str(name).lower() in (path.stem.lower(), policy.name.lower()):
            return policy
    raise ConfigError(f"{hes.role} ({hes.address}) runs prepaid policy {name!r}, which no file in {POLICY_DIR} "
                      f"names: give --prepaid-policy FILE")


@pytest.fixture
def prepaid_policy(request: pytest.FixtureRequest, hes) -> PrepaidPolicy:
    """--prepaid-policy NAME_OR_FILE, else the policy the HES says it runs (asked once per run)."""
    policy = request.config.stash.get(POLICY_KEY, None)
    if policy is None:
        option = request.config.getoption("prepaid_policy")
        policy = load_policy(option) if option else policy_the_hes_runs(hes)
        request.config.stash[POLICY_KEY] = policy
    return policy
