"""Outage and restoration: mains off at every meter (each within the jitter), recharges during the outage for meters
cut for lack of credit (their reconnects wait at the head end), mains back at every meter at once. Every meter is
read again by the head end after the restoration (a fresh association, its old one died with the mains), each queued
reconnect runs once, the head end's DLMS exchanges in flight stay within its own bound through the storm, and the
time to supply restored (mains back -> the meter's own relay closed with mains) is judged at p50, p95 and p99."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from fleetplan import latency_details, percentile, share

from rig.plan import Equals, Limits, poll_until, wait_until

pytestmark = [pytest.mark.fleet]


def test_outage_and_restoration(fleet_plans, measure):
    plans, fleet, hes, plan, limits = (fleet_plans, fleet_plans.fleet, fleet_plans.hes, fleet_plans.plan,
                                       fleet_plans.limits)
    meters = plans.serials
    recharged = share(meters, plan.outage_recharge_share)
    restored = {q: measure.declare(f"restoration_time_{q}", "s", Limits(0.0, limits.restoration_max_s))
                for q in ("p50", "p95", "p99")}
    supplied_count = measure.declare("meters_supplied_after_restoration", "meters", Equals(len(meters)))
    reassociated = measure.declare("meters_read_after_restoration", "meters", Equals(len(meters)))
    ran_once = measure.declare("queued_commands_executed_once", "commands", Equals(len(recharged)))

    plans.debit(recharged)
    plans.wait_cut(recharged, limits.trial_timeout_s, plan.poll_s)
    plans.wait_nothing_pending()
    bound = hes.reset_fleet_metrics()["exchanges"]["max_concurrent"]  # the head end's own bound
    storm = measure.declare("exchanges_in_flight_peak", "exchanges", Limits(0, bound))
    fleet.mains_off(1.0, plan.mains_jitter_s)
    wait_until(lambda: not hes.fleet_meters(reachable=True), limits.trial_timeout_s,
               "the head end to hold every fleet meter out of reach", poll_s=0.2)
    known = {c.id for c in hes.commands()}
    reconnects = [credited.reconnect for credited in
                  plans.parallel(lambda s: hes.recharge(s, plans.recharge, reference=f"outage-{s}"), recharged)]
    time.sleep(plan.outage_hold_s)
    back_at_hes = hes.clock()
    began = fleet.mains_on(plan.mains_jitter_s)
    supplied = fleet.wait_supplied(meters, limits.trial_timeout_s, plan.poll_s)
    fleet.wait_mains(limits.trial_timeout_s)
    plans.wait_nothing_pending()

    times = [when - began for when in supplied.values() if when is not None]
    details = latency_details(times) if times else {}
    for q, declared in restored.items():
        if len(times) == len(meters):
            declared(percentile(times, int(q[1:]) / 100), uncertainty=plan.poll_s, details=details)
        else:
            declared.not_observed(limits.trial_timeout_s)
    supplied_count(len(times), details={"not_supplied": sorted(s for s, w in supplied.items() if w is None)[:20]})

    def read_since_restoration() -> set[str]:
        return {a["account"] for a in hes.fleet_meters() if a["last_read"] and a["reachable"]
                and datetime.fromisoformat(a["last_read"]) >= back_at_hes}
    poll_until(lambda: len(read_since_restoration()) == len(meters), limits.trial_timeout_s, poll_s=0.5)
    read = read_since_restoration()
    reassociated(len(read), details={"not_read": sorted(set(meters) - read)[:20]})

    settled = {command.account: hes.command(command.id) for command in reconnects if command is not None}
    again = {c.account for c in hes.commands() if c.id not in known and c.account in settled
             and c.action == "connect" and c.id != settled[c.account].id}  # any other reconnect sent since
    once = [s for s, c in settled.items() if c.status == "executed" and c.attempts == 1 and s not in again]
    ran_once(len(once), details={"queued": len(recharged), "queued_with_command": len(settled),
                                 "statuses": sorted({(c.status, c.attempts) for c in settled.values()}),
                                 "reconnected_again": sorted(again)[:20]})
    metrics = hes.fleet_metrics()["exchanges"]
    storm(metrics["peak_in_flight"], details={"max_concurrent": bound, "bounded": metrics["bounded"]})
