"""Conformance of the AT modem (a Quectel EC25) with pyserial on its AT port, not the rig's driver.

Exchanges as ITU-T V.250 (command line, echo, result codes and their framing), 3GPP TS 27.007 (identification,
SIM, registration, operator, functionality, +CME ERROR) and the Quectel EC25 AT Commands Manual (ATI, +QCCID,
+QNWINFO, +QCSQ) document them. Read-only tests accept the echo a modem may have on; tests that change a setting
are marked changes_outputs and end with ATZ (the stored profile).
"""

from __future__ import annotations

import re
import time

import pytest
import serial

pytestmark = pytest.mark.role("modem@1")

FINAL_V1 = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r\n]*)\r\n")  # a URC may follow it
TIMEOUT_S = 10.0


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


class AtPort:
    """The modem's AT port through pyserial: raw bytes out, raw bytes in."""

    def __init__(self, path: str):
        self.port = serial.Serial(path, 115200, timeout=0.05)
        self.port.reset_input_buffer()

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def read_until(self, done, timeout_s: float = TIMEOUT_S) -> bytes:
        """Bytes read until done(buffer) holds; AssertionError saying what arrived when it does not in time."""
        buffer = b""
        deadline = time.monotonic() + timeout_s
        while not done(buffer):
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete answer within {timeout_s} s; got {buffer!r}")
            buffer += self.port.read(self.port.in_waiting or 1)
        return buffer

    def raw(self, line: bytes, ends: tuple[bytes, ...] = ()) -> bytes:
        """Send `line` + CR; everything until a V1 final result code (or one of `ends`), echo included."""
        self.send(line + b"\r")
        return self.read_until(lambda b: FINAL_V1.search(b) is not None or any(b.endswith(e) for e in ends))

    def ask(self, line: bytes) -> bytes:
        """The answer to `line` with its echo removed, if the modem echoes."""
        return self.raw(line).removeprefix(line + b"\r")

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def at(device):
    port = AtPort(device.path)
    yield port
    port.close()


@pytest.fixture
def restore(at):
    """Restores the modem's stored profile (ATZ) and the URC settings after a test that changes them."""
    yield at
    at.send(b"\r")  # ends any half-typed line
    time.sleep(0.05)
    at.port.reset_input_buffer()
    at.ask(b"AT+CREG=0;+CGREG=0;+CEREG=0")
    assert at.ask(b"ATZ").endswith(b"\r\nOK\r\n")


def ok(*lines: bytes) -> bytes:
    return b"".join(b"\r\n" + line + b"\r\n" for line in lines) + b"\r\nOK\r\n"


def info(answer: bytes) -> list[bytes]:
    """The information lines of a V1 answer that ended in OK."""
    assert answer.endswith(b"\r\nOK\r\n"), answer
    return [line for line in answer[:-len(b"\r\nOK\r\n")].split(b"\r\n") if line]


# -- V.250 command line and result codes -------------------------------------------------------------------------

def test_at_answers_ok_framed_cr_lf(at):
    assert at.ask(b"AT") == b"\r\nOK\r\n"


def test_lower_case_prefix_and_commands_are_accepted(at):
    assert at.ask(b"at") == b"\r\nOK\r\n"
    assert at.ask(b"at+cgmi") == ok(b"Quectel")


def test_an_unknown_command_is_error(at):
    assert at.ask(b"AT+NOSUCHCMD") == b"\r\nERROR\r\n"
    assert at.ask(b"AT^DSCI=1") == b"\r\nERROR\r\n"  # another vendor's command, as an EC25 answers it


def test_cr_lf_line_ends_are_accepted_and_the_lf_starts_nothing(at):
    at.send(b"AT+CGMI\r\n")
    answer = at.read_until(lambda b: FINAL_V1.search(b) is not None)
    assert answer.removeprefix(b"AT+CGMI\r") == ok(b"Quectel")
    assert at.ask(b"AT") == b"\r\nOK\r\n"  # no reply to the LF came in between


def test_extended_commands_concatenate_with_semicolons_and_end_with_one_ok(at):
    answer = at.ask(b"AT+CGMI;+CGMM;+CPIN?")
    assert answer == ok(b"Quectel", b"EC25", b"+CPIN: READY")
    answer = at.ask(b"AT+CSQ;+CEREG?")
    assert answer.count(b"OK") == 1
    csq, cereg = info(answer)
    assert re.fullmatch(rb"\+CSQ: \d+,\d+", csq) and re.fullmatch(rb"\+CEREG: [0-2],[0-5].*", cereg)


def test_a_command_line_stops_at_its_first_error(at):
    answer = at.ask(b"AT+CGMI;+NOSUCHCMD;+CGMM")
    assert answer.endswith(b"\r\nERROR\r\n")
    assert b"EC25" not in answer and b"OK" not in answer


def test_a_slash_repeats_the_last_command_line(at):
    first = at.ask(b"AT+CGMM")
    assert first == ok(b"EC25")
    at.send(b"A/")  # V.250 5.2.4: executed at once, no CR
    repeated = at.read_until(lambda b: FINAL_V1.search(b) is not None)
    assert repeated.removeprefix(b"A/") in (first, b"\r" + first)  # with echo on, "A/" may come back first


def test_s3_and_s4_are_cr_and_lf(at):
    assert at.ask(b"ATS3?") == ok(b"013")
    assert at.ask(b"ATS4?") == ok(b"010")


@pytest.mark.changes_outputs
def test_echo_on_returns_the_line_and_echo_off_does_not(restore):
    at = restore
    at.raw(b"ATE1")
    assert at.raw(b"AT") == b"AT\r\r\nOK\r\n"
    assert at.raw(b"ATE0") == b"ATE0\r\r\nOK\r\n"  # echoed: the line arrived while echo was on
    assert at.raw(b"AT") == b"\r\nOK\r\n"
    assert at.raw(b"AT+CGMI") == ok(b"Quectel")


@pytest.mark.changes_outputs
def test_basic_commands_concatenate_without_separator(restore):
    at = restore
    assert at.ask(b"ATE0Q0V1") == b"\r\nOK\r\n"
    assert at.raw(b"AT") == b"\r\nOK\r\n"
    assert at.raw(b"ATE1 V1") == b"\r\nOK\r\n"  # spaces are ignored (V.250 5.2.1)
    assert at.raw(b"AT") == b"AT\r\r\nOK\r\n"


@pytest.mark.changes_outputs
def test_v0_gives_numeric_result_codes_and_v1_verbose_ones(restore):
    at = restore
    at.ask(b"ATE0")
    numeric = (b"0\r", b"4\r")
    assert at.raw(b"ATV0", numeric) == b"0\r"  # V.250 6.2.6: <numeric code><CR>
    assert at.raw(b"AT+CGMI", numeric) == b"Quectel\r\n0\r"  # information text: <text><CR><LF>
    assert at.raw(b"AT+NOSUCHCMD", numeric) == b"4\r"
    assert at.raw(b"ATV1", numeric) == b"\r\nOK\r\n"  # the result code of ATV1 is framed as V1 says
    assert at.raw(b"AT+CGMI") == ok(b"Quectel")


@pytest.mark.changes_outputs
def test_z_and_f_restore_echo_error_format_and_registration_reporting(restore):
    at = restore
    at.ask(b"AT&F")
    factory = at.ask(b"AT+CMEE?")
    assert re.fullmatch(rb"\r\n\+CMEE: [0-2]\r\n\r\nOK\r\n", factory)
    assert at.ask(b"ATE0;+CMEE=2;+CEREG=2") == b"\r\nOK\r\n"
    assert at.raw(b"AT+CMEE?") == ok(b"+CMEE: 2")
    assert at.raw(b"AT&F") == b"\r\nOK\r\n"
    assert at.raw(b"AT+CMEE?") == b"AT+CMEE?\r" + factory  # echo is back on
    assert info(at.ask(b"AT+CEREG?"))[0].startswith(b"+CEREG: 0,")
    assert at.ask(b"ATE0;+CMEE=2") == b"\r\nOK\r\n"
    assert at.raw(b"ATZ") == b"\r\nOK\r\n"
    assert at.raw(b"AT+CMEE?") == b"AT+CMEE?\r" + factory


@pytest.mark.twin_only
@pytest.mark.changes_outputs
def test_z_restores_the_profile_stored_with_w(restore):
    at = restore
    try:
        assert at.ask(b"ATE0;+CMEE=2;&W") == b"\r\nOK\r\n"
        assert at.raw(b"AT&F;+CMEE=0") == b"\r\nOK\r\n"
        assert at.raw(b"ATZ") == b"ATZ\r\r\nOK\r\n"  # echoed: &F turned echo on
        assert at.raw(b"AT+CMEE?") == ok(b"+CMEE: 2")  # echo off and CMEE 2 again, as stored
    finally:
        at.ask(b"AT&F;&W")


# -- identification (V.250 6.1, 27.007 5, EC25 manual 2) ---------------------------------------------------------

def test_ati_names_quectel_the_model_and_the_revision(at):
    answer = at.ask(b"ATI")
    assert re.fullmatch(rb"\r\nQuectel\r\n\r\nEC25\r\n\r\nRevision: [A-Z0-9]+\r\n\r\nOK\r\n", answer)


@pytest.mark.parametrize(("v250", "gsm", "expected"), [(b"AT+GMI", b"AT+CGMI", rb"Quectel"),
                                                       (b"AT+GMM", b"AT+CGMM", rb"EC25"),
                                                       (b"AT+GMR", b"AT+CGMR", rb"EC25[A-Z0-9]+"),
                                                       (b"AT+GSN", b"AT+CGSN", rb"\d{15}")])
def test_identification_commands_and_their_27007_twins_agree(at, v250, gsm, expected):
    answer = at.ask(v250)
    assert re.fullmatch(rb"\r\n" + expected + rb"\r\n\r\nOK\r\n", answer)
    assert at.ask(gsm) == answer


def test_the_revision_of_ati_is_the_one_of_cgmr(at):
    revision = info(at.ask(b"ATI"))[2].removeprefix(b"Revision: ")
    assert at.ask(b"AT+CGMR") == ok(revision)


def test_the_imei_has_a_valid_check_digit(at):
    [imei] = info(at.ask(b"AT+CGSN"))
    assert luhn_valid(imei.decode())


def test_cimi_gives_the_imsi(at, device):
    [imsi] = info(at.ask(b"AT+CIMI"))
    assert re.fullmatch(rb"\d{15}", imsi)
    if device.on_twin:
        assert imsi[:3] in (b"404", b"405")  # an Indian SIM


def test_qccid_gives_the_iccid(at):
    [line] = info(at.ask(b"AT+QCCID"))
    match = re.fullmatch(rb"\+QCCID: (89\d{17,18})F?", line)
    assert match and luhn_valid(match.group(1).decode())


def test_cpin_says_the_sim_is_ready(at):
    assert at.ask(b"AT+CPIN?") == ok(b"+CPIN: READY")


# -- registration, operator, functionality ------------------------------------------------------------------------

@pytest.mark.parametrize("name", [b"+CREG", b"+CGREG", b"+CEREG"])
def test_registration_read_gives_mode_and_stat(at, device, name):
    [line] = info(at.ask(b"AT" + name + b"?"))
    assert re.fullmatch(re.escape(name) + rb': [0-2],[0-5](,"[0-9A-F]+","[0-9A-F]+",\d+)?', line)
    if device.on_twin:
        assert line == name + b": 0,1"  # URCs off, registered on the home network


def test_cops_read_names_the_operator_and_lte(at, device):
    [line] = info(at.ask(b"AT+COPS?"))
    assert re.fullmatch(rb'\+COPS: [0-4],0,"[^"]+",7', line)
    if device.on_twin:
        assert line == b'+COPS: 0,0,"Vi India",7'


def test_cfun_read_is_full_functionality(at):
    assert at.ask(b"AT+CFUN?") == ok(b"+CFUN: 1")


def test_qnwinfo_gives_access_technology_operator_band_and_channel(at, device):
    [line] = info(at.ask(b"AT+QNWINFO"))
    assert re.fullmatch(rb'\+QNWINFO: "FDD LTE","\d{5,6}","LTE BAND \d+",\d+', line)
    if device.on_twin:
        assert line == b'+QNWINFO: "FDD LTE","40445","LTE BAND 3",1300'


def test_signal_commands_answer_in_their_ranges(at):
    [csq] = info(at.ask(b"AT+CSQ"))
    rssi, ber = map(int, re.fullmatch(rb"\+CSQ: (\d+),(\d+)", csq).groups())
    assert (0 <= rssi <= 31 or rssi == 99) and (0 <= ber <= 7 or ber == 99)
    [cesq] = info(at.ask(b"AT+CESQ"))
    *_, rsrq, rsrp = map(int, re.fullmatch(rb"\+CESQ: (\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", cesq).groups())
    assert 0 <= rsrq <= 34 and 0 <= rsrp <= 97
    [qcsq] = info(at.ask(b"AT+QCSQ"))
    assert re.fullmatch(rb'\+QCSQ: "LTE",-\d+,-\d+,\d+,-\d+', qcsq)


def test_cmee_read_gives_the_error_format(at):
    assert re.fullmatch(rb"\r\n\+CMEE: [0-2]\r\n\r\nOK\r\n", at.ask(b"AT+CMEE?"))


def test_ipr_read_gives_the_baud_rate(at):
    assert re.fullmatch(rb"\r\n\+IPR: \d+\r\n\r\nOK\r\n", at.ask(b"AT+IPR?"))


# -- +CME ERROR (27.007 9.1) ---------------------------------------------------------------------------------------

@pytest.mark.changes_outputs
def test_cmee_selects_plain_numeric_or_verbose_errors(restore, device):
    at = restore
    at.ask(b"ATE0")
    pin_not_pending = b'AT+CPIN="1234"'  # 27.007 8.3: no PIN pending, no action, +CME ERROR
    at.ask(b"AT+CMEE=0")
    assert at.raw(pin_not_pending) == b"\r\nERROR\r\n"
    at.ask(b"AT+CMEE=1")
    numeric = at.raw(pin_not_pending)
    assert re.fullmatch(rb"\r\n\+CME ERROR: \d+\r\n", numeric)
    at.ask(b"AT+CMEE=2")
    verbose = at.raw(pin_not_pending)
    assert re.fullmatch(rb"\r\n\+CME ERROR: [A-Za-z][A-Za-z ]*\r\n", verbose)
    if device.on_twin:
        assert (numeric, verbose) == (b"\r\n+CME ERROR: 3\r\n", b"\r\n+CME ERROR: operation not allowed\r\n")
    assert at.raw(b"AT+NOSUCHCMD") == b"\r\nERROR\r\n"  # not an MT error: plain ERROR in every mode


@pytest.mark.twin_only
@pytest.mark.changes_outputs
def test_a_missing_sim_is_cme_error_10_as_the_manual_shows(restore, twin_model):
    at = restore
    modem = twin_model.twin.instruments["modem@1"]
    twin_model.call(setattr, modem, "sim_inserted", False)
    try:
        at.ask(b"ATE0;+CMEE=0")
        assert at.raw(b"AT+CPIN?") == b"\r\nERROR\r\n"
        at.ask(b"AT+CMEE=1")
        assert at.raw(b"AT+CPIN?") == b"\r\n+CME ERROR: 10\r\n"
        at.ask(b"AT+CMEE=2")
        assert at.raw(b"AT+CPIN?") == b"\r\n+CME ERROR: SIM not inserted\r\n"
        assert at.raw(b"AT+CIMI") == b"\r\n+CME ERROR: SIM not inserted\r\n"
        assert at.raw(b"AT+CGMI;+CPIN?;+CGMM") == b"\r\nQuectel\r\n\r\n+CME ERROR: SIM not inserted\r\n"
    finally:
        twin_model.call(setattr, modem, "sim_inserted", True)


# -- unsolicited registration reports ------------------------------------------------------------------------------

def read_urcs(at: AtPort, count: int, timeout_s: float) -> list[bytes]:
    data = at.read_until(lambda b: b.count(b"\r\n") >= 2 * count, timeout_s)
    return [line for line in data.split(b"\r\n") if line]


@pytest.mark.twin_only
@pytest.mark.changes_outputs
def test_registration_urcs_follow_the_link_in_each_mode(restore, twin_model):
    at = restore
    link = twin_model.model.radio(1)
    assert at.ask(b"ATE0;+CREG=1;+CGREG=1;+CEREG=2") == b"\r\nOK\r\n"
    assert at.raw(b"AT+CEREG?") == ok(b'+CEREG: 2,1,"1A2B","01A2B301",7')
    try:
        twin_model.call(link.set_attenuation, 55.0, "conformance")  # -125 dBm: registration lost
        assert read_urcs(at, 3, 5.0) == [b"+CREG: 2", b"+CGREG: 2", b"+CEREG: 2"]
        assert at.raw(b"AT+CEREG?;+CSQ") == ok(b"+CEREG: 2,2", b"+CSQ: 99,99")
    finally:
        twin_model.call(link.set_attenuation, 0.0, "conformance")
    urcs = read_urcs(at, 3, 5.0)  # re-attached after the link's reattach time
    assert urcs == [b"+CREG: 1", b"+CGREG: 1", b'+CEREG: 1,"1A2B","01A2B301",7']


@pytest.mark.changes_outputs
def test_radio_off_deregisters_and_radio_on_registers_again(restore):
    at = restore
    assert at.ask(b"ATE0;+CEREG=1") == b"\r\nOK\r\n"
    try:
        answer = at.raw(b"AT+CFUN=4")
        assert answer.startswith(b"\r\nOK\r\n")
        if b"+CEREG" not in answer:
            answer += at.read_until(lambda b: b"+CEREG: 0\r\n" in b, 15.0)
        assert b"\r\n+CEREG: 0\r\n" in answer
        assert at.raw(b"AT+CFUN?;+CEREG?;+CSQ") == ok(b"+CFUN: 4", b"+CEREG: 1,0", b"+CSQ: 99,99")
    finally:
        answer = at.raw(b"AT+CFUN=1")
    if b"+CEREG: 1\r\n" not in answer:
        answer += at.read_until(lambda b: b"+CEREG: 1\r\n" in b, 60.0)
    assert at.raw(b"AT+CFUN?") == ok(b"+CFUN: 1")


# -- start-up sequences of modem managers --------------------------------------------------------------------------

@pytest.mark.changes_outputs
def test_the_start_up_of_a_quectel_android_ril(restore):
    """The sequence an EC25's Android RIL sends (a RIL log on forums.quectel.com, 'EC25. CME ERROR: 13')."""
    at = restore
    assert info(at.ask(b"ATI"))[:2] == [b"Quectel", b"EC25"]
    subedition, version = info(at.ask(b"AT+CSUB;+CVERSION"))[:2]
    assert subedition.startswith(b"SubEdition: ") and version.startswith(b"VERSION: ")
    for command in (b"ATE0Q0V1", b"ATS0=0", b'AT+QURCCFG="URCPORT","usbat"', b"AT&D2", b"AT+CMEE=1",
                    b"AT+CREG=2", b"AT+CGREG=2"):
        assert at.ask(command) == b"\r\nOK\r\n", command
    assert at.raw(b"AT^DSCI=1") == b"\r\nERROR\r\n"
    assert at.raw(b"AT+CFUN?") == ok(b"+CFUN: 1")
    assert at.raw(b"AT+CPIN?") == ok(b"+CPIN: READY")
    assert re.fullmatch(rb"\d{15}", info(at.raw(b"AT+CIMI"))[0])
    operators = info(at.raw(b"AT+COPS=3,0;+COPS?;+COPS=3,1;+COPS?;+COPS=3,2;+COPS?"))
    assert [line[:11] for line in operators] == [b'+COPS: 0,0,', b'+COPS: 0,1,', b'+COPS: 0,2,']
    assert re.fullmatch(rb'\+COPS: 0,2,"\d{5,6}",7', operators[2])
    [creg] = info(at.raw(b"AT+CREG?"))
    assert re.fullmatch(rb'\+CREG: 2,[15],"[0-9A-F]+","[0-9A-F]+",7', creg)
    at.ask(b"AT+COPS=3,0")


@pytest.mark.changes_outputs
def test_the_start_up_of_a_generic_modem_manager(restore):
    """ModemManager-like: reset and set up the port, identify, SIM, registration reporting, operator, signal."""
    at = restore
    for command in (b"ATZ", b"ATE0 V1", b"AT+CMEE=1", b"ATX4 &C1"):
        assert at.ask(command) == b"\r\nOK\r\n", command
    assert at.raw(b"AT+GCAP") == ok(b"+GCAP: +CGSM")
    identity = [info(at.raw(command))[0] for command in (b"AT+CGMI", b"AT+CGMM", b"AT+CGMR", b"AT+CGSN")]
    assert identity[:2] == [b"Quectel", b"EC25"]
    assert at.raw(b"AT+CPIN?") == ok(b"+CPIN: READY")
    assert info(at.raw(b"AT+QCCID"))[0].startswith(b"+QCCID: 89")
    assert at.raw(b"AT+CFUN?") == ok(b"+CFUN: 1")
    for command in (b"AT+CREG=2", b"AT+CGREG=2", b"AT+CEREG=2"):
        assert at.raw(command) == b"\r\nOK\r\n", command
    for name in (b"+CREG", b"+CGREG", b"+CEREG"):
        [line] = info(at.raw(b"AT" + name + b"?"))
        assert re.fullmatch(re.escape(name) + rb': 2,[15],"[0-9A-F]+","[0-9A-F]+",7', line)
    [numeric] = info(at.raw(b"AT+COPS=3,2;+COPS?"))
    assert re.fullmatch(rb'\+COPS: 0,2,"\d{5,6}",7', numeric)
    at.raw(b"AT+COPS=3,0")
    assert info(at.raw(b"AT+CSQ;+CESQ;+QNWINFO"))[2].startswith(b'+QNWINFO: "FDD LTE"')
