"""Emergency credit: the supply stays on while emergency credit lasts and is cut once it is used up.

Per position, with current flowing through the meter's relay into the position's own AC load: the HES tariff is
raised for the test so that the policy's emergency credit buys `emergency_credit.emergency_s` seconds of the load
(and restored after). The HES settles the account with an on-demand read and the credit is set to what the load
uses in `credit_s` seconds. A policy whose emergency credit is on request gets the consumer's request at once,
before the credit runs out; an automatic one is left to the HES. The instants the credit and then the emergency
credit are used up come from the load's current readings (as in the cutoff plan). Between the two the current
must stay above half the load current (up to `margin_s` before the second, or before the instant the load current
would have used it up when the supply was cut before); the cut must come after the second within the cutoff
limit (no cut within the wait is a FAIL, recorded as not observed), the meter must report its relay open and the
HES must show no credit left.
"""

from __future__ import annotations

import pytest

from rig import money
from rig.errors import HeadEndError
from rig.plan import Equals, Limits, LoadWatch, energy_crossing
from rig.roles import DisconnectControl
from rig.timing import attach_trace

pytestmark = [pytest.mark.prepaid, pytest.mark.together, pytest.mark.feature("Emergency credit")]


def request_emergency_credit(hes, account: str) -> dict:
    """The consumer's request: what the HES granted, or its refusal."""
    try:
        credit = hes.request_emergency_credit(account).account.emergency_credit
    except HeadEndError as exc:
        if not exc.refused:
            raise
        return {"state": "refused", "taken": 0.0, "error": exc.body}
    return {"state": credit.state, "taken": float(credit.taken)}


def used_up(samples, voltage_v: float, settled_at: float, credit_j: float, emergency_j: float, load_a: float):
    """(credit used up at, emergency credit used up at or None, reading period, hold-until instant)."""
    exhausted_at, _ = energy_crossing(samples, voltage_v, settled_at, credit_j)
    try:
        used_up_at, period_s = energy_crossing(samples, voltage_v, settled_at, credit_j + emergency_j)
    except AssertionError:  # cut before the load drew it: when it would have been used up at the load current
        return exhausted_at, None, None, exhausted_at + emergency_j / (voltage_v * load_a)
    return exhausted_at, used_up_at, period_s, used_up_at


def test_supply_held_by_emergency_credit(pos, prepaid, measure):
    meter, hes, policy, plan = pos.get(DisconnectControl), prepaid.hes, prepaid.policy, prepaid.plan
    limits, data, load_a = prepaid.limits, plan.emergency_credit, plan.load_a
    amount = policy.emergency_credit.amount
    if amount <= 0:
        pytest.skip(f"policy {policy.name} grants no emergency credit")
    limit_s = limits.cutoff_after_exhaustion_max_s
    granted = None if policy.emergency_credit.automatic else \
        measure.declare("emergency_credit_granted", policy.currency, Limits.within(float(amount), 0.01))
    kept = measure.declare("current_during_emergency_credit", "A", Limits(low=load_a / 2))
    delay = measure.declare("cutoff_delay_after_emergency_credit", "s", Limits(0.0, limit_s))
    credit_left = measure.declare("credit_left_at_cutoff", policy.currency,
                                  Limits(high=limits.credit_left_at_cutoff_max))
    output = measure.declare("reported_output_state", "", Equals(False))
    voltage_v = prepaid.supply(pos)
    try:
        with LoadWatch(pos.load, load_a, plan.poll_s) as watch:
            watch.flowing(plan.flow_wait_s)
            hes.read_now(pos.serial)
            prepaid.plan_tariff(money.rate_of(float(amount) * 3.6e6 / (voltage_v * load_a * data.emergency_s)))
            credit = money.paise(float(amount) * data.credit_s / data.emergency_s)
            settled_at = prepaid.set_credit(pos.serial, credit, f"emergency credit plan: {data.credit_s:g} s")
            if granted is not None:
                answer = request_emergency_credit(hes, pos.serial)
                granted(answer["taken"], details=answer)
            cut = watch.cut(data.credit_s + data.emergency_s + limit_s + data.extra_wait_s)
            samples = list(watch.samples)
        new_tariff = hes.tariff()
        exhausted_at, used_up_at, period_s, held_until = used_up(
            samples, voltage_v, settled_at, prepaid.energy_j(credit), prepaid.energy_j(amount), load_a)
        held = [s.value for s in samples if exhausted_at <= s.t_mono <= held_until - data.margin_s]
        attach_trace(watch.watcher, {"exhaustion": exhausted_at, "emergency credit used up": used_up_at})
        details = {"credit": float(credit), "emergency_credit": float(amount), "tariff_per_kwh": float(new_tariff),
                   "load_a": load_a,
                   "voltage_v": voltage_v, "exhausted_at_mono": exhausted_at, "used_up_at_mono": used_up_at,
                   "cut_at_mono": cut.t_mono if cut else None, "readings": len(held)}
        kept(min(held) if held else 0.0, details=details)
        if kept.failed or used_up_at is None:
            return
        if cut is None:
            delay.not_observed(samples[-1].t_mono - used_up_at, details=details)
        else:
            delay(cut.t_mono - used_up_at, uncertainty=cut.uncertainty_s + period_s + watch.latency_s,
                  details=details)
        credit_left(float(hes.account(pos.serial).credit_left))
        state = meter.relay_state()
        output(state.output_state, details=state.as_record())
    finally:
        prepaid.restore(pos)
