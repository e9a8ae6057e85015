"""Positive-balance guard: a group disconnect aimed at every account never cuts a consumer it must not cut.

In 2020 a faulty head-end group command disconnected about 1.58 lakh paying consumers. One test per case for
the whole bench: every position draws current through its relay into its own load; the HES gets a group
disconnect naming every account. Case "positive_balance": each account holds credit. Case "window_zero_balance":
each account has no credit, but the HES clock is inside the policy's daily no-disconnection window. Each load's
current is read until HOLD_S seconds after the last command the HES accepted was executed or failed (after its
answer when it accepted none); a position whose current fell below half the load current was cut. The HES's
answer (refused accounts and reasons) is recorded per position. Supply, balances and the clock are restored.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import datetime, timedelta

import allure
import pytest
from supply import restore_supply, wait_for_current

from fixtures.plugin import rig_session
from rig.timing import CurrentWatcher

pytestmark = [pytest.mark.prepaid, allure.epic("Prepaid"), allure.feature("Positive-balance guard")]

LOAD_A = 5.0
POLL_S = 0.02
HOLD_S = 3.0
CASES = {"positive_balance": "cut_with_positive_balance", "window_zero_balance": "cut_in_no_disconnection_window"}


def _in_window(hes, policy) -> datetime:
    """A local time inside the policy's first daily no-disconnection window, on the HES's current date."""
    window = policy.no_disconnection.daily[0]
    moment = datetime.combine(policy.local(hes.clock()).date(), window.start) + timedelta(minutes=1)
    if not any(b.kind == "hours" for b in policy.calendar_blockers(moment)):
        raise AssertionError(f"{moment} is not inside the no-disconnection window {window.label}")
    return moment


@pytest.mark.parametrize("case", list(CASES))
def test_group_disconnect_spares_guarded_accounts(case, request, bench, source, hes, measure, prepaid_limits,
                                                  prepaid_policy):
    positions = [p for p in rig_session(request.config).bench_file.config.positions
                 if p.interface is not None and p.load is not None]
    assert positions, "the bench has no position with a meter interface and a load"
    policy = prepaid_policy
    accounts = [p.serial for p in positions]
    meters = {p.position: bench[f"meter@{p.position}"] for p in positions}
    loads = {p.position: bench[f"load@{p.position}"] for p in positions}
    source.set_voltage(positions[0].un_v)
    if not source.output_enabled():
        source.set_output(True)
    for p in positions:
        restore_supply(hes, p.serial, meters[p.position])
        loads[p.position].set_mode("CURR")
        loads[p.position].set_level(LOAD_A)
        loads[p.position].set_input(True)
    clock_before = hes.clock()
    try:
        with ExitStack() as stack:
            watchers = {n: stack.enter_context(CurrentWatcher.for_load(load, poll_s=POLL_S, name=f"load@{n} current"))
                        for n, load in loads.items()}
            for watcher in watchers.values():
                wait_for_current(watcher, LOAD_A / 2, timeout_s=5)
            if case == "window_zero_balance":
                hes.set_clock(_in_window(hes, policy))
                for account in accounts:
                    hes.read_now(account)
                    hes.adjust_balance(account, -hes.balance(account), "guard plan: no credit inside the window")
            balances = {a: hes.balance(a) for a in accounts}
            sent_at = time.monotonic()
            answer = hes.group_command("disconnect", accounts, reason=f"guard plan: group disconnect ({case})")
            commands = {c["account"]: c for c in answer.get("commands", [])}
            for account, command in commands.items():
                commands[account] = hes.wait_for_command(command["id"], prepaid_limits.group_command_max_s)
            time.sleep(HOLD_S)
            samples = {n: [s for s in w.samples if s.t_mono >= sent_at] for n, w in watchers.items()}
        refused = {r["account"]: r["reason"] for r in answer.get("refused", [])}
        for p in positions:
            readings = [s.value for s in samples[p.position]]
            lowest = min(readings) if readings else 0.0
            details = {"case": case, "account": p.serial, "balance": balances[p.serial], "lowest_a": lowest,
                       "readings": len(readings), "group": answer.get("id"), "hes_refused": refused.get(p.serial),
                       "hes_command": commands.get(p.serial)}
            measure(CASES[case], float(lowest < LOAD_A / 2), "", low=0, high=0, position=p.position,
                    details=details)
            measure("group_disconnect_refused", float(p.serial in refused), "", low=1, high=1, position=p.position,
                    details={"case": case, "reason": refused.get(p.serial)})
    finally:
        for p in positions:
            restore_supply(hes, p.serial, meters[p.position])
        if case == "window_zero_balance":
            hes.set_clock(clock_before)
