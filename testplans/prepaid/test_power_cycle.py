"""Relay state after a power cycle with a command pending.

Per position, with current flowing through the meter's relay into the position's own AC load, the credit is taken
away so the HES disconnects the meter; the current must stop within the cutoff limit. The rig then releases its
association with the meter and switches the supply off (every position at once: the source is theirs to share),
for as short as the case needs:

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

import pytest

from rig.plan import Equals, Limits, LoadWatch, current_flows, hold, poll_until, supply_on, together
from rig.roles import ControlState, DisconnectControl

pytestmark = [pytest.mark.prepaid, pytest.mark.together, pytest.mark.feature("Power cycle")]

EXPECTED = {"stays_disconnected": (False, ControlState.DISCONNECTED),
            "reconnect_pending": (True, ControlState.CONNECTED)}


def take_credit_away(hes, account: str, policy) -> None:
    """Debit the balance and any automatic emergency credit, so the credit is exhausted at once."""
    credit = policy.emergency_credit
    debit = hes.balance(account) + (credit.amount if credit.automatic else 0) + 1
    hes.adjust_balance(account, -debit, "power cycle plan: no credit")


def power_off_then_on(pos, source, hes, case: str, plan) -> dict:
    """Supply off (recharging in the reconnect_pending case, until the HES has tried its reconnect), then on, for
    every position running together at once: when it came back (monotonic, +- half the exchange) and the
    reconnect command as it stood then."""
    pos.meter.close()  # release the association: the meter is about to lose its supply

    def switch(on: bool) -> tuple[float, float]:
        sent = time.monotonic()
        source.set_output(on)
        return sent, time.monotonic()

    off_at = together("supply off", lambda: switch(False))[1]
    reconnect = command = None
    if case == "reconnect_pending":
        reconnect = hes.recharge(pos.serial, plan.recharge, reference=f"power cycle plan {time.time_ns()}").reconnect
        if reconnect is not None:
            tried = poll_until(lambda: (c := hes.command(reconnect.id)).status in ("retrying", "executed", "failed")
                               and c, plan.power_cycle.command_tried_max_s)
            command = tried or hes.command(reconnect.id)
    hold(max(0.0, off_at + plan.power_cycle.off_min_s - time.monotonic()), "supply off")
    sent, replied = together("supply on", lambda: switch(True))
    return {"off_s": (sent + replied) / 2 - off_at, "on_at_mono": (sent + replied) / 2,
            "on_uncertainty_s": (replied - sent) / 2, "reconnect": reconnect,
            "command_at_power_return": command.as_record() if command else None}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_relay_state_across_power_cycle(case, pos, prepaid, measure):
    try:
        relay_state_across_power_cycle(case, pos, prepaid, measure)
    finally:  # pass or fail: the supply on and the meter connected with credit
        if not pos.bench.broken:
            supply_on(prepaid.source, pos.un_v)
            prepaid.restore(pos)


def relay_state_across_power_cycle(case: str, pos, prepaid, measure) -> None:
    meter, hes, plan, limits = pos.get(DisconnectControl), prepaid.hes, prepaid.plan, prepaid.limits
    load_a = plan.load_a
    cut = measure.declare("current_after_credit_exhausted", "A", Limits(high=load_a / 2))
    if case == "stays_disconnected":
        after = measure.declare("current_after_power_return", "A", Limits(high=load_a / 10))
    else:
        after = measure.declare("reconnect_after_power_return", "s",
                                Limits(0.0, limits.reconnect_after_recharge_max_s))
    expected_output, expected_control = EXPECTED[case]
    output = measure.declare("reported_output_state", "", Equals(expected_output))
    control = measure.declare("reported_control_state", "", Equals(expected_control))
    prepaid.supply(pos)
    with LoadWatch(pos.load, load_a, plan.poll_s) as watch:
        if not current_flows(watch, measure, meter, plan.flow_wait_s):
            return
        take_credit_away(hes, pos.serial, prepaid.policy)
        watch.cut(limits.cutoff_after_exhaustion_max_s)
        if cut(watch.latest(), details=meter.relay_state().as_record()).verdict == "fail":
            return
        power = power_off_then_on(pos, prepaid.source, hes, case, plan)
        if case == "stays_disconnected":
            hold(limits.power_cycle_hold_s, "no reconnect at power-up")
            readings = watch.readings_between(power["on_at_mono"])
            after(max(readings), details={**power, "reconnect": None, "held_s": limits.power_cycle_hold_s,
                                          "readings": len(readings)})
        else:
            judge_reconnect(after, watch, hes, power, limits.reconnect_after_recharge_max_s
                            + plan.power_cycle.reconnect_extra_wait_s)
    state = meter.relay_state()
    output(state.output_state, details=state.as_record())
    control(state.control_state, details=state.as_record())


def judge_reconnect(after, watch: LoadWatch, hes, power: dict, wait_s: float) -> None:
    """The current back within wait_s of the supply's return, timed from that return."""
    back = watch.restored(wait_s)
    reconnect = power.pop("reconnect")
    details = {**power, "restored_seen": back is not None,
               "command": hes.command(reconnect.id).as_record() if power["command_at_power_return"] else None}
    if back is None:
        after.not_observed(watch.samples[-1].t_mono - power["on_at_mono"], details=details)
    else:
        after(back.t_mono - power["on_at_mono"], uncertainty=power["on_uncertainty_s"] + back.uncertainty_s,
              details=details)
