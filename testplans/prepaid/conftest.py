"""Prepaid plan set-up: the plan data, the limits profile and the policy, read before the first test."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.plan import PlanData, load_plan_data, restore_supply, supply
from rig.prepaid import POLICY_DIR, PrepaidLimits, PrepaidPolicy, load_limits, load_policy
from rig.roles import DisconnectControl, HeadEnd

DEFAULT_POLICY = "uppcl"
PLAN_FILE = Path(__file__).parent / "plan.yaml"
POLICY_KEY = pytest.StashKey[PrepaidPolicy]()
LIMITS_KEY = pytest.StashKey[PrepaidLimits]()
PLAN_KEY = pytest.StashKey[PlanData]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Before the first prepaid plan is collected, read the plan data, the limits and the policy (or, when the HES
    is to name it, every policy file it could name): a bad file stops the run before any test, naming file, line
    and field."""
    config = collector.config
    if not isinstance(collector, pytest.Module) or LIMITS_KEY in config.stash:
        return
    try:
        config.stash[PLAN_KEY] = load_plan_data(PLAN_FILE)
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


@pytest.fixture(scope="session")
def plan(request: pytest.FixtureRequest) -> PlanData:
    """testplans/prepaid/plan.yaml: load current, credit windows, waits."""
    return request.config.stash[PLAN_KEY]


@pytest.fixture(scope="session")
def prepaid_limits(request: pytest.FixtureRequest) -> PrepaidLimits:
    """--prepaid-limits PROFILE (of testplans/prepaid/limits.yaml) or FILE.yaml:PROFILE, read before collection."""
    return request.config.stash[LIMITS_KEY]


def policy_the_hes_runs(hes: HeadEnd) -> PrepaidPolicy:
    """The policy the HES names, matched to a file of testplans/prepaid/policies by file name or policy name;
    uppcl when the HES does not say."""
    name = hes.policy_name()
    if not name:
        return load_policy(DEFAULT_POLICY)
    for path in sorted(POLICY_DIR.glob("*.yaml")):
        policy = load_policy(path)
        if name.lower() in (path.stem.lower(), policy.name.lower()):
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


@pytest.fixture
def supplied(plan: PlanData):
    """supplied(pos, source, hes, load_a=plan.load_a) -> supply voltage: the position supplied through its relay."""

    def start(pos, source, hes, load_a: float | None = None) -> float:
        return supply(pos, source, hes, load_a or plan.load_a, recharge=plan.recharge, timeout_s=plan.settle_s)

    return start


@pytest.fixture
def restore(plan: PlanData):
    """restore(pos, hes): the meter connected with credit again, nothing pending at the head end."""

    def back(pos, hes) -> None:
        restore_supply(hes, pos.serial, pos.get(DisconnectControl), plan.recharge, plan.settle_s)

    return back
