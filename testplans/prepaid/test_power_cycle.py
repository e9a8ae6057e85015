"""Relay state after a power cycle with a command pending.

Per position, with current flowing through the meter's relay into the position's own AC load, the credit is taken
away so the HES disconnects the meter; the current must stop within the cutoff limit. The rig then releases its
association with the meter and switches the supply off, for as short as the case needs:

- stays_disconnected: the supply returns with the account still without credit. The relay must not close: for
  power_cycle_hold_s after the supply returned the current stays below a tenth of the load current, and the meter
  reports its relay open and its disconnect control disconnected (no spurious reconnect at power-up).
- reconnect_pending: while the meter has no supply the account is recharged; the HES's reconnect finds the meter
  silent (the supply stays off until the HES shows the command tried and unanswered, or executed) and must be
  retried. After the supply returns the current must flow again within reconnect_after_recharge_max_s, measured
  from the instant the supply returned, and the meter must report its relay closed and connected.

Judged by physics (the load's current readings on the rig's monotonic clock) and the meter's reported state. The
supply and the credit are restored after the test, pass or fail.
"""

from __future__ import annotations

import time

import allure
import pytest
from supply import CONNECTED, DISCONNECTED, RECHARGE, current_flows, restore_supply, supply_position

from rig.timing import CurrentWatcher, EventTimeout

pytestmark = [pytest.mark.prepaid, allure.epic("Prepaid"), allure.feature("Power cycle")]

LOAD_A = 5.0
POLL_S = 0.01
OFF_MIN_S = 1.0  # the supply stays off at least this long
COMMAND_TRIED_MAX_S = 30.0  # longest wait, supply off, for the HES to try its reconnect
CASES = ("stays_disconnected", "reconnect_pending")


@pytest.fixture
def supply_restored(position, bench, source, hes):
    """After the test, pass or fail: the supply on and the meter connected with credit."""
    yield
    if bench.broken:
        return
    if not source.output_enabled():
        source.set_output(True)
    restore_supply(hes, position.serial, bench[f"meter@{position.position}"])


def take_credit_away(hes, account: str, policy) -> None:
    """Debit the balance and any automatic emergency credit, so the credit is exhausted at once."""
    credit = policy.emergency_credit
    debit = hes.balance(account) + (credit.amount if credit.automatic else 0.0) + 1.0
    hes.adjust_balance(account, -debit, "power cycle plan: no credit")


def wait_until_tried(hes, command_id: str) -> dict:
    """The HES's command once it was sent and not answered (or executed, or failed), waiting at most
    COMMAND_TRIED_MAX_S."""
    deadline = time.monotonic() + COMMAND_TRIED_MAX_S
    while True:
        command = hes.command(command_id)
        if command["status"] in ("retrying", "executed", "failed") or time.monotonic() > deadline:
            return command
        time.sleep(0.05)


@pytest.mark.parametrize("case", CASES)
def test_relay_state_across_power_cycle(case, position, bench, source, hes, measure, prepaid_limits, prepaid_policy,
                                        supply_restored):
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    supply_position(source, hes, account, meter, load, position.un_v, LOAD_A)
    where = {"position": position.position}
    with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
        if not current_flows(watcher, measure, position.position, LOAD_A, meter):
            return
        take_credit_away(hes, account, prepaid_policy)
        try:
            watcher.wait_for("falls_below", LOAD_A / 2, timeout_s=prepaid_limits.cutoff_after_exhaustion_max_s)
        except EventTimeout:
            pass
        cut = measure("current_after_credit_exhausted", watcher.samples[-1].value, "A", high=LOAD_A / 2, **where,
                      details=meter.relay_state())
        if cut.verdict == "fail":
            return
        meter.close()  # release the association: the meter is about to lose its supply
        source.set_output(False)
        off_at = time.monotonic()
        command = None
        if case == "reconnect_pending":
            reconnect = hes.recharge(account, RECHARGE, reference=f"power cycle plan {time.time_ns()}")["reconnect"]
            command = wait_until_tried(hes, reconnect["id"]) if reconnect else None
        time.sleep(max(0.0, off_at + OFF_MIN_S - time.monotonic()))
        sent = time.monotonic()
        source.set_output(True)
        replied = time.monotonic()
        on_at, on_uncertainty_s = (sent + replied) / 2, (replied - sent) / 2
        details = {"off_s": on_at - off_at, "on_at_mono": on_at,
                   "command_at_power_return": command}
        if case == "stays_disconnected":
            time.sleep(prepaid_limits.power_cycle_hold_s)
            after = [s.value for s in watcher.samples if s.t_mono > on_at]
            measure("current_after_power_return", max(after), "A", high=LOAD_A / 10, **where,
                    details={**details, "held_s": prepaid_limits.power_cycle_hold_s, "readings": len(after)})
            expected_output, expected_control = 0, DISCONNECTED
        else:
            limit_s = prepaid_limits.reconnect_after_recharge_max_s
            try:
                back = watcher.wait_for("rises_above", LOAD_A / 2, timeout_s=limit_s + 5)
            except EventTimeout:
                back = None
            back_at = back.t_mono if back is not None else watcher.samples[-1].t_mono
            uncertainty_s = on_uncertainty_s + (back.uncertainty_s if back is not None else 0.0)
            measure("reconnect_after_power_return", back_at - on_at, "s", low=0.0, high=limit_s,
                    uncertainty=uncertainty_s, **where,
                    details={**details, "restored_seen": back is not None,
                             "command": hes.command(reconnect["id"]) if command else None})
            expected_output, expected_control = 1, CONNECTED
    state = meter.relay_state()
    measure("reported_output_state", float(state["output_state"]), "", expected=expected_output, tolerance=0,
            **where, details=state)
    measure("reported_control_state", state["control_state"], "", expected=expected_control, tolerance=0,
            **where, details=state)
