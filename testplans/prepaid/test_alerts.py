"""Low-credit alerts: the HES alerts at each threshold of the last recharge, once, in order, after the crossing.

Per position, with the position's load drawing current through the meter: a recharge of RECHARGE_R sets the
alert base and the balance is adjusted to exactly RECHARGE_R. For each threshold of the policy (highest first)
the balance is debited to what the load uses in STEP_S seconds above the threshold's amount, so the load's own
energy takes it across; the crossing instant comes from the load's current readings (as in the cutoff plan).
Before the crossing no alert for the threshold may be logged; after it, its alert must appear within the limit,
with a balance at or below the threshold's amount. The account's new alerts must be the thresholds in order.
"""

from __future__ import annotations

import time

import allure
import pytest
from supply import energy_crossing, restore_supply, supply_position, wait_for_current

from rig.timing import CurrentWatcher

pytestmark = [pytest.mark.prepaid, allure.epic("Prepaid"), allure.feature("Alerts")]

LOAD_A = 5.0
RECHARGE_R = 100.0
STEP_S = 1.5
POLL_S = 0.01
ALERT_POLL_S = 0.05


def wait_for_alert(hes, account: str, after_seq: int, threshold: float, timeout_s: float) -> tuple[dict, float] | None:
    """The account's first alert for `threshold` logged after seq `after_seq` and the monotonic instant it was
    first seen, or None within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        sent = time.monotonic()
        alerts = hes.alerts(account)
        seen = (sent + time.monotonic()) / 2
        found = [a for a in alerts if a["seq"] > after_seq and a["threshold_pct"] == threshold]
        if found:
            return found[0], seen
        if time.monotonic() > deadline:
            return None
        time.sleep(ALERT_POLL_S)


def test_alerts_at_thresholds(position, bench, source, hes, measure, prepaid_limits, prepaid_policy):
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    policy = prepaid_policy
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    voltage_v = supply_position(source, hes, account, meter, load, position.un_v, LOAD_A)
    limit_s = prepaid_limits.alert_after_threshold_max_s
    thresholds = policy.alert_thresholds_pct
    first_seq = max((a["seq"] for a in hes.alerts()), default=0)
    hes.recharge(account, RECHARGE_R, reference=f"alerts plan: base {time.time_ns()}")
    hes.read_now(account)
    balance = hes.balance(account)
    if balance != RECHARGE_R:
        hes.adjust_balance(account, RECHARGE_R - balance, "alerts plan: balance at the recharge")
    early = [a for a in hes.alerts(account) if a["seq"] > first_seq]
    measure("alerts_before_draining", len(early), "", high=0, position=position.position,
            details={"alerts": early})
    with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
        wait_for_current(watcher, LOAD_A / 2, timeout_s=5)
        for threshold in thresholds:
            amount = RECHARGE_R * threshold / 100
            step = hes.tariff() * voltage_v * LOAD_A * STEP_S / 3.6e6
            settled_at = time.monotonic()
            hes.read_now(account)
            settled_at = (settled_at + time.monotonic()) / 2
            hes.adjust_balance(account, amount + step - hes.balance(account),
                               f"alerts plan: {STEP_S:g} s above {threshold:g} %")
            premature = [a for a in hes.alerts(account) if a["seq"] > first_seq and a["threshold_pct"] == threshold]
            measure(f"alert_{threshold:g}pct_before_crossing", len(premature), "", high=0,
                    position=position.position, details={"alerts": premature})
            found = wait_for_alert(hes, account, first_seq, threshold, STEP_S + limit_s)
            samples = list(watcher.samples)
            crossed_at, period_s = energy_crossing(samples, voltage_v, settled_at, step / hes.tariff() * 3.6e6)
            measure(f"alert_{threshold:g}pct_present", float(found is not None), "", low=1,
                    position=position.position, details={"threshold_amount": amount})
            if found is None:
                continue
            alert, seen_at = found
            measure(f"alert_{threshold:g}pct_delay", seen_at - crossed_at, "s", low=0.0, high=limit_s,
                    uncertainty=period_s + ALERT_POLL_S + load.current_sample_latency_s,
                    position=position.position, details=alert)
            measure(f"alert_{threshold:g}pct_balance", alert["balance"], policy.currency, high=amount,
                    position=position.position, details=alert)
    logged = [a["threshold_pct"] for a in hes.alerts(account) if a["seq"] > first_seq]
    measure("alert_order", float(logged == thresholds), "", low=1, position=position.position,
            details={"logged": logged, "expected": thresholds})
    restore_supply(hes, account, meter)
