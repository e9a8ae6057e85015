"""Conformance of an Eastron SDM630 meter data port (role `meter@1`): the registers of Eastron's SDM630 Modbus
protocol document (input registers 30001-30400 read in blocks of up to 40 parameters, float32 high word first;
holding registers), and the Modbus TCP exchanges of the MODBUS Application Protocol Specification V1.1b3.

The sim bench has no SDM630, so on the twin this module serves one of its own: the sim bench with position 1's
data port an SDM630 (driver `sdm630`). On hardware, give the meter (through its Modbus TCP gateway):

    pytest tests/conformance/test_modbus_sdm630.py --device meter@1=tcp://192.0.2.30:502

Clients: hand-built frames over a plain socket and pyModbusTCP.
"""

from __future__ import annotations

import math
import struct

import pytest
import test_modbus_adam6051 as counter_module
from plan_runner import write_bench
from test_modbus_adam6051 import RawModbus, identification_objects
from twin_thread import TwinOnThread

from rig.config import load_bench

UNIT = 1  # the meter's default Modbus address, as the counter module's (the clients of the fixtures use it)
ROLE = pytest.mark.role("meter@1")
BLOCK = 80  # the document: "each request for data must be restricted to 40 parameters or less"
VOLTAGE_1, VOLTAGE_2, FREQUENCY, IMPORT_KWH = 0x0000, 0x0002, 0x0046, 0x0048
SERIAL_NUMBER, SYSTEM_TYPE = 0xFC00, 0x000A


raw = counter_module.raw  # fixtures: a hand-built-frame client and a pyModbusTCP client on the device, unit UNIT
second_library = counter_module.second_library


class Sdm630Twin(TwinOnThread):
    """The sim bench with position 1's data port an SDM630, served in this process."""

    def __init__(self, folder):
        def sdm630_at_position_1(data):
            data["positions"][0]["interface"] = {"driver": "sdm630", "resource": "tcp://127.0.0.1:0",
                                                 "settings": {"device_id": UNIT}}
            data["twin"]["instruments"]["meter@1"] = {"modbus_serial": 12345678}
        self.truth_path = folder / "truth.jsonl"
        self.bench_file = load_bench(write_bench(folder, edit=sdm630_at_position_1))
        self.start_twin(self.bench_file, self.truth_path)


@pytest.fixture(scope="module")
def conformance_twin(tmp_path_factory):
    """This module's twin, in place of the sim bench's (the `device` fixture serves it for role meter@1)."""
    twin = Sdm630Twin(tmp_path_factory.mktemp("sdm630-twin"))
    yield twin
    twin.stop_twin()


def floats(registers: list[int]) -> list[float]:
    """IEEE 754 float32 values, each from two registers high word first."""
    data = b"".join(word.to_bytes(2, "big") for word in registers)
    return list(struct.unpack(f">{len(registers) // 2}f", data))


def read_input(raw: RawModbus, address: int, count: int) -> list[int]:
    reply = raw.exchange(struct.pack(">BHH", 4, address, count))
    assert reply[:2] == bytes([4, 2 * count]), reply.hex(" ")
    return list(struct.unpack(f">{count}H", reply[2:]))


def supply(twin, on: bool, voltage_v: float = 230.0, frequency_hz: float = 50.0) -> None:
    def switch():
        twin.model.set_source_voltage(voltage_v, "test")
        twin.model.set_source_frequency(frequency_hz, "test")
        twin.model.set_source_output(on, "test")
    twin.call(switch)


# -- input registers --------------------------------------------------------------------------------------


@ROLE
@pytest.mark.parametrize("first", range(0, 400, BLOCK))
def test_input_registers_30001_to_30400_read_in_blocks_of_40_parameters(raw, first):
    values = floats(read_input(raw, first, BLOCK))
    assert len(values) == 40 and all(math.isfinite(value) for value in values), values


@ROLE
def test_blocks_read_by_the_second_library_match_the_raw_frames(raw, second_library):
    registers = second_library.read_input_registers(0x00C8, 60)  # 30201-30260: line voltages to demands
    assert registers is not None and len(registers) == 60, second_library.last_error_as_txt
    assert all(math.isfinite(value) for value in floats(registers))


@ROLE
def test_voltage_and_frequency_are_plausible_float32(raw):
    voltage, frequency = floats(read_input(raw, VOLTAGE_1, 2) + read_input(raw, FREQUENCY, 2))
    assert math.isfinite(voltage) and math.isfinite(frequency)
    if voltage > 0:
        assert 100.0 < voltage < 300.0 and 45.0 < frequency < 65.0, (voltage, frequency)
    assert floats(read_input(raw, IMPORT_KWH, 2))[0] >= 0.0


@ROLE
@pytest.mark.twin_only
def test_phase_1_carries_the_supply_on_a_single_phase_connection(raw, twin_model):
    supply(twin_model, True)
    try:
        values = floats(read_input(raw, 0, 72))  # 30001-30072
        assert values[VOLTAGE_1 // 2] == 230.0 and values[FREQUENCY // 2] == 50.0
        assert values[VOLTAGE_2 // 2] == 0.0 and values[0x2A // 2] == 230.0  # phase 2; average L-N volts
    finally:
        supply(twin_model, False)
    assert floats(read_input(raw, VOLTAGE_1, 2)) == [0.0]


@ROLE
def test_more_than_40_parameters_in_one_request_is_refused(raw, device):
    reply = raw.exchange(struct.pack(">BHH", 4, 0, BLOCK + 2))
    assert reply[0] == 0x84, reply.hex(" ")
    if device.on_twin:
        assert reply == bytes.fromhex("84 03")


@ROLE
@pytest.mark.parametrize(("request_pdu", "exception"), [
    pytest.param("04 0000 0000", "84 03", id="quantity 0"),
    pytest.param("63", "e3 01", id="function 0x63"),
    pytest.param("04 ffff 0002", "84 02", id="address + quantity past 65535"),
])
def test_malformed_requests_get_the_exception_frame(raw, request_pdu, exception):
    assert raw.exchange(bytes.fromhex(request_pdu)).hex(" ") == exception


# -- holding registers ------------------------------------------------------------------------------------


@ROLE
def test_serial_number_and_system_type_are_holding_registers(raw, device):
    high, low = raw.read_holding(SERIAL_NUMBER, 2)
    serial = high << 16 | low
    assert serial > 0
    [system_type] = floats(raw.read_holding(SYSTEM_TYPE, 2))
    assert system_type in (1.0, 2.0, 3.0)  # 1p2w, 3p3w, 3p4w
    if device.on_twin:
        assert (serial, system_type) == (12345678, 1.0)


# -- identity and unit id (the twin's Modbus TCP server; a gateway in front of a real meter answers its own) --


@ROLE
@pytest.mark.twin_only
def test_unit_id_0xff_reaches_the_meter(raw):
    reply = raw.exchange(struct.pack(">BHH", 3, SERIAL_NUMBER, 2), unit=0xFF)
    assert reply == bytes.fromhex("03 04") + (12345678).to_bytes(4, "big")


@ROLE
@pytest.mark.twin_only
def test_a_unit_id_no_device_has_is_gateway_target_failed(raw):
    assert raw.exchange(bytes.fromhex("04 0000 0002"), unit=9) == bytes.fromhex("84 0b")


@ROLE
@pytest.mark.twin_only
def test_device_identification_and_server_id_name_the_meter(raw):
    objects = identification_objects(raw.exchange(bytes.fromhex("2b 0e 01 00")))
    assert objects == {0: b"Eastron", 1: b"SDM630", 2: b"-"}
    reply = raw.exchange(b"\x11")
    assert reply[0] == 0x11 and reply[2:-1] == b"Eastron SDM630 -" and reply[-1] == 0xFF
