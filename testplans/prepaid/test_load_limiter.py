"""Load limiter: above the meter's kW limit the relay opens within the limiter's duration; below it, never.

Per position, with current flowing through the meter's relay into the position's own AC load: the limiter's
threshold (class 71, 0.0.17.0.0.255, threshold_normal) is set between a load below it (`load_limiter.load_below_a`)
and one above it (`load_above_a`), keeping the min_over_threshold_duration the meter reports. The load below must
keep flowing for that duration plus the tolerance of the limits file. The load is then raised above the threshold:
the instant the power exceeded the threshold is the load current crossing threshold / supply voltage (PF 1), the
trip the current falling below half the lower load, both from the load's readings on the rig's monotonic
clock. The trip must come no earlier than the duration (within the measurement's uncertainty) and no later
than the duration plus the tolerance; a load never cut is a FAIL, recorded as not observed with the time waited.
The meter must then report its relay open. The threshold, the duration and the supply are restored after the
test, pass or fail.
"""

from __future__ import annotations

import time

import pytest

from rig.plan import Equals, Limits, LoadWatch, current_flows, hold, supply_on
from rig.roles import DisconnectControl, LoadLimiter

pytestmark = [pytest.mark.prepaid, pytest.mark.together, pytest.mark.feature("Load limiter")]


def test_limiter_trips_above_threshold(pos, prepaid, measure):
    limiter = pos.get(LoadLimiter)
    original = limiter.read_limiter()
    try:
        limiter_trips(pos, prepaid, measure, original)
    finally:  # pass or fail: the meter's threshold and duration, and the supply, as they were
        if not pos.bench.broken:
            limiter.set_limiter(original.threshold_normal_w, original.min_over_threshold_duration_s)
            supply_on(prepaid.source, pos.un_v)
            prepaid.restore(pos)


def limiter_trips(pos, prepaid, measure, limiter_settings) -> None:
    meter, limiter, plan = pos.get(DisconnectControl), pos.get(LoadLimiter), prepaid.plan
    below_a, above_a = plan.load_limiter.load_below_a, plan.load_limiter.load_above_a
    duration_s = limiter_settings.min_over_threshold_duration_s
    tolerance_s = prepaid.limits.limiter_trip_tolerance_s
    held = measure.declare("current_below_threshold", "A", Limits(low=below_a / 2))
    output = measure.declare("reported_output_state", "", Equals(False))
    voltage_v = prepaid.supply(pos, below_a)
    limiter.set_limiter(voltage_v * (below_a + above_a) / 2, duration_s)
    settings = limiter.read_limiter()
    details = {**settings.as_record(), "voltage_v": voltage_v, "load_below_a": below_a, "load_above_a": above_a}
    with LoadWatch(pos.load, below_a, plan.poll_s) as watch:
        if not current_flows(watch, measure, meter, plan.flow_wait_s):
            return
        held_from = time.monotonic()
        hold(duration_s + tolerance_s, "the load below the threshold")
        readings = watch.readings_between(held_from)
        held(min(readings), details={**details, "held_s": duration_s + tolerance_s, "readings": len(readings)})
        if held.failed:
            return
        pos.load.set_level(above_a)
        over = watch.watcher.wait_for("rises_above", settings.threshold_active_w / voltage_v,
                                      timeout_s=plan.load_limiter.extra_wait_s)
        trip = watch.cut(duration_s + tolerance_s + plan.load_limiter.extra_wait_s)
        last_t = watch.samples[-1].t_mono
    uncertainty_s = over.uncertainty_s + (trip.uncertainty_s if trip is not None else 0.0)
    delay = measure.declare("limiter_trip_delay", "s", Limits(duration_s - uncertainty_s, duration_s + tolerance_s))
    trip_details = {**details, "over_at_mono": over.t_mono, "trip_seen": trip is not None,
                    "trip_at_mono": trip.t_mono if trip is not None else None}
    if trip is None:
        delay.not_observed(last_t - over.t_mono, uncertainty=uncertainty_s, details=trip_details)
    else:
        delay(trip.t_mono - over.t_mono, uncertainty=uncertainty_s, details=trip_details)
    state = meter.relay_state()
    output(state.output_state, details=state.as_record())
