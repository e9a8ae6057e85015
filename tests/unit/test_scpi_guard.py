"""How the SCPI setpoint guard reads a message: units, header paths, long/short forms, numbers with suffixes."""

import pytest

from drivers.ac_load import Chroma63800Load
from drivers.chroma_source import Chroma61500Source
from drivers.current_amplifier import ScpiCurrentAmplifier
from drivers.reference_meter import ScpiReferenceMeter
from drivers.scpi import Held, Setting, Switch
from drivers.scpi_messages import compile_header, program_units, setting_value

VOLTAGE = "[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]:AC"


def units(message):
    return [(unit.text, unit.parameter, unit.query) for unit in program_units(message)]


def test_a_header_pattern_has_optional_nodes_and_short_forms():
    assert [(node.short, node.long, node.optional) for node in compile_header("[SOURce:]VOLTage[:LEVel]:AC")] == [
        ("SOUR", "SOURCE", True), ("VOLT", "VOLTAGE", False), ("LEV", "LEVEL", True), ("AC", "AC", False)]
    assert [(node.short, node.long) for node in compile_header("CURRent[:STATic][:L1]")][-1] == ("L", "L")


def test_a_message_splits_at_semicolons_outside_quotes_and_at_line_ends():
    assert units('SOUR:VOLT:AC 230;:SYST:ERR?') == [("SOUR:VOLT:AC 230", "230", False), (":SYST:ERR?", "", True)]
    assert units('DISP:TEXT "a;b";*OPC?\nOUTP ON') == [('DISP:TEXT "a;b"', '"a;b"', False), ("*OPC?", "", True),
                                                        ("OUTP ON", "ON", False)]
    assert units("VOLT:AC\t299") == [("VOLT:AC\t299", "299", False)]


@pytest.mark.parametrize("message", ["SOUR:VOLT:AC 1", "sour:volt:lev:imm:ampl:ac 1", ":SOURCE:VOLTAGE:AC 1",
                                     "VOLT:AC 1", "Volt:Level:Ac 1", "SOUR:FREQ 50;VOLT:AC 1", "VOLT:AC 2;AC 1",
                                     "SOUR1:VOLT:AC 1"])
def test_every_spelling_and_path_of_a_header_is_recognised(message):
    assert [unit.addresses(VOLTAGE) for unit in program_units(message)][-1] is True


@pytest.mark.parametrize("message", ["SOUR:VOLT:AC? ", "SOUR:VOLT:BOGUS 1", "SOUR:VOLTA:AC 1", "MEAS:VOLT:AC 1",
                                     "SOUR:VOLT:LIM:AC 1", "FREQ 50"])
def test_other_headers_are_not_taken_for_it(message):
    unit = next(program_units(message))
    assert not unit.addresses(VOLTAGE) or unit.query


def test_a_relative_header_continues_the_previous_path_and_is_also_read_from_the_root():
    first, second = program_units("SOUR:VOLT:AC 230;AC 299")
    assert first.headers == {("SOUR", "VOLT", "AC")}
    assert second.headers == {("SOUR", "VOLT", "AC"), ("AC",)}
    assert next(program_units(":OUTP ON")).headers == {("OUTP",)}


@pytest.mark.parametrize(("parameter", "unit", "value"), [
    ("231", "V", 231.0), ("231V", "V", 231.0), ("231 v", "V", 231.0), ("0.231KV", "V", 231.0),
    ("231000MV", "V", 231.0), ("+2.31E2", "V", 231.0), (".5", "V", 0.5), ("50HZ", "Hz", 50.0),
    ("0.05KHZ", "Hz", 50.0), ("1MHZ", "Hz", 1e6), ("5A", "A", 5.0), ("0.061KA", "A", 61.0), ("5000UA", "A", 0.005),
    ("2KOHM", "ohm", 2000.0), ("1MOHM", "ohm", 1e6), ("1200W", "W", 1200.0),
])
def test_numbers_with_suffixes(parameter, unit, value):
    assert setting_value(parameter, unit) == pytest.approx(value)


@pytest.mark.parametrize(("parameter", "unit"), [
    ("MAX", "V"), ("MIN", "V"), ("DEF", "Hz"), ("", "V"), ("#H12C", "V"), ("230,1", "V"), ("231W", "V"),
    ("5MA", "A"), ("1GV", "V"), ("INF", "V"), ("NAN", "V"), ("1e", "V"), ("2 3", "V"),
])
def test_what_cannot_be_checked_is_not_a_number(parameter, unit):
    assert setting_value(parameter, unit) is None


def test_the_guard_tables_are_gathered_from_the_declared_methods():
    level = "[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]"
    assert Chroma61500Source.SETTINGS == (Setting(f"{level}:AC", "voltage", "V"),
                                          Setting("[SOURce:]FREQuency[:IMMediate]", "frequency", "Hz"),
                                          Setting(f"{level}:DC", "voltage", "V"), Setting(level, "voltage", "V"))
    assert Chroma61500Source.SWITCHES == (Switch("OUTPut[:STATe]"),)
    assert Chroma61500Source.HELD_SETPOINTS == (Held("SOUR:VOLT:AC?", "voltage", "V"),)
    assert ScpiCurrentAmplifier.HELD_SETPOINTS == (Held("SOUR:CURR?", "current", "A"),)
    assert [switch.header for switch in Chroma63800Load.SWITCHES] == ["LOAD[:STATe]", "LOAD:SHORt[:STATe]",
                                                                   "[LOAD:]SCIRcuit"]
    assert ScpiReferenceMeter.SETTINGS == ScpiReferenceMeter.SWITCHES == ScpiReferenceMeter.HELD_SETPOINTS == ()


def test_a_declared_method_reads_like_a_written_one():
    assert Chroma61500Source.set_voltage.run.__qualname__ == "Chroma61500Source.set_voltage"
    assert Chroma61500Source.set_voltage.run.__doc__ == ("Set the voltage (V): 'SOUR:VOLT:AC {:.3f}', refused beyond "
                                                         "the limits before anything is sent.")
    assert ScpiReferenceMeter.integration_running.run.__doc__ == "'INT:STAT?': RUN -> True, STOP -> False."
