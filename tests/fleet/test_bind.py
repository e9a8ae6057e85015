"""Meters bound to one address (`--bind node` or an IPv4 address) instead of loopback aliases: one port per meter
from the shard's port base, shards sharing an address on ranges that do not overlap, every endpoint answering a
DLMS association (dlms-cosem, a client independent of the shard), and the bind's errors."""

import asyncio

import pytest
from fleet_shard import SERIAL, endpoint, read_energy_wh, reader_client

from rig.cli import main
from rig.errors import ConfigError
from rig.fleet.local import LocalFleet, shard_command
from rig.fleet.model import FleetLayout, check_bind
from rig.fleet.shard import ShardConfig, free_port_run, spread_port_bases

METERS = 50


def answers_association(meter: dict) -> bytes:
    with reader_client(meter).session() as client:
        return client.get(SERIAL)


def test_a_shard_bound_to_one_address_serves_each_meter_on_its_own_port(shard_on_thread):
    base = free_port_run("127.0.0.1", METERS)
    served = shard_on_thread(shard_index=2, shard_count=4, meters_per_shard=METERS, bind="127.0.0.1", port=base)
    meters = served.run(served.shard.meters())
    assert [endpoint(meter) for meter in meters] == [("127.0.0.1", base + index) for index in range(METERS)]
    assert meters[0]["serial"] == "F00200000" and meters[-1]["serial"] == f"F002{METERS - 1:05d}"
    for meter in meters:  # every port: its own meter, LLS association and a GET
        assert answers_association(meter) == b"\x0a\x09" + meter["serial"].encode()

    served.run(served.shard.mains_off(fraction=1.0))
    served.run(served.shard.mains_on())
    assert served.run(served.shard.meters()) == meters  # listening again on the same ports
    assert read_energy_wh(meters[-1]) > 0


def test_local_shards_on_one_address_take_consecutive_port_ranges():
    async def scenario():
        fleet = LocalFleet(20, 2, port=0, bind="127.0.0.1")
        try:
            ready = await fleet.start()
            meters = await fleet.meters()
            answers = await asyncio.to_thread(lambda: [answers_association(meter) for meter in meters])
        finally:
            await fleet.stop()
        return fleet, ready, meters, answers

    fleet, ready, meters, answers = asyncio.run(scenario())
    base = fleet.configs[0].port
    assert [config.port for config in fleet.configs] == [base, base + 10]
    assert [endpoint(meter) for meter in meters] == [("127.0.0.1", base + index) for index in range(20)]
    assert [line["first"] for line in ready] == [f"F00000000 127.0.0.1:{base}", f"F00100000 127.0.0.1:{base + 10}"]
    assert answers == [b"\x0a\x09" + meter["serial"].encode() for meter in meters]


def test_bind_node_takes_the_given_host_and_shard_ports_do_not_overlap():
    configs = [ShardConfig(index, 3, 1000, bind="node", host="10.1.2.3") for index in range(3)]
    placed = spread_port_bases(configs, [0, 1, 0], 20_000)  # shards 0 and 2 on one node, shard 1 on another
    assert [config.port for config in placed] == [20_000, 21_000, 20_000]
    layout = placed[1].layout()
    assert (layout.host(0), layout.port_of(0), layout.port_of(999)) == ("10.1.2.3", 21_000, 21_999)
    assert placed[1].layout("10.9.9.9").host(5) == "10.1.2.3"  # the given host wins over the node's address
    assert ShardConfig(0, 1, 10, bind="node").layout("10.9.9.9").host(5) == "10.9.9.9"
    loopback = FleetLayout(1, 3, 10, port=4059)
    assert (loopback.host(0), loopback.port_of(0), loopback.port_of(9)) == ("127.10.0.11", 4059, 4059)
    command = shard_command(placed[1])
    assert command[command.index("--bind") + 1] == "node" and command[command.index("--host") + 1] == "10.1.2.3"
    assert command[command.index("--port") + 1] == "21000"
    assert "--bind" not in shard_command(ShardConfig(0, 1, 10))


def test_bind_errors_name_the_value():
    assert check_bind(" 127.0.0.1".strip()) == "127.0.0.1"
    with pytest.raises(ConfigError, match=r"fleet bind 'eth0' is not loopback, node or an IPv4 address"):
        ShardConfig(0, 1, 10, bind="eth0")
    with pytest.raises(ConfigError, match=r"fleet bind '0\.0\.0\.0': meters need a unicast address"):
        ShardConfig(0, 1, 10, bind="0.0.0.0")
    with pytest.raises(ConfigError, match=r"fleet host 'node' is not an IPv4 address"):
        ShardConfig(0, 1, 10, bind="node", host="node")
    with pytest.raises(ConfigError, match=r"shard 1: 600 meters on 127\.0\.0\.1 from port 65000 go past port 65535"):
        ShardConfig(1, 2, 600, bind="127.0.0.1", port=65_000).layout()


def test_the_cli_refuses_a_bind_that_is_no_address(capsys):
    assert main(["fleet", "shard", "--shard-index", "0", "--shard-count", "1", "--meters-per-shard", "1",
                 "--bind", "everywhere"]) == 2
    assert "fleet bind 'everywhere' is not loopback, node or an IPv4 address" in capsys.readouterr().err
