"""Recharge storm (month start): half the fleet cut for lack of credit, then every one of them recharged at once.
Each meter's latency runs from its recharge sent to its supply restored, as the meter's own relay says; the
latencies are judged at p50, p95 and p99 against the reconnect-after-recharge SLA, and every meter must be
restored."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fleetplan import latency_details, percentile, share

from rig.plan import Equals, Limits

pytestmark = [pytest.mark.fleet]


def test_recharge_storm_restores_supply_within_the_sla(fleet_plans, measure):
    plans, fleet, hes, plan, limits = (fleet_plans, fleet_plans.fleet, fleet_plans.hes, fleet_plans.plan,
                                       fleet_plans.limits)
    storm = share(plans.serials, plan.storm_share)
    latency = {q: measure.declare(f"recharge_to_supply_{q}", "s", Limits(0.0, limits.reconnect_max_s))
               for q in ("p50", "p95", "p99")}
    restored = measure.declare("meters_restored", "meters", Equals(len(storm)))
    plans.debit(storm)
    plans.wait_cut(storm, limits.trial_timeout_s, plan.poll_s)
    plans.wait_nothing_pending()

    sent: dict[str, float] = {}

    def recharge(serial: str):
        sent[serial] = time.monotonic()
        return hes.recharge(serial, plans.recharge, reference=f"storm-{serial}-{sent[serial]:.3f}")

    with ThreadPoolExecutor(plan.workers) as pool:
        answers = [pool.submit(recharge, serial) for serial in storm]
        supplied = fleet.wait_supplied(storm, limits.trial_timeout_s, plan.poll_s)
        credited = [answer.result() for answer in answers]
    latencies = {s: when - sent[s] for s, when in supplied.items() if when is not None}
    details = {**(latency_details(list(latencies.values())) if latencies else {}),
               "reconnects_queued": sum(1 for c in credited if c.reconnect is not None)}
    for q, declared in latency.items():
        if len(latencies) == len(storm):
            declared(percentile(list(latencies.values()), int(q[1:]) / 100), uncertainty=plan.poll_s,
                     details=details)
        else:
            declared.not_observed(limits.trial_timeout_s)
    restored(len(latencies), details={**details, "not_restored": sorted(set(storm) - set(latencies))[:20]})
