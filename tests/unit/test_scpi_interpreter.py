"""The twin's SCPI interpreter and the simulated Chroma source, driven by program messages."""

import random

import pytest

from rig.sim.chroma_source import ChromaSourceSim
from rig.sim.model import PhysicalModel, SimMeter
from rig.sim.scpi import (
    Node,
    ScpiError,
    ScpiInterpreter,
    compile_pattern,
    parse_bool,
    parse_number,
    split_units,
)
from rig.sim.truth import TruthLog

NO_ERROR = '0,"No error"'


class Box:
    """A tiny instrument: a voltage setpoint, an output switch and a fixed measured voltage."""

    def __init__(self):
        self.voltage = 0.0
        self.output = False
        self.scpi = ScpiInterpreter()
        add = self.scpi.add
        add("[SOURce:]VOLTage[:LEVel]:AC", self._set_voltage)
        add("[SOURce:]VOLTage[:LEVel]:AC?", lambda _a: f"{self.voltage:g}")
        add("OUTPut[:STATe]", self._set_output)
        add("OUTPut[:STATe]?", lambda _a: "ON" if self.output else "OFF")
        add("MEASure[:SCALar]:VOLTage[:ACDC]?", lambda _a: "229.9")
        add("MEASure[:SCALar]:VOLTage:AC?", lambda _a: "229.8")

    def _set_voltage(self, args):
        self.voltage = parse_number(args, 0.0, 300.0)

    def _set_output(self, args):
        self.output = parse_bool(args)

    def run(self, message):
        return self.scpi.execute(message)

    def next_error(self):
        return self.scpi.execute("SYST:ERR?")


@pytest.fixture
def box():
    return Box()


# -- compile_pattern, split_units, parse_bool, parse_number -------------------------------------------------


def test_compile_pattern_takes_upper_case_part_as_short_form():
    assert compile_pattern("[SOURce:]VOLTage[:LEVel]:AC") == (
        Node("SOUR", "SOURCE", True), Node("VOLT", "VOLTAGE", False),
        Node("LEV", "LEVEL", True), Node("AC", "AC", False))


def test_node_matches_short_and_long_form_only():
    node = compile_pattern("VOLTage")[0]
    assert node.matches("volt") and node.matches("VOLTAGE")
    assert not node.matches("VOLTA")


def test_split_units_splits_at_semicolons_and_drops_empty_units():
    assert split_units("VOLT 1; OUTP ON;;*OPC?") == ["VOLT 1", "OUTP ON", "*OPC?"]


def test_split_units_keeps_semicolon_inside_quotes():
    assert split_units('DISP:TEXT "a;b";SYST:ERR?') == ['DISP:TEXT "a;b"', "SYST:ERR?"]
    assert split_units("DISP:TEXT 'x;y'") == ["DISP:TEXT 'x;y'"]


@pytest.mark.parametrize(("text", "value"), [("ON", True), ("on", True), ("1", True), ("OFF", False),
                                             ("0", False)])
def test_parse_bool_accepts_on_off_and_digits(text, value):
    assert parse_bool([text]) is value


def test_parse_bool_refuses_other_words_with_224():
    with pytest.raises(ScpiError) as info:
        parse_bool(["MAYBE"])
    assert (info.value.code, info.value.detail) == (-224, "MAYBE")


def test_parse_number_min_max_and_range():
    assert parse_number(["MIN"], 0.0, 300.0) == 0.0
    assert parse_number(["maximum"], 0.0, 300.0) == 300.0
    assert parse_number(["1.5e2"], 0.0, 300.0) == 150.0
    with pytest.raises(ScpiError) as info:
        parse_number(["300.1"], 0.0, 300.0)
    assert info.value.code == -222


def test_parse_number_without_argument_is_missing_parameter():
    with pytest.raises(ScpiError) as info:
        parse_number([], 0.0, 1.0)
    assert info.value.code == -109


# -- header forms -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["VOLT:AC 12", "VOLTAGE:AC 12", "SOUR:VOLT:LEV:AC 12",
                                     "SOURCE:VOLTAGE:LEVEL:AC 12", "sour:volt:ac 12", "Voltage:Level:Ac 12"])
def test_long_short_and_mixed_case_headers_reach_the_same_setter(box, command):
    assert box.run(command) is None
    assert box.voltage == 12.0
    assert box.next_error() == NO_ERROR


def test_optional_nodes_may_be_omitted_in_queries(box):
    box.run("VOLT:AC 7")
    assert box.run("VOLT:AC?") == "7"
    assert box.run("SOUR:VOLT:LEV:AC?") == "7"
    assert box.run("OUTP:STAT?") == "OFF"
    assert box.run("MEAS:SCAL:VOLT:ACDC?") == "229.9"
    assert box.run("MEAS:VOLT?") == "229.9"


def test_partial_long_form_is_undefined(box):
    assert box.run("VOLTA:AC 5") is None
    assert box.voltage == 0.0
    assert box.next_error() == '-113,"Undefined header; VOLTA:AC 5"'


# -- program messages with several units --------------------------------------------------------------------


def test_chain_joins_query_answers_with_semicolon(box):
    assert box.run("VOLT:AC 5;OUTP ON;VOLT:AC?;OUTP?") == "5;ON"


def test_chain_without_queries_returns_none(box):
    assert box.run("VOLT:AC 5;OUTP ON") is None
    assert (box.voltage, box.output) == (5.0, True)


def test_chained_header_is_relative_to_previous_path(box):
    assert box.run("SOUR:VOLT:AC 10;AC?") == "10"
    assert box.next_error() == NO_ERROR


def test_relative_header_resolves_below_previous_path(box):
    assert box.run("MEAS:VOLT?;VOLT:AC?") == "229.9;229.8"


def test_leading_colon_restarts_at_root(box):
    box.run("VOLT:AC 42")
    assert box.run("MEAS:VOLT?;:VOLT:AC?") == "229.9;42"


def test_errors_in_a_chain_do_not_stop_later_units(box):
    assert box.run("NOPE;VOLT:AC 3;VOLT:AC?") == "3"
    assert box.next_error().startswith("-113,")


# -- common commands and the error queue --------------------------------------------------------------------


def test_unknown_header_gives_no_reply_and_queues_113(box):
    assert box.run("FOO:BAR?") is None
    assert box.next_error() == '-113,"Undefined header; FOO:BAR?"'
    assert box.next_error() == NO_ERROR


def test_unknown_common_command_is_undefined(box):
    assert box.run("*XYZ") is None
    assert box.next_error() == '-113,"Undefined header; *XYZ"'


def test_cls_clears_the_error_queue(box):
    box.run("FOO;BAR")
    assert box.run("*cls") is None
    assert box.next_error() == NO_ERROR


def test_error_queue_is_first_in_first_out(box):
    box.run("VOLT:AC 999;OUTP")
    assert box.next_error() == '-222,"Data out of range; 999"'
    assert box.next_error() == '-109,"Missing parameter"'
    assert box.next_error() == NO_ERROR


def test_long_form_system_error_next_query(box):
    box.run("FOO")
    assert box.run("SYSTEM:ERROR:NEXT?") == '-113,"Undefined header; FOO"'


def test_out_of_range_number_gives_222_and_keeps_setpoint(box):
    box.run("VOLT:AC 100")
    box.run("VOLT:AC 300.5")
    assert box.voltage == 100.0
    assert box.next_error() == '-222,"Data out of range; 300.5"'


def test_missing_parameter_gives_109(box):
    box.run("VOLT:AC")
    assert box.next_error() == '-109,"Missing parameter"'


def test_non_numeric_parameter_gives_120(box):
    box.run("VOLT:AC abc")
    assert box.next_error() == '-120,"Numeric data error; abc"'


def test_bad_boolean_gives_224(box):
    box.run("OUTP MAYBE")
    assert box.output is False
    assert box.next_error() == '-224,"Illegal parameter value; MAYBE"'


def test_min_and_max_parameters(box):
    box.run("VOLT:AC MAX")
    assert box.voltage == 300.0
    box.run("VOLT:AC min")
    assert box.voltage == 0.0
    assert box.next_error() == NO_ERROR


def test_error_queue_overflow_replaces_last_entry_with_350(box):
    box.run(";".join(f"BAD{i}" for i in range(20)))
    answers = [box.next_error() for _ in range(17)]
    assert answers[0] == '-113,"Undefined header; BAD0"'
    assert answers[14] == '-113,"Undefined header; BAD14"'
    assert answers[15] == '-350,"Queue overflow"'
    assert answers[16] == NO_ERROR


def test_exactly_sixteen_errors_do_not_overflow(box):
    box.run(";".join(f"BAD{i}" for i in range(16)))
    answers = [box.next_error() for _ in range(17)]
    assert answers[15] == '-113,"Undefined header; BAD15"'
    assert answers[16] == NO_ERROR


# -- the simulated Chroma source ----------------------------------------------------------------------------


def make_source(meters=1):
    model = PhysicalModel(truth=TruthLog(None), rng=random.Random(1),
                          meters=[SimMeter(position=i, serial=f"M{i}", un_v=240.0, base_current_a=10.0,
                                          self_consumption_w=5.0, test_output_imp_per_kwh=3200.0)
                                 for i in range(1, meters + 1)])
    return ChromaSourceSim("source", model, {}), model


def test_chroma_idn():
    source, _ = make_source()
    assert source.handle("*IDN?") == "Chroma ATE,61504,SIM61504-0001,1.10"


def test_chroma_idn_from_settings():
    model = PhysicalModel(truth=TruthLog(None), rng=random.Random(1))
    source = ChromaSourceSim("source", model, {"idn": "Chroma ATE,61505,X1,2.0"})
    assert source.handle("*idn?") == "Chroma ATE,61505,X1,2.0"


def test_chroma_output_on_and_query():
    source, model = make_source()
    assert source.handle("OUTP?") == "OFF"
    assert source.handle("OUTP ON") is None
    assert source.handle("OUTP?") == "ON"
    assert model.source.output_on is True


def test_chroma_voltage_setpoint_and_measurement():
    source, _ = make_source()
    source.handle("VOLT:AC 230;OUTP ON")
    assert source.handle("SOUR:VOLT:AC?") == "230.000"
    assert float(source.handle("MEAS:VOLT:ACDC?")) == pytest.approx(230.0, abs=0.2)


def test_chroma_setting_and_error_check_in_one_message():
    source, _ = make_source()
    assert source.handle("SOUR:VOLT:AC 230.000;:SYST:ERR?") == NO_ERROR


@pytest.mark.parametrize("meters", [1, 3])
def test_chroma_power_is_self_consumption_of_all_meters_when_on(meters):
    source, _ = make_source(meters)
    source.handle("VOLT:AC 230;OUTP ON")
    assert float(source.handle("MEAS:POW:AC?")) == 5.0 * meters


def test_chroma_power_and_current_are_zero_when_off():
    source, _ = make_source(3)
    source.handle("VOLT:AC 230")
    assert float(source.handle("MEAS:POW:AC?")) == 0.0
    assert float(source.handle("MEAS:CURR:AC?")) == 0.0


def test_chroma_current_is_power_over_voltage():
    source, _ = make_source(3)
    source.handle("VOLT:AC 230;OUTP ON")
    assert float(source.handle("MEAS:CURR:AC?")) == pytest.approx(15.0 / 230.0, abs=1e-4)


def test_chroma_refuses_301_volts_and_keeps_setpoint():
    source, model = make_source()
    source.handle("VOLT:AC 230")
    assert source.handle("VOLT:AC 301") is None
    assert source.handle("SYST:ERR?") == '-222,"Data out of range; 301"'
    assert model.source.voltage_setpoint_v == 230.0
    assert source.handle("VOLT:AC?") == "230.000"


def test_chroma_rst_turns_output_off_and_voltage_to_zero():
    source, model = make_source()
    source.handle("VOLT:AC 230;OUTP ON")
    assert source.handle("*RST;*OPC?") == "1"
    assert source.handle("OUTP?;VOLT:AC?") == "OFF;0.000"
    assert (model.source.output_on, model.source.voltage_setpoint_v) == (False, 0.0)


def test_chroma_fetch_and_measure_both_answer():
    source, _ = make_source()
    source.handle("VOLT:AC 230;FREQ 50;OUTP ON")
    for verb in ("FETC", "MEAS", "FETCH", "MEASURE"):
        assert float(source.handle(f"{verb}:VOLT?")) == pytest.approx(230.0, abs=0.2)
        assert source.handle(f"{verb}:FREQ?") == "50.000"
        assert source.handle(f"{verb}:SCAL:POW:AC:REAL?") == "5.000"
    assert source.handle("SYST:ERR?") == NO_ERROR


# -- IEEE 488.2 status model and SCPI-99 mandatory queries --------------------------------------------------


def test_power_on_sets_pon_and_cls_clears_it(box):
    assert box.run("*ESR?") == "128"
    assert box.run("*ESR?") == "0"
    box.run("FOO")
    assert box.run("*CLS;*ESR?;*STB?") == "0;16"  # MAV: the *ESR? response waits when *STB? runs
    assert box.run("*STB?") == "0"


@pytest.mark.parametrize(("message", "bit"), [("FOO", 32), ("VOLT:AC 999", 16), ("VOLT:AC 1,2", 32)])
def test_each_error_sets_its_event_bit_and_esr_clears_on_read(box, message, bit):
    box.run("*CLS")
    box.run(message)
    assert box.run("*ESR?") == str(bit)
    assert box.run("*ESR?") == "0"


def test_device_and_query_errors_set_dde_and_qye():
    scpi = ScpiInterpreter()
    scpi.execute("*CLS")
    scpi.push_error((-310, "System error"))
    scpi.push_error((-410, "Query INTERRUPTED"))
    assert scpi.execute("*ESR?") == str(8 | 4)


def test_status_byte_error_queue_mav_esb_and_mss(box):
    box.run("*CLS")
    assert box.run("*STB?") == "0"
    box.run("FOO")
    assert box.run("*STB?") == "4"  # the error queue holds an error
    box.run("*CLS;*ESE 32;*SRE 36")
    box.run("FOO")
    assert box.run("*STB?") == str(4 | 32 | 64)  # error queue, ESB, MSS
    assert box.run("OUTP?;*STB?") == f"OFF;{4 | 16 | 32 | 64}"  # a response waits: MAV
    box.run("SYST:ERR?;*ESR?")
    assert box.run("*STB?") == "0"


def test_enable_registers_read_back_and_range(box):
    box.run("*ESE 36;*SRE 255")
    assert box.run("*ESE?;*SRE?") == "36;191"  # bit 6 of the SRE is not settable
    box.run("*CLS")
    box.run("*ESE 256")
    assert box.next_error() == '-222,"Data out of range; 256"'
    assert box.run("*ESE?") == "36"


def test_opc_sets_bit_0_and_opc_query_answers_1(box):
    box.run("*CLS;*OPC")
    assert box.run("*ESR?") == "1"
    assert box.run("*OPC?") == "1"
    assert box.run("*WAI;*TST?") == "0"


def test_scpi_version_and_status_subsystem(box):
    assert box.run("SYST:VERS?") == "1999.0"
    assert box.run("STAT:OPER?;STAT:OPER:COND?;STAT:QUES:EVEN?;STAT:QUES:COND?") == "0;0;0;0"
    box.run("STAT:OPER:ENAB 1024;STAT:QUES:ENAB 3")
    assert box.run("STAT:OPER:ENAB?;:STAT:QUES:ENAB?") == "1024;3"
    box.run("STAT:PRES")
    assert box.run("STAT:OPER:ENAB?;:STAT:QUES:ENAB?") == "0;0"
    assert box.next_error() == NO_ERROR


def test_error_queue_overflow_still_sets_the_event_bit(box):
    box.run(";".join(f"BAD{i}" for i in range(16)) + ";*CLS")
    box.run(";".join(f"BAD{i}" for i in range(16)))
    box.run("*ESR?")
    box.run("VOLT:AC 999")
    assert box.run("*ESR?") == "16"


# -- parameters: count, suffixes, characters ----------------------------------------------------------------


@pytest.mark.parametrize("message", ["VOLT:AC 1,2", "OUTP ON,OFF", "VOLT:AC? 1", "*CLS 1", "*ESR? X", "*OPC 1"])
def test_extra_parameter_is_108_and_nothing_changes(box, message):
    box.run(message)
    assert box.voltage == 0.0 and box.output is False
    assert box.next_error() == f'-108,"Parameter not allowed; {message}"'


def test_missing_parameter_of_a_common_command_is_109(box):
    box.run("*ESE")
    assert box.next_error() == '-109,"Missing parameter"'


@pytest.mark.parametrize(("parameter", "volts"), [("231V", 231.0), ("231 V", 231.0), ("231v", 231.0),
                                                  ("0.231KV", 231.0), ("231000MV", 231.0), ("2.31E2V", 231.0),
                                                  ("2.31 E 2 V", 231.0), ("+231.5", 231.5), (".5V", 0.5)])
def test_voltage_with_its_unit_and_multiplier_is_accepted(parameter, volts):
    assert parse_number([parameter], 0.0, 300.0, unit="V") == volts


@pytest.mark.parametrize(("parameter", "unit", "value"), [("50HZ", "HZ", 50.0), ("50Hz", "HZ", 50.0),
                                                          ("0.05KHZ", "HZ", 50.0), ("0.00005MHZ", "HZ", 50.0),
                                                          ("0.5A", "A", 0.5), ("500MA", "A", 0.5),
                                                          ("1.2KW", "W", 1200.0), ("0.001MOHM", "OHM", 1000.0),
                                                          ("60DEG", "DEG", 60.0)])
def test_other_units_and_their_multipliers(parameter, unit, value):
    assert parse_number([parameter], 0.0, 5000.0, unit=unit) == value


@pytest.mark.parametrize(("parameter", "unit", "code"), [("231A", "V", -131), ("50V", "HZ", -131),
                                                         ("231XV", "V", -131), ("5", None, 0), ("5V", None, -138),
                                                         ("23O", "V", -131), ("V", "V", -120), ("1.2.3", "V", -120)])
def test_a_wrong_suffix_is_131_and_a_suffix_where_none_belongs_138(parameter, unit, code):
    if code == 0:
        assert parse_number([parameter], 0.0, 300.0, unit=unit) == 5.0
        return
    with pytest.raises(ScpiError) as info:
        parse_number([parameter], 0.0, 300.0, unit=unit)
    assert info.value.code == code


def test_source_accepts_suffixes_and_refuses_a_wrong_unit():
    source, model = make_source()
    assert source.handle("VOLT:AC 231V;FREQ 50HZ;CURR:LIM 0.5A;SYST:ERR?") == NO_ERROR
    assert (model.source.voltage_setpoint_v, model.source.frequency_setpoint_hz) == (231.0, 50.0)
    assert source.handle("VOLT:AC 5A") is None
    assert source.handle("SYST:ERR?") == '-131,"Invalid suffix; A (the parameter is in V)"'
    assert model.source.voltage_setpoint_v == 231.0


def test_a_non_ascii_character_is_101_and_the_rest_of_the_message_runs(box):
    assert box.run("VOLT:AC 2\xff3;VOLT:AC?") == "0"
    assert box.next_error() == '-101,"Invalid character; VOLT:AC 2\\xff3"'
    assert box.run("*ESR?") == str(128 | 32)


def test_source_rst_keeps_the_status_registers():
    source, _ = make_source()
    source.handle("*CLS;*ESE 32;FOO")
    assert source.handle("*RST;*ESE?;*STB?") == f"32;{4 | 16 | 32}"
    assert source.handle("*RST 1") is None
    assert source.handle("SYST:ERR?") == '-113,"Undefined header; FOO"'
    assert source.handle("SYST:ERR?") == '-108,"Parameter not allowed; *RST 1"'
