"""What every SCPI instrument of the bench answers, from IEEE 488.2-1992 (sections 8, 10 and 11: message
exchange, common commands, status model) and SCPI-99 volume 1 (chapters 4, 7 and 9: mandatory commands, numeric
parameters and suffixes, status reporting) and volume 2 chapter 21.8 (error numbers), asserted over a raw TCP
socket: program messages ended by LF, each query's response read up to its LF.

The status model: the Standard Event Status Register (*ESR?, cleared by reading it and by *CLS) has OPC bit 0,
QYE bit 2, DDE bit 3, EXE bit 4, CME bit 5, PON bit 7; the Status Byte (*STB?) has bit 2 while the error queue
holds an entry (SCPI), MAV bit 4, ESB bit 5 (an event enabled by *ESE) and MSS bit 6 (a summary enabled by *SRE).
"""

from __future__ import annotations

import socket
import time

import pytest

CME, EXE, OPC_BIT = 32, 16, 1
ERROR_QUEUE_BIT, ESB, MSS = 4, 32, 64
NO_ERROR = '0,"No error"'


def roles(*names: str) -> list:
    return [pytest.param(name, marks=pytest.mark.role(name), id=name) for name in names]


ALL_ROLES = roles("source", "current", "reference", "load@1")
# a numeric setting of each role that has one: (query, header, unit, output query that must read OFF)
SETTINGS = {
    "source": ("SOUR:VOLT:AC?", "SOUR:VOLT:AC", "V", "OUTP?"),
    "current": ("SOUR:CURR?", "SOUR:CURR", "A", "OUTP?"),
    "load@1": ("CURR:STAT:L1?", "CURR:STAT:L1", "A", "LOAD?"),
}
SETTING_ROLES = roles(*SETTINGS)


class ScpiSocket:
    """A raw SCPI-over-TCP client: send(message) adds the LF; read() returns one response without its LF."""

    def __init__(self, host: str, port: int, timeout_s: float = 3.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.timeout_s = timeout_s
        self.pending = b""

    def send(self, message: str | bytes) -> None:
        self.sock.sendall((message.encode("ascii") + b"\n") if isinstance(message, str) else message)

    def read_raw(self) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no response ended by LF within {self.timeout_s} s; got {self.pending!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"the instrument closed the connection; got {self.pending!r}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line + b"\n"

    def read(self) -> str:
        return self.read_raw().decode("ascii").rstrip("\r\n")

    def query(self, message: str) -> str:
        self.send(message)
        return self.read()

    def error(self) -> tuple[int, str]:
        code, _, text = self.query("SYST:ERR?").partition(",")
        return int(code), text

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scpi(device):
    client = ScpiSocket(device.host, device.port)
    client.send("*CLS")
    yield client
    client.close()


def errors_of(client: ScpiSocket) -> list[int]:
    """Every code the error queue holds, read until 0."""
    codes = []
    for _ in range(32):
        code, _text = client.error()
        if code == 0:
            return codes
        codes.append(code)
    raise AssertionError(f"the error queue never emptied: {codes}")


# -- identification and the plain common queries ------------------------------------------------------------


@pytest.mark.parametrize("role", ALL_ROLES)
def test_idn_names_maker_model_serial_and_firmware(scpi, role):
    fields = scpi.query("*IDN?").split(",")
    assert len(fields) >= 4 and all(field.strip() for field in fields[:2]), fields


@pytest.mark.parametrize("role", ALL_ROLES)
def test_responses_end_with_lf_and_crlf_ends_a_message_too(scpi, role):
    scpi.send("*OPC?")
    assert scpi.read_raw() == b"1\n"
    scpi.send(b"*OPC?\r\n")
    assert scpi.read_raw() == b"1\n"


@pytest.mark.parametrize("role", ALL_ROLES)
def test_opc_query_tst_and_wai(scpi, role):
    assert scpi.query("*OPC?") == "1"
    assert scpi.query("*TST?") == "0"  # 0: the self-test passed
    assert scpi.query("*WAI;*OPC?") == "1"
    assert scpi.query("*OPC?;*OPC?") == "1;1"  # responses of one message joined by ';'
    assert errors_of(scpi) == []


@pytest.mark.parametrize("role", ALL_ROLES)
def test_opc_sets_operation_complete_in_the_event_register(scpi, role):
    scpi.send("*OPC")
    assert int(scpi.query("*ESR?")) & OPC_BIT


@pytest.mark.parametrize("role", ALL_ROLES)
def test_scpi_version_is_a_year_and_revision(scpi, role):
    year, dot, revision = scpi.query("SYST:VERS?").partition(".")
    assert dot and 1990 <= int(year) <= 2100 and revision.isdigit()


@pytest.mark.twin_only
@pytest.mark.parametrize("role", ALL_ROLES)
def test_the_twin_implements_scpi_1999(scpi, role):
    assert scpi.query("SYST:VERS?") == "1999.0"


# -- the error queue and the event status register ----------------------------------------------------------


@pytest.mark.parametrize("role", ALL_ROLES)
def test_empty_error_queue_reads_no_error_and_the_registers_are_clear_after_cls(scpi, role):
    assert scpi.query("SYST:ERR?") == NO_ERROR
    assert scpi.query("*ESR?") == "0"
    assert int(scpi.query("*STB?")) & (ERROR_QUEUE_BIT | ESB | MSS) == 0


@pytest.mark.parametrize("role", ALL_ROLES)
def test_an_undefined_header_is_113_and_sets_cme_once(scpi, role):
    scpi.send("NOSUCH:HEADER 1")
    assert scpi.query("*ESR?") == str(CME)
    assert scpi.query("*ESR?") == "0"  # reading the register cleared it
    code, text = scpi.error()
    assert code == -113 and text.startswith('"Undefined header')
    assert scpi.query("SYST:ERR?") == NO_ERROR


@pytest.mark.parametrize("role", ALL_ROLES)
def test_cls_empties_the_error_queue_and_the_event_register(scpi, role):
    scpi.send("NOSUCH;NOSUCH")
    scpi.send("*CLS")
    assert scpi.query("*ESR?") == "0"
    assert scpi.query("SYST:ERR?") == NO_ERROR


@pytest.mark.parametrize("role", ALL_ROLES)
def test_an_extra_parameter_is_108(scpi, role):
    scpi.send("*CLS 1")
    assert errors_of(scpi) == [-108]
    assert int(scpi.query("*ESR?")) & CME


@pytest.mark.parametrize("role", ALL_ROLES)
def test_a_missing_parameter_is_109(scpi, role):
    scpi.send("*ESE")
    assert errors_of(scpi) == [-109]
    assert int(scpi.query("*ESR?")) & CME


@pytest.mark.parametrize("role", ALL_ROLES)
def test_an_out_of_range_enable_value_is_an_execution_error(scpi, role):
    before = scpi.query("*ESE?")
    scpi.send("*ESE 256")
    assert errors_of(scpi) == [-222]
    assert int(scpi.query("*ESR?")) & EXE
    assert scpi.query("*ESE?") == before


@pytest.mark.twin_only  # SCPI-99 9.1 puts the error queue in bit 2; the Chroma 61500 manual's status byte has none
@pytest.mark.parametrize("role", ALL_ROLES)
def test_status_byte_bit_2_while_the_error_queue_holds_an_error(scpi, role):
    scpi.send("NOSUCH")
    assert int(scpi.query("*STB?")) & ERROR_QUEUE_BIT
    assert scpi.error()[0] == -113
    assert not int(scpi.query("*STB?")) & ERROR_QUEUE_BIT


# -- enable registers and the summary bits -----------------------------------------------------------------


@pytest.mark.parametrize("role", ALL_ROLES)
def test_ese_and_sre_read_back_and_summarise_an_error(scpi, role):
    ese, sre = scpi.query("*ESE?"), scpi.query("*SRE?")
    try:
        scpi.send("*ESE 36;*SRE 32")  # CME and QYE; ESB
        assert scpi.query("*ESE?") == "36"
        assert scpi.query("*SRE?") == "32"
        assert int(scpi.query("*STB?")) & (ESB | MSS) == 0
        scpi.send("NOSUCH")
        assert int(scpi.query("*STB?")) & (ESB | MSS) == ESB | MSS
        scpi.send("*CLS")
        assert int(scpi.query("*STB?")) & (ESB | MSS) == 0
    finally:
        scpi.send(f"*ESE {ese};*SRE {sre}")
    assert errors_of(scpi) == []


# -- bytes that are not a message --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ALL_ROLES)
def test_a_non_ascii_byte_is_a_command_error_and_the_connection_keeps_answering(scpi, role):
    scpi.send(b"*OPC\xff?\n")
    scpi.send(b"\xc3\xa9\n")
    assert scpi.query("*IDN?")  # still connected, still answering
    codes = errors_of(scpi)
    assert len(codes) == 2 and all(-199 <= code <= -100 for code in codes), codes


@pytest.mark.twin_only
@pytest.mark.parametrize("role", ALL_ROLES)
def test_the_twin_reports_a_non_ascii_byte_as_invalid_character(scpi, role):
    scpi.send(b"*OPC\xff?\n")
    code, text = scpi.error()
    assert (code, text) == (-101, '"Invalid character; *OPC\\xff?"')


# -- numeric parameters with suffixes (SCPI-99 vol 1 7.2, IEEE 488.2 7.7.3) ----------------------------------


def held_setting(device, scpi: ScpiSocket, role: str) -> tuple[float, str, str]:
    """(value held, header, unit) of the role's setting; skips unless its output is OFF."""
    query, header, unit, output_query = SETTINGS[role]
    output_on = scpi.query(output_query).upper() not in ("OFF", "0")
    if output_on and not device.on_twin:
        pytest.skip(f"{device.role}'s output is on: this test sets a level only with the output off")
    assert not output_on, f"{device.role}: the twin's output is on at the start of a conformance test"
    return float(scpi.query(query)), header, unit


@pytest.mark.changes_outputs
@pytest.mark.parametrize("role", SETTING_ROLES)
def test_a_level_with_its_unit_suffix_and_a_multiplier_is_accepted(device, scpi, role):
    value, header, unit = held_setting(device, scpi, role)
    query = SETTINGS[role][0]
    for parameter in (f"{value:g}{unit}", f"{value:g} {unit}", f"{value / 1000:g}K{unit}", f"{value:g}{unit.lower()}"):
        scpi.send(f"{header} {parameter}")
        assert errors_of(scpi) == [], parameter
        assert float(scpi.query(query)) == pytest.approx(value, abs=1e-6), parameter


@pytest.mark.changes_outputs
@pytest.mark.parametrize("role", SETTING_ROLES)
def test_a_level_with_the_suffix_of_another_unit_is_131_and_changes_nothing(device, scpi, role):
    value, header, unit = held_setting(device, scpi, role)
    wrong = "HZ" if unit != "HZ" else "V"
    scpi.send(f"{header} {value + 1:g}{wrong}")
    assert errors_of(scpi) == [-131]
    assert int(scpi.query("*ESR?")) & CME
    assert float(scpi.query(SETTINGS[role][0])) == pytest.approx(value, abs=1e-6)


@pytest.mark.changes_outputs
@pytest.mark.parametrize("role", SETTING_ROLES)
def test_an_extra_parameter_to_a_setting_is_108_and_changes_nothing(device, scpi, role):
    value, header, _unit = held_setting(device, scpi, role)
    scpi.send(f"{header} {value + 1:g},{value + 2:g}")
    assert errors_of(scpi) == [-108]
    assert float(scpi.query(SETTINGS[role][0])) == pytest.approx(value, abs=1e-6)


@pytest.mark.changes_outputs
@pytest.mark.parametrize("role", SETTING_ROLES)
def test_an_unterminated_setting_is_discarded_when_the_client_goes_away(device, scpi, role):
    """A client that dies while writing 'SOUR:VOLT:AC 230' must not leave the source at 23 V: only a message ended
    by its terminator is executed (IEEE 488.2 8.4.2)."""
    value, header, _unit = held_setting(device, scpi, role)
    fragment_value = 1 if value != 1 else 2
    dying = socket.create_connection((device.host, device.port), timeout=3)
    dying.sendall(f"{header} {fragment_value}".encode("ascii"))
    dying.shutdown(socket.SHUT_WR)
    try:
        assert dying.recv(4096) == b""  # the instrument read to the end and closed its side
    except TimeoutError:
        pass  # an instrument may keep a half-closed connection open; the fragment is still not a message
    finally:
        dying.close()
    assert float(scpi.query(SETTINGS[role][0])) == pytest.approx(value, abs=1e-6)
    assert errors_of(scpi) == []


@pytest.mark.twin_only
@pytest.mark.parametrize("role", roles("source"))
def test_the_twin_drops_an_overlong_message_with_223_and_keeps_answering(scpi, role):
    scpi.send(b"SOUR:VOLT:AC " + b"1" * 70000 + b"\n")
    assert scpi.query("*OPC?") == "1"
    code, text = scpi.error()
    assert (code, text) == (-223, '"Too much data; a message of more than 65536 bytes"')
    assert scpi.query("SYST:ERR?") == NO_ERROR
