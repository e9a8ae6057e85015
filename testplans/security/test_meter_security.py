"""Meter security: the IS 15959-2 associations and DLMS HLS-GMAC hold against a client without the right, with a
wrong key, or replaying captured frames.

Per position, over the meter's data port:
- the meter reader association (LLS), which may only read, invokes remote_disconnect: the meter must refuse, and
  the current through the relay into the position's own load must go on flowing (physics, not the meter's word);
- an HLS-GMAC association as utility settings with a wrong authentication key: refused;
- a ciphered request the meter already answered, sent again exactly as captured: refused;
- a freshly ciphered request whose invocation counter is not above the last one used: refused.
Each refusal is a measurement (True: refused) carrying what the meter answered.
"""

from __future__ import annotations

import pytest

from rig.plan import Equals, Limits, LoadWatch, current_flows
from rig.roles import MeterSecurity

pytestmark = [pytest.mark.security, pytest.mark.feature("Meter security")]


def test_the_meter_reader_cannot_operate_the_relay(pos, measure, security_plan, supplied):
    plan = security_plan
    refused = measure.declare("reader_disconnect_refused", "", Equals(True))
    with LoadWatch(pos.load, plan.load_a, plan.poll_s) as watch:
        if not current_flows(watch, measure, supplied, plan.flow_wait_s):
            return
        kept = measure.declare("current_after_reader_disconnect", "A", Limits(low=watch.threshold_a))
        probe = pos.get(MeterSecurity).disconnect_as_reader()
        cut = watch.cut(plan.relay_watch_s)
        lowest = min(watch.readings_between(watch.samples[0].t_mono), default=0.0)
    refused(probe.refused, details=probe.as_record())
    kept(lowest, uncertainty=0.01 * plan.load_a,
         details={"cut_at_mono": cut.t_mono if cut is not None else None, "watched_s": plan.relay_watch_s})


def test_a_wrong_hls_key_is_refused(pos, measure):
    probe = pos.get(MeterSecurity).associate_with_wrong_key()
    measure("wrong_key_refused", probe.refused, "", Equals(True), details=probe.as_record())


def test_a_replayed_ciphered_frame_is_refused(pos, measure):
    probe = pos.get(MeterSecurity).replay_ciphered_frame()
    measure("replay_refused", probe.refused, "", Equals(True), details=probe.as_record())


def test_a_stale_invocation_counter_is_refused(pos, measure):
    probe = pos.get(MeterSecurity).send_stale_invocation_counter()
    measure("stale_counter_refused", probe.refused, "", Equals(True), details=probe.as_record())
