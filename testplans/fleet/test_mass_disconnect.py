"""Mass disconnect with mixed balances and a no-disconnection window (the 12 Aug 2020 failure at scale): an arrears
drive names every meter of the fleet in one group disconnect, asked by an operator with the disconnect right and
approved by a second operator. Inside the window nobody may be cut; outside it only the accounts without credit and
without protection, every one of them within the group bound. Paying consumers (credit) and protected ones (no
credit, within the grace after conversion to prepaid) are never cut. Cuts are read from the meters' own relays."""

from __future__ import annotations

import time

import pytest
from fleetplan import share

from rig.plan import Equals, Limits

pytestmark = [pytest.mark.fleet]


def test_mass_disconnect_cuts_only_the_eligible_within_the_group_bound(fleet_plans, measure):
    plans, hes, plan, limits = fleet_plans, fleet_plans.hes, fleet_plans.plan, fleet_plans.limits
    meters = plans.serials
    protected = set(share(meters, plan.protected_share))
    rest = [s for s in meters if s not in protected]
    owing = set(share(rest, plan.owing_share * len(meters) / len(rest)))
    paying = set(meters) - owing - protected
    in_window = measure.declare("cut_in_no_disconnection_window", "meters", Equals(0))
    paying_cut = measure.declare("paying_consumers_cut", "meters", Equals(0))
    protected_cut = measure.declare("protected_consumers_cut", "meters", Equals(0))
    eligible_cut = measure.declare("eligible_consumers_cut", "meters", Equals(len(owing)))
    group_time = measure.declare("group_disconnect_time", "s", Limits(0.0, limits.group_disconnect_max_s))
    with plans.hes_clock():
        hes.set_clock(plans.local_time("window_local_time"))
        plans.parallel(lambda s: hes.set_conversion_date(s, plans.local_time("converted_at")), sorted(protected))
        plans.debit(sorted(owing | protected))
        group = plans.approved_group_disconnect(meters, "fleet plan: arrears drive in a no-disconnection window")
        time.sleep(plan.window_hold_s)
        plans.wait_nothing_pending()
        cut = plans.cut_meters()
        in_window(len(cut), details={"group": group.id, "commands": len(group.commands),
                                     "refused": len(group.refused), "cut": sorted(cut)[:20]})

        asked = time.monotonic()
        hes.set_clock(plans.local_time("outside_local_time"))
        group = plans.approved_group_disconnect(meters, "fleet plan: arrears drive")
        cut_at = plans.wait_cut(sorted(owing), limits.trial_timeout_s, plan.poll_s)
        plans.wait_nothing_pending()
        time.sleep(limits.settle_s)
        cut = plans.cut_meters()
    details = {"group": group.id, "commands": len(group.commands), "refused": len(group.refused),
               "skipped": len(group.skipped), "owing": len(owing), "protected": len(protected),
               "paying": len(paying)}
    paying_cut(len(cut & paying), details={**details, "cut": sorted(cut & paying)[:20]})
    protected_cut(len(cut & protected), details={**details, "cut": sorted(cut & protected)[:20]})
    eligible_cut(len(cut & owing), details={**details, "not_cut": sorted(owing - cut)[:20]})
    if all(when is not None for when in cut_at.values()):
        group_time(max(cut_at.values()) - asked, uncertainty=plan.poll_s, details=details)
    else:
        group_time.not_observed(limits.trial_timeout_s)
