"""The twin HES with a fleet: bulk registration, the read scheduler, commands across an outage, the push listener and
the fleet defects, over the HES's HTTP API (drivers/hes.py) with real DLMS meters on loopback aliases.

The meters here are the bench's twin DLMS meter (rig/sim/dlms/meter.py) with fleet serials and the keys the fleet
secret gives them (rig/fleet/model.py meter_keys), each on an address of its own (127.0.200.n), in a model of
their own (their truth file is the judge of what reached them); with `powered_by_source` and no battery reading
their data port goes silent with the model's source off (mains off). Pushes come from a test client using
rig/fleet/push.py's encoder. The HES clock starts on a Tuesday at 12:00 (no no-disconnection window).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from plan_runner import free_port, write_bench
from twin_thread import TwinOnThread

from drivers.hes import HesClient, HesHttpError
from rig.config import RoleConfig, load_bench
from rig.driver import SetpointLimits
from rig.fleet.model import meter_keys, read_fleet_secret, serial_of, system_title_of
from rig.fleet.push import EVENT_CODES, Notification, encode_frame
from rig.prepaid import POLICY_DIR
from rig.roles.headend import FleetMeterSpec
from rig.sim.defects import Defects, LinkDefects
from rig.sim.dlms.meter import DlmsMeterSim
from rig.sim.link import LinkSettings, RadioLink
from rig.sim.model import PhysicalModel, SimMeter
from rig.sim.truth import TruthLog, read_truth
from rig.transcript import Transcript

ROOT = Path(__file__).resolve().parents[2]
SECRET_FILE = ROOT / "benches" / "sim-fleet-secret"
SECRET = read_fleet_secret(SECRET_FILE)
START = "2026-03-10T12:00:00+05:30"  # a Tuesday, no holiday
TOKENS = {"rig": "tok-fleet-rig-0001", "supervisor": "tok-fleet-supervisor-0001"}
TEST_SHARD = 990  # serials F990nnnnn: no shard of a test fleet uses this index


def policy_data() -> dict:
    data = yaml.safe_load((POLICY_DIR / "uppcl.yaml").read_text())
    return {**data, "tariff_per_kwh": 10.0}


class FleetHes(TwinOnThread):
    """The twin HES (source role beside it) on its own event loop thread, with the fleet secret as its bench secret,
    two administrators and an HesClient acting as 'rig'."""

    def __init__(self, folder: Path, hes_defects: dict | None = None, **settings):
        folder.mkdir(parents=True, exist_ok=True)
        hes = {"policy": policy_data(), "read_interval_s": 3600.0, "opening_balance": 100.0, "start_local_time": START,
               "operators": {"rig": "administrator", "supervisor": "administrator"}, "approval_above_meters": 1000,
               "dlms_deadline_s": 1.0, **{f"token_{name}": token for name, token in TOKENS.items()}, **settings}

        def edit(data):
            data["twin"]["autostart"] = False
            data["roles"]["hes"] = {"driver": "hes_http", "resource": "http://127.0.0.1:0", "timeout_s": 10,
                                    "secrets": {"fleet_secret": {"file": str(SECRET_FILE)}}}
            data["twin"]["instruments"]["hes"] = hes

        self.folder = folder
        self.truth_path = folder / "truth.jsonl"
        self.start_twin(load_bench(write_bench(folder, only_roles=("source",), edit=edit)), self.truth_path,
                        Defects(hes=hes_defects or {}))
        self.sim = self.twin.instruments["hes"]
        self.transcript = Transcript(folder / "transcript.jsonl")
        config = RoleConfig(driver="hes_http", resource=self.resources["hes"], timeout_s=20,
                            settings={"operator": "rig", "operators": {"rig": "administrator",
                                                                       "supervisor": "administrator"}})
        self.client = HesClient("hes", config, SetpointLimits(), self.transcript,
                                {f"token_{name}": token for name, token in TOKENS.items()})
        self.client.open()
        self.meters: LoopbackMeters | None = None

    def serve_meters(self, count: int, **settings) -> LoopbackMeters:
        self.meters = LoopbackMeters(self.folder, count, **settings)
        self.run(self.meters.start())
        return self.meters

    def register(self, balances: list[Decimal | int], **tags) -> list[str]:
        """Register the loopback meters, meter i with opening balance balances[i]; their serials."""
        specs = [FleetMeterSpec(serial, endpoint, Decimal(balance), **tags)
                 for (serial, endpoint), balance in zip(self.meters.endpoints.items(), balances, strict=True)]
        assert self.client.register_fleet_meters(specs) == len(specs)
        return [spec.serial for spec in specs]

    def push(self, events: list[tuple[str, str]], counter_base: int | None = None) -> None:
        """Send (serial, event) pushes to the HES's push port, one connection per meter as a meter does."""
        host, port = self.client.push_endpoint()
        base = counter_base or int(time.time())
        for index, (serial, event) in enumerate(events):
            frame = push_frame(serial, event, base + index)
            with socket.create_connection((host, port), timeout=5) as connection:
                connection.sendall(frame)

    def wait_until(self, predicate, what: str, timeout_s: float = 15.0, poll_s: float = 0.1):
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout_s} s: {what}")
            time.sleep(poll_s)

    def truth(self, name: str) -> list[dict]:
        return [e for e in read_truth(self.truth_path) if e["event"] == name]

    def close(self) -> None:
        self.client.close()
        if self.meters is not None:
            self.run(self.sim.stop())  # the HES's associations closed first: the meters' handlers see them end
            self.run(self.meters.stop())
            self.run(asyncio.sleep(0.1))
        self.stop_twin()
        self.transcript.close()


def push_frame(serial: str, event: str, counter: int, keys: tuple[bytes, bytes] | None = None,
               control_state: int = 1) -> bytes:
    now = time.time()
    notification = Notification(serial, EVENT_CODES[event], now, control_state, 1234, counter % 2**24, now)
    return encode_frame(notification, system_title_of(serial), keys or meter_keys(SECRET, serial), counter)


class TimedMeter(DlmsMeterSim):
    """The twin DLMS meter, noting when its energy register is read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_at: list[float] = []

    def energy_wh(self) -> float:
        self.read_at.append(time.monotonic())
        return super().energy_wh()


class LoopbackMeters:
    """`count` twin DLMS meters with fleet serials and keys, meter n on 127.0.200.n, in a model of their own."""

    def __init__(self, folder: Path, count: int, **settings):
        self.truth_path = folder / "meters-truth.jsonl"
        truth = TruthLog(self.truth_path)
        meters = [SimMeter(n, serial_of(TEST_SHARD, n), 240.0, 10.0, 5.0, 1e6) for n in range(1, count + 1)]
        self.model = PhysicalModel(truth=truth, rng=random.Random(1), meters=meters)
        for meter in meters:
            self.model.radios[meter.position] = RadioLink(meter.position, LinkSettings(), LinkDefects(), truth,
                                                          random.Random(meter.position), self.model.clock)
        self.model.set_source_voltage(240.0, by="test")
        self.model.set_source_output(True, by="test")
        self.sims: dict[str, TimedMeter] = {}
        for meter in meters:
            encryption, authentication = meter_keys(SECRET, meter.serial)
            self.sims[meter.serial] = TimedMeter(
                f"meter@{meter.position}", self.model,
                {"encryption_key": encryption.hex(), "authentication_key": authentication.hex(),
                 "powered_by_source": True, "battery_reading": False, "boot_s": 0, "state_dir": str(folder),
                 **settings})
        self.endpoints: dict[str, str] = {}

    async def start(self) -> None:
        for serial, sim in self.sims.items():
            host = f"127.0.200.{sim.position}"
            self.endpoints[serial] = f"tcp://{host}:{await sim.start(host, 0)}"

    async def stop(self) -> None:
        for sim in self.sims.values():
            await sim.stop()

    def mains(self, on: bool) -> None:
        self.model.set_source_output(on, by="test mains")

    def truth(self, name: str) -> list[dict]:
        return [e for e in read_truth(self.truth_path) if e["event"] == name]

    def remote_commands(self) -> Counter:
        """(serial, trigger) of every disconnect control command that reached a meter."""
        serial_at = {sim.position: serial for serial, sim in self.sims.items()}
        return Counter((serial_at[e["position"]], e["trigger"]) for e in self.truth("disconnect_control"))


@pytest.fixture
def start_hes(tmp_path):
    started: list[FleetHes] = []

    def start(**kwargs) -> FleetHes:
        hes = FleetHes(tmp_path / f"hes{len(started)}", **kwargs)
        started.append(hes)
        return hes

    yield start
    for hes in started:
        hes.close()


# -- registry ----------------------------------------------------------------------------------------------------


def test_two_thousand_meters_register_in_bulk_list_by_page_and_take_a_group_disconnect(start_hes):
    hes = start_hes(read_interval_s=36000.0, approval_above_meters=10)  # one read every 18 s: none is judged yet
    closed = free_port()
    specs = [FleetMeterSpec(serial_of(991, i), f"tcp://127.0.201.{i % 250 + 1}:{closed}",
                            Decimal("0.00") if i % 3 == 1 else Decimal(50 + i % 7), f"G{i % 4}", f"F{i % 10}")
             for i in range(2000)]
    t0 = time.perf_counter()
    registered = hes.client.register_fleet_meters(specs)
    registered_s = time.perf_counter() - t0
    assert registered == 2000
    status = hes.client.status()
    assert (status["fleet_meters"], status["accounts"]) == (2000, 2003)  # beside the bench's 3 positions

    page = hes.client.request("GET", "/fleet/meters", params={"offset": 100, "limit": 50})
    assert (page["total"], page["offset"], page["limit"], len(page["meters"])) == (2000, 100, 50, 50)
    first = page["meters"][0]
    assert (first["account"], first["balance"], first["group"], first["feeder"], first["endpoint"]) == \
        (specs[100].serial, "0.00", "G0", "F0", specs[100].endpoint)
    assert first["position"] is None and first["supply"] == "connected"
    t0 = time.perf_counter()
    listed = hes.client.fleet_meters()
    listed_s = time.perf_counter() - t0
    assert [m["account"] for m in listed] == [spec.serial for spec in specs]
    assert len(hes.client.fleet_meters(group="G1")) == 500
    assert len(hes.client.fleet_meters(feeder="F3", group="G1")) == 100

    with pytest.raises(HesHttpError) as again:
        hes.client.register_fleet_meters([FleetMeterSpec("F99900001", f"tcp://127.0.0.1:{closed}"), specs[5]])
    assert again.value.status == 409 and specs[5].serial in str(again.value)
    with pytest.raises(HesHttpError) as wrong:
        hes.client.request("POST", "/fleet/meters", {"meters": [{"serial": "F99900001", "endpoint": "tcp://x:1"},
                                                                {"serial": "F99900002", "endpoint": "udp://x:1"}]})
    assert wrong.value.status == 422 and "meters.1.endpoint" in str(wrong.value)
    assert hes.client.status()["fleet_meters"] == 2000  # all or nothing

    t0 = time.perf_counter()
    group = hes.client.group_command("disconnect", [spec.serial for spec in specs], reason="arrears drive")
    asked_s = time.perf_counter() - t0
    assert group.status == "awaiting_approval" and len(group.held) == 667
    assert len(group.refused) == 1333 and all("balance" in why for why in group.refused.values())
    t0 = time.perf_counter()
    with hes.client.as_operator("supervisor") as supervisor:
        approved = supervisor.approve_group(group.id)
    approved_s = time.perf_counter() - t0
    assert len(approved.commands) == 667
    assert {c.account for c in approved.commands} == {s.serial for i, s in enumerate(specs) if i % 3 == 1}
    print(f"\nfleet registry: 2000 meters registered in {registered_s:.3f} s, listed in {listed_s:.3f} s; "
          f"group disconnect of 2000 accounts judged in {asked_s:.3f} s, approved (667 queued) in {approved_s:.3f} s")


# -- read scheduler ----------------------------------------------------------------------------------------------


def test_the_scheduler_reads_each_meter_once_per_interval_spread_over_it(start_hes):
    interval_s, count = 2.0, 40
    hes = start_hes(read_interval_s=interval_s)
    meters = hes.serve_meters(count)
    serials = hes.register([100] * count)
    hes.wait_until(lambda: all(meters.sims[s].read_at for s in serials), "every meter read once", 2 * interval_s)
    time.sleep(2.5 * interval_s)
    reads = [meters.sims[serial].read_at for serial in serials]
    gaps = [later - earlier for times in reads for earlier, later in zip(times, times[1:], strict=False)]
    origin = reads[0][1]
    phases = [((times[1] - origin) % interval_s) / interval_s for times in reads]  # each meter's in the interval
    tenths = Counter(min(int(10 * phase), 9) for phase in phases)
    print(f"\nread phases per tenth of the interval: {[tenths[k] for k in range(10)]}; "
          f"gaps between a meter's reads {min(gaps):.3f}..{max(gaps):.3f} s")
    assert all(len(times) >= 3 for times in reads)
    # once per interval, no bunching: a read a busy machine delays shortens the gap to the next one, not the mean
    assert all(0.5 * interval_s < gap < 1.5 * interval_s for gap in gaps)
    assert 0.9 * interval_s < sum(gaps) / len(gaps) < 1.1 * interval_s
    assert all(1 <= tenths[k] <= 8 for k in range(10))  # 4 per tenth when spread evenly, not all at once
    metrics = hes.client.fleet_metrics()
    assert metrics["reads"]["failed"] == 0 and metrics["reads"]["done"] >= 3 * count
    assert metrics["exchanges"]["peak_in_flight"] < count / 4  # spread: a few at a time, never all


# -- commands across an outage -----------------------------------------------------------------------------------


def test_commands_queued_during_an_outage_execute_once_when_the_meters_return(start_hes):
    hes = start_hes(read_interval_s=1.0)
    meters = hes.serve_meters(10)
    serials = hes.register([100] * 10)
    hes.wait_until(lambda: all(a["last_read"] for a in hes.client.fleet_meters()), "every meter read", 5)

    meters.mains(False)
    hes.push([(serial, "power_down") for serial in serials])
    hes.wait_until(lambda: not any(m["reachable"] for m in hes.client.fleet_meters()), "every meter unreachable")
    cut = serials[:5]
    for serial in cut:
        hes.client.adjust_balance(serial, "-150.00", "arrears")  # exhausted: the HES queues the disconnect
    time.sleep(2.5)  # reads keep failing meanwhile
    pending = [hes.client.pending_command(serial) for serial in cut]
    assert all(c is not None and c.status == "queued" and c.attempts == 0 for c in pending)
    assert not meters.remote_commands()

    meters.mains(True)
    hes.push([(serial, "power_up") for serial in serials], counter_base=int(time.time()) + 100)
    done = [hes.client.wait_for_command(c.id, timeout_s=10) for c in pending]
    assert [(c.status, c.attempts) for c in done] == [("executed", 1)] * 5
    time.sleep(2.0)  # a few more read rounds: nothing is sent again
    assert meters.remote_commands() == {(serial, "remote_disconnect"): 1 for serial in cut}
    opened = [e["position"] for e in meters.truth("relay") if not e["closed"]]
    assert sorted(opened) == [meters.sims[s].position for s in cut]
    assert [hes.client.account(s).supply for s in serials] == ["disconnected"] * 5 + ["connected"] * 5
    pushes = [e["event"] for e in hes.client.events(account=serials[7]) if e["type"] == "push"]
    assert pushes == ["power_down", "power_up"]
    assert hes.client.fleet_meters()[7]["mains"] == "on"


# -- push listener -----------------------------------------------------------------------------------------------


def test_the_push_listener_records_each_meters_notifications_and_refuses_what_it_cannot_trust(start_hes):
    hes = start_hes()
    closed = free_port()
    serials = [serial_of(TEST_SHARD, n) for n in (1, 2, 3)]
    hes.client.register_fleet_meters([FleetMeterSpec(s, f"tcp://127.0.202.1:{closed}") for s in serials])
    host, port = hes.client.push_endpoint()
    assert (host, port) == ("127.0.0.1", hes.client.status()["push_port"]) and port > 0

    base = int(time.time())
    socket.create_connection((host, port), timeout=5).close()  # a connection closed without a frame is no push
    with socket.create_connection((host, port), timeout=5) as one:  # one connection, several frames
        one.sendall(push_frame(serials[0], "power_down", base) + push_frame(serials[0], "power_up", base + 1))
    with socket.create_connection((host, port), timeout=5) as other:
        other.sendall(push_frame(serials[1], "relay_disconnected", base, control_state=0))
    refused = [push_frame(serials[2], "power_down", base, keys=(bytes(16), bytes(16))),  # wrong keys
               push_frame(serials[0], "power_up", base + 1),  # a replay of an accepted counter
               push_frame(serial_of(TEST_SHARD, 9), "power_down", base)]  # a meter the HES does not hold
    for frame in refused:
        with socket.create_connection((host, port), timeout=5) as connection:
            connection.sendall(frame)

    hes.wait_until(lambda: hes.client.fleet_metrics()["pushes"]["refused"] == 3, "three pushes refused")
    metrics = hes.client.fleet_metrics()
    assert metrics["pushes"]["accepted"] == {"power_down": 1, "power_up": 1, "relay_disconnected": 1}
    events = [(e["account"], e["event"], e["event_code"]) for e in hes.client.events() if e["type"] == "push"]
    assert events == [(serials[0], "power_down", 101), (serials[0], "power_up", 102),
                      (serials[1], "relay_disconnected", 301)]
    reasons = [e["reason"] for e in hes.client.events() if e["type"] == "push_refused"]
    assert "tag" in reasons[0] or "authentic" in reasons[0] or "decipher" in reasons[0], reasons[0]
    assert "replay" in reasons[1] and "unknown system title" in reasons[2]
    listed = {m["account"]: m for m in hes.client.fleet_meters()}
    assert listed[serials[0]]["mains"] == "on" and listed[serials[1]]["meter_relay"] == "disconnected"
    assert listed[serials[0]]["last_push"]["event"] == "power_up"
    assert metrics["reads"]["failed"] >= 1  # power up: the HES read the meter again (its endpoint is closed)


# -- defects -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("defective", [False, True], ids=["sound", "batch_without_balance_check"])
def test_batch_without_balance_check_cuts_paying_consumers(start_hes, defective):
    hes = start_hes(hes_defects={"batch_without_balance_check": True} if defective else None, read_interval_s=60.0)
    meters = hes.serve_meters(6)
    serials = hes.register([100, 0, 100, 0, 100, 0])  # the first, read at once, pays; the rest wait 10 s each
    group = hes.client.group_command("disconnect", serials[1:])
    eligible = [serials[1], serials[3], serials[5]]
    expected = serials[1:] if defective else eligible
    assert sorted(c.account for c in group.commands) == sorted(expected)
    for command in group.commands:
        assert hes.client.wait_for_command(command.id, timeout_s=10).status == "executed"
    cut = {serial for serial, trigger in meters.remote_commands() if trigger == "remote_disconnect"}
    assert cut == set(expected)
    paying_cut = cut & {serials[2], serials[4]}
    assert bool(paying_cut) == defective


@pytest.mark.parametrize("defective", [False, True], ids=["sound", "storm_drops_commands_pct"])
def test_storm_drops_commands_pct_acknowledges_commands_it_never_sends(start_hes, defective):
    hes = start_hes(hes_defects={"storm_drops_commands_pct": 50} if defective else None, read_interval_s=60.0)
    meters = hes.serve_meters(30)
    serials = hes.register([100] + [0] * 29)  # one read every 2 s: the group goes before the reads judge them
    group = hes.client.group_command("disconnect", serials[1:])
    assert len(group.commands) == 29
    done = [hes.client.wait_for_command(c.id, timeout_s=15) for c in group.commands]
    assert {c.status for c in done} == {"executed"}  # as the HES reports them, either way
    reached = {serial for serial, trigger in meters.remote_commands() if trigger == "remote_disconnect"}
    dropped = hes.truth("hes.command_dropped")
    # commands 12..29 were queued with more than 10 pending (18 of them); half of those are dropped
    assert (len(reached), len(dropped)) == ((20, 9) if defective else (29, 0))
    assert reached.isdisjoint(e["account"] for e in dropped)


@pytest.mark.parametrize("defective", [False, True], ids=["sound", "reconnect_all_at_once"])
def test_reconnect_all_at_once_lifts_the_bound_on_concurrent_exchanges(start_hes, defective):
    bound = 4
    hes = start_hes(hes_defects={"reconnect_all_at_once": True} if defective else None, read_interval_s=60.0,
                    max_concurrent_exchanges=bound, fleet_link_latency_s=0.3)
    meters = hes.serve_meters(20)
    serials = hes.register([100] * 20)
    hes.wait_until(lambda: hes.client.fleet_metrics()["reads"]["done"] >= 1, "the first scheduled read")
    hes.client.reset_fleet_metrics()
    hes.push([(serial, "power_up") for serial in serials])  # restoration: every meter pushes at once
    hes.wait_until(lambda: hes.client.fleet_metrics()["reads"]["done"] >= 19, "the re-reads of power up")
    peak = hes.client.fleet_metrics()["exchanges"]["peak_in_flight"]
    assert (peak > bound) if defective else (peak <= bound), peak
    assert all(meters.sims[s].read_at for s in serials[1:])


# -- end to end with a fleet shard -------------------------------------------------------------------------------


def test_a_shard_of_fifty_meters_end_to_end(start_hes):
    """Register a 50-meter shard (rig/fleet/shard.py) pushing to the HES, read them all, a group disconnect with
    mixed balances (above the approval limit), mains off and on with recharges queued in the dark."""
    from rig.fleet.shard import FleetShard, ShardConfig

    hes = start_hes(read_interval_s=5.0, approval_above_meters=10)
    host, port = hes.client.push_endpoint()
    shard = FleetShard(ShardConfig(0, 1, 50, seed=7, port=0, secret_file=str(SECRET_FILE), push=f"{host}:{port}"))
    hes.run(shard.start())
    try:
        listed = hes.run(shard.meters())
        owing = {m["serial"] for i, m in enumerate(listed) if i % 2 == 1}
        specs = [FleetMeterSpec(m["serial"], f"tcp://{m['endpoint']}",
                                Decimal("0.00") if m["serial"] in owing else Decimal("500.00"), feeder="F1")
                 for m in listed]
        assert hes.client.register_fleet_meters(specs) == 50
        hes.wait_until(lambda: all(m["last_read"] for m in hes.client.fleet_meters()), "all 50 read", 15)

        group = hes.client.group_command("disconnect", [spec.serial for spec in specs])
        assert not set(group.held) - owing  # the HES holds only the owing; some it cut itself already
        if group.awaiting_approval:
            with hes.client.as_operator("supervisor") as supervisor:
                supervisor.approve_group(group.id)

        def control_states() -> dict[str, int]:
            return {state["serial"]: state["control_state"] for state in hes.run(shard.states())}
        hes.wait_until(lambda: {s for s, c in control_states().items() if c == 0} == owing, "the owing cut", 15)
        hes.wait_until(lambda: not hes.client.fleet_metrics()["commands"]["pending"], "no command pending", 10)

        hes.run(shard.mains_off())
        hes.wait_until(lambda: all(m["mains"] == "off" for m in hes.client.fleet_meters()), "50 power downs")
        restored = sorted(owing)[:5]
        reconnects = [hes.client.recharge(serial, "200.00").reconnect for serial in restored]
        assert all(c is not None and c.status == "queued" for c in reconnects)
        time.sleep(1.0)
        assert [hes.client.command(c.id).attempts for c in reconnects] == [0] * 5  # waiting, not burning tries

        hes.run(shard.mains_on())
        done = [hes.client.wait_for_command(c.id, timeout_s=15) for c in reconnects]
        assert [(c.status, c.attempts) for c in done] == [("executed", 1)] * 5
        cut = owing - set(restored)
        hes.wait_until(lambda: {s for s, c in control_states().items() if c == 0} == cut, "5 restored", 10)
        fleet = {m["account"]: m for m in hes.client.fleet_meters()}
        states = control_states()
        assert {s: m["supply"] for s, m in fleet.items()} == \
            {s: "connected" if c == 1 else "disconnected" for s, c in states.items()}  # HES and meters agree
        assert all(fleet[s]["mains"] == "on" for s in fleet)
        assert all(fleet[s]["meter_relay"] == "connected" for s in restored)
        metrics = hes.client.fleet_metrics()
        assert metrics["pushes"]["accepted"]["power_down"] == 50 and metrics["pushes"]["accepted"]["power_up"] == 50
        assert metrics["pushes"]["refused"] == 0
    finally:
        hes.run(hes.sim.stop())
        hes.run(shard.stop())
