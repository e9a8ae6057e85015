"""Prepaid plan set-up: the plan data, the limits profile and the policy, read before the first test, and the
`prepaid` fixture every plan works through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from functools import cached_property
from pathlib import Path

import pytest

from rig import money
from rig.errors import ConfigError
from rig.plan import PlanData, Position, load_plan_data, once, restore_supply, supply
from rig.prepaid import POLICY_DIR, PrepaidLimits, PrepaidPolicy, load_limits, load_policy
from rig.roles import AcSource, DisconnectControl, HeadEnd

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


def policy_for(config: pytest.Config, hes: HeadEnd) -> PrepaidPolicy:
    """--prepaid-policy NAME_OR_FILE, else the policy the HES says it runs (asked once per run)."""
    policy = config.stash.get(POLICY_KEY, None)
    if policy is None:
        option = config.getoption("prepaid_policy")
        policy = load_policy(option) if option else policy_the_hes_runs(hes)
        config.stash[POLICY_KEY] = policy
    return policy


class Prepaid:
    """What every prepaid plan uses: the source and the HES, the plan data, the limits, the policy (asked of the
    HES when first used), and the position's supply through its relay and its restoring."""

    def __init__(self, config: pytest.Config, source: AcSource, hes: HeadEnd):
        self.config, self.source, self.hes = config, source, hes
        self.plan: PlanData = config.stash[PLAN_KEY]
        self.limits: PrepaidLimits = config.stash[LIMITS_KEY]
        self.tariff_before: Decimal | None = None  # the HES tariff before timing_tariff changed it

    @cached_property
    def policy(self) -> PrepaidPolicy:
        return policy_for(self.config, self.hes)

    def supply(self, pos: Position, load_a: float | None = None) -> float:
        """The position supplied through its relay, its load drawing load_a (plan.load_a); the supply voltage."""
        plan = self.plan
        return supply(pos, self.source, self.hes, load_a or plan.load_a, recharge=plan.recharge,
                      timeout_s=plan.settle_s)

    def restore(self, pos: Position) -> None:
        """The meter connected with credit again, nothing pending at the head end."""
        restore_supply(self.hes, pos.serial, pos.get(DisconnectControl), self.plan.recharge, self.plan.settle_s)

    def timing_tariff(self, voltage_v: float, load_a: float) -> Decimal:
        """Set the HES tariff so that one paisa buys `plan.paisa_s` of the load's energy: a head end holds
        balances in whole paise, so at a field tariff (6.50 INR/kWh, a paisa lasting seconds at a few kW) a credit
        of a few seconds could not be given, nor its end timed. The tariff found is put back after the plan."""
        return self.plan_tariff(money.rate_of(0.01 * 3.6e6 / (voltage_v * load_a * self.plan.paisa_s)))

    def plan_tariff(self, tariff: Decimal) -> Decimal:
        """The HES tariff for this plan, put back after it; set once for the positions running together (the tariff
        is the head end's, not an account's), which all get the tariff set."""
        def set_tariff() -> Decimal:
            if self.tariff_before is None:
                self.tariff_before = self.hes.tariff()
            self.hes.set_tariff(tariff)
            return tariff

        return once("plan tariff", set_tariff)

    def credit_for(self, voltage_v: float, load_a: float, seconds: float) -> Decimal:
        """What the load drawing load_a at voltage_v uses in `seconds`, at the HES tariff, to the paisa."""
        return money.paise(float(self.hes.tariff()) * voltage_v * load_a * seconds / 3.6e6)

    def energy_j(self, credit: Decimal) -> float:
        """The energy (J) `credit` buys at the HES tariff."""
        return float(credit / self.hes.tariff()) * 3.6e6

    def set_credit(self, account: str, credit: Decimal, reason: str) -> float:
        """Settle the account with an on-demand read and set its balance to `credit` (whole paise); the settling
        instant (monotonic, the middle of the read)."""
        hes = self.hes
        settled_at = time.monotonic()
        hes.read_now(account)
        settled_at = (settled_at + time.monotonic()) / 2
        change = money.paise(credit) - hes.balance(account)
        if change:
            hes.adjust_balance(account, change, reason)
        return settled_at


@pytest.fixture
def prepaid(request: pytest.FixtureRequest, source, hes) -> Iterator[Prepaid]:
    """The prepaid plans' source, HES, plan data, limits, policy and supply helpers; a tariff a plan set for its
    timing is put back afterwards."""
    helper = Prepaid(request.config, source, hes)
    yield helper
    if helper.tariff_before is not None:
        hes.set_tariff(helper.tariff_before)
