"""The rig's source driver against the twin over a real socket; the twin's truth as the judge."""

import time

import pytest
from plan_runner import bench_on_twin_process, write_bench
from scripted_peer import ScriptedScpiPeer, Step

from rig.bench import Bench
from rig.config import load_bench
from rig.errors import BenchBroken, InstrumentError, SetpointRefused
from rig.sim.launcher import TwinProcess
from rig.sim.truth import read_truth
from rig.transcript import Transcript


@pytest.fixture
def twin_bench(tmp_path):
    with bench_on_twin_process(tmp_path) as opened:
        yield opened


def test_set_and_read_back_voltage_and_frequency(twin_bench):
    bench, truth_path = twin_bench
    source = bench["source"]
    source.set_voltage(230.0)
    source.set_frequency(50.0)
    source.set_output(True)
    assert source.output_enabled() is True
    assert source.voltage_setpoint() == 230.0
    assert abs(source.measure_voltage() - 230.0) <= source.voltage_readback_tolerance(230.0)
    assert source.measure_frequency() == 50.0
    assert source.measure_power() == pytest.approx(15.0)  # three meters' voltage circuits at 5 W
    assert source.measure_current() == pytest.approx(15.0 / 230.0, abs=1e-4)
    events = [(e["event"], e.get("on", e.get("voltage_v"))) for e in read_truth(truth_path)[1:]
              if e["event"].startswith("source.")]
    assert events == [("source.voltage_setpoint", 230.0), ("source.frequency_setpoint", None),
                      ("source.output", True)]


def test_twin_keeps_scpi_habits(twin_bench):
    bench, _ = twin_bench
    source = bench["source"]
    assert source.query("sour:volt:lev:imm:ampl:ac 120;:SOURCE:VOLTAGE:AC?") == "120.000"
    assert source.query("VOLT:AC 100;AC?;:FREQ?") == "100.000;50.000"
    source.write("SOUR:VOLT:BOGUS 1")
    assert source.query("SYST:ERR?") == '-113,"Undefined header; SOUR:VOLT:BOGUS 1"'
    assert source.query("SYST:ERR?") == '0,"No error"'
    assert source.query("*OPC?") == "1"


def test_twin_refuses_a_setpoint_outside_its_range_and_the_driver_reports_it(twin_bench):
    bench, _ = twin_bench
    source = bench["source"]
    with pytest.raises(SetpointRefused, match=r"voltage 301 V refused: above 300 V, the rating of the chroma61500 "
                                              r"instrument \(in 'SOUR:VOLT:AC 301'; nothing sent\)"):
        source.command("SOUR:VOLT:AC 301")
    with pytest.raises(InstrumentError, match=r"refused 'SOUR:CURR:LIM 41': -222,\"Data out of range"):
        source.command("SOUR:CURR:LIM 41")  # a setting the rig does not bound: the twin refuses it
    assert source.voltage_setpoint() == 0.0


def test_reset_switches_output_off(twin_bench):
    bench, truth_path = twin_bench
    source = bench["source"]
    source.set_voltage(240.0)
    source.set_output(True)
    source.command("*RST")
    assert source.output_enabled() is False
    last_output = [e for e in read_truth(truth_path) if e["event"] == "source.output"][-1]
    assert last_output["on"] is False and last_output["by"] == "source *RST"


def test_bench_open_drives_a_live_source_safe_first(tmp_path):
    bench_file = load_bench(write_bench(tmp_path))
    truth_path = tmp_path / "truth.jsonl"
    twin = TwinProcess(bench_file.path, truth_path)
    try:
        first = Bench(bench_file, Transcript(None), twin.resources)
        first.open()
        first["source"].set_voltage(240.0)
        first["source"].set_output(True)
        for driver in first.drivers.values():
            driver.close()  # abandoned live, as by a crashed run

        second = Bench(bench_file, Transcript(None), twin.resources)
        second.open()
        outputs = [e["on"] for e in read_truth(truth_path) if e["event"] == "source.output"]
        assert outputs == [True, False]
        second.close()
    finally:
        twin.stop()


def test_safe_state_timeout_latches_the_bench_and_is_recorded(tmp_path):
    """An instrument that hangs on the safe-state command costs its timeout, no more, and breaks the bench."""
    peer = ScriptedScpiPeer([Step("*IDN?", "Chroma ATE,61504,X1,1.0"), Step("OUTP OFF;:SYST:ERR?", None)])

    def point_at_peer(data):
        data["roles"]["source"].update(resource=peer.resource, timeout_s=5, safe_timeout_s=0.5)

    bench_file = load_bench(write_bench(tmp_path, autostart=False, only_roles=("source",), edit=point_at_peer))
    recorded = []
    bench = Bench(bench_file, Transcript(None), on_safe_state=lambda reason, actions: recorded.append(actions))
    start = time.monotonic()
    with pytest.raises(BenchBroken, match=r"bench broken: source \(.*\): no safe state within 0.5 s"):
        bench.open()
    assert time.monotonic() - start < 2.0
    assert recorded[0][0]["status"] == "timeout"
    with pytest.raises(BenchBroken):
        bench["source"]
    peer.close()
