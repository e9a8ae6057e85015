"""Reconnect latency over the 4G link as the RF attenuator weakens the meter's signal.

Per position, with current flowing through the meter's relay into the position's own AC load: at each step of
the attenuation sweep (--link-sweep) K trials (--link-trials) each cut the supply through the HES (credit used
up), then recharge; the latency runs from the instant the HES accepted the recharge to the instant the load's
current rises again (physics, on the rig's monotonic clock, with its uncertainty). Every trial and every step
(its maximum) is judged against the SLA (limits `reconnect_max_s`); the table of median, p95 and max per step is
recorded and attached with the latency-against-attenuation plot. A step at which the position's modem reports no
registration ends the sweep (the link is unusable beyond it); a trial that does not reconnect within
`trial_timeout_s` is recorded as failed and ends the sweep too.
"""

from __future__ import annotations

import allure
import pytest
from radio import POLL_S, latency_sweep, supply_position, wait_for_flow

from rig.report.attach import attach_latency
from rig.timing import CurrentWatcher

pytestmark = [pytest.mark.link, allure.epic("4G link"), allure.feature("Reconnect latency")]


def test_reconnect_latency_against_attenuation(position, bench, source, hes, measure, radio_path, link_limits,
                                               link_sweep, link_trials):
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    if radio_path.modem is not None:
        radio_path.modem.set_technology("4g")
    supply_position(source, load, hes, account, meter, position.un_v, link_limits.trial_timeout_s)
    with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
        wait_for_flow(watcher, link_limits.trial_timeout_s)
        rows = latency_sweep("4g", position, hes, meter, watcher, radio_path, measure, link_limits, link_sweep,
                             link_trials, link_limits.reconnect_max_s, link_limits.trial_timeout_s)
    if rows:
        attach_latency(rows, name=f"reconnect latency against attenuation, position {position.position}")
