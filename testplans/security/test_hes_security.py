"""Head-end security: who may recharge and disconnect, the two-person rule on a large group disconnect, the audit log.

The 2020 mass disconnection came from the head end's command centre. These plans hold the head end to the
controls that would have stopped it, through the HES role only (the operators are the bench's, roles.hes
settings.operators, each with its own token):
- an unauthenticated recharge (no token, a token the head end never issued) is refused with 401 and credits
  nothing;
- a disconnect by a read-only operator is refused with 403 and the position's load current keeps flowing;
- a group disconnect naming more meters than the head end's blast radius (GET /status approval_above_meters) is
  held for a second operator: nothing is cut while it waits, its requester cannot approve it (403), and once a
  second operator approves it every account is judged again at execution (here: every account has credit, so
  nobody is cut);
- the audit log records each attempt, the refused ones included, with the operator who made it.
A refused request is reported with its HTTP status; one the head end carried out as 200.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from rig.errors import HeadEndError
from rig.measure import Limits
from rig.plan import Equals, LoadWatch, for_each, load_plan_data, restore_supply, supply
from rig.roles import DisconnectControl, HeadEnd

pytestmark = [pytest.mark.security, pytest.mark.feature("HES authentication and approval")]

PLAN = load_plan_data(Path(__file__).with_name("hes.yaml"))
CARRIED_OUT = 200


def status_of(request: Callable[[], object]) -> int:
    """The head end's answer to a request: its error status, or 200 when it carried the request out."""
    try:
        request()
    except HeadEndError as exc:
        return exc.status
    return CARRIED_OUT


def probe(hes: HeadEnd, kind: str) -> HeadEnd:
    return hes.without_token() if kind == "no_token" else hes.with_unknown_token()


def supplied(pos, source, hes: HeadEnd) -> None:
    supply(pos, source, hes, PLAN.load_a, recharge=PLAN.recharge, timeout_s=PLAN.settle_s)


def restored(pos, hes: HeadEnd) -> None:
    restore_supply(hes, pos.serial, pos.get(DisconnectControl), PLAN.recharge, PLAN.settle_s)


def was_cut(watch: LoadWatch, since: float) -> tuple[bool, dict]:
    readings = watch.readings_between(since)
    lowest = min(readings) if readings else 0.0
    return lowest < watch.threshold_a, {"lowest_a": lowest, "readings": len(readings)}


@pytest.mark.parametrize("kind", ["no_token", "unknown_token"])
def test_unauthenticated_recharge_is_refused(kind, positions, hes, measure):
    pos = positions[0]
    answered = measure.declare("unauthenticated_recharge_status", "", Equals(401), position=pos)
    credited = measure.declare("balance_credited_by_unauthenticated_recharge", "INR", Limits(high=0.0), position=pos)
    before = hes.balance(pos.serial)
    with probe(hes, kind) as stranger:
        status = status_of(lambda: stranger.recharge(pos.serial, PLAN.recharge,
                                                     reference=f"security plan: {kind} {time.time_ns()}"))
    after = hes.balance(pos.serial)
    answered(status, details={"probe": kind, "account": pos.serial})
    credited(float(after - before), details={"before": str(before), "after": str(after)})
    if after > before:
        hes.adjust_balance(pos.serial, before - after, "security plan: take back an unauthenticated recharge")


def test_read_only_operator_cannot_disconnect(pos, source, hes, measure):
    answered = measure.declare("read_only_disconnect_status", "", Equals(403))
    cut = measure.declare("cut_by_read_only_operator", "", Equals(False))
    connected = measure.declare("relay_connected_after_read_only_disconnect", "", Equals(True))
    supplied(pos, source, hes)
    try:
        with LoadWatch(pos.load, PLAN.load_a, PLAN.poll_s, name=f"load@{pos.number} current") as watch:
            watch.flowing(PLAN.flow_wait_s)
            sent_at = time.monotonic()
            with hes.as_role("read_only") as viewer:
                status = status_of(lambda: viewer.disconnect(pos.serial))
            time.sleep(PLAN.hold_s)
            lowered, seen = was_cut(watch, sent_at)
        answered(status, details={"account": pos.serial})
        cut(lowered, details=seen)
        state = pos.get(DisconnectControl).relay_state()
        connected(state.connected, details=state.as_record())
    finally:
        restored(pos, hes)


def test_group_disconnect_above_blast_radius_waits_for_a_second_approver(positions, source, hes, measure):
    limit = hes.approval_above_meters()
    if limit is None or len(positions) <= limit:
        pytest.skip(f"the head end's blast radius ({limit} meters) needs a bench of more positions "
                    f"({len(positions)} here)")
    held = measure.declare("group_disconnect_held_for_approval", "", Equals(True))
    own = measure.declare("requester_approval_status", "", Equals(403))
    cut_waiting = {p.number: measure.declare("cut_while_awaiting_approval", "", Equals(False), position=p)
                   for p in positions}
    cut_approved = {p.number: measure.declare("cut_with_credit_after_approval", "", Equals(False), position=p)
                    for p in positions}
    accounts = [p.serial for p in positions]
    for_each(positions, lambda p: supplied(p, source, hes))
    try:
        with ExitStack() as stack:
            watches = {p.number: stack.enter_context(LoadWatch(p.load, PLAN.load_a, PLAN.poll_s,
                                                               name=f"load@{p.number} current")) for p in positions}
            for watch in watches.values():
                watch.flowing(PLAN.flow_wait_s)
            asked_at = time.monotonic()
            with hes.as_role("disconnect") as requester:
                group = requester.group_command("disconnect", accounts, reason="security plan: above the blast radius")
                held(group.awaiting_approval, details={"group": group.id, "status": group.status, "held": group.held,
                                                       "refused": group.refused, "approval_above_meters": limit})
                time.sleep(PLAN.hold_s)
                own(status_of(lambda: requester.approve_group(group.id)), details={"group": group.id})
            for p in positions:
                lowered, seen = was_cut(watches[p.number], asked_at)
                cut_waiting[p.number](lowered, details=seen)
            approved_at = time.monotonic()
            approved = hes.approve_group(group.id) if group.awaiting_approval else hes.group(group.id)
            for command in approved.commands:
                hes.wait_for_command(command.id, PLAN.command_max_s)
            time.sleep(PLAN.hold_s)
            for p in positions:
                lowered, seen = was_cut(watches[p.number], approved_at)
                cut_approved[p.number](lowered, details={**seen, "balance": str(hes.balance(p.serial)),
                                                         "skipped": approved.skipped.get(p.serial),
                                                         "refused": approved.refused.get(p.serial)})
    finally:
        for_each(positions, lambda p: restored(p, hes))


def test_audit_log_records_each_attempt(positions, hes, measure):
    pos = positions[0]
    account = pos.serial
    since = max((entry.seq for entry in hes.audit()), default=0)
    with hes.without_token() as stranger:
        status_of(lambda: stranger.recharge(account, PLAN.recharge, reference=f"security plan: {time.time_ns()}"))
    with hes.as_role("read_only") as viewer:
        viewer_name = viewer.operator
        status_of(lambda: viewer.disconnect(account))
    with hes.as_role("recharge") as cashier:
        cashier_name = cashier.operator
        cashier.recharge(account, 1, reference=f"security plan: audited recharge {time.time_ns()}")
    entries = hes.audit(account=account, since=since)
    expected = {"unauthenticated_recharge": (None, "recharge", "denied"),
                "read_only_disconnect": (viewer_name, "disconnect", "denied"),
                "recharge": (cashier_name, "recharge", "done")}
    for attempt, (operator, action, outcome) in expected.items():
        found = [e for e in entries if (e.operator, e.action, e.outcome) == (operator, action, outcome)]
        measure(f"audited_{attempt}", bool(found), "", Equals(True), position=pos,
                details={"operator": operator, "action": action, "outcome": outcome,
                         "entry": found[0].as_record() if found else None, "entries": len(entries)})
