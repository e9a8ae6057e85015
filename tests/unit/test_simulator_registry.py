"""Simulators are registered as drivers are, through entry points (group 'rig.simulators'); a bench role whose
driver has no simulator is refused by the twin, naming the role and driver."""

import pytest
from plan_runner import SIM_BENCH

from rig.config import bench_roles, load_bench
from rig.errors import ConfigError
from rig.sim import twin
from rig.sim.cover_switch import CoverSwitchSim
from rig.sim.dlms.meter import DlmsMeterSim
from rig.sim.hes.api import HesSim


def test_every_driver_of_the_sim_bench_has_a_registered_simulator():
    bench = load_bench(SIM_BENCH).config
    assert set(twin.simulated_roles(bench)) == set(bench_roles(bench))
    assert twin.simulator_class("dlms_meter") is DlmsMeterSim
    assert twin.simulator_class("hes_http") is HesSim
    assert twin.simulator_class("cover_switch") is CoverSwitchSim


def test_a_driver_without_a_simulator_is_a_config_error(monkeypatch):
    simulators = {name: entry for name, entry in twin.available_simulators().items() if name != "rcdat"}
    monkeypatch.setattr(twin, "available_simulators", lambda: simulators)
    with pytest.raises(ConfigError, match=r"^attenuator@1: driver 'rcdat' has no simulator, so the twin cannot serve "
                                          r"it \(simulators registered under the entry-point group 'rig.simulators': "
                                          r"adam6051, at_modem, .*\)$"):
        twin.simulated_roles(load_bench(SIM_BENCH).config)
