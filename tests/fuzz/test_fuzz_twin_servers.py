"""The twin's servers survive fuzzed traffic on their real transports: a few hundred mutated messages each (SCPI
on TCP, Modbus TCP, the DLMS TCP wrapper, HDLC on a pty, AT on a pty, Telnet, the HES's HTTP API), then a fresh
client's valid request is answered correctly."""

from __future__ import annotations

import random
import re

import pytest
from servers import survive

pytestmark = pytest.mark.xdist_group("fuzz")

MESSAGES = 300


def test_the_scpi_server_answers_idn_after_fuzzed_messages(fuzz_context):
    survival = survive(fuzz_context, "scpi", MESSAGES, random.Random(1))
    assert survival.sent == MESSAGES + 2
    assert survival.server_errors == []
    assert survival.answer == 'Chroma ATE,61504,SIM61504-0001,1.10\n0,"No error"\n'


def test_the_modbus_server_answers_a_register_read_after_fuzzed_frames(fuzz_context):
    survival = survive(fuzz_context, "modbus", MESSAGES, random.Random(2))
    assert survival.sent == MESSAGES
    assert survival.server_errors == []
    answer = bytes.fromhex(survival.answer)
    assert answer[:7] == bytes.fromhex("4242 0000 0007 01".replace(" ", ""))  # transaction echoed, unit 1
    assert answer[7:9] == b"\x03\x04"  # read holding registers: 4 bytes of data


def test_the_dlms_wrapper_answers_the_clock_after_fuzzed_frames(fuzz_context):
    survival = survive(fuzz_context, "dlms-wrapper", MESSAGES, random.Random(3))
    assert survival.sent == MESSAGES
    assert survival.server_errors == []
    assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+05:30", survival.answer)


def test_the_hdlc_port_answers_the_clock_after_fuzzed_frames(fuzz_context):
    survival = survive(fuzz_context, "dlms-hdlc", MESSAGES, random.Random(4))
    assert survival.sent == MESSAGES
    assert survival.server_errors == []
    assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+05:30", survival.answer)


def test_the_modem_answers_identification_after_fuzzed_command_lines(fuzz_context):
    survival = survive(fuzz_context, "at", MESSAGES, random.Random(5))
    assert survival.sent > MESSAGES * 0.9  # lines that would change S3, S4 or S5 (the framing) are left out
    assert survival.server_errors == []
    assert re.fullmatch(r"Quectel EC25 \d{15}", survival.answer)


def test_the_telnet_attenuator_answers_its_model_after_fuzzed_bytes(fuzz_context):
    survival = survive(fuzz_context, "telnet", MESSAGES, random.Random(6))
    assert survival.sent == MESSAGES
    assert survival.server_errors == []
    assert survival.answer == "MN=RCDAT-6000-110\r\n"


def test_the_hes_still_answers_version_after_fuzzed_requests(fuzz_context):
    survival = survive(fuzz_context, "hes", MESSAGES, random.Random(7))
    assert survival.sent == MESSAGES
    assert survival.answer.startswith('200 {"manufacturer": "Rig twin", "product": "HES-SIM"')


def test_the_hes_never_answers_500_to_a_fuzzed_request(fuzz_context):
    survival = survive(fuzz_context, "hes", MESSAGES, random.Random(8))
    assert survival.server_errors == []
