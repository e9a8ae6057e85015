"""Conformance of the counter module (role `counter`): the ADAM-6051's Modbus map as the ADAM-6000 Series User
Manual lists it, and the Modbus TCP server behaviour of the MODBUS Application Protocol Specification V1.1b3 and
the MODBUS Messaging on TCP/IP Implementation Guide V1.0b.

Clients: hand-built Modbus TCP frames over a plain socket (exact bytes of MBAP header and PDU) and pyModbusTCP.
Manual addresses are 1-based (coil 00034 is protocol address 33, holding register 40001 is address 0).
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from pyModbusTCP.client import ModbusClient

UNIT = 1  # the module's default Modbus unit id
ROLE = pytest.mark.role("counter")
CHANNELS = 14  # counter channels 0-13 (coils 00033-00088)
START_STOP, CLEAR_COUNTER, CLEAR_OVERFLOW, LATCH = 0, 1, 2, 3


def coil(channel: int, item: int) -> int:
    """Protocol address of a channel's control coil: manual 00033 + 4n + item, minus 1."""
    return 32 + 4 * channel + item


class RawModbus:
    """A Modbus TCP client of hand-built frames (MBAP header + PDU) over a plain socket."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.transaction_id = 0x1200

    def exchange(self, pdu: bytes, unit: int = UNIT) -> bytes:
        """Send one request PDU; return the reply PDU after checking its MBAP header echoes the request's."""
        self.transaction_id += 1
        self.sock.sendall(struct.pack(">HHHB", self.transaction_id, 0, len(pdu) + 1, unit) + pdu)
        header = self.receive(7)
        transaction_id, protocol_id, length, unit_back = struct.unpack(">HHHB", header)
        assert (transaction_id, protocol_id, unit_back) == (self.transaction_id, 0, unit), header.hex(" ")
        return self.receive(length - 1)

    def receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, f"connection closed after {data.hex(' ')!r}"
            data += chunk
        return data

    def read_holding(self, address: int, count: int, unit: int = UNIT) -> list[int]:
        reply = self.exchange(struct.pack(">BHH", 3, address, count), unit)
        assert reply[:2] == bytes([3, 2 * count]), reply.hex(" ")
        return list(struct.unpack(f">{count}H", reply[2:]))

    def close(self) -> None:
        self.sock.close()


def identification_objects(reply: bytes) -> dict[int, bytes]:
    """The objects of a Read Device Identification reply: 2B 0E code conformity more next count (id len value)*."""
    assert reply[:2] == b"\x2b\x0e" and len(reply) >= 7, reply.hex(" ")
    objects, index = {}, 7
    for _ in range(reply[6]):
        object_id, size = reply[index], reply[index + 1]
        objects[object_id] = reply[index + 2:index + 2 + size]
        index += 2 + size
    assert index == len(reply), reply.hex(" ")
    return objects


@pytest.fixture
def raw(device):
    client = RawModbus(device.host, device.port)
    yield client
    client.close()


@pytest.fixture
def second_library(device):
    client = ModbusClient(host=device.host, port=device.port, unit_id=UNIT, timeout=2.0, auto_open=True)
    yield client
    client.close()


def counts_of(client: ModbusClient) -> list[int]:
    """Counter channels 0-13 as the manual computes them: (40002 + 2n) x 65536 + (40001 + 2n)."""
    registers = client.read_holding_registers(0, 2 * CHANNELS)
    assert registers is not None, client.last_error_as_txt
    return [registers[2 * n] + 65536 * registers[2 * n + 1] for n in range(CHANNELS)]


def supply(twin, on: bool, voltage_v: float = 240.0, current_a: float = 10.0) -> None:
    """Source and current on (pulses at every position's test output) or off, through the twin's model."""
    def switch():
        twin.model.set_source_voltage(voltage_v, "test")
        twin.model.set_source_output(on, "test")
        twin.model.set_current(current_a, 0.0, "test")
        twin.model.set_current_output(on, "test")
    twin.call(switch)


def wait_for_counts(client: ModbusClient, channels: list[int], at_least: int, timeout_s: float = 10.0) -> list[int]:
    return wait_for(client, lambda counts: all(counts[n] >= at_least for n in channels),
                    f"channels {channels} at {at_least} or more", timeout_s)


def wait_for(client: ModbusClient, predicate, what: str, timeout_s: float = 10.0) -> list[int]:
    """The counts once predicate(counts) holds, read until timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = counts_of(client)
        if predicate(counts):
            return counts
        assert time.monotonic() < deadline, f"never saw {what} within {timeout_s} s; last counts {counts}"
        time.sleep(0.02)


# -- the manual's map -------------------------------------------------------------------------------------


@ROLE
def test_module_name_is_in_40211(raw):
    assert raw.read_holding(210, 2)[0] == 0x6051  # 40211 "Module Name 1"


@ROLE
def test_counters_are_holding_registers_40001_to_40028(raw, second_library):
    reply = raw.exchange(bytes.fromhex("03 0000 001c"))  # FC3, 40001, 28 registers
    assert reply[:2] == bytes([0x03, 56]) and len(reply) == 58
    assert len(second_library.read_holding_registers(0, 28)) == 28


@ROLE
@pytest.mark.twin_only
def test_a_counter_is_sent_low_word_first(raw, twin_model):
    counter = twin_model.twin.instruments["counter"]
    twin_model.call(lambda: counter.channels[0].preset(0x0001_2345))
    assert raw.exchange(bytes.fromhex("03 0000 0002")) == bytes.fromhex("03 04 2345 0001")
    twin_model.call(lambda: counter.channels[0].preset(0))


@ROLE
def test_inputs_are_coils_00001_to_00014_and_the_counter_coils_follow_from_00033(raw):
    assert raw.exchange(bytes.fromhex("01 0000 000e"))[:2] == b"\x01\x02"  # 14 coils in 2 bytes
    reply = raw.exchange(bytes.fromhex("01 0020 0038"))  # 00033-00088: 4 coils for each of 14 channels
    assert reply[:2] == b"\x01\x07" and len(reply) == 9


@ROLE
@pytest.mark.twin_only
def test_every_channel_counts_after_power_up(raw):
    bits = int.from_bytes(raw.exchange(bytes.fromhex("01 0020 0038"))[2:], "little")
    assert [bits >> (4 * n + START_STOP) & 1 for n in range(CHANNELS)] == [1] * CHANNELS


@ROLE
@pytest.mark.changes_outputs
def test_clearing_a_channel_does_not_touch_the_others(raw, second_library):
    before = counts_of(second_library)
    assert raw.exchange(bytes.fromhex("05 0021 ff00")) == bytes.fromhex("05 0021 ff00")  # 00034: clear channel 0
    after = counts_of(second_library)
    assert after[0] <= before[0]
    assert all(after[n] >= before[n] for n in range(1, CHANNELS)), (before, after)


@ROLE
@pytest.mark.twin_only
def test_clearing_channel_n_clears_n_only(raw, second_library, twin_model):
    supply(twin_model, True)
    try:
        before = wait_for_counts(second_library, [0, 1, 2], 60)
        assert second_library.write_single_coil(coil(1, CLEAR_COUNTER), True)  # 00038: clear channel 1
        after = counts_of(second_library)
        assert after[1] < 30 <= before[1]
        assert after[0] >= before[0] and after[2] >= before[2]
        assert raw.exchange(bytes.fromhex("05 0021 ff00")) == bytes.fromhex("05 0021 ff00")  # 00034: channel 0
        again = counts_of(second_library)
        assert again[0] < 30 and again[1] >= after[1] and again[2] >= after[2]
    finally:
        supply(twin_model, False)


@ROLE
@pytest.mark.twin_only
def test_start_stop_coil_holds_and_resumes_the_count(raw, second_library, twin_model):
    supply(twin_model, True)
    try:
        wait_for_counts(second_library, [0, 1], 10)
        assert raw.exchange(bytes.fromhex("05 0020 0000")) == bytes.fromhex("05 0020 0000")  # 00033: stop ch 0
        assert raw.exchange(bytes.fromhex("01 0020 0001")) == bytes.fromhex("01 01 00")
        held = counts_of(second_library)
        later = wait_for_counts(second_library, [1], held[1] + 30)
        assert later[0] == held[0]
        assert second_library.write_single_coil(coil(0, START_STOP), True)
        wait_for_counts(second_library, [0], held[0] + 30)
        assert second_library.read_coils(coil(0, START_STOP), 1) == [True]
    finally:
        supply(twin_model, False)


@ROLE
@pytest.mark.twin_only
def test_overflow_flag_is_set_by_the_wrap_and_cleared_by_its_coil(raw, second_library, twin_model):
    counter = twin_model.twin.instruments["counter"]
    twin_model.call(lambda: counter.channels[0].preset(2**32 - 5))
    assert second_library.read_coils(coil(0, CLEAR_OVERFLOW), 1) == [False]
    supply(twin_model, True)
    try:
        wait_for(second_library, lambda counts: counts[0] < 2**31, "channel 0 wrapping past 2**32")
    finally:
        supply(twin_model, False)
    assert second_library.read_coils(coil(0, CLEAR_OVERFLOW), 1) == [True]  # 00035 reads the overflow flag
    assert raw.exchange(bytes.fromhex("05 0022 ff00")) == bytes.fromhex("05 0022 ff00")
    assert second_library.read_coils(coil(0, CLEAR_OVERFLOW), 1) == [False]
    assert second_library.read_coils(coil(0, LATCH), 1) == [False]
    twin_model.call(lambda: counter.channels[0].clear())


# -- the Modbus TCP server --------------------------------------------------------------------------------


@ROLE
def test_unit_id_0xff_is_answered_as_the_device(raw):
    reply = raw.exchange(bytes.fromhex("03 00d2 0001"), unit=0xFF)  # 40211 through unit 0xFF
    assert reply == bytes.fromhex("03 02 6051")


@ROLE
@pytest.mark.parametrize(("request_pdu", "exception"), [
    pytest.param("04 0000 0000", "84 03", id="quantity 0"),
    pytest.param("03 0000 007e", "83 03", id="126 registers"),
    pytest.param("01 0000 0000", "81 03", id="0 coils"),
    pytest.param("01 0000 07d1", "81 03", id="2001 coils"),
    pytest.param("63", "e3 01", id="function 0x63"),
    pytest.param("2b 0d", "ab 01", id="MEI type 0x0D"),
    pytest.param("2b 0e 05 00", "ab 03", id="read device id code 5"),
    pytest.param("03 ffff 0002", "83 02", id="address + quantity past 65535"),
])
def test_malformed_requests_get_the_exception_frame(raw, request_pdu, exception):
    assert raw.exchange(bytes.fromhex(request_pdu)).hex(" ") == exception


@ROLE
@pytest.mark.changes_outputs
def test_a_coil_value_other_than_0000_or_ff00_is_illegal_data_value(raw):
    assert raw.exchange(bytes.fromhex("05 0021 1234")) == bytes.fromhex("85 03")  # would clear channel 0


@ROLE
def test_device_identification_lists_the_basic_objects(raw, second_library, device):
    reply = raw.exchange(bytes.fromhex("2b 0e 01 00"))
    if reply == bytes.fromhex("ab 01") and not device.on_twin:  # optional in the spec; the twin must answer
        pytest.skip("the device does not implement Read Device Identification")
    assert reply[:3] == bytes.fromhex("2b 0e 01") and reply[3] & 0x7F >= 1 and reply[4] == 0
    objects = identification_objects(reply)
    assert set(objects) == {0, 1, 2}
    assert objects[0].startswith(b"Advantech") and b"6051" in objects[1]
    if device.on_twin:
        assert objects == {0: b"Advantech", 1: b"ADAM-6051", 2: b"A1000000"}
    single = raw.exchange(bytes.fromhex("2b 0e 04 01"))  # individual access: ProductCode
    assert identification_objects(single) == {1: objects[1]}
    assert raw.exchange(bytes.fromhex("2b 0e 04 05")) == bytes.fromhex("ab 02")  # ModelName: not an object here
    response = second_library.read_device_identification()
    assert response is not None and response.vendor_name == objects[0]


@ROLE
def test_report_server_id_names_the_device(raw, device):
    reply = raw.exchange(b"\x11")
    if reply == bytes.fromhex("91 01") and not device.on_twin:  # optional in the spec; the twin must answer
        pytest.skip("the device does not implement Report Server ID")
    assert reply[0] == 0x11 and reply[1] == len(reply) - 2 and reply[-1] in (0x00, 0xFF)
    assert b"Pymodbus" not in reply
    if device.on_twin:
        assert reply[2:-1] == b"Advantech ADAM-6051 A1000000"
