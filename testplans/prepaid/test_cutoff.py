"""Prepaid cutoff timing: when the credit runs out, the supply is cut within the bound, never early.

Per position, with current flowing through the meter's relay into the position's own AC load: the HES
settles the account with an on-demand read, then the credit is set to what the load uses in CREDIT_S seconds.
The instant the credit is used up is found from physics: the load's current readings (and the supply
voltage) are integrated from the settling read until that energy has flowed. The cut is the instant the
current falls below half its value, from the same readings. Both instants are on the rig's monotonic clock;
each carries its uncertainty (reading period and instrument latency). The meter's own report of its relay
must agree with the physics, and the HES must show no credit left when it cut. No cut within the wait is a
FAIL: the delay is then reported as at least the time waited. No current through a connected meter's relay at
the start is a FAIL too.
"""

from __future__ import annotations

import time

import allure
import pytest
from supply import current_flows, energy_crossing, restore_supply, supply_position

from rig.timing import CurrentWatcher, EventTimeout, attach_trace

pytestmark = [pytest.mark.prepaid, allure.epic("Prepaid"), allure.feature("Cutoff timing")]

LOAD_A = 5.0
CREDIT_S = 3.0
POLL_S = 0.01


def test_cutoff_after_credit_exhaustion(position, bench, source, hes, measure, prepaid_limits):
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    voltage_v = supply_position(source, hes, account, meter, load, position.un_v, LOAD_A)
    limit_s = prepaid_limits.cutoff_after_exhaustion_max_s
    with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
        if not current_flows(watcher, measure, position.position, LOAD_A, meter):
            return
        credit = hes.tariff() * voltage_v * LOAD_A * CREDIT_S / 3.6e6
        settled_at = time.monotonic()
        hes.read_now(account)
        settled_at = (settled_at + time.monotonic()) / 2
        hes.adjust_balance(account, credit - hes.balance(account), f"prepaid plan: credit for {CREDIT_S:g} s")
        try:
            cut = watcher.wait_for("falls_below", LOAD_A / 2, timeout_s=CREDIT_S + limit_s + 10)
        except EventTimeout:
            cut = None  # no cut while we waited
        samples = list(watcher.samples)
    exhausted_at, period_s = energy_crossing(samples, voltage_v, settled_at, credit / hes.tariff() * 3.6e6)
    cut_at = cut.t_mono if cut is not None else samples[-1].t_mono
    delay_s = cut_at - exhausted_at
    after_j = sum(voltage_v * a.value * (b.t_mono - a.t_mono) for a, b in zip(samples, samples[1:], strict=False)
                  if exhausted_at <= a.t_mono < cut_at)
    uncertainty_s = (cut.uncertainty_s if cut is not None else 0.0) + period_s + load.current_sample_latency_s
    details = {"credit": credit, "load_a": LOAD_A, "voltage_v": voltage_v, "exhausted_at_mono": exhausted_at,
               "cut_at_mono": cut.t_mono if cut is not None else None, "cut_seen": cut is not None}
    measure("cutoff_delay", delay_s, "s", low=0.0, high=limit_s, uncertainty=uncertainty_s,
            position=position.position, details=details)
    measure("energy_after_exhaustion", after_j / 3600, "Wh", low=0.0,
            high=voltage_v * LOAD_A * limit_s / 3600, position=position.position)
    measure("credit_left_at_cutoff", hes.balance(account), "INR", high=prepaid_limits.credit_left_at_cutoff_max,
            position=position.position)
    state = meter.relay_state()
    measure("reported_output_state", float(state["output_state"]), "", low=0, high=0, position=position.position,
            details=state)
    attach_trace(watcher, {"exhaustion": exhausted_at}, recharge=lambda: restore_supply(hes, account, meter))
