"""The fleet in local processes: two shard processes with disjoint meters obeying one control call, the shard
index from JOB_COMPLETION_INDEX, and the CLI's answer when the Ray engine is asked for without Ray."""

import asyncio
import sys

import pytest
from fleet_shard import read_energy_wh

from rig.cli import main
from rig.errors import ConfigError
from rig.fleet.local import LocalFleet, split_meters
from rig.fleet.model import FleetLayout, keys_of_system_title, read_fleet_secret
from rig.fleet.process import shard_index_from
from rig.fleet.push import PushListener


def test_two_shards_have_disjoint_meters_and_obey_one_control_call():
    async def scenario():
        secret = read_fleet_secret()  # the shards' default: benches/sim-fleet-secret
        listener = PushListener(lambda title: keys_of_system_title(secret, title))
        push_port = await listener.start()
        fleet = LocalFleet(40, 2, port=0, push=f"127.0.0.1:{push_port}", time_scale=3600.0)
        try:
            await fleet.start()
            meters = await fleet.meters()
            off = await fleet.mains_off(fraction=0.5, jitter_s=0.1)
            metrics = await fleet.metrics()
            on = await fleet.mains_on()
            energy = await asyncio.to_thread(read_energy_wh, meters[-1])
            states = await fleet.states()
        finally:
            await fleet.stop()
            await listener.stop()
        return fleet, meters, off, metrics, on, energy, states, listener

    fleet, meters, off, metrics, on, energy, states, listener = asyncio.run(scenario())
    serials = [meter["serial"] for meter in meters]
    assert len(serials) == 40 and len(set(serials)) == 40
    assert serials[:20] == [f"F000{index:05d}" for index in range(20)]
    assert serials[20:] == [f"F001{index:05d}" for index in range(20)]
    assert len({meter["endpoint"].rsplit(":", 1)[0] for meter in meters}) == 40
    assert [result["switched"] for result in off] == [10, 10]
    assert {serial[:4] for result in off for serial in result["serials"]} == {"F000", "F001"}
    assert metrics["meters"] == 40 and metrics["mains_on"] == 20
    assert [shard["mains_on"] for shard in metrics["shards"]] == [10, 10]
    assert metrics["pushes_sent"] == 20
    assert [result["switched"] for result in on] == [10, 10]
    assert 0 < energy <= next(state["energy_wh"] for state in states if state["serial"] == serials[-1])
    assert all(state["mains_on"] for state in states)
    events = sorted((item.notification.event, item.notification.serial) for item in listener.received)
    switched = sorted(serial for result in off for serial in result["serials"])
    assert events == [("power_down", serial) for serial in switched] + [("power_up", serial) for serial in switched]
    assert not listener.errors
    assert fleet.processes == []


def test_shard_index_from_the_option_or_the_indexed_job():
    assert shard_index_from(4, {"JOB_COMPLETION_INDEX": "2"}) == 4
    assert shard_index_from(None, {"JOB_COMPLETION_INDEX": "2"}) == 2
    with pytest.raises(ConfigError, match="JOB_COMPLETION_INDEX"):
        shard_index_from(None, {})
    with pytest.raises(ConfigError, match="'two' is not a number"):
        shard_index_from(None, {"JOB_COMPLETION_INDEX": "two"})


def test_layout_spreads_meters_over_loopback_aliases():
    layout = FleetLayout(shard_index=1, shard_count=3, meters_per_shard=62_500)
    assert layout.host(0) == "127.11.0.1"  # fleet meter 62,500: the next second octet
    assert layout.host(249) == "127.11.0.250" and layout.host(250) == "127.11.1.1"
    assert layout.serial(42) == "F00100042"
    with pytest.raises(ConfigError, match="shard index 3 is outside 0..2"):
        FleetLayout(3, 3, 10)
    assert split_meters(10_000, 3) == 3334


def test_without_ray_the_ray_engine_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: importing it fails
    assert main(["fleet", "serve", "--meters", "10", "--engine", "ray"]) == 2
    error = capsys.readouterr().err
    assert "needs Ray, which is not installed" in error and "pip install '.[fleet]'" in error
    assert "--engine local" in error
