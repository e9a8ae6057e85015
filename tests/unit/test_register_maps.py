"""Register maps: the packaged maps, value encoding with its word order, one-line errors naming file and field."""

import struct

import pytest

from rig.errors import ConfigError
from rig.registermaps import decode, encode, load_register_map

GOOD_MAP = """\
name: custom
word_order: big
registers:
  voltage_v: {table: input, address: 0, type: float32, unit: V}
  serial_number: {table: holding, address: 100, type: uint32}
identity:
  manufacturer: {text: Acme}
  model: {text: M1}
  serial: {quantity: serial_number}
"""


def map_error(tmp_path, text):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_register_map(path)
    message = str(info.value)
    assert "\n" not in message
    return path, message


def test_sdm630_map_places_each_quantity_as_the_meter_does():
    sdm = load_register_map("sdm630")
    expected = {"voltage_v": (0x0000, "V"), "current_a": (0x0006, "A"), "power_w": (0x000C, "W"),
                "power_factor": (0x001E, ""), "frequency_hz": (0x0046, "Hz"), "energy_import_kwh": (0x0048, "kWh"),
                "voltage_thd_pct": (0x00EA, "%"), "energy_total_kwh": (0x0156, "kWh"),
                "l3_reactive_energy_total_kvarh": (0x017C, "kVArh")}
    for name, (address, unit) in expected.items():
        quantity = sdm.registers[name]
        assert (quantity.table, quantity.address, quantity.type, quantity.unit, quantity.word_order) == \
               ("input", address, "float32", unit, "big")
        assert quantity.count == 2
    serial = sdm.registers["serial_number"]
    assert (serial.table, serial.address, serial.type, serial.count) == ("holding", 0xFC00, "uint32", 2)
    assert sdm.identity.manufacturer.text == "Eastron" and sdm.identity.serial.quantity == "serial_number"
    assert sdm.max_read_registers == 80
    assert [(span.table, span.first, span.end) for span in sdm.block_reads] == [("input", 0, 400)]


def test_adam6051_map_describes_counters_coils_and_identity():
    adam = load_register_map("adam6051")
    counters = adam.counters
    assert (counters.table, counters.base, counters.type, counters.word_order, counters.channels) == \
           ("holding", 0, "uint32", "little", 14)
    assert counters.stride == 2 and counters.input_coils == 0
    coils = counters.control_coils
    # manual: 00033 + 4n start/stop, 00034 + 4n clear counter, 00035 + 4n clear overflow, 00036 + 4n latch
    assert [coils.address(0, offset) + 1 for offset in range(4)] == [33, 34, 35, 36]
    assert coils.address(13, coils.latch_status) + 1 == 88
    assert [(q.address + 1, q.value) for q in (adam.registers["module_name_1"], adam.registers["module_name_2"])] \
           == [(211, 0x6051), (212, 0)]
    assert adam.registers["firmware_version"].encode(0xA1000000) == [0xA100, 0x0000]
    assert adam.identity_texts({"module_name_1": 0x6051, "firmware_version": 0xA1000000}) == \
           {"manufacturer": "Advantech", "model": "ADAM-6051", "serial": "-", "firmware": "A1000000"}


def test_float32_big_endian_high_word_first():
    assert encode(230.0, "float32", "big") == [0x4366, 0x0000]
    assert encode(230.0, "float32", "little") == [0x0000, 0x4366]
    assert encode(-1.5, "float32") == [0xBFC0, 0x0000]
    assert decode([0x4366, 0x0000], "float32", "big") == 230.0
    assert decode([0x0000, 0x4366], "float32", "little") == 230.0
    assert decode(encode(0.1, "float32"), "float32") == pytest.approx(0.1, rel=1e-7)


def test_uint32_word_orders_and_round_trip():
    assert encode(0x12345678, "uint32", "big") == [0x1234, 0x5678]
    assert encode(0x12345678, "uint32", "little") == [0x5678, 0x1234]
    assert encode(10_000_001, "uint32") == [0x0098, 0x9681]
    for value in (0, 1, 65535, 65536, 2**32 - 1):
        for order in ("big", "little"):
            assert decode(encode(value, "uint32", order), "uint32", order) == value
    with pytest.raises(struct.error):
        encode(2**32, "uint32")


def test_16_bit_and_string_values():
    assert encode(-2, "int16") == [0xFFFE]
    assert decode([0xFFFE], "int16") == -2
    assert decode([0xFFFE], "uint16") == 65534
    assert encode("AB", "string", length=2) == [0x4142, 0x0000]
    assert decode([0x4142, 0x0000], "string") == "AB"


def test_a_map_of_ones_own_loads_from_a_path(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text(GOOD_MAP)
    custom = load_register_map(str(path))
    assert custom.name == "custom"
    assert custom.registers["serial_number"].encode(70000) == [0x0001, 0x1170]


def test_wrong_type_names_file_line_and_field(tmp_path):
    path, message = map_error(tmp_path, GOOD_MAP.replace("type: float32", "type: float33"))
    assert message.startswith(f"{path}:4: registers.voltage_v.type: Input should be 'uint16'")


def test_missing_identity_names_the_field(tmp_path):
    text = GOOD_MAP.split("identity:")[0]
    path, message = map_error(tmp_path, text)
    assert message == f"{path}:1: identity: field required"


def test_identity_naming_an_unknown_quantity_is_refused(tmp_path):
    path, message = map_error(tmp_path, GOOD_MAP.replace("{quantity: serial_number}", "{quantity: serial_no}"))
    assert message == f"{path}:9: identity.serial.quantity: no quantity 'serial_no' in 'registers'"


def test_overlapping_quantities_are_refused(tmp_path):
    text = GOOD_MAP.replace("  serial_number:", "  current_a: {table: input, address: 1, type: float32}\n"
                                                "  serial_number:")
    path, message = map_error(tmp_path, text)
    assert message == f"{path}:5: registers.current_a.address: overlaps 'voltage_v' (registers 0..1)"


def test_string_without_length_and_value_out_of_range_are_refused(tmp_path):
    path, message = map_error(tmp_path, GOOD_MAP.replace("type: uint32}", "type: string}"))
    assert message.startswith(f"{path}:5: registers.serial_number: 'length' (in registers) is required")
    path, message = map_error(tmp_path, GOOD_MAP.replace("type: uint32}", "type: uint16, value: 70000}"))
    assert "registers.serial_number: value 70000 does not fit uint16" in message


def test_unknown_field_and_unknown_map_name(tmp_path):
    path, message = map_error(tmp_path, GOOD_MAP.replace("unit: V", "units: V"))
    assert message == f"{path}:4: registers.voltage_v.units: unknown field"
    with pytest.raises(ConfigError, match=r"unknown register map 'sdm631' \(known: adam6051, sdm630;"):
        load_register_map("sdm631")
    with pytest.raises(ConfigError, match=r"nothing\.yaml: cannot read register map"):
        load_register_map(tmp_path / "nothing.yaml")
