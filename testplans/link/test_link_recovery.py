"""Link loss and recovery: commands issued while the meter is out of coverage are executed after recovery,
each exactly once, in order, none lost.

Per position, with current flowing through the meter's relay into its own load: the attenuator takes the signal
well beyond registration loss (confirmed from the modem's AT+CEREG where the bench has a modem, else from the
RSRP the meter itself reports). While the link is down the account's credit runs out: the HES queues the
disconnect, which must stay pending, and nothing may switch. Then the signal is restored; once the HES shows the
disconnect done, the consumer recharges and the HES reconnects. (A recharge during the outage would make the
queued disconnect moot: the HES cancels it rather than send it, and no command would wait out the outage.) Judged
after recovery: the relay transitions a CurrentWatcher saw on the load (exactly one cut, then one reconnect), the
supply at the end, the meter's reported relay state, and the HES: every command issued from the outage on
executed, in the order issued, the disconnect queued until the link was back.
"""

from __future__ import annotations

import time

import pytest
from sweep import BenchSetupError

from rig.plan import Equals, Limits, LoadWatch, hold, poll_until
from rig.roles import SETTLED, DisconnectControl, SignalReport
from rig.timing import find_crossing

pytestmark = [pytest.mark.link, pytest.mark.together, pytest.mark.feature("Link loss and recovery")]


def transitions(samples, threshold_a: float) -> list[str]:
    """'cut' and 'reconnect' in the order the load's current crossed threshold_a."""
    seen, index = [], 0
    while True:
        falls = find_crossing(samples, "falls_below", threshold_a, index)
        rises = find_crossing(samples, "rises_above", threshold_a, index)
        candidates = [(found[1], name) for found, name in ((falls, "cut"), (rises, "reconnect")) if found]
        if not candidates:
            return seen
        index, name = min(candidates)
        seen.append(name)


def confirm_outage(radio_path, signal: SignalReport, link_limits) -> dict:
    """Registration lost: from the modem where there is one, else from the RSRP the meter reports."""
    if radio_path.modem is not None:
        if not radio_path.wait_registration(False, link_limits.registration_wait_s):
            raise BenchSetupError(f"{radio_path.modem.role}: still registered {link_limits.registration_wait_s:g} s "
                                  f"after setting {link_limits.outage_attenuation_db:g} dB")
        return {"evidence": "modem AT+CEREG", "registration": vars(radio_path.modem.registration())}
    rsrp_dbm = signal.read_signal_dbm()
    if rsrp_dbm >= link_limits.registration_loss_dbm:
        raise BenchSetupError(f"{signal.role}: reports RSRP {rsrp_dbm:g} dBm at {link_limits.outage_attenuation_db:g} "
                              f"dB, not below the loss threshold {link_limits.registration_loss_dbm:g} dBm")
    return {"evidence": "meter 0.1.96.12.5.255", "rsrp_dbm": rsrp_dbm}


def new_commands(hes, account: str, known: set[str]) -> list:
    return [c for c in hes.commands(account=account) if c.id not in known]


def settle_after_recovery(hes, account: str, known: set[str], limits, recharge: float) -> float:
    """Once the disconnect queued in the outage is settled, the consumer recharges; waits for every command to
    settle (each within recovery_max_s; judged after from what the HES shows). The time it took."""
    restored_at = time.monotonic()

    def all_settled():
        commands = new_commands(hes, account, known)
        return commands and all(c.settled for c in commands) and not hes.account(account).pending_command

    if poll_until(all_settled, limits.recovery_max_s):
        hes.recharge(account, recharge, reference=f"link plan: recharge after the outage {time.time_ns()}")
        poll_until(all_settled, limits.recovery_max_s)
    return time.monotonic() - restored_at


def test_commands_queued_in_an_outage_execute_once_in_order(pos, link, measure):
    with link.radio(pos) as radio_path:
        meter, signal = pos.get(DisconnectControl), pos.get(SignalReport)
        hes, plan, link_limits = link.hes, link.plan, link.limits
        issued = measure.declare("commands_issued", "", Equals(2))
        in_order = measure.declare("commands_in_order", "", Equals(True))
        switched_count = measure.declare("relay_transitions_after_recovery", "", Equals(2))
        switched_order = measure.declare("transitions_in_order", "", Equals(True))
        current = measure.declare("current_after_recovery", "A", Limits(low=plan.load_a / 2))
        output = measure.declare("reported_output_state", "", Equals(True))
        link.supply(pos)
        known = {command.id for command in hes.commands(account=pos.serial)}
        with LoadWatch(pos.load, plan.load_a, plan.poll_s) as watch:
            watch.flowing(link_limits.trial_timeout_s)
            radio_path.set_attenuation(link_limits.outage_attenuation_db)
            outage = confirm_outage(radio_path, signal, link_limits)
            outage_from = len(watch.samples)
            hes.adjust_balance(pos.serial, -hes.balance(pos.serial), reason="link plan: credit used up in an outage")
            hold(link_limits.outage_hold_s, "the outage")
            during = new_commands(hes, pos.serial, known)
            switched = transitions(watch.samples[outage_from:], watch.threshold_a)
            if not during or any(c.status in SETTLED for c in during) or switched:
                raise BenchSetupError(f"the link was not down: commands {[(c.id, c.status) for c in during]}, "
                                      f"relay transitions {switched} during the outage")
            radio_path.set_attenuation(0.0)
            recovered_s = settle_after_recovery(hes, pos.serial, known, link_limits, plan.recharge)
            hold(link_limits.settle_s, "a late or repeated command")
            commands = new_commands(hes, pos.serial, known)
            samples = list(watch.samples[outage_from:])
        switched = transitions(samples, watch.threshold_a)
        actions = [c.action for c in commands]
        records = [c.as_record() for c in commands]
        issued(len(commands), details={"actions": actions})
        measure("commands_executed", sum(c.status == "executed" for c in commands), "", Equals(len(commands)),
                details={"outage": outage, "commands": records, "transitions": switched, "recovered_s": recovered_s})
        finished = [c.history[-1]["local_time"] for c in commands]
        in_order(actions == ["disconnect", "connect"] and finished == sorted(finished),
                 details={"actions": actions, "histories": [c.history for c in commands]})
        switched_count(len(switched), details={"transitions": switched})
        switched_order(switched[:2] == ["cut", "reconnect"], details={"transitions": switched})
        current(samples[-1].value)
        state = meter.relay_state()
        output(state.output_state, details=state.as_record())
