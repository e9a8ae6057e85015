"""Emergency credit: the supply stays on while emergency credit lasts and is cut once it is used up.

Per position, with current flowing through the meter's relay into the position's own AC load: the HES tariff is
raised for the test so that the policy's emergency credit buys EC_S seconds of the load (and restored after).
The HES settles the account with an on-demand read and the credit is set to what the load uses in CREDIT_S
seconds. A policy whose emergency credit is on request gets the consumer's request at once, before the credit
runs out; an automatic one is left to the HES. The instants the credit and then the emergency credit are used
up come from the load's current readings (as in the cutoff plan). Between the two the current must stay above
half the load current (up to MARGIN_S before the second, or before the instant the load current would
have used it up when the supply was cut before); the cut must come after the second within the cutoff
limit, the meter must report its relay open and the HES must show no credit left.
"""

from __future__ import annotations

import time

import allure
import pytest
from supply import energy_crossing, restore_supply, supply_position, wait_for_current

from drivers.hes import HesHttpError
from rig.timing import CurrentWatcher, attach_trace

pytestmark = [pytest.mark.prepaid, allure.epic("Prepaid"), allure.feature("Emergency credit")]

LOAD_A = 5.0
CREDIT_S = 2.0
EC_S = 4.0
MARGIN_S = 0.1
POLL_S = 0.01


def _credit_left(account: dict) -> float:
    """Balance plus emergency credit still to spend, as the HES reports the account."""
    credit = account["emergency_credit"]
    left = account["balance"] + (credit["taken"] if credit["state"] == "active" else 0.0)
    return max(left, 0.0)


def test_supply_held_by_emergency_credit(position, bench, source, hes, measure, prepaid_limits, prepaid_policy):
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    policy = prepaid_policy
    amount = policy.emergency_credit.amount
    if amount <= 0:
        pytest.skip(f"policy {policy.name} grants no emergency credit")
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    voltage_v = supply_position(source, hes, account, meter, load, position.un_v, LOAD_A)
    limit_s = prepaid_limits.cutoff_after_exhaustion_max_s
    tariff = hes.tariff()
    try:
        with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
            wait_for_current(watcher, LOAD_A / 2, timeout_s=5)
            hes.read_now(account)
            hes.set_tariff(amount * 3.6e6 / (voltage_v * LOAD_A * EC_S))
            credit = amount * CREDIT_S / EC_S
            settled_at = time.monotonic()
            hes.read_now(account)
            settled_at = (settled_at + time.monotonic()) / 2
            hes.adjust_balance(account, credit - hes.balance(account), f"emergency credit plan: {CREDIT_S:g} s")
            if not policy.emergency_credit.automatic:
                try:
                    granted = hes.request_emergency_credit(account)["account"]["emergency_credit"]
                except HesHttpError as exc:
                    granted = {"state": "refused", "taken": 0.0, "error": exc.body}
                measure("emergency_credit_granted", granted["taken"], policy.currency, expected=amount,
                        tolerance=0.01, position=position.position, details=granted)
            cut = watcher.wait_for("falls_below", LOAD_A / 2, timeout_s=CREDIT_S + EC_S + limit_s + 10)
            samples = list(watcher.samples)
        new_tariff = hes.tariff()
        credit_j, emergency_j = credit / new_tariff * 3.6e6, amount / new_tariff * 3.6e6
        exhausted_at, _ = energy_crossing(samples, voltage_v, settled_at, credit_j)
        try:
            used_up_at, period_s = energy_crossing(samples, voltage_v, settled_at, credit_j + emergency_j)
        except AssertionError:
            used_up_at, period_s = None, None
        if used_up_at is None:  # cut before the load drew it: when it would have been used up at the load current
            used_at = exhausted_at + emergency_j / (voltage_v * LOAD_A)
        held_until = (used_up_at if used_up_at is not None else used_at) - MARGIN_S
        held = [s.value for s in samples if exhausted_at <= s.t_mono <= held_until]
        attach_trace(watcher, {"exhaustion": exhausted_at, "emergency credit used up": used_up_at})
        details = {"credit": credit, "emergency_credit": amount, "tariff_per_kwh": new_tariff, "load_a": LOAD_A,
                   "voltage_v": voltage_v, "exhausted_at_mono": exhausted_at, "used_up_at_mono": used_up_at,
                   "cut_at_mono": cut.t_mono, "readings": len(held)}
        kept = measure("current_during_emergency_credit", min(held) if held else 0.0, "A", low=LOAD_A / 2,
                       position=position.position, details=details)
        if kept.verdict != "fail" and used_up_at is not None:
            measure("cutoff_delay_after_emergency_credit", cut.t_mono - used_up_at, "s", low=0.0, high=limit_s,
                    uncertainty=cut.uncertainty_s + period_s + load.current_sample_latency_s,
                    position=position.position, details=details)
            measure("credit_left_at_cutoff", _credit_left(hes.account(account)), policy.currency,
                    high=prepaid_limits.credit_left_at_cutoff_max, position=position.position)
            state = meter.relay_state()
            measure("reported_output_state", float(state["output_state"]), "", low=0, high=0,
                    position=position.position, details=state)
    finally:
        hes.set_tariff(tariff)
        restore_supply(hes, account, meter)
