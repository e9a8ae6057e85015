"""Positive-balance guard: a group disconnect aimed at every account never cuts a consumer it must not cut.

In 2020 a faulty head-end group command disconnected about 1.58 lakh paying consumers. One test per case for
the whole bench: every position draws current through its relay into its own load; the HES gets a group
disconnect naming every account. Case "positive_balance": each account holds credit. Case "window_zero_balance":
each account has no credit, but the HES clock is inside the policy's daily no-disconnection window. Each load's
current is read until `group_guard.hold_s` seconds after the last command the HES accepted was executed or failed
(after its answer when it accepted none); a position whose current fell below half the load current was cut. The
HES's answer (refused accounts and reasons) is recorded per position. Supply, balances and the clock are restored.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import datetime, timedelta

import pytest

from rig.plan import Equals, LoadWatch, for_each

pytestmark = [pytest.mark.prepaid, pytest.mark.feature("Positive-balance guard")]

CASES = {"positive_balance": "cut_with_positive_balance", "window_zero_balance": "cut_in_no_disconnection_window"}


def _in_window(hes, policy) -> datetime:
    """A local time inside the policy's first daily no-disconnection window, on the HES's current date."""
    window = policy.no_disconnection.daily[0]
    moment = datetime.combine(policy.local(hes.clock()).date(), window.start) + timedelta(minutes=1)
    if not any(b.kind == "hours" for b in policy.calendar_blockers(moment)):
        raise AssertionError(f"{moment} is not inside the no-disconnection window {window.label}")
    return moment


def group_disconnect(hes, accounts: list[str], case: str, limits) -> tuple:
    """The group disconnect; (its answer, each accepted command once settled)."""
    answer = hes.group_command("disconnect", accounts, reason=f"guard plan: group disconnect ({case})")
    return answer, {c.account: hes.wait_for_command(c.id, limits.group_command_max_s) for c in answer.commands}


@pytest.mark.parametrize("case", list(CASES))
def test_group_disconnect_spares_guarded_accounts(case, positions, prepaid, measure):
    hes, plan = prepaid.hes, prepaid.plan
    cut = {p.number: measure.declare(CASES[case], "", Equals(False), position=p) for p in positions}
    refused_by_hes = {p.number: measure.declare("group_disconnect_refused", "", Equals(True), position=p)
                      for p in positions}
    accounts = [p.serial for p in positions]
    for_each(positions, prepaid.supply)
    clock_before = hes.clock()
    try:
        with ExitStack() as stack:
            watches = {p.number: stack.enter_context(LoadWatch(p.load, plan.load_a, plan.group_guard.poll_s,
                                                               name=f"load@{p.number} current")) for p in positions}
            for watch in watches.values():
                watch.flowing(plan.flow_wait_s)
            if case == "window_zero_balance":
                hes.set_clock(_in_window(hes, prepaid.policy))
                def no_credit(account: str) -> None:
                    hes.read_now(account)
                    hes.adjust_balance(account, -hes.balance(account), "guard plan: no credit inside the window")

                for_each(accounts, no_credit)
            balances = {a: hes.balance(a) for a in accounts}
            sent_at = time.monotonic()
            answer, commands = group_disconnect(hes, accounts, case, prepaid.limits)
            time.sleep(plan.group_guard.hold_s)
            readings = {n: w.readings_between(sent_at) for n, w in watches.items()}
        for p in positions:
            lowest = min(readings[p.number]) if readings[p.number] else 0.0
            command = commands.get(p.serial)
            cut[p.number](lowest < plan.load_a / 2, details={
                "case": case, "account": p.serial, "balance": str(balances[p.serial]), "lowest_a": lowest,
                "readings": len(readings[p.number]), "group": answer.id, "hes_refused": answer.refused.get(p.serial),
                "hes_command": command.as_record() if command else None})
            refused_by_hes[p.number](p.serial in answer.refused,
                                     details={"case": case, "reason": answer.refused.get(p.serial)})
    finally:
        for_each(positions, prepaid.restore)
        if case == "window_zero_balance":
            hes.set_clock(clock_before)
