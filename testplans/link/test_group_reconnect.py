"""Group reconnect over the 4G link: every position cut for lack of credit, all recharged together, and the time
until the last of them has supply again, against the group SLA.

Once for the whole bench (every position with a meter interface, a load and an RF attenuator): each position's
load draws current through its meter's relay; every account's credit is used up, so the HES disconnects each
meter (judged by each load's current falling and the HES recording the disconnect as executed); then every
account is recharged, one request right after the other, as a vending system posts a batch. A prepaid head end
restores supply by the reconnect each recharge queues (its group connect command is the operator's tool after a
group disconnect, and refuses accounts whose reconnect is already pending), so the plan times that path. The
group latency runs from the instant the HES accepted the first recharge (+- half that request's round trip) to
the instant the last position's load current rises again (a CurrentWatcher per load, with its uncertainty); it is
judged against `group_reconnect_max_s`, and each position's own latency (from its own recharge) is recorded in
the details. The trial runs at 0 dB and at the deepest step of --link-sweep at which every position's modem stays
registered on 4G (from AT+CEREG where the position has a modem, else from the RSRP its meter reports). A trial
waits `group_reconnect_max_s + trial_timeout_s` for the last position, so a late one is measured, not just
missed. Attenuation 0, 4G and every position's supply are restored at the end, also after a failure.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from sweep import BenchSetupError, RadioPath

from rig.plan import Limits, LoadWatch, Position, for_each, wait_until
from rig.report.attach import attach_text
from rig.roles import SignalReport

pytestmark = [pytest.mark.link, pytest.mark.feature("Group reconnect")]


@dataclass
class Member:
    """One position of the group: the position, its RF path and the watch on its load's current."""

    pos: Position
    radio_path: RadioPath
    watch: LoadWatch | None = None

    @property
    def account(self) -> str:
        return self.pos.serial

    @property
    def number(self) -> int:
        return self.pos.number


def unregistered(group: list[Member], link_limits) -> list[int]:
    """The positions without 4G registration, waiting up to registration_wait_s in all: from each modem's
    AT+CEREG, else from the RSRP the position's meter reports."""
    deadline = time.monotonic() + link_limits.registration_wait_s
    lost = []
    for member in group:
        if member.radio_path.modem is not None:
            if not member.radio_path.wait_registration(True, max(0.0, deadline - time.monotonic())):
                lost.append(member.number)
        elif member.pos.get(SignalReport).read_signal_dbm() < link_limits.registration_loss_dbm:
            lost.append(member.number)
    return lost


def set_group_attenuation(group: list[Member], attenuation_db: float) -> float:
    """Every position's attenuator to this step; the attenuation they hold (the first position's read back)."""
    held = [member.radio_path.set_attenuation(attenuation_db) for member in group]
    return held[0]


def deepest_registered_step(group: list[Member], link_limits, sweep: list[float]) -> float | None:
    """The deepest step of the sweep beyond 0 dB at which every position stays registered; None if there is none
    (the attenuators are left at the step found, or at the last one tried)."""
    for attenuation_db in sorted({step for step in sweep if step > 0}, reverse=True):
        held_db = set_group_attenuation(group, attenuation_db)
        lost = unregistered(group, link_limits)
        if not lost:
            return held_db
        attach_text(f"no registration at {held_db:g} dB", f"positions {lost} not registered at {held_db:g} dB")
    return None


def cut_group(hes, group: list[Member], timeout_s: float) -> None:
    """Use up every account's credit; every load's current stops and the HES records each disconnect executed."""
    for member in group:
        hes.adjust_balance(member.account, -hes.balance(member.account), reason="link plan: group credit used up")
    for member in group:
        if member.watch.cut(timeout_s) is None:
            raise BenchSetupError(f"position {member.number}: the supply was not cut within {timeout_s:g} s of "
                                  f"using up the credit: no group reconnect to time")
    for member in group:
        wait_until(lambda a=member.account: hes.account(a).disconnected, timeout_s,
                   f"the HES to record account {member.account} disconnected")


@dataclass(frozen=True)
class GroupTrial:
    """One group reconnect: latency (s) from the first recharge accepted to the last position's current flowing
    (the time waited if a position did not reconnect), its uncertainty, and each position's own record."""

    latency_s: float
    uncertainty_s: float
    reconnected: bool
    last_position: int | None
    positions: list[dict]


def recharge_group(hes, group: list[Member], note: str, recharge: float) -> dict[int, tuple]:
    """Every account recharged, one right after the other: position -> (accepted at, +- half, reconnect id)."""
    accepted = {}
    for member in group:
        sent = time.monotonic()
        answer = hes.recharge(member.account, recharge, reference=f"link plan: {note} {time.time_ns()}")
        answered = time.monotonic()
        accepted[member.number] = ((sent + answered) / 2, (answered - sent) / 2,
                                   answer.reconnect.id if answer.reconnect else None)
    return accepted


def group_trial(hes, group: list[Member], timeout_s: float, note: str, recharge: float) -> GroupTrial:
    """Recharge every account and time the return of each load's current; a position whose current has not risen
    timeout_s after the first acceptance is recorded as not reconnected."""
    accepted = recharge_group(hes, group, note, recharge)
    first_at, first_half, _ = min(accepted.values())
    deadline = first_at + timeout_s
    rows, rises = [], []
    for member in group:
        at, half, command = accepted[member.number]
        row = {"position": member.number, "account": member.account, "command": command,
               "recharge_accepted_after_first_s": at - first_at}
        rise = member.watch.restored(max(0.0, deadline - time.monotonic()))
        if rise is None:
            row.update(reconnected=False, latency_s=None, waited_s=time.monotonic() - at)
        else:
            rises.append((rise, member.number))
            row.update(reconnected=True, latency_s=rise.t_mono - at, uncertainty_s=rise.uncertainty_s + half)
        rows.append(row)
    if len(rises) < len(group):
        return GroupTrial(time.monotonic() - first_at, first_half, False, None, rows)
    last, last_position = max(rises, key=lambda item: item[0].t_mono)
    return GroupTrial(last.t_mono - first_at, last.uncertainty_s + first_half, True, last_position, rows)


@pytest.fixture
def group(positions, link) -> list[Member]:
    """Every position of the bench; afterwards each at attenuation 0 on 4G, and supplied again (credit, meter
    connected)."""
    members = [Member(p, RadioPath(p)) for p in positions]
    yield members
    problems = []
    for member in members:
        try:
            member.radio_path.restore()
        except Exception as exc:  # noqa: BLE001 - every position is restored; the failures are raised together
            problems.append(f"position {member.number} RF path: {exc}")
    def supplied(member: Member) -> None:
        try:
            link.supply(member.pos)
        except Exception as exc:  # noqa: BLE001 - as above
            problems.append(f"position {member.number} supply: {exc}")

    for_each(members, supplied)
    if problems:
        raise BenchSetupError("group reconnect plan could not restore the bench: " + "; ".join(problems))


def test_group_reconnects_within_the_group_sla(group, link, measure):
    hes, plan, link_limits = link.hes, link.plan, link.limits
    timeout_s = link_limits.group_reconnect_max_s + link_limits.trial_timeout_s
    def on_4g_supplied(member: Member) -> None:
        if member.radio_path.modem is not None:
            member.radio_path.modem.set_technology("4g")
        link.supply(member.pos)

    for_each(group, on_4g_supplied)
    with ExitStack() as stack:
        for member in group:
            member.watch = stack.enter_context(LoadWatch(member.pos.load, plan.load_a, plan.poll_s,
                                                         name=f"load@{member.number} current"))
        for member in group:
            member.watch.flowing(link_limits.trial_timeout_s)
        held_db = set_group_attenuation(group, 0.0)
        lost = unregistered(group, link_limits)
        if lost:
            raise BenchSetupError(f"positions {lost}: no 4G registration at {held_db:g} dB")
        if not timed_group_trial(group, hes, measure, plan, link_limits, held_db, timeout_s):
            return
        deep_db = deepest_registered_step(group, link_limits, link.sweep)
        if deep_db is None:
            attach_text("group reconnect: 0 dB only", "no step of --link-sweep beyond 0 dB keeps every position "
                                                      "registered")
            return
        timed_group_trial(group, hes, measure, plan, link_limits, deep_db, timeout_s)


def timed_group_trial(group: list[Member], hes, measure, plan, link_limits, attenuation_db: float,
                      timeout_s: float) -> bool:
    """Cut the group, recharge it and measure the group latency at this attenuation; True if every position
    reconnected (and its current flows again)."""
    latency = measure.declare("group_reconnect_latency", "s", Limits(0.0, link_limits.group_reconnect_max_s))
    cut_group(hes, group, link_limits.trial_timeout_s)
    trial = group_trial(hes, group, timeout_s, f"group at {attenuation_db:g} dB", plan.recharge)
    details = {"attenuation_db": attenuation_db, "positions": trial.positions, "all_reconnected": trial.reconnected,
               "last_position": trial.last_position, "waited_up_to_s": timeout_s}
    if not trial.reconnected:
        latency.not_observed(trial.latency_s, uncertainty=trial.uncertainty_s, details=details)
        return False
    latency(trial.latency_s, uncertainty=trial.uncertainty_s, details=details)
    for member in group:
        member.watch.flowing(link_limits.trial_timeout_s)
    return True
