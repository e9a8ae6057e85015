"""Modbus drivers against the twin's counter module and SDM630 meters; the model's state as the judge.

The twin runs in this process, on an event loop in a background thread, so a test can drive the model's
source and current directly and read its pulses and registers at the instant it reads the instrument.
"""

import json
import statistics
import struct
import time

import pytest
from plan_runner import free_port, write_bench
from pymodbus.client import ModbusTcpClient
from twin_thread import TwinOnThread, starter_fixture

from rig.bench import Bench
from rig.config import RoleConfig, load_bench
from rig.driver import Identity, SetpointLimits, driver_class
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout
from rig.sim.launcher import TwinProcess
from rig.sim.truth import read_truth
from rig.sim.twin import Twin
from rig.transcript import Transcript

K = 100_000  # test-output imp/kWh of every position: 2400 W gives 66.7 pulses/s
PULSES_PER_S_AT_2400_W = K * 2400 / 3.6e6


def f32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


def bench_data(data, counter_settings=None, twin_counter=None, twin_meter1=None):
    data["twin"]["autostart"] = False
    data["roles"]["counter"] = {"driver": "adam6051", "resource": "tcp://127.0.0.1:0",
                                "settings": {"channels": 14, **(counter_settings or {})}}
    data["twin"]["instruments"]["counter"] = {"log_requests": True, **(twin_counter or {})}
    data["twin"]["instruments"]["meter@1"] = {"log_requests": True, **(twin_meter1 or {})}
    for meter in data["positions"]:
        meter["test_output_imp_per_kwh"] = K
    data["positions"][0]["interface"] = {"driver": "sdm630", "resource": "tcp://127.0.0.1:0",
                                         "settings": {"device_id": 1}}
    data["positions"][1]["interface"] = {"driver": "sdm630", "resource": "tcp://127.0.0.1:0",
                                         "settings": {"device_id": 7, "modbus_serial": 12345678}}


class InProcessTwin(TwinOnThread):
    """The twin on its own event loop thread; the rig's bench opened against it."""

    def __init__(self, folder, **edits):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        path = write_bench(folder, edit=lambda data: bench_data(data, **edits))
        self.truth_path = folder / "truth.jsonl"
        self.transcript_path = folder / "transcript.jsonl"
        self.bench_file = load_bench(path)
        self.start_twin(self.bench_file, self.truth_path)
        self.transcript = Transcript(self.transcript_path)
        self.bench = Bench(self.bench_file, self.transcript, self.resources)
        self.bench.open()

    def energize(self, voltage_v=240.0, current_a=10.0, phase_deg=0.0):
        def switch_on():
            self.model.set_source_voltage(voltage_v, "test")
            self.model.set_source_output(True, "test")
            self.model.set_current(current_a, phase_deg, "test")
            self.model.set_current_output(True, "test")
        self.call(switch_on)

    def pulses(self) -> dict[int, int]:
        def now():
            self.model.now()
            return {meter.position: meter.pulses() for meter in self.model.meters}
        return self.call(now)

    def register_energy_kwh(self, position) -> float:
        def now():
            self.model.now()
            return self.model.meter(position).register_energy_wh / 1000.0
        return self.call(now)

    def wait_for_pulses(self, position, at_least, timeout_s=5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.pulses()[position] < at_least:
            assert time.monotonic() < deadline, f"position {position} never reached {at_least} pulses"
            time.sleep(0.02)

    def exchanges(self, role) -> list[tuple[str, str]]:
        self.transcript.flush()
        lines = [json.loads(line) for line in self.transcript_path.read_text().splitlines()]
        return [(line["sent"], line["received"]) for line in lines if line["role"] == role and line["sent"]]

    def requests(self, role) -> list[tuple]:
        return [(e["function_code"], e["address"], e["count"], e["values"], e["device_id"])
                for e in read_truth(self.truth_path) if e["event"] == "modbus.request" and e["role"] == role]

    def close(self):
        self.bench.close()
        self.transcript.close()
        self.stop_twin()


start_twin = starter_fixture(InProcessTwin)


def make_driver(name, resource, settings=None, timeout_s=2.0, role="probe"):
    config = RoleConfig(driver=name, resource=resource, timeout_s=timeout_s, settings=settings or {})
    return driver_class(name)(role, config, SetpointLimits(), Transcript(None))


def raw_counter_registers(resource, address, count):
    host, port = resource.removeprefix("tcp://").split(":")
    client = ModbusTcpClient(host, port=int(port), timeout=2, retries=0)
    try:
        assert client.connect()
        return client.read_holding_registers(address, count=count, device_id=1).registers
    finally:
        client.close()


# -- counter ------------------------------------------------------------------------------------------------


def test_identities_are_read_from_the_identity_registers(twin):
    identities = twin.bench.identities
    counter = identities["counter"]
    assert (counter.manufacturer, counter.model, counter.serial, counter.firmware) == \
           ("Advantech", "ADAM-6051", "-", "A1000000")
    assert identities["meter@1"] == Identity("Eastron", "SDM630", "10000001", "-", raw="serial_number=10000001")
    assert identities["meter@2"].serial == "12345678"
    assert twin.exchanges("counter")[:2] == [("read_coils 32 count=53 device_id=1", "1000" * 13 + "1"),
                                             ("read_holding_registers 210 count=4 device_id=1",
                                              "[24657, 0, 41216, 0]")]
    assert twin.exchanges("meter@2")[0] == ("read_holding_registers 64512 count=2 device_id=7", "[188, 24910]")


def test_counts_follow_the_model_at_the_instant_of_the_read(twin):
    counter = twin.bench["counter"]
    assert counter.read_counts() == {position: 0 for position in range(1, 15)}
    twin.energize()
    time.sleep(0.3)  # the current settles (tau 0.05 s)
    before, t0 = twin.pulses(), time.monotonic()
    first = counter.read_counts()
    after = twin.pulses()
    time.sleep(1.0)
    second = counter.read_counts()
    t1 = time.monotonic()
    assert sorted(first) == list(range(1, 15))
    for position in (1, 2, 3):
        assert before[position] <= first[position] <= after[position]
        rate = (second[position] - first[position]) / (t1 - t0)
        assert rate == pytest.approx(PULSES_PER_S_AT_2400_W, abs=3)
    assert all(second[position] == 0 for position in range(4, 15))  # channels without a meter
    assert twin.exchanges("counter")[-1][0] == "read_holding_registers 0 count=28 device_id=1"


def test_reset_clears_one_channel_only(twin):
    counter = twin.bench["counter"]
    twin.energize()
    twin.wait_for_pulses(3, 30)
    before = counter.read_counts()
    counter.reset([2])
    after = counter.read_counts()
    assert after[2] < 5 <= before[2]
    assert after[1] >= before[1] >= 30 and after[3] >= before[3] >= 30
    resets = [e for e in read_truth(twin.truth_path) if e["event"] == "counter.reset"]
    assert [(e["channel"], e["position"]) for e in resets] == [(1, 2)]
    assert twin.exchanges("counter")[-2] == ("write_coil 37 1 device_id=1", "37 1")  # 00038: clear channel 1


def test_exact_requests_reach_the_twin(twin):
    counter, meter = twin.bench["counter"], twin.bench["meter@1"]
    counter.read_counts()
    counter.reset([1, 3])
    counter.reset()
    meter.read_instantaneous()
    meter.read_energy_import_kwh()
    sent = [s for s, _ in twin.exchanges("counter")]
    clears = [f"write_coil {33 + 4 * channel} 1 device_id=1" for channel in range(14)]
    assert sent == ["read_coils 32 count=53 device_id=1",
                    "read_holding_registers 210 count=4 device_id=1",
                    "read_holding_registers 0 count=28 device_id=1",
                    clears[0], clears[2], *clears]
    assert twin.requests("counter") == [(1, 32, 53, None, 1), (3, 210, 4, None, 1), (3, 0, 28, None, 1),
                                        (5, 33, 1, [1], 1), (5, 41, 1, [1], 1)] + \
                                       [(5, 33 + 4 * channel, 1, [1], 1) for channel in range(14)]
    assert [s for s, _ in twin.exchanges("meter@1")] == ["read_holding_registers 64512 count=2 device_id=1",
                                                         "read_input_registers 0 count=32 device_id=1",
                                                         "read_input_registers 72 count=2 device_id=1"]
    assert twin.requests("meter@1") == [(3, 0xFC00, 2, None, 1), (4, 0, 32, None, 1), (4, 0x48, 2, None, 1)]
    resets = [(e["channel"], e["position"]) for e in read_truth(twin.truth_path) if e["event"] == "counter.reset"]
    assert resets == [(0, 1), (2, 3)] + [(channel, channel + 1 if channel < 3 else None) for channel in range(14)]


def test_counts_are_extended_across_the_32_bit_wrap(start_twin):
    twin = start_twin(twin_counter={"preset_counts": {0: 2**32 - 20}})
    counter = twin.bench["counter"]
    assert counter.read_counts()[1] == 2**32 - 20
    twin.energize()
    twin.wait_for_pulses(1, 40)
    before = twin.pulses()[1]
    count = counter.read_counts()[1]
    after = twin.pulses()[1]
    assert 2**32 - 20 + before <= count <= 2**32 - 20 + after
    low, high = raw_counter_registers(twin.resources["counter"], 0, 2)
    raw = low | high << 16
    assert 20 <= raw < 200  # the module itself wrapped (low word first)
    assert counter.read_counts()[1] >= count


def test_a_count_going_back_without_wrapping_is_an_instrument_error(twin):
    counter = twin.bench["counter"]
    twin.energize()
    twin.wait_for_pulses(1, 10)
    assert counter.read_counts()[1] >= 10
    host, port = twin.resources["counter"].removeprefix("tcp://").split(":")
    other = ModbusTcpClient(host, port=int(port), timeout=2, retries=0)
    assert other.connect()
    other.write_coil(33, True, device_id=1)  # 00034: channel 0 cleared behind the driver's back
    other.close()
    with pytest.raises(InstrumentError, match=r"counter \(tcp://127\.0\.0\.1:\d+, device 1\): count of position 1 "
                                              r"\(channel 0\) went back from \d+ to \d+"):
        counter.read_counts()


def test_channel_mapping_reads_only_the_mapped_span(start_twin):
    mapping = {1: 10, 2: 11, 3: 12}
    twin = start_twin(counter_settings={"channel_of_position": mapping},
                      twin_counter={"channel_of_position": mapping})
    counter = twin.bench["counter"]
    twin.energize()
    twin.wait_for_pulses(1, 10)
    before = twin.pulses()
    counts = counter.read_counts()
    assert sorted(counts) == [1, 2, 3] and all(counts[p] >= before[p] >= 10 for p in (1, 2, 3))
    assert twin.exchanges("counter")[-1][0] == "read_holding_registers 20 count=6 device_id=1"
    assert raw_counter_registers(twin.resources["counter"], 0, 20) == [0] * 20  # channels 0..9: no meter


def test_counter_settings_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match=r"roles\.probe\.settings: channel 12 of position 3 is outside 0\.\.11"):
        make_driver("adam6051", "tcp://127.0.0.1:1", {"channels": 12, "channel_of_position": {3: 12}})
    with pytest.raises(ConfigError, match=r"channel 0 is given to positions 1 and 2"):
        make_driver("adam6051", "tcp://127.0.0.1:1", {"channel_of_position": {1: 0, 2: 0}})
    with pytest.raises(ConfigError, match=r"roles\.probe\.settings\.channels: 24 is more than the 14 channels of the "
                                          r"adam6051 module"):
        make_driver("adam6051", "tcp://127.0.0.1:1", {"channels": 24})
    with pytest.raises(ConfigError, match=r"roles\.probe\.resource: a Modbus TCP resource is 'tcp://host:port'"):
        make_driver("adam6051", "TCPIP0::127.0.0.1::502::SOCKET")


def test_twin_refuses_simulator_settings_that_cannot_work(tmp_path):
    def twin_of(**edits):
        folder = tmp_path / f"bench{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        return Twin(load_bench(write_bench(folder, edit=lambda data: bench_data(data, **edits))), None)

    with pytest.raises(ConfigError, match=r"counter: channel_of_position names position 9, which the bench has not"):
        twin_of(twin_counter={"channel_of_position": {9: 0}})
    with pytest.raises(ConfigError, match=r"counter: preset_counts names channel 30, outside 0\.\.13"):
        twin_of(twin_counter={"preset_counts": {30: 5}})
    with pytest.raises(ConfigError, match=r"unknown register map 'sdm999'"):
        twin_of(twin_meter1={"register_map": "sdm999"})


def test_counter_make_safe_switches_nothing(twin):
    actions = twin.bench.make_safe("test")
    counter = next(action for action in actions if action["role"] == "counter")
    assert (counter["status"], counter["done"]) == ("ok", ["counter: nothing to switch"])


# -- meter ------------------------------------------------------------------------------------------------


def test_sdm630_registers_follow_the_model(twin):
    meter = twin.bench["meter@1"]
    assert meter.read_instantaneous() == {"voltage_v": 0.0, "current_a": 0.0, "power_w": 0.0, "power_factor": 1.0}
    assert meter.read_quantity("frequency_hz") == 0.0
    twin.energize(voltage_v=240.0, current_a=10.0, phase_deg=60.0)
    time.sleep(1.0)  # the current settles to within 1e-8 of its setpoint
    values = meter.read_instantaneous()
    assert values["voltage_v"] == 240.0
    assert values["current_a"] == pytest.approx(10.0, abs=1e-5)
    assert values["power_w"] == pytest.approx(1200.0, abs=1e-3)
    assert values["power_factor"] == pytest.approx(0.5, abs=1e-7)
    assert meter.read_quantity("frequency_hz") == 50.0
    before = twin.register_energy_kwh(1)
    energy = meter.read_energy_import_kwh()
    after = twin.register_energy_kwh(1)
    assert f32(before) <= energy <= f32(after)
    assert energy == pytest.approx(1200.0 / 3.6e6 * 1.0, rel=0.1)  # about a second at 1200 W, in kWh


def test_sdm630_at_another_device_id_serves_its_own_serial(twin):
    meter = twin.bench["meter@2"]
    assert meter.device_id == 7
    assert meter.read_quantity("serial_number") == 12345678
    assert meter.read_instantaneous()["voltage_v"] == 0.0


def test_wrong_device_id_is_an_instrument_error_naming_address_and_request(twin):
    resource = twin.resources["meter@1"]
    driver = make_driver("sdm630", resource, {"device_id": 9})
    driver.open()
    try:
        with pytest.raises(InstrumentError) as info:
            driver.read_instantaneous()
    finally:
        driver.close()
    assert str(info.value) == (f"probe ({resource}, device 9): refused 'read_input_registers 0 count=32 device_id=9': "
                               f"Modbus exception 11 (gateway target device failed to respond)")


def test_undefined_address_is_refused_with_exception_2(twin):
    meter = twin.bench["meter@1"]
    with pytest.raises(InstrumentError, match=r"refused 'read_input_registers 400 count=2 device_id=1': "
                                              r"Modbus exception 2 \(illegal data address\)"):
        meter.read_registers("input", 400, 2)


def test_closed_port_is_an_instrument_error_naming_the_address():
    resource = f"tcp://127.0.0.1:{free_port()}"
    driver = make_driver("adam6051", resource, role="counter")
    with pytest.raises(InstrumentError, match=rf"counter \({resource}\): cannot connect to Modbus TCP device 1"):
        driver.open()


def test_silent_device_is_a_timeout_naming_the_request(start_twin):
    twin = start_twin(twin_meter1={"latency_s": 0.5})
    resource = twin.resources["meter@1"]
    driver = make_driver("sdm630", resource, timeout_s=0.2)
    driver.open()
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=rf"probe \({resource}, device 1\): no answer within 0\.2 s to "
                                                r"'read_input_registers 72 count=2 device_id=1'"):
        driver.read_energy_import_kwh()
    assert time.monotonic() - start < 0.45
    driver.close()


# -- speed ------------------------------------------------------------------------------------------------


def test_read_counts_round_trip_on_the_twin_process(tmp_path):
    """The twin in its own process, as a run uses it: 14 channels read in well under a millisecond or two."""
    def edit(data):
        bench_data(data)
        data["twin"]["instruments"]["counter"]["log_requests"] = False
    bench_file = load_bench(write_bench(tmp_path, edit=edit))
    process = TwinProcess(bench_file.path, tmp_path / "truth.jsonl")
    config = bench_file.config.roles["counter"].model_copy(update={"resource": process.resources["counter"]})
    counter = driver_class("adam6051")("counter", config, SetpointLimits(), Transcript(tmp_path / "t.jsonl"))
    try:
        counter.open()
        durations = []
        for _ in range(1000):
            start = time.perf_counter()
            counts = counter.read_counts()
            durations.append(time.perf_counter() - start)
        assert len(counts) == 14
        median_us = statistics.median(durations) * 1e6
        print(f"read_counts, 14 channels: median {median_us:.0f} us over 1000 reads")
        assert median_us < 2000
    finally:
        counter.close()
        process.stop()
