"""Friendly hours: credit running out inside a no-disconnection window never cuts the supply before it ends.

Per window case (a weekday evening at the start of the daily window, a Sunday noon), every position at once: the
HES clock (one for all positions) is set `friendly_hours.lead_s` before the chosen instant on a day the policy's
calendar makes suitable, and the credit is set to what the position's load uses in `credit_s` seconds (at a
tariff where one paisa buys `paisa_s` of it). The exhaustion instant comes from the load's current readings (as
in the cutoff plan); the current must keep flowing `hold_s` seconds beyond it. The HES clock then moves to
`lead_s` before the policy's next allowed disconnection time, and the cut must come after that instant and within
the cutoff limit, on the rig's monotonic clock mapped to HES time by a clock read. No cut within the wait is a
FAIL, recorded as not observed.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import pytest

from rig.plan import Equals, Limits, LoadWatch, energy_crossing, hold, once, together
from rig.prepaid import PrepaidPolicy
from rig.roles import DisconnectControl
from rig.timing import attach_trace

pytestmark = [pytest.mark.prepaid, pytest.mark.together, pytest.mark.feature("Friendly hours")]


def _window_start(policy: PrepaidPolicy, day: date, lead_s: float) -> datetime | None:
    """The start of the daily window on a working day (Mon-Fri, no holiday before it), else None."""
    start = datetime.combine(day, policy.no_disconnection.daily[0].start)
    if day.weekday() >= 5 or policy.calendar_blockers(start - timedelta(seconds=lead_s)):
        return None
    return start


def _sunday_noon(policy: PrepaidPolicy, day: date, _lead_s: float) -> datetime | None:
    """Noon on a Sunday the policy marks as a no-disconnection weekday, else None."""
    noon = datetime.combine(day, datetime.min.time()).replace(hour=12)
    if day.weekday() != 6 or not any(b.kind == "weekday" for b in policy.calendar_blockers(noon)):
        return None
    return noon


CASES = {"weekday_evening": _window_start, "sunday_noon": _sunday_noon}


def pick_case(policy: PrepaidPolicy, after: date, choose, data) -> tuple[datetime, datetime]:
    """(exhaustion instant, next allowed disconnection) on the first suitable day after `after` whose window
    ends the next morning at the end of the daily window."""
    window_end = policy.no_disconnection.daily[0].end
    for offset in range(1, data.search_days):
        day = after + timedelta(days=offset)
        at = choose(policy, day, data.lead_s)
        if at is None:
            continue
        resume = policy.next_disconnect_time(at + timedelta(seconds=data.credit_s + data.hold_s))
        if resume == datetime.combine(day + timedelta(days=1), window_end):
            return at, resume
    raise AssertionError(f"no day within {data.search_days} days after {after} suits the case {choose.__name__}")


def hes_to_mono(hes, policy: PrepaidPolicy, moment: datetime) -> tuple[float, float]:
    """The rig's monotonic instant of HES local time `moment`, and its uncertainty (half the clock read)."""
    sent = time.monotonic()
    now = policy.local(hes.clock())
    replied = time.monotonic()
    return (sent + replied) / 2 + (moment - now).total_seconds(), (replied - sent) / 2


@pytest.mark.parametrize("case", list(CASES))
def test_no_cut_in_friendly_hours(case, pos, prepaid, measure):
    meter, hes, policy, plan = pos.get(DisconnectControl), prepaid.hes, prepaid.policy, prepaid.plan
    data, load_a = plan.friendly_hours, plan.load_a
    limit_s = prepaid.limits.cutoff_after_exhaustion_max_s
    kept = measure.declare("current_after_exhaustion_in_window", "A", Limits(low=load_a / 2))
    delay = measure.declare("cutoff_after_window_end", "s", Limits(0.0, limit_s))
    output = measure.declare("reported_output_state", "", Equals(False))
    voltage_v = prepaid.supply(pos)
    exhaust_at, resume_at = once("pick the day", lambda: pick_case(policy, policy.local(hes.clock()).date(),
                                                                   CASES[case], data))
    details = {"case": case, "exhaustion_hes_time": exhaust_at.isoformat(), "resume_hes_time": resume_at.isoformat()}
    with LoadWatch(pos.load, load_a, plan.poll_s) as watch:
        watch.flowing(plan.flow_wait_s)
        together("HES clock before the exhaustion", lambda: hes.set_clock(exhaust_at - timedelta(seconds=data.lead_s)))
        prepaid.timing_tariff(voltage_v, load_a)
        credit = prepaid.credit_for(voltage_v, load_a, data.credit_s)
        settled_at = prepaid.set_credit(pos.serial, credit, f"prepaid plan: credit for {data.credit_s:g} s")
        hold(data.credit_s + data.hold_s + 0.5, "the credit running out in the window")
        exhausted_at, _ = energy_crossing(list(watch.samples), voltage_v, settled_at, prepaid.energy_j(credit))
        held = watch.readings_between(exhausted_at, exhausted_at + data.hold_s)
        kept(min(held) if held else 0.0, details={**details, "hold_s": data.hold_s, "readings": len(held)})
        if not kept.failed:
            together("HES clock before the window ends",
                     lambda: hes.set_clock(resume_at - timedelta(seconds=data.lead_s)))
            resume_mono, clock_uncertainty_s = hes_to_mono(hes, policy, resume_at)
            cut = watch.cut(data.lead_s + limit_s + data.extra_wait_s)
            if cut is None:
                delay.not_observed(watch.samples[-1].t_mono - resume_mono, details=details)
            else:
                delay(cut.t_mono - resume_mono, uncertainty=cut.uncertainty_s + clock_uncertainty_s + watch.latency_s,
                      details=details)
            state = meter.relay_state()
            output(state.output_state, details=state.as_record())
    attach_trace(watch.watcher, {"exhaustion": exhausted_at}, recharge=lambda: prepaid.restore(pos))
