"""The current amplifier and reference meter drivers against the twin; the twin's truth as the judge."""

import time

import pytest
from plan_runner import bench_on_twin_process

from rig.errors import InstrumentError, SetpointRefused
from rig.sim.truth import read_truth

SETTLE_S = 0.6  # > 10 time constants of the twin's current loop (0.05 s)


def add_metrology_roles(data):
    data["roles"]["current"] = {"driver": "scpi_current_amplifier", "resource": "TCPIP0::127.0.0.1::0::SOCKET",
                                "limits": {"current_a": 100}}
    data["roles"]["reference"] = {"driver": "scpi_reference_meter", "resource": "TCPIP0::127.0.0.1::0::SOCKET"}


@pytest.fixture
def twin_bench(tmp_path):
    with bench_on_twin_process(tmp_path, edit=add_metrology_roles) as opened:
        yield opened


def energise(bench, current_a=10.0, phase_deg=0.0):
    source, current = bench["source"], bench["current"]
    source.set_voltage(240.0)
    source.set_frequency(50.0)
    source.set_output(True)
    current.set_current(current_a)
    current.set_phase(phase_deg)
    current.set_output(True)
    time.sleep(SETTLE_S)


def test_identities(twin_bench):
    bench, _ = twin_bench
    assert bench.identities["current"].raw == "RIG-SIM,PCA-120,SIM-PCA-0001,1.00"
    assert bench.identities["reference"].raw == "RIG-SIM,RSM-002,SIM-RSM-0001,2.01"
    assert bench["reference"].accuracy_class_pct == 0.02


def test_reference_reads_the_energised_circuit(twin_bench):
    bench, truth_path = twin_bench
    energise(bench)
    current = bench["current"]
    assert current.output_enabled() is True
    assert current.current_setpoint() == 10.0
    assert current.measure_current() == pytest.approx(10.0, rel=5e-4)
    reading = bench["reference"].measure()
    assert reading["voltage_v"] == pytest.approx(240.0, rel=5e-4)
    assert reading["current_a"] == pytest.approx(10.0, rel=5e-4)
    assert reading["power_w"] == pytest.approx(2400.0, rel=5e-4)
    assert reading["power_factor"] == pytest.approx(1.0, rel=5e-4)
    events = [(e["event"], e.get("on", e.get("current_a")), e["by"]) for e in read_truth(truth_path)
              if e["event"].startswith("current.")]
    assert events[-3:] == [("current.setpoint", 10.0, "current"), ("current.setpoint", 10.0, "current"),
                           ("current.output", True, "current")]


def test_power_factor_half_at_phase_60(twin_bench):
    bench, _ = twin_bench
    energise(bench, phase_deg=60.0)
    assert bench["current"].measure_phase() == 60.0
    reading = bench["reference"].measure()
    assert reading["power_factor"] == pytest.approx(0.5, rel=5e-4)
    assert reading["power_w"] == pytest.approx(1200.0, rel=5e-4)


def test_integrated_energy_over_time_is_the_power(twin_bench):
    bench, _ = twin_bench
    energise(bench)
    reference = bench["reference"]
    power_w = reference.measure()["power_w"]
    reference.start_integration()
    assert reference.integration_running() is True
    time.sleep(1.0)
    reference.stop_integration()
    assert reference.integration_running() is False
    energy_wh = reference.read_energy_wh()
    seconds = reference.integration_time_s()
    assert seconds == pytest.approx(1.0, abs=0.2)
    assert energy_wh * 3600.0 / seconds == pytest.approx(power_w, rel=1e-3)
    assert energy_wh * 3600.0 / seconds == pytest.approx(2400.0, rel=1e-3)
    time.sleep(0.1)
    assert reference.read_energy_wh() == energy_wh  # frozen after the stop


def test_current_beyond_the_meters_imax_is_refused_before_sending(twin_bench):
    bench, truth_path = twin_bench
    current = bench["current"]
    with pytest.raises(SetpointRefused, match=r"current 61 A refused: above 60 A, the rating of meter SIM0001"):
        current.set_current(61.0)
    assert current.current_setpoint() == 0.0
    assert all(e["current_a"] <= 60.0 for e in read_truth(truth_path) if e["event"] == "current.setpoint")


def test_make_safe_leaves_the_current_output_off(twin_bench):
    bench, truth_path = twin_bench
    energise(bench)
    actions = {action["role"]: action for action in bench.make_safe("test")}
    assert actions["current"]["status"] == "ok"
    assert actions["reference"]["done"] == ["nothing to switch (measuring instrument)"]
    truth = read_truth(truth_path)
    outputs = [e for e in truth if e["event"] == "current.output"]
    assert [e["on"] for e in outputs] == [True, False]
    assert outputs[-1]["by"] == "current"
    assert [e for e in truth if e["event"] == "current.setpoint"][-1]["current_a"] == 0.0
    assert bench["current"].output_enabled() is False


def test_amplifier_keeps_scpi_habits_and_refuses_out_of_range(twin_bench):
    bench, truth_path = twin_bench
    current = bench["current"]
    assert current.query("SOUR:CURR 5;PHAS -36.87;:SOURCE:CURRENT:LEVEL:IMMEDIATE:AMPLITUDE?;:PHAS?") == (
        "5.0000;-36.870")
    with pytest.raises(SetpointRefused, match=r"current 121 A refused: above 120 A, the rating of the scpi_current_"
                                              r"amplifier instrument \(in 'SOUR:CURR 121'; nothing sent\)"):
        current.command("SOUR:CURR 121")
    with pytest.raises(InstrumentError, match=r"refused 'SOUR:PHAS 181': -222"):
        current.command("SOUR:PHAS 181")
    current.command("OUTP ON")
    current.command("*RST")
    assert current.output_enabled() is False
    assert (current.current_setpoint(), current.phase_setpoint()) == (0.0, 0.0)
    last_output = [e for e in read_truth(truth_path) if e["event"] == "current.output"][-1]
    assert last_output["on"] is False and last_output["by"] == "current *RST"
