"""Command success rate and relay-state agreement: half the fleet runs out of credit at once (the head end sends
each meter its disconnect), then every one of them is recharged at once (the head end sends each its reconnect).
A command counts as a success when the head end reports it executed and the meter's own relay then holds what it
asked; the rate is judged against the 99.9 % SLA. After each wave the head end's record of every account's supply
must agree with the meter's own relay."""

from __future__ import annotations

import time

import pytest
from fleetplan import share

from rig.plan import Equals, Limits, poll_until

pytestmark = [pytest.mark.fleet]


def test_commands_succeed_and_the_head_end_agrees_with_the_meters(fleet_plans, measure):
    plans, fleet, hes, plan, limits = (fleet_plans, fleet_plans.fleet, fleet_plans.hes, fleet_plans.plan,
                                       fleet_plans.limits)
    chosen = share(plans.serials, plan.command_share)
    rate = measure.declare("command_success_rate", "%", Limits(limits.command_success_min_pct, 100.0))
    disagree = measure.declare("relay_state_disagreements", "meters", Equals(0))
    known = {c.id for c in hes.commands()}
    waves = (("disconnect", lambda: plans.debit(chosen), False),
             ("connect", lambda: plans.parallel(lambda s: hes.recharge(s, plans.recharge), chosen), True))
    issued, succeeded, differences = 0, 0, []
    for action, start, connected in waves:
        start()
        poll_until(lambda a=action: len(_commands(hes, known, chosen, a)) == len(chosen), limits.trial_timeout_s,
                   poll_s=0.2)  # every account's command queued (a disconnect after the account's next read)
        plans.wait_nothing_pending()
        time.sleep(limits.settle_s)
        states = fleet.states()
        commands = _commands(hes, known, chosen, action)
        issued += len(commands)
        succeeded += sum(1 for c in commands if c.status == "executed"
                         and states[c.account].relay_connected == connected)
        differences += plans.differences()
    rate(100.0 * succeeded / issued if issued else 0.0,
         details={"issued": issued, "succeeded": succeeded, "meters": len(chosen), "expected": 2 * len(chosen)})
    disagree(len(differences), details={"first": differences[:20]})


def _commands(hes, known: set[str], accounts: list[str], action: str) -> list:
    """The head end's commands of this action for these accounts, issued since `known` was taken."""
    wanted = set(accounts)
    return [c for c in hes.commands() if c.id not in known and c.account in wanted and c.action == action]
