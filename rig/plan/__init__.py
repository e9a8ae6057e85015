"""The plan toolkit: positions, declared measurements, waiting, the load watch, supply through a relay."""

from rig.measure import Equals, Limits
from rig.plan.data import PlanData, load_plan_data
from rig.plan.load import LoadWatch, energy_between, energy_crossing
from rig.plan.measurements import Declared, Measurements
from rig.plan.position import Position
from rig.plan.supply import current_flows, read_when_reachable, restore_supply, supply
from rig.plan.waiting import poll_until, wait_until

__all__ = ["Declared", "Equals", "Limits", "LoadWatch", "Measurements", "PlanData", "Position", "current_flows",
           "energy_between", "energy_crossing", "load_plan_data", "poll_until", "read_when_reachable",
           "restore_supply", "supply", "wait_until"]
