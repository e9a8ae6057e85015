"""Reconnect latency over the 4G link as the RF attenuator weakens the meter's signal.

Per position, with current flowing through the meter's relay into the position's own AC load: at each step of
the attenuation sweep (--link-sweep) K trials (--link-trials) each cut the supply through the HES (credit used
up), then recharge; the latency runs from the instant the HES accepted the recharge to the instant the load's
current rises again (physics, on the rig's monotonic clock, with its uncertainty). Every trial and every step
(its maximum) is judged against the SLA (limits `reconnect_max_s`); the table of median, p95 and max per step is
recorded and attached with the latency-against-attenuation plot. A step at which the position's modem reports no
registration ends the sweep (the link is unusable beyond it); a trial that does not reconnect within
`trial_timeout_s` is recorded as not observed (FAIL) and ends the sweep too.
"""

from __future__ import annotations

import pytest
from sweep import Sweep, latency_sweep

from rig.plan import LoadWatch
from rig.report.attach import attach_latency

pytestmark = [pytest.mark.link, pytest.mark.together, pytest.mark.feature("Reconnect latency")]


def test_reconnect_latency_against_attenuation(pos, link, measure):
    with link.radio(pos) as radio_path:
        if radio_path.modem is not None:
            radio_path.modem.set_technology("4g")
        link.supply(pos)
        sweep = Sweep("4g", link.sweep, link.trials, link.limits.reconnect_max_s, link.limits.trial_timeout_s)
        with LoadWatch(pos.load, link.plan.load_a, link.plan.poll_s) as watch:
            watch.flowing(link.limits.trial_timeout_s)
            rows = latency_sweep(sweep, pos, link, watch, radio_path, measure)
        if rows:
            attach_latency(rows, name=f"reconnect latency against attenuation, position {pos.number}")
