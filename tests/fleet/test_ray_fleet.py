"""The fleet over Ray on a local Ray cluster: two shard actors whose meters answer DLMS reads (dlms-cosem, a client
independent of the shard) and obey one mains off/on call (a shard's refusal named), a shard actor whose worker is
killed coming back with its meters answering on the same endpoints, and meters bound on the node's IP. One Ray
cluster for the module, ended (and checked gone) after it, failed or not."""

import asyncio
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest
import ray
from fleet_shard import ENERGY, SERIAL, endpoint, read_energy_wh, reader_client

from rig.errors import RigError
from rig.fleet.model import keys_of_system_title, read_fleet_secret
from rig.fleet.push import PushListener
from rig.fleet.ray_engine import RayFleet

pytestmark = pytest.mark.xdist_group("ray")

CLUSTER_TIMEOUT_S = 30.0


def cluster_processes(temp_dir: str) -> list[str]:
    """Live (not zombie) processes whose command line names the cluster's session folder: its raylet, GCS
    server, log monitor..."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if temp_dir in command and state != "Z":
            found.append(f"{proc.name}: {command[:120]}")
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    temp_dir = tempfile.mkdtemp(prefix="rf-", dir="/tmp")  # short: Ray's socket paths must fit in 107 octets
    try:
        ray.init(num_cpus=2, include_dashboard=False, namespace="fleet-tests", logging_level="WARNING",
                 _temp_dir=temp_dir)
        assert cluster_processes(temp_dir), "the local Ray cluster's processes are not found by their folder"
        yield temp_dir
    finally:
        ray.shutdown()
        deadline = time.monotonic() + CLUSTER_TIMEOUT_S
        while (left := cluster_processes(temp_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left after shutdown: {left}"


def wait_until(predicate, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


def reads_energy(meter: dict) -> bool:
    try:
        return read_energy_wh(meter) > 0
    except Exception:  # noqa: BLE001 - refused, reset or timed out: not answering yet
        return False


def refused(meter: dict) -> bool:
    try:
        with socket.create_connection(endpoint(meter), timeout=2):
            return False
    except OSError:
        return True


def test_two_shard_actors_answer_dlms_and_obey_one_mains_call(ray_cluster):
    async def scenario():
        secret = read_fleet_secret()
        listener = PushListener(lambda title: keys_of_system_title(secret, title))
        push_port = await listener.start()
        fleet = RayFleet(100, 2, port=0, first_octet=62, push=f"127.0.0.1:{push_port}", time_scale=3600.0)
        try:
            ready = await fleet.start()
            meters = await fleet.meters()
            answers = await asyncio.to_thread(read_all, meters)
            with pytest.raises(RigError, match=r"^fleet shard 0: mains_off: mains_off: fraction 2\.0 must be"):
                await fleet.mains_off(fraction=2.0)
            with pytest.raises(RigError, match=r"^fleet shard 0: erase: unknown control method 'erase'"):
                await fleet.each("erase")
            off = await fleet.mains_off(fraction=1.0, jitter_s=0.2)
            dark = [await asyncio.to_thread(refused, meter) for meter in (meters[0], meters[-1])]
            metrics_off = await fleet.metrics()
            on = await fleet.mains_on(jitter_s=0.2)
            energy_after = [await asyncio.to_thread(read_energy_wh, meter) for meter in (meters[0], meters[-1])]
            deadline = time.monotonic() + 20
            while len(listener.received) < 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            metrics_on = await fleet.metrics()
        finally:
            await fleet.stop()
            await listener.stop()
        return ready, meters, answers, off, dark, metrics_off, on, energy_after, metrics_on, listener

    ready, meters, answers, off, dark, metrics_off, on, energy_after, metrics_on, listener = asyncio.run(scenario())
    assert [line["shard_index"] for line in ready] == [0, 1] and [line["meters"] for line in ready] == [50, 50]
    assert ready[0]["pid"] != ready[1]["pid"] and not any(line["restarted"] for line in ready)
    serials = [meter["serial"] for meter in meters]
    assert serials == [f"F000{index:05d}" for index in range(50)] + [f"F001{index:05d}" for index in range(50)]
    assert endpoint(meters[0])[0] == "127.62.0.1" and endpoint(meters[-1])[0] == "127.62.0.100"
    for meter, (serial, energy) in zip(meters, answers, strict=True):  # every meter of both shards answered
        assert serial == b"\x0a\x09" + meter["serial"].encode()
        assert energy[0] == 0x06 and int.from_bytes(energy[1:], "big") > 0

    assert [result["switched"] for result in off] == [50, 50]
    assert dark == [True, True]  # a meter of each shard: nothing listens with the mains off
    assert metrics_off["mains_on"] == 0 and [shard["mains_on"] for shard in metrics_off["shards"]] == [0, 0]
    assert [result["switched"] for result in on] == [50, 50]
    assert all(energy > 0 for energy in energy_after)
    assert metrics_on["mains_on"] == 100 and metrics_on["gets"] >= 102
    events = sorted((item.notification.event, item.notification.serial) for item in listener.received)
    assert events == [("power_down", serial) for serial in sorted(serials)] + [("power_up", serial)
                                                                             for serial in sorted(serials)]
    assert not listener.errors and metrics_on["pushes_sent"] == 200


def read_all(meters: list[dict]) -> list[tuple[bytes, bytes]]:
    answers = []
    for meter in meters:
        with reader_client(meter).session() as client:
            answers.append((client.get(SERIAL), client.get(ENERGY)))
    return answers


def test_a_killed_shard_actor_comes_back_and_its_meters_answer_again(ray_cluster):
    async def scenario():
        fleet = RayFleet(60, 2, port=0, first_octet=63)
        try:
            ready = await fleet.start()
            before = await fleet.meters()
            victim = [meter for meter in before if meter["serial"].startswith("F001")][:5]
            assert all([await asyncio.to_thread(reads_energy, meter) for meter in victim])
            os.kill(ready[1]["pid"], signal.SIGKILL)  # the shard's worker process dies, sockets and all
            await asyncio.to_thread(wait_until, lambda: not pid_alive(ready[1]["pid"]), "the worker gone", 10)
            metrics = await fleet.metrics()  # retried on the restarted actor
            for meter in victim:
                await asyncio.to_thread(wait_until, lambda meter=meter: reads_energy(meter),
                                        f"meter {meter['serial']} answering again", 60)
            again = await asyncio.to_thread(ray.get, fleet.actors[1].ready.remote(), timeout=30)
            survivor = await asyncio.to_thread(ray.get, fleet.actors[0].ready.remote(), timeout=30)
            after = await fleet.meters()
        finally:
            await fleet.stop()
        return ready, before, metrics, again, survivor, after

    ready, before, metrics, again, survivor, after = asyncio.run(scenario())
    assert again["restarted"] is True and again["pid"] != ready[1]["pid"]
    assert again["first"] == ready[1]["first"] and again["last"] == ready[1]["last"]  # same serials, endpoints
    assert survivor["pid"] == ready[0]["pid"] and survivor["restarted"] is False
    assert after == before
    assert [shard["meters"] for shard in metrics["shards"]] == [30, 30]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_bound_to_the_node_meters_answer_on_the_node_ip(ray_cluster):
    """bind "node": each shard actor binds its meters on its node's IP (this machine's interface address, not
    loopback), one port per meter, the two shards of the one node on consecutive ranges."""
    async def scenario():
        fleet = RayFleet(20, 2, port=0, bind="node")
        try:
            ready = await fleet.start()
            meters = await fleet.meters()
            answers = await asyncio.to_thread(read_all, meters)
        finally:
            await fleet.stop()
        return fleet, ready, meters, answers

    fleet, ready, meters, answers = asyncio.run(scenario())
    node_ip = ray.util.get_node_ip_address()
    assert not node_ip.startswith("127.")
    assert [line["node_ip"] for line in ready] == [node_ip, node_ip]
    base = fleet.configs[0].port
    assert [config.port for config in fleet.configs] == [base, base + 10]
    assert [endpoint(meter) for meter in meters] == [(node_ip, base + index) for index in range(20)]
    for meter, (serial, energy) in zip(meters, answers, strict=True):
        assert serial == b"\x0a\x09" + meter["serial"].encode()
        assert energy[0] == 0x06 and int.from_bytes(energy[1:], "big") > 0
