"""Low-credit alerts: the HES alerts at each threshold of the last recharge, once, in order, after the crossing.

Per position, with the position's load drawing current through the meter: a recharge of `alerts.recharge` sets the
alert base and the balance is adjusted to exactly that. With the tariff set so that one paisa buys `paisa_s` of the
load's energy (balances are whole paise), for each threshold of the policy (highest first) the balance is debited
to what the load uses in `step_s` seconds above the threshold's amount, so the load's own energy takes it across;
the crossing instant comes from the load's current readings (as in the cutoff plan). Before the crossing no alert
for the threshold may be logged; after it, its alert must appear within the limit, with a balance at or below the
threshold's amount. The account's new alerts must be the thresholds in order.
"""

from __future__ import annotations

import time

import pytest

from rig import money
from rig.plan import Equals, Limits, LoadWatch, energy_crossing, poll_until

pytestmark = [pytest.mark.prepaid, pytest.mark.together, pytest.mark.feature("Alerts")]


def new_alerts(hes, account: str, after_seq: int, threshold: float | None = None) -> list:
    return [a for a in hes.alerts(account) if a.seq > after_seq and threshold in (None, a.threshold_pct)]


def first_alert(hes, account: str, after_seq: int, threshold: float):
    """(the first new alert for threshold, the monotonic instant it was seen: the middle of the request) or None."""
    sent = time.monotonic()
    found = new_alerts(hes, account, after_seq, threshold)
    return (found[0], (sent + time.monotonic()) / 2) if found else None


def set_alert_base(hes, account: str, amount: float) -> None:
    """A recharge of `amount` (the alert base), the balance then exactly that."""
    hes.recharge(account, amount, reference=f"alerts plan: base {time.time_ns()}")
    hes.read_now(account)
    change = money.paise(amount) - hes.balance(account)
    if change:
        hes.adjust_balance(account, change, "alerts plan: balance at the recharge")


def test_alerts_at_thresholds(pos, prepaid, measure):
    hes, policy, plan = prepaid.hes, prepaid.policy, prepaid.plan
    data, load_a = plan.alerts, plan.load_a
    limit_s = prepaid.limits.alert_after_threshold_max_s
    thresholds = policy.alert_thresholds_pct
    early = measure.declare("alerts_before_draining", "", Equals(0))
    order = measure.declare("alert_order", "", Equals(True))
    voltage_v = prepaid.supply(pos)
    first_seq = max((a.seq for a in hes.alerts()), default=0)
    set_alert_base(hes, pos.serial, data.recharge)
    logged_early = new_alerts(hes, pos.serial, first_seq)
    early(len(logged_early), details={"alerts": [a.as_record() for a in logged_early]})
    with LoadWatch(pos.load, load_a, plan.poll_s) as watch:
        watch.flowing(plan.flow_wait_s)
        prepaid.timing_tariff(voltage_v, load_a)
        for threshold in thresholds:
            premature = measure.declare(f"alert_{threshold:g}pct_before_crossing", "", Equals(0))
            present = measure.declare(f"alert_{threshold:g}pct_present", "", Equals(True))
            delay = measure.declare(f"alert_{threshold:g}pct_delay", "s", Limits(0.0, limit_s))
            amount = money.paise(data.recharge * threshold / 100)
            balance = measure.declare(f"alert_{threshold:g}pct_balance", policy.currency, Limits(high=float(amount)))
            step = prepaid.credit_for(voltage_v, load_a, data.step_s)
            settled_at = prepaid.set_credit(pos.serial, amount + step, f"alerts plan: a step above {threshold:g} %")
            before = new_alerts(hes, pos.serial, first_seq, threshold)
            premature(len(before), details={"alerts": [a.as_record() for a in before]})
            found = poll_until(lambda t=threshold: first_alert(hes, pos.serial, first_seq, t), data.step_s + limit_s,
                               data.alert_poll_s)
            crossed_at, period_s = energy_crossing(list(watch.samples), voltage_v, settled_at,
                                                   prepaid.energy_j(step))
            present(found is not None, details={"threshold_amount": money.text(amount)})
            if found is None:
                continue
            alert, seen_at = found
            delay(seen_at - crossed_at, uncertainty=period_s + data.alert_poll_s + watch.latency_s,
                  details=alert.as_record())
            balance(float(alert.balance), details=alert.as_record())
    logged = [a.threshold_pct for a in new_alerts(hes, pos.serial, first_seq)]
    order(logged == thresholds, details={"logged": logged, "expected": thresholds})
    prepaid.restore(pos)
