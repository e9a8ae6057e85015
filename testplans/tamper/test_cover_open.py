"""Cover-open tamper: the meter logs the opening of its terminal cover, with its time.

Per position, with the meter powered: the cover is closed, the meter's clock is read just before and just after
the cover is opened (the opening's meter time is their middle, give or take half the interval), then the
meter's non-rollover event log (IS 15959, a COSEM profile generic buffer) is read until the cover-open event
appears. The event must appear within `logged_within_s` of the opening and carry the meter's time of the
opening within `time_tolerance_s`. No event within the wait is a FAIL, recorded as not observed.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from rig.plan import Limits
from rig.roles import EventLog

pytestmark = [pytest.mark.tamper, pytest.mark.feature("Cover open")]


def test_cover_open_is_logged_with_its_time(pos, source, measure, plan, tamper_limits, closed_cover):
    log = pos.get(EventLog)
    logged_after = measure.declare("cover_open_logged_after", "s", Limits(0.0, tamper_limits.logged_within_s))
    time_error = measure.declare("cover_open_time_error", "s",
                                 Limits.within(0.0, tamper_limits.time_tolerance_s))
    source.set_voltage(pos.un_v)
    if not source.output_enabled():
        source.set_output(True)
    time.sleep(plan.cover_open.settle_s)
    before = log.read_clock()
    closed_cover.open_cover()
    opened_at = time.monotonic()
    after = log.read_clock()
    opened_meter_time = before + (after - before) / 2
    wait_s = tamper_limits.logged_within_s + plan.cover_open.extra_wait_s
    event = log.wait_for_event(plan.cover_open.event_code, before - timedelta(seconds=1), wait_s)
    seen_after_s = time.monotonic() - opened_at
    details = {"event_code": plan.cover_open.event_code, "opened_meter_time": opened_meter_time.isoformat()}
    if event is None:
        logged_after.not_observed(seen_after_s, details=details)
        time_error.not_observed(seen_after_s, details=details)
        return
    details["event"] = event.as_record()
    logged_after(seen_after_s, uncertainty=0.25, details=details)
    time_error((event.at - opened_meter_time).total_seconds(),
               uncertainty=(after - before).total_seconds() / 2 + 0.01, details=details)
