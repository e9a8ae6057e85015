"""Friendly hours: credit running out inside a no-disconnection window never cuts the supply before it ends.

Per position and per window case (a weekday evening at the start of the daily window, a Sunday noon), the HES
clock is set LEAD_S before the chosen instant on a day the policy's calendar makes suitable, and the credit is
set to what the position's load uses in CREDIT_S seconds. The exhaustion instant comes from the load's current
readings (as in the cutoff plan); the current must keep flowing HOLD_S seconds beyond it. The HES clock then
moves to LEAD_S before the policy's next allowed disconnection time, and the cut must come after that instant
and within the cutoff limit, on the rig's monotonic clock mapped to HES time by a clock read.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import allure
import pytest
from supply import energy_crossing, restore_supply, supply_position, wait_for_current

from rig.prepaid import PrepaidPolicy
from rig.timing import CurrentWatcher, attach_trace

pytestmark = [pytest.mark.prepaid, allure.epic("Prepaid"), allure.feature("Friendly hours")]

LOAD_A = 5.0
CREDIT_S = 4.0
LEAD_S = 2.0
HOLD_S = 3.0
POLL_S = 0.01
SEARCH_DAYS = 60


def _window_start(policy: PrepaidPolicy, day: date) -> datetime | None:
    """The start of the daily window on a working day (Mon-Fri, no holiday before it), else None."""
    start = datetime.combine(day, policy.no_disconnection.daily[0].start)
    if day.weekday() >= 5 or policy.calendar_blockers(start - timedelta(seconds=LEAD_S)):
        return None
    return start


def _sunday_noon(policy: PrepaidPolicy, day: date) -> datetime | None:
    """Noon on a Sunday the policy marks as a no-disconnection weekday, else None."""
    noon = datetime.combine(day, datetime.min.time()).replace(hour=12)
    if day.weekday() != 6 or not any(b.kind == "weekday" for b in policy.calendar_blockers(noon)):
        return None
    return noon


CASES = {"weekday_evening": _window_start, "sunday_noon": _sunday_noon}


def pick_case(policy: PrepaidPolicy, after: date, choose) -> tuple[datetime, datetime]:
    """(exhaustion instant, next allowed disconnection) on the first suitable day after `after` whose window
    ends the next morning at the end of the daily window."""
    window_end = policy.no_disconnection.daily[0].end
    for offset in range(1, SEARCH_DAYS):
        day = after + timedelta(days=offset)
        at = choose(policy, day)
        if at is None:
            continue
        resume = policy.next_disconnect_time(at + timedelta(seconds=CREDIT_S + HOLD_S))
        if resume == datetime.combine(day + timedelta(days=1), window_end):
            return at, resume
    raise AssertionError(f"no day within {SEARCH_DAYS} days after {after} suits the case {choose.__name__}")


def hes_to_mono(hes, policy: PrepaidPolicy, moment: datetime) -> tuple[float, float]:
    """The rig's monotonic instant of HES local time `moment`, and its uncertainty (half the clock read)."""
    sent = time.monotonic()
    now = policy.local(hes.clock())
    replied = time.monotonic()
    return (sent + replied) / 2 + (moment - now).total_seconds(), (replied - sent) / 2


@pytest.mark.parametrize("case", list(CASES))
def test_no_cut_in_friendly_hours(case, position, bench, source, hes, measure, prepaid_limits, prepaid_policy):
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    policy = prepaid_policy
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    voltage_v = supply_position(source, hes, account, meter, load, position.un_v, LOAD_A)
    limit_s = prepaid_limits.cutoff_after_exhaustion_max_s
    exhaust_at, resume_at = pick_case(policy, policy.local(hes.clock()).date(), CASES[case])
    details = {"case": case, "exhaustion_hes_time": exhaust_at.isoformat(), "resume_hes_time": resume_at.isoformat()}
    with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
        wait_for_current(watcher, LOAD_A / 2, timeout_s=5)
        hes.set_clock(exhaust_at - timedelta(seconds=LEAD_S))
        credit = hes.tariff() * voltage_v * LOAD_A * CREDIT_S / 3.6e6
        settled_at = time.monotonic()
        hes.read_now(account)
        settled_at = (settled_at + time.monotonic()) / 2
        hes.adjust_balance(account, credit - hes.balance(account), f"prepaid plan: credit for {CREDIT_S:g} s")
        time.sleep(CREDIT_S + HOLD_S + 0.5)
        samples = list(watcher.samples)
        exhausted_at, _ = energy_crossing(samples, voltage_v, settled_at, credit / hes.tariff() * 3.6e6)
        held = [s.value for s in samples if exhausted_at <= s.t_mono <= exhausted_at + HOLD_S]
        lowest = min(held) if held else 0.0
        kept = measure("current_after_exhaustion_in_window", lowest, "A", low=LOAD_A / 2, position=position.position,
                       details={**details, "hold_s": HOLD_S, "readings": len(held)})
        if kept.verdict != "fail":
            hes.set_clock(resume_at - timedelta(seconds=LEAD_S))
            resume_mono, clock_uncertainty_s = hes_to_mono(hes, policy, resume_at)
            cut = watcher.wait_for("falls_below", LOAD_A / 2, timeout_s=LEAD_S + limit_s + 10)
            measure("cutoff_after_window_end", cut.t_mono - resume_mono, "s", low=0.0, high=limit_s,
                    uncertainty=cut.uncertainty_s + clock_uncertainty_s + load.current_sample_latency_s,
                    position=position.position, details=details)
            state = meter.relay_state()
            measure("reported_output_state", float(state["output_state"]), "", low=0, high=0,
                    position=position.position, details=state)
    attach_trace(watcher, {"exhaustion": exhausted_at}, recharge=lambda: restore_supply(hes, account, meter))
