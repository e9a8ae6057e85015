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

import allure
import pytest
from radio import LOAD_A, POLL_S, RECHARGE, BenchSetupError, supply_position, wait_for_flow, wait_until

from rig.timing import CurrentWatcher, find_crossing

pytestmark = [pytest.mark.link, allure.epic("4G link"), allure.feature("Link loss and recovery")]

FINAL = ("executed", "failed", "cancelled")


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


def confirm_outage(radio_path, meter, link_limits) -> dict:
    """Registration lost: from the modem where there is one, else from the RSRP the meter reports."""
    if radio_path.modem is not None:
        if not radio_path.wait_registration(False, link_limits.registration_wait_s):
            raise BenchSetupError(f"{radio_path.modem.role}: still registered {link_limits.registration_wait_s:g} s "
                                  f"after setting {link_limits.outage_attenuation_db:g} dB")
        return {"evidence": "modem AT+CEREG", "registration": vars(radio_path.modem.registration())}
    rsrp_dbm = meter.read_signal_dbm()
    if rsrp_dbm >= link_limits.registration_loss_dbm:
        raise BenchSetupError(f"{meter.role}: reports RSRP {rsrp_dbm:g} dBm at {link_limits.outage_attenuation_db:g} "
                              f"dB, not below the loss threshold {link_limits.registration_loss_dbm:g} dBm")
    return {"evidence": "meter 0.1.96.12.5.255", "rsrp_dbm": rsrp_dbm}


def test_commands_queued_in_an_outage_execute_once_in_order(position, bench, source, hes, measure, radio_path,
                                                            link_limits):
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    supply_position(source, load, hes, account, meter, position.un_v, link_limits.trial_timeout_s)
    known = {command["id"] for command in hes.commands(account=account)}
    with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
        wait_for_flow(watcher, link_limits.trial_timeout_s)
        radio_path.set_attenuation(link_limits.outage_attenuation_db)
        outage = confirm_outage(radio_path, meter, link_limits)
        outage_from = len(watcher.samples)
        hes.adjust_balance(account, -hes.balance(account), reason="link plan: credit used up in an outage")
        time.sleep(link_limits.outage_hold_s)
        during = [c for c in hes.commands(account=account) if c["id"] not in known]
        switched = transitions(watcher.samples[outage_from:], LOAD_A / 2)
        if not during or any(c["status"] in FINAL for c in during) or switched:
            raise BenchSetupError(f"the link was not down: commands {[(c['id'], c['status']) for c in during]}, "
                                  f"relay transitions {switched} during the outage")
        restored_at = time.monotonic()
        radio_path.set_attenuation(0.0)

        def all_final():
            commands = [c for c in hes.commands(account=account) if c["id"] not in known]
            done = commands and all(c["status"] in FINAL for c in commands) and not hes.account(account)[
                "pending_command"]
            return commands if done else None

        try:
            wait_until(all_final, link_limits.recovery_max_s, "the disconnect to be settled")
            hes.recharge(account, RECHARGE, reference=f"link plan: recharge after the outage {time.time_ns()}")
            wait_until(all_final, link_limits.recovery_max_s, "every command to be settled")
        except Exception:  # noqa: BLE001 - judged below from what the HES shows
            pass
        recovered_s = time.monotonic() - restored_at
        time.sleep(link_limits.settle_s)
        commands = [c for c in hes.commands(account=account) if c["id"] not in known]
        samples = list(watcher.samples[outage_from:])
    switched = transitions(samples, LOAD_A / 2)
    executed = [c for c in commands if c["status"] == "executed"]
    actions = [c["action"] for c in commands]
    details = {"outage": outage, "commands": commands, "transitions": switched, "recovered_s": recovered_s}
    measure("commands_issued", len(commands), "", expected=2, tolerance=0, position=position.position,
            details={"actions": actions})
    measure("commands_executed", len(executed), "", expected=len(commands), tolerance=0,
            position=position.position, details=details)
    finished = [c["history"][-1]["local_time"] for c in commands]
    in_order = actions == ["disconnect", "connect"] and finished == sorted(finished)
    measure("commands_in_order", float(in_order), "", expected=1, tolerance=0, position=position.position,
            details={"actions": actions, "histories": [c["history"] for c in commands]})
    measure("relay_transitions_after_recovery", len(switched), "", expected=2, tolerance=0,
            position=position.position, details={"transitions": switched})
    measure("transitions_in_order", float(switched[:2] == ["cut", "reconnect"]), "", expected=1, tolerance=0,
            position=position.position, details={"transitions": switched})
    measure("current_after_recovery", samples[-1].value, "A", low=LOAD_A / 2, position=position.position)
    state = meter.relay_state()
    measure("reported_output_state", float(state["output_state"]), "", low=1, high=1, position=position.position,
            details=state)
