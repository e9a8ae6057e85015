"""The Chroma 63800 load driver against the twin's load on position 1; the model and its truth as the judge.

The twin runs in this process on an event loop in a background thread, so a test can switch a meter's relay
in the model at an instant of its choosing and compare what the rig detects with the truth file.
"""

import random
import socket
import time

import pytest
from twin_thread import OpenBenchOnTwin

from rig.errors import InstrumentError, SetpointRefused
from rig.sim.truth import read_truth
from rig.timing import CurrentWatcher

NOISE_A = 0.02  # a few sigma of the simulated load's current noise (0.002 A)


def add_load(data):
    data["positions"][0]["load"] = {"driver": "chroma63800", "resource": "TCPIP0::127.0.0.1::0::SOCKET"}


class InProcessTwin(OpenBenchOnTwin):
    """The twin on its own event loop thread; the rig's bench opened against it."""

    def __init__(self, folder):
        super().__init__(folder, edit=add_load)



@pytest.fixture
def twin(tmp_path):
    twin = InProcessTwin(tmp_path)
    yield twin
    twin.close()


def supply_on(twin, voltage_v=240.0):
    source = twin.bench["source"]
    source.set_voltage(voltage_v)
    source.set_output(True)


def load_on(twin, mode="CURR", level=5.0):
    load = twin.bench["load@1"]
    load.set_mode(mode)
    load.set_level(level)
    load.set_input(True)
    return load


def true_energy_wh(twin, position):
    def now():
        twin.model.now()
        return twin.model.meter(position).true_energy_wh
    return twin.call(now)


def test_identity_and_instrument_habits(twin):
    load = twin.bench["load@1"]
    assert twin.bench.identities["load@1"].raw == "Chroma ATE,63803,SIM63803-0001,1.20"
    assert load.query("LOAD:MODE POW;:POW:STAT:L1 1200;:MODE?;:POWER:STATIC?") == "POW;1200.0000"
    with pytest.raises(SetpointRefused, match=r"current 37 A refused: above 36 A, the rating of the chroma63800 "
                                              r"instrument \(in 'CURR 37'; nothing sent\)"):
        load.command("CURR 37")
    with pytest.raises(InstrumentError, match=r"refused 'RES 20000': -222,\"Data out of range"):
        load.command("RES 20000")
    with pytest.raises(InstrumentError, match=r"refused 'MODE RLC': -224"):
        load.command("MODE RLC")
    load.command("LOAD ON")
    load.command("*RST")
    assert (load.input_enabled(), load.mode(), load.level("CURR")) == (False, "CURR", 0.0)
    last = twin.truth("load")[-1]
    assert (last["position"], last["on"], last["mode"], last["setpoint"], last["by"]) == (
        1, False, "CURR", 0.0, "load@1 *RST")


def test_load_draws_current_through_its_meter_only_with_the_relay_closed_and_the_supply_on(twin):
    meter1, meter2 = twin.bench["meter@1"], twin.bench["meter@2"]
    load = load_on(twin)
    assert load.measure_current() < NOISE_A  # no supply yet
    assert meter1.read_instantaneous()["current_a"] == 0.0
    supply_on(twin)
    assert load.measure_current() == pytest.approx(5.0, abs=NOISE_A)
    assert load.measure_voltage() == pytest.approx(240.0, abs=0.2)
    assert load.measure_power() == pytest.approx(1200.0, abs=240 * NOISE_A)
    assert meter1.read_instantaneous()["current_a"] == pytest.approx(5.0, rel=1e-6)
    assert meter2.read_instantaneous()["current_a"] == 0.0  # the load path runs through meter 1 only
    kwh_before, wh_before = meter1.read_energy_import_kwh(), true_energy_wh(twin, 1)
    time.sleep(0.5)
    kwh_after, wh_after = meter1.read_energy_import_kwh(), true_energy_wh(twin, 1)
    assert kwh_after > kwh_before
    assert (wh_after - wh_before) * 3600 == pytest.approx(1200 * 0.5, rel=0.3)  # about half a second at 1200 W
    assert true_energy_wh(twin, 2) == 0.0

    twin.call(twin.model.set_relay, 1, False, "test")
    assert load.measure_current() < NOISE_A
    assert load.measure_voltage() < 0.2  # its terminals are cut off with the relay
    assert meter1.read_instantaneous()["current_a"] == 0.0
    opened_at = true_energy_wh(twin, 1)
    time.sleep(0.2)
    assert true_energy_wh(twin, 1) == opened_at

    twin.call(twin.model.set_relay, 1, True, "test")
    assert load.measure_current() == pytest.approx(5.0, abs=NOISE_A)
    for mode, level in (("POW", 1200.0), ("RES", 48.0)):
        load.set_mode(mode)
        load.set_level(level)
        assert load.measure_current() == pytest.approx(5.0, abs=NOISE_A)
    twin.bench["source"].set_output(False)
    assert load.measure_current() < NOISE_A


def test_make_safe_leaves_the_load_off_before_the_supply(twin):
    load_on(twin)
    supply_on(twin)
    assert twin.bench["load@1"].measure_current() == pytest.approx(5.0, abs=NOISE_A)
    actions = {action["role"]: action for action in twin.bench.make_safe("test")}
    assert (actions["load@1"]["status"], actions["load@1"]["done"]) == ("ok", ["input OFF (confirmed by LOAD?)"])
    truth = read_truth(twin.truth_path)
    loads = [e for e in truth if e["event"] == "load" and e["position"] == 1]
    assert (loads[-1]["on"], loads[-1]["by"]) == (False, "load@1")
    load_off = truth.index(loads[-1])
    supply_off = max(i for i, e in enumerate(truth) if e["event"] == "source.output" and e["on"] is False)
    assert load_off < supply_off  # roles are made safe in reverse order: the position's load first
    assert twin.call(lambda: twin.model.meter(1).load.on) is False


def test_watcher_detects_relay_switching_in_the_model_within_its_uncertainty(twin):
    load = load_on(twin)
    supply_on(twin)
    rng = random.Random(7)
    detected = []
    with CurrentWatcher.for_load(load, poll_s=0.01) as watcher:
        for closed, condition in [(False, "falls_below"), (True, "rises_above")] * 3:
            time.sleep(rng.uniform(0.03, 0.08))
            twin.loop.call_soon_threadsafe(twin.model.set_relay, 1, closed, "test")
            detected.append(watcher.wait_for(condition, 2.5, timeout_s=2.0))
    assert watcher.error is None
    relays = twin.truth("relay")
    assert [(e["position"], e["closed"]) for e in relays] == [(1, False), (1, True)] * 3
    for event, truth in zip(detected, relays, strict=True):
        assert abs(event.t_mono - truth["t_mono"]) <= event.uncertainty_s
        assert event.uncertainty_s < 0.05
    samples = watcher.samples
    watched_s = samples[-1].t_mono - samples[0].t_mono
    assert len(samples) > 0.5 * watched_s / 0.01, f"{len(samples)} readings in {watched_s:.3f} s"  # polled ~10 ms


def test_over_current_protection_switches_the_input_off(twin):
    load = twin.bench["load@1"]
    supply_on(twin)
    host, port = load.address.split("::")[1:3]
    with socket.create_connection((host, int(port)), timeout=5) as raw:  # 48 A at 240 V: the driver refuses it
        raw.sendall(b"MODE RES;:RES 5;:LOAD ON;:SYST:ERR?\n")
        assert raw.makefile().readline().strip() == '0,"No error"'
    assert load.input_enabled() is False
    last = twin.truth("load")[-1]
    assert (last["on"], last["by"]) == (False, "load@1 OCP")
    assert load.measure_current() < NOISE_A
