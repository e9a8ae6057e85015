"""Prepaid cutoff timing: when the credit runs out, the supply is cut within the bound, never early.

Per position, with current flowing through the meter's relay into the position's own AC load: the HES tariff is set
so that one paisa buys `paisa_s` of the load's energy (balances are whole paise), the HES settles the account with
an on-demand read, then the credit is set to what the load uses in `cutoff.credit_s` seconds. The instant the
credit is used up is found from physics: the load's current readings (and the supply voltage) are integrated from
the settling read until that energy has flowed. The cut is the instant the current falls below half its value, from
the same readings. Both instants are on the rig's monotonic clock; each carries its uncertainty (reading period and
instrument latency). The meter's own report of its relay must agree with the physics, and the HES must show no
credit left when it cut. No cut within the wait is a FAIL, recorded as not observed with the time waited. No
current through a connected meter's relay at the start is a FAIL too.
"""

from __future__ import annotations

import pytest

from rig.plan import Equals, Limits, LoadWatch, current_flows, energy_between, energy_crossing
from rig.roles import DisconnectControl
from rig.timing import attach_trace

pytestmark = [pytest.mark.prepaid, pytest.mark.together, pytest.mark.feature("Cutoff timing")]


def test_cutoff_after_credit_exhaustion(pos, prepaid, measure):
    meter, hes, plan, limits = pos.get(DisconnectControl), prepaid.hes, prepaid.plan, prepaid.limits
    limit_s = limits.cutoff_after_exhaustion_max_s
    delay = measure.declare("cutoff_delay", "s", Limits(0.0, limit_s))
    energy_after = measure.declare("energy_after_exhaustion", "Wh",
                                   Limits(0.0, pos.un_v * plan.load_a * limit_s / 3600))
    credit_left = measure.declare("credit_left_at_cutoff", "INR", Limits(high=limits.credit_left_at_cutoff_max))
    output = measure.declare("reported_output_state", "", Equals(False))
    voltage_v = prepaid.supply(pos)
    credit_s = plan.cutoff.credit_s
    with LoadWatch(pos.load, plan.load_a, plan.poll_s) as watch:
        if not current_flows(watch, measure, meter, plan.flow_wait_s):
            return
        prepaid.timing_tariff(voltage_v, plan.load_a)
        credit = prepaid.credit_for(voltage_v, plan.load_a, credit_s)
        settled_at = prepaid.set_credit(pos.serial, credit, f"prepaid plan: credit for {credit_s:g} s")
        cut = watch.cut(credit_s + limit_s + plan.cutoff.extra_wait_s)
        samples = list(watch.samples)
    exhausted_at, period_s = energy_crossing(samples, voltage_v, settled_at, prepaid.energy_j(credit))
    cut_at = cut.t_mono if cut is not None else samples[-1].t_mono
    details = {"credit": float(credit), "load_a": plan.load_a, "voltage_v": voltage_v,
               "exhausted_at_mono": exhausted_at, "cut_at_mono": cut.t_mono if cut is not None else None,
               "cut_seen": cut is not None}
    if cut is None:
        delay.not_observed(cut_at - exhausted_at, details=details)
    else:
        delay(cut_at - exhausted_at, uncertainty=cut.uncertainty_s + period_s + watch.latency_s, details=details)
    energy_after(energy_between(samples, voltage_v, exhausted_at, cut_at) / 3600)
    credit_left(float(hes.balance(pos.serial)))
    state = meter.relay_state()
    output(state.output_state, details=state.as_record())
    attach_trace(watch.watcher, {"exhaustion": exhausted_at}, recharge=lambda: prepaid.restore(pos))
