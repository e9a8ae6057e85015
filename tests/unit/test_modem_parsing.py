"""Exact AT exchanges of the modem driver against a scripted peer on a pty: replies byte for byte, with echo,
URCs between and inside replies, +CME ERROR, garbage and the 99/255 unknowns."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tty
from dataclasses import dataclass

import pytest

from drivers.modem import AtModem, ModemSignal, Registration
from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout
from rig.transcript import Transcript


@dataclass
class At:
    expect: str | None  # a command line (without CR); None: write `reply` unasked, after the previous step
    reply: str = ""  # exact bytes written back (echo included where the modem would echo)
    delay_s: float = 0.0


def ok(*lines: str) -> str:
    return "".join(f"\r\n{line}\r\n" for line in lines) + "\r\nOK\r\n"


OPENING = [At("ATE0Q0V1", "ATE0Q0V1\r\r\nOK\r\n"), At("AT+CMEE=2", ok()), At("AT+CPIN?", ok("+CPIN: READY"))]
OPENED = ["ATE0Q0V1", "AT+CMEE=2", "AT+CPIN?"]


class ScriptedPty:
    """The modem's side of a pty pair: expects exact command lines, writes exact replies."""

    def __init__(self, steps: list[At]):
        self.steps = list(steps)
        self.received: list[str] = []
        self.mismatches: list[str] = []
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _write_unasked(self) -> None:
        while self.steps and self.steps[0].expect is None:
            step = self.steps.pop(0)
            time.sleep(step.delay_s)
            os.write(self.master, step.reply.encode())

    def _serve(self) -> None:
        import select
        buffer = b""
        self._write_unasked()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                buffer += os.read(self.master, 4096)
            except OSError:
                return
            while b"\r" in buffer:
                line, buffer = buffer.split(b"\r", 1)
                text = line.decode()
                self.received.append(text)
                if not self.steps:
                    self.mismatches.append(f"unexpected {text!r}")
                    continue
                step = self.steps.pop(0)
                if text != step.expect:
                    self.mismatches.append(f"expected {step.expect!r}, got {text!r}")
                    continue
                time.sleep(step.delay_s)
                os.write(self.master, step.reply.encode())
                self._write_unasked()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        os.close(self.master)
        os.close(self.slave)

    def assert_complete(self) -> None:
        assert self.mismatches == []
        assert [step.expect for step in self.steps] == [], "expected exchanges never happened"


@pytest.fixture
def connect(tmp_path, opened):
    def make(steps: list[At], timeout_s: float = 0.5, resource: str | None = None, opening: list[At] = OPENING):
        peer = ScriptedPty(opening + steps)
        config = RoleConfig(driver="at_modem", resource=resource or peer.path, timeout_s=timeout_s)
        return opened(AtModem("modem@1", config, SetpointLimits(), Transcript(tmp_path / "transcript.jsonl")), peer)

    return make


def test_open_sets_echo_off_verbose_codes_and_errors_reads_the_sim_then_identifies(connect):
    modem, peer = connect([At("ATI", ok("Quectel", "EC25", "Revision: EC25EFAR06A03M4G")),
                           At("AT+CGMR", ok("EC25EFAR06A03M4G")), At("AT+CGSN", ok("866758040000001"))])
    identity = modem.identify()
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "Quectel", "EC25", "866758040000001", "EC25EFAR06A03M4G")
    peer.assert_complete()
    assert peer.received[:3] == OPENED
    assert modem.sim_status == "READY"


def test_the_visa_form_of_a_serial_resource_is_accepted(tmp_path):
    peer = ScriptedPty(list(OPENING))
    modem = AtModem("modem@1", RoleConfig(driver="at_modem", resource=f"ASRL{peer.path}::INSTR"), SetpointLimits(),
                    Transcript(None))
    try:
        modem.open()
        assert modem.port == peer.path
        peer.assert_complete()
    finally:
        modem.close()
        peer.close()


@pytest.mark.parametrize(("reply", "dbm"), [("+CSQ: 20,99", -73.0), ("+CSQ: 0,99", -113.0), ("+CSQ: 31,0", -51.0),
                                            ("+CSQ: 99,99", None)])
def test_csq_converts_to_dbm_and_99_is_unknown(connect, reply, dbm):
    modem, peer = connect([At("AT+CSQ", ok(reply))])
    assert modem.csq() == dbm
    peer.assert_complete()


@pytest.mark.parametrize(("reply", "expected"), [("+CESQ: 99,99,255,255,17,40", (-100.0, -11.0)),
                                                 ("+CESQ: 99,99,255,255,34,97", (-43.0, -2.5)),
                                                 ("+CESQ: 99,99,255,255,255,255", (None, None)),
                                                 ("+CESQ: 99,99,255,255,0,255", (None, -19.5))])
def test_cesq_converts_rsrp_and_rsrq_and_255_is_unknown(connect, reply, expected):
    modem, peer = connect([At("AT+CESQ", ok(reply))])
    assert modem.cesq() == expected
    peer.assert_complete()


def test_signal_combines_csq_cesq_and_quectels_qcsq(connect):
    modem, peer = connect([At("AT+CSQ", ok("+CSQ: 14,99")), At("AT+CESQ", ok("+CESQ: 99,99,255,255,17,40")),
                           At("AT+QCSQ", ok('+QCSQ: "LTE",-72,-100,90,-11'))])
    assert modem.signal() == ModemSignal(rssi_dbm=-72.0, rsrp_dbm=-100.0, rsrq_db=-11.0, sinr_db=-2.0, mode="LTE")
    peer.assert_complete()


def test_signal_without_service_is_unknown_throughout(connect):
    modem, peer = connect([At("AT+CSQ", ok("+CSQ: 99,99")), At("AT+CESQ", ok("+CESQ: 99,99,255,255,255,255")),
                           At("AT+QCSQ", ok('+QCSQ: "NOSERVICE"'))])
    assert modem.signal() == ModemSignal(None, None, None, None, "NOSERVICE")
    peer.assert_complete()


@pytest.mark.parametrize(("reply", "expected"), [
    ('+CEREG: 2,1,"1A2B","01A2B301",7', Registration(1, "registered, home network", True, "1A2B", "01A2B301", 7)),
    ('+CEREG: 2,5,"1A2B","01A2B301",9', Registration(5, "registered, roaming", True, "1A2B", "01A2B301", 9)),
    ("+CEREG: 0,2", Registration(2, "searching", False)),
    ("+CEREG: 0,3", Registration(3, "registration denied", False))])
def test_registration_parses_cereg(connect, reply, expected):
    modem, peer = connect([At("AT+CEREG?", ok(reply))])
    assert modem.registration() == expected
    peer.assert_complete()


def test_a_urc_inside_a_reply_is_collected_and_the_reply_still_parses(connect):
    modem, peer = connect([At("AT+CEREG=2", ok()),
                           At("AT+CSQ", '\r\n+CSQ: 20,99\r\n\r\n+CEREG: 2\r\n\r\n+CEREG: 1,"1A2B","01A2B301",7\r\n'
                                        '\r\nOK\r\n')])
    modem.enable_registration_urcs()
    before = time.monotonic()
    assert modem.csq() == -73.0
    events = modem.registration_events()
    assert [(e.stat, e.registered, e.act, e.line) for e in events] == [
        (2, False, None, "+CEREG: 2"), (1, True, 7, '+CEREG: 1,"1A2B","01A2B301",7')]
    assert all(before <= e.t_mono <= time.monotonic() for e in events)
    peer.assert_complete()


def test_a_registration_urc_of_the_same_command_before_ok_is_an_event_not_the_answer(connect):
    modem, peer = connect([At("AT+CEREG?", '\r\n+CEREG: 5,"1A2B","01A2B301",7\r\n'
                                         + ok('+CEREG: 2,1,"1A2B","01A2B301",7')),
                           At("AT+CEREG?", "\r\n+CEREG: 2\r\n\r\n+CEREG: 0,2\r\n\r\nOK\r\n")])
    assert modem.registration() == Registration(1, "registered, home network", True, "1A2B", "01A2B301", 7)
    assert modem.registration() == Registration(2, "searching", False)
    assert [(e.stat, e.registered, e.act) for e in modem.registration_events()] == [(5, True, 7), (2, False, None)]
    peer.assert_complete()


def test_creg_cgreg_and_boot_urcs_inside_a_reply_are_neither_events_nor_the_answer(connect):
    modem, peer = connect([At("AT+CSQ", '\r\n+CREG: 2\r\n\r\n+CSQ: 20,99\r\n\r\n+CGREG: 1,"1A2B","01A2B301",7\r\n'
                                        "\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\n+QIND: SMS DONE\r\n\r\nOK\r\n"),
                           At("AT+CPIN?", ok("+CPIN: READY"))])
    assert modem.csq() == -73.0
    assert modem.registration_events() == []
    assert modem.command("AT+CPIN?") == ["+CPIN: READY"]  # its own answer, not a URC
    peer.assert_complete()


def test_a_modem_without_sim_opens_and_says_so(connect):
    opening = [*OPENING[:2], At("AT+CPIN?", "\r\n+CME ERROR: SIM not inserted\r\n")]
    modem, peer = connect([At("AT+CSQ", ok("+CSQ: 99,99"))], opening=opening)
    assert modem.sim_status == "+CME ERROR: SIM not inserted"
    assert modem.csq() is None
    peer.assert_complete()


def test_a_cme_error_names_role_port_and_command(connect):
    modem, peer = connect([At("AT+CIMI", "\r\n+CME ERROR: SIM not inserted\r\n")])
    with pytest.raises(InstrumentError, match=rf"^modem@1 \({peer.path}\): 'AT\+CIMI' answered "
                                              r"'\+CME ERROR: SIM not inserted': SIM not inserted$"):
        modem.command("AT+CIMI")
    peer.assert_complete()


def test_a_urc_between_replies_is_stamped_when_it_arrives(connect):
    modem, peer = connect([At("AT+CEREG=2", ok()), At(None, "\r\n+CEREG: 2\r\n", delay_s=0.2),
                           At("AT+CSQ", ok("+CSQ: 99,99"))])
    sent_at = time.monotonic()
    modem.enable_registration_urcs()
    time.sleep(0.4)
    assert modem.csq() is None
    [event] = modem.registration_events()
    assert event.stat == 2 and not event.registered
    assert 0.15 <= event.t_mono - sent_at <= 0.35  # when it arrived, not when the next reply was read
    peer.assert_complete()


@pytest.mark.parametrize(("command", "reply", "quoted"), [
    ("csq", ok("+CSQ: 20,99", "blah"), "'blah'"),
    ("csq", ok("+CSQ: twenty,99"), "'+CSQ: twenty,99'"),
    ("csq", ok("+CSQ: 45,99"), "'+CSQ: 45,99'"),
    ("cesq", ok("+CESQ: 99,99,255,255,17"), "'+CESQ: 99,99,255,255,17'"),
    ("cesq", ok("+CESQ: 99,99,255,255,17,120"), "'+CESQ: 99,99,255,255,17,120'"),
    ("qcsq", ok('+QCSQ: "LTE",-72,-100,90'), "'+QCSQ: \"LTE\",-72,-100,90'"),
    ("registration", ok("+CEREG: 2,1,x"), "'+CEREG: 2,1,x'"),
    ("registration", ok("+CSQ: 20,99"), "'+CSQ: 20,99'"),
    ("technology", ok('+QCFG: "nwscanmode",7'), "'+QCFG: \"nwscanmode\",7'")])
def test_garbage_is_an_instrument_error_quoting_the_line_and_naming_the_role(connect, command, reply, quoted):
    sent = {"csq": "AT+CSQ", "cesq": "AT+CESQ", "qcsq": "AT+QCSQ", "registration": "AT+CEREG?",
            "technology": 'AT+QCFG="nwscanmode"'}[command]
    modem, peer = connect([At(sent, reply)])
    with pytest.raises(InstrumentError) as error:
        getattr(modem, command)()
    message = str(error.value)
    assert message.startswith(f"modem@1 ({peer.path}): sent {sent!r}, expected ")
    assert message.endswith(f"got {quoted}")
    peer.assert_complete()


@pytest.mark.parametrize(("reply", "message"), [
    ("\r\n+CME ERROR: SIM not inserted\r\n", r"'AT\+CSQ' answered '\+CME ERROR: SIM not inserted': SIM not inserted"),
    ("\r\nERROR\r\n", r"'AT\+CSQ' answered 'ERROR'$")])
def test_error_replies_carry_the_modems_text(connect, reply, message):
    modem, peer = connect([At("AT+CSQ", reply)])
    with pytest.raises(InstrumentError, match=rf"^modem@1 \({peer.path}\): {message}"):
        modem.csq()
    peer.assert_complete()


def test_no_final_result_is_a_timeout_saying_what_arrived(connect):
    modem, peer = connect([At("AT+CSQ", "\r\n+CSQ: 20,99\r\n")], timeout_s=0.3)
    with pytest.raises(InstrumentTimeout, match=r"modem@1 \(.*\): no final result within 0.3 s to 'AT\+CSQ'; "
                                                r"got only \['\+CSQ: 20,99'\]"):
        modem.csq()
    peer.assert_complete()


def test_a_late_reply_is_discarded_before_the_next_command(connect):
    modem, peer = connect([At("AT+CSQ", ok("+CSQ: 10,99"), delay_s=0.4), At("AT+CSQ", ok("+CSQ: 11,99"))],
                          timeout_s=0.2)
    with pytest.raises(InstrumentTimeout):
        modem.csq()
    time.sleep(0.4)
    assert modem.csq() == -91.0
    peer.assert_complete()


@pytest.mark.parametrize(("reply", "technology"), [(ok('+QCFG: "nwscanmode",3'), "4g"),
                                                   (ok('+QCFG: "nwscanmode",1'), "2g"),
                                                   (ok('+QCFG: "nwscanmode",0'), "auto")])
def test_technology_from_the_scan_mode(connect, reply, technology):
    modem, peer = connect([At('AT+QCFG="nwscanmode"', reply)])
    assert modem.technology() == technology
    peer.assert_complete()


def test_set_technology_sends_the_scan_mode_to_take_effect_at_once(connect):
    modem, peer = connect([At('AT+QCFG="nwscanmode",1,1', ok()), At('AT+QCFG="nwscanmode",3,1', ok())])
    modem.set_technology("2g")
    modem.set_technology("4g")
    with pytest.raises(ConfigError, match=r"technology '5g' is not one of auto, 2g, 4g"):
        modem.set_technology("5g")
    peer.assert_complete()


def test_make_safe_sends_nothing(connect):
    modem, peer = connect([])
    assert modem.make_safe() == ["modem: nothing to switch"]
    time.sleep(0.05)
    assert peer.received == OPENED


def test_a_missing_port_names_port_and_role():
    modem = AtModem("modem@2", RoleConfig(driver="at_modem", resource="/dev/ttyNOSUCH9"), SetpointLimits(),
                    Transcript(None))
    with pytest.raises(InstrumentError, match=r"^modem@2 \(/dev/ttyNOSUCH9\): no serial port /dev/ttyNOSUCH9"):
        modem.open()


def test_a_port_held_by_another_process_names_port_role_and_holder():
    peer = ScriptedPty([])
    holder = subprocess.Popen([sys.executable, "-c", "import serial, sys, time\n"
                               f"port = serial.Serial({peer.path!r}, exclusive=True)\n"
                               "print('held', flush=True)\ntime.sleep(30)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        modem = AtModem("modem@3", RoleConfig(driver="at_modem", resource=peer.path), SetpointLimits(),
                        Transcript(None))
        with pytest.raises(InstrumentError) as error:
            modem.open()
        assert str(error.value).startswith(f"modem@3 ({peer.path}): serial port {peer.path} is held by another "
                                           f"process")
        if os.access("/proc/locks", os.R_OK):
            assert f"(pid {holder.pid})" in str(error.value)
        assert peer.received == []
    finally:
        holder.kill()
        holder.wait()
        peer.close()
