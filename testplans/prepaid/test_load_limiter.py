"""Load limiter: above the meter's kW limit the relay opens within the limiter's duration; below it, never.

Per position, with current flowing through the meter's relay into the position's own AC load: the limiter's
threshold (class 71, 0.0.17.0.0.255, threshold_normal) is set between a load below it (LOAD_BELOW_A) and one above
it (LOAD_ABOVE_A), keeping the min_over_threshold_duration the meter reports. The load below must keep flowing
for that duration plus the tolerance of the limits file. The load is then raised above the threshold: the
instant the power exceeded the threshold is the load current crossing threshold / supply voltage (PF 1), the
trip the current falling below half the lower load, both from the load's readings on the rig's monotonic
clock. The trip must come no earlier than the duration (within the measurement's uncertainty) and no later
than the duration plus the tolerance; a load never cut is a FAIL with the delay reported as at least the time
waited. The meter must then report its relay open. The threshold, the duration and the supply are restored
after the test, pass or fail.
"""

from __future__ import annotations

import time

import allure
import pytest
from supply import current_flows, restore_supply, supply_position

from rig.timing import CurrentWatcher, EventTimeout

pytestmark = [pytest.mark.prepaid, allure.epic("Prepaid"), allure.feature("Load limiter")]

LOAD_BELOW_A = 3.0
LOAD_ABOVE_A = 6.0
POLL_S = 0.01
EXTRA_WAIT_S = 5.0


@pytest.fixture
def limiter_settings(position, bench, source, hes):
    """The meter's limiter settings before the test; threshold, duration and supply restored after it."""
    meter = bench[f"meter@{position.position}"]
    original = meter.read_limiter()
    yield original
    if bench.broken:
        return
    meter.set_limiter(original["threshold_normal_w"], original["min_over_threshold_duration_s"])
    if not source.output_enabled():
        source.set_output(True)
    restore_supply(hes, position.serial, meter)


def test_limiter_trips_above_threshold(position, bench, source, hes, measure, prepaid_limits, limiter_settings):
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    voltage_v = supply_position(source, hes, account, meter, load, position.un_v, LOAD_BELOW_A)
    meter.set_limiter(voltage_v * (LOAD_BELOW_A + LOAD_ABOVE_A) / 2,
                      limiter_settings["min_over_threshold_duration_s"])
    limiter = meter.read_limiter()
    threshold_w, duration_s = limiter["threshold_active_w"], limiter["min_over_threshold_duration_s"]
    tolerance_s = prepaid_limits.limiter_trip_tolerance_s
    details = {**limiter, "voltage_v": voltage_v, "load_below_a": LOAD_BELOW_A, "load_above_a": LOAD_ABOVE_A}
    with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
        if not current_flows(watcher, measure, position.position, LOAD_BELOW_A, meter):
            return
        held_from = time.monotonic()
        time.sleep(duration_s + tolerance_s)
        held = [s.value for s in watcher.samples if s.t_mono >= held_from]
        below = measure("current_below_threshold", min(held), "A", low=LOAD_BELOW_A / 2, position=position.position,
                        details={**details, "held_s": duration_s + tolerance_s, "readings": len(held)})
        if below.verdict == "fail":
            return
        load.set_level(LOAD_ABOVE_A)
        over = watcher.wait_for("rises_above", threshold_w / voltage_v, timeout_s=EXTRA_WAIT_S)
        try:
            trip = watcher.wait_for("falls_below", LOAD_BELOW_A / 2, timeout_s=duration_s + tolerance_s + EXTRA_WAIT_S)
        except EventTimeout:
            trip = None  # never cut while we waited
        last_t = watcher.samples[-1].t_mono
    uncertainty_s = over.uncertainty_s + (trip.uncertainty_s if trip is not None else 0.0)
    delay_s = (trip.t_mono if trip is not None else last_t) - over.t_mono
    measure("limiter_trip_delay", delay_s, "s", low=duration_s - uncertainty_s, high=duration_s + tolerance_s,
            uncertainty=uncertainty_s, position=position.position,
            details={**details, "over_at_mono": over.t_mono, "trip_seen": trip is not None,
                     "trip_at_mono": trip.t_mono if trip is not None else None})
    state = meter.relay_state()
    measure("reported_output_state", float(state["output_state"]), "", low=0, high=0, position=position.position,
            details=state)
