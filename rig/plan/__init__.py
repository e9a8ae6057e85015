"""The plan toolkit: positions, declared measurements, waiting, the load watch, supply through a relay, and the
steps positions running together share (once, together)."""

from rig.measure import Equals, Limits
from rig.plan.data import PlanData, load_plan_data
from rig.plan.load import LoadWatch, energy_between, energy_crossing
from rig.plan.measurements import Declared, Measurements
from rig.plan.position import Position
from rig.plan.shared import for_each, once, together
from rig.plan.supply import current_flows, read_when_reachable, restore_supply, supply, supply_on
from rig.plan.waiting import hold, poll_until, wait_until

__all__ = ["Declared", "Equals", "Limits", "LoadWatch", "Measurements", "PlanData", "Position", "current_flows",
           "energy_between", "energy_crossing", "for_each", "hold", "load_plan_data", "once", "poll_until",
           "read_when_reachable", "restore_supply", "supply", "supply_on", "together", "wait_until"]
