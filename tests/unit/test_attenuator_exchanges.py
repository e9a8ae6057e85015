"""Exact exchanges of the Mini-Circuits RCDAT driver against scripted loopback peers: HTTP and Telnet."""

import contextlib
import json
import re
import socket
import time

import pytest
from scripted_peer import QuietHandler, Step, TelnetServer, serve_http, stop_http

from drivers.attenuator import RcdatAttenuator, max_of_model
from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout, SetpointRefused
from rig.transcript import Transcript

ROLE_LIMIT = "roles.attenuator@1.limits.attenuation_db in bench.yaml"
MODEL = Step("MN?", "MN=RCDAT-6000-110")


class ScriptedPeer:
    received: list[str]
    mismatches: list[str]
    steps: list[Step]

    def answer(self, line: str) -> str | None:
        self.received.append(line)
        if not self.steps:
            self.mismatches.append(f"unexpected {line!r}")
            return None
        step = self.steps.pop(0)
        if line != step.expect:
            self.mismatches.append(f"expected {step.expect!r}, got {line!r}")
            return None
        if step.delay_s:
            time.sleep(step.delay_s)
        return step.reply

    def assert_complete(self) -> None:
        assert self.mismatches == []
        assert [step.expect for step in self.steps] == [], "expected exchanges never happened"


class ScriptedHttpPeer(ScriptedPeer):
    """Answers GET /<command> with the scripted text; records each request's path without its '/'."""

    def __init__(self, steps):
        self.steps, self.received, self.mismatches = list(steps), [], []
        peer = self

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 - the library's name
                reply = peer.answer(self.path.removeprefix("/"))
                body = (reply or "").encode()
                self.send_response(200 if reply is not None else 404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server, self.resource = serve_http(Handler)

    def close(self):
        stop_http(self.server)


NEGOTIATION = re.compile(rb"\xff[\xfb-\xfe].", re.DOTALL)


class ScriptedTelnetPeer(ScriptedPeer, TelnetServer):
    """Telnet connections, each opening with option negotiation, then expecting CR LF lines and answering with CR LF;
    the script runs on across connections."""

    GREETING = bytes([255, 251, 1, 255, 253, 3, 255, 250, 24, 1, 255, 240])  # WILL ECHO, DO SGA, SB TTYPE SE

    def __init__(self, steps):
        self.steps, self.received, self.mismatches = list(steps), [], []
        self.bad_endings: list[str] = []
        self.negotiation: list[bytes] = []  # the Telnet option commands the driver sent
        super().__init__()

    def _converse(self, conn):
        with conn:
            try:
                conn.sendall(self.GREETING)
                buffer = b""
                while chunk := conn.recv(4096):
                    buffer += chunk
                    for option in NEGOTIATION.findall(buffer):
                        self.negotiation.append(option)
                    buffer = NEGOTIATION.sub(b"", buffer)
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if not line.endswith(b"\r"):
                            self.bad_endings.append(line.decode())
                        reply = self.answer(line.decode().removesuffix("\r"))
                        if reply is not None:
                            conn.sendall(reply.encode() + b"\r\n")
            except OSError:
                pass  # the driver hung up


class LaggingTelnetUnit(TelnetServer):
    """An RCDAT over Telnet holding its attenuation. After freeze(), the connection of the moment holds the reply to
    the next command and from then on answers each command only when the next one arrives, one behind; a new
    connection answers at once."""

    def __init__(self):
        self.attenuation_db = 0.0
        self._freeze_next = False
        super().__init__()

    def freeze(self):
        self._freeze_next = True

    def handle(self, command: str) -> str:
        if command == ":MN?":
            return "MN=RCDAT-6000-110"
        if command == ":ATT?":
            return f"{self.attenuation_db:.2f}"
        self.attenuation_db = float(command.removeprefix(":SETATT="))
        return "1"

    def _converse(self, conn):
        held: list[bytes] = []
        lagging = False
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                reply = self.handle(line.decode().strip()).encode() + b"\r\n"
                lagging, self._freeze_next = lagging or self._freeze_next, False
                if not lagging:
                    conn.sendall(reply)
                    continue
                with contextlib.suppress(OSError):
                    conn.sendall(b"".join(held))
                held = [reply]


@pytest.fixture
def connect(tmp_path, opened):
    def make(kind, steps, role_max_db=None, safe=0.0, timeout_s=0.5):
        peer = (ScriptedHttpPeer if kind == "http" else ScriptedTelnetPeer)(steps)
        limits = SetpointLimits()
        if role_max_db is not None:
            limits.add("attenuation", 0.0, role_max_db, ROLE_LIMIT)
        config = RoleConfig(driver="rcdat", resource=peer.resource, timeout_s=timeout_s,
                            safe={"attenuation_db": safe})
        return opened(RcdatAttenuator("attenuator@1", config, limits, Transcript(tmp_path / "transcript.jsonl")), peer)

    return make


def shown(kind, command):
    return f"GET /{command}" if kind == "http" else f":{command}"


def as_sent(kind, steps):
    """The scripted steps with each command as it goes on the wire of that transport ('ATT?' or ':ATT?')."""
    return [Step(step.expect if kind == "http" else f":{step.expect}", step.reply, step.delay_s) for step in steps]


def nothing_more_sent(peer, expected):
    time.sleep(0.05)
    assert peer.received == expected


KINDS = ["http", "telnet"]


@pytest.mark.parametrize("kind", KINDS)
def test_identify_reads_model_serial_and_firmware(connect, kind):
    driver, peer = connect(kind, as_sent(kind, [MODEL, Step("MN?", "MN=RCDAT-6000-110"),
                                                Step("SN?", "SN=11604210008"), Step("FIRMWARE?", "FIRMWARE=C9")]))
    identity = driver.identify()
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "Mini-Circuits", "RCDAT-6000-110", "11604210008", "C9")
    assert driver.max_db == 110.0
    peer.assert_complete()


def test_a_unit_without_a_firmware_query_identifies_with_a_dash(connect):
    driver, peer = connect("http", [MODEL, Step("MN?", "MN=RCDAT-6000-110"), Step("SN?", "SN=11604210008"),
                                    Step("FIRMWARE?", "-99 Unrecognized Command. MN:RCDAT-6000-110")])
    assert driver.identify().firmware == "-"
    peer.assert_complete()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("value", "sent", "held"), [(30.0, "SETATT=30", "30.00"), (30.25, "SETATT=30.25", "30.25"),
                                                     (0.0, "SETATT=0", "0.00"), (110.0, "SETATT=110", "110.00")])
def test_set_attenuation_sends_the_value_and_confirms_it(connect, kind, value, sent, held):
    driver, peer = connect(kind, as_sent(kind, [MODEL, Step(sent, "1"), Step("ATT?", held)]))
    driver.set_attenuation(value)
    peer.assert_complete()
    assert peer.received[1] == ("" if kind == "http" else ":") + sent
    if kind == "telnet":
        assert peer.bad_endings == []  # every line ended in CR LF


@pytest.mark.parametrize("kind", KINDS)
def test_attenuation_beyond_the_models_range_is_refused_before_sending(connect, kind):
    driver, peer = connect(kind, as_sent(kind, [MODEL]))
    with pytest.raises(SetpointRefused) as refused:
        driver.set_attenuation(110.25)
    assert str(refused.value) == (f"attenuator@1 ({peer.resource}): attenuation 110.25 dB refused: above 110 dB, "
                                  f"the range of the RCDAT-6000-110")
    with pytest.raises(SetpointRefused, match=r"attenuation -0.25 dB refused: below 0 dB"):
        driver.set_attenuation(-0.25)
    nothing_more_sent(peer, [shown(kind, "MN?").removeprefix("GET /")])


def test_the_range_follows_the_model_name(connect):
    driver, peer = connect("http", [Step("MN?", "MN=RCDAT-8000-30")])
    with pytest.raises(SetpointRefused, match=r"attenuation 30.5 dB refused: above 30 dB, the range of the "
                                              r"RCDAT-8000-30"):
        driver.set_attenuation(30.5)
    nothing_more_sent(peer, ["MN?"])
    assert (max_of_model("RCDAT-6000-95"), max_of_model("RC4DAT-6G-95"), max_of_model("ZX76-31R5")) == (95.0, None,
                                                                                                         None)


@pytest.mark.parametrize("kind", KINDS)
def test_attenuation_beyond_the_roles_limit_is_refused_before_sending(connect, kind):
    driver, peer = connect(kind, as_sent(kind, [MODEL]), role_max_db=60.0)
    with pytest.raises(SetpointRefused) as refused:
        driver.set_attenuation(60.25)
    assert str(refused.value) == (f"attenuator@1 ({peer.resource}): attenuation 60.25 dB refused: above 60 dB, "
                                  f"{ROLE_LIMIT}")
    nothing_more_sent(peer, peer.received[:1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [30.1, 0.125, float("nan")])
def test_attenuation_off_the_step_is_refused_before_sending(connect, kind, value):
    driver, peer = connect(kind, as_sent(kind, [MODEL]))
    with pytest.raises(SetpointRefused, match=r"attenuator@1 \(.*\): attenuation nan dB refused: not a number"
                       if value != value else rf"attenuation {value:g} dB refused: not on the 0.25 dB step of the "
                                              rf"RCDAT-6000-110"):
        driver.set_attenuation(value)
    nothing_more_sent(peer, peer.received[:1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("reply", "message"), [
    ("0", r"'{sent}': the unit refused the value \(invalid attenuation\)"),
    ("2", r"'{sent}': the unit answered 2: the value is above its range and it set its maximum instead"),
    ("OK", r"sent '{sent}', expected 0, 1 or 2, got 'OK'")])
def test_a_refusal_or_garbage_answer_to_setatt_is_an_instrument_error(connect, kind, reply, message):
    driver, peer = connect(kind, as_sent(kind, [MODEL, Step("SETATT=40", reply)]))
    with pytest.raises(InstrumentError, match=message.format(sent=shown(kind, "SETATT=40"))):
        driver.set_attenuation(40)
    peer.assert_complete()


def test_a_read_back_that_disagrees_is_an_instrument_error(connect):
    driver, peer = connect("http", [MODEL, Step("SETATT=40", "1"), Step("ATT?", "39.75")])
    with pytest.raises(InstrumentError, match=r"set 40 dB but ATT\? reads back 39.75 dB"):
        driver.set_attenuation(40)
    peer.assert_complete()


@pytest.mark.parametrize("kind", KINDS)
def test_a_reading_that_is_not_a_number_is_quoted(connect, kind):
    driver, peer = connect(kind, as_sent(kind, [MODEL, Step("ATT?", "ATT=abc")]))
    with pytest.raises(InstrumentError, match=rf"sent '{shown(kind, 'ATT')}\?', expected a number of dB, "
                                              rf"got 'ATT=abc'"):
        driver.attenuation()
    peer.assert_complete()


@pytest.mark.parametrize("kind", KINDS)
def test_make_safe_sets_the_roles_safe_value(connect, kind):
    driver, peer = connect(kind, as_sent(kind, [MODEL, Step("SETATT=20", "1"), Step("ATT?", "20.00")]), safe=20.0)
    assert driver.make_safe() == ["attenuation 20 dB (confirmed by ATT?)"]
    peer.assert_complete()


def test_a_model_name_without_a_range_fails_at_open(connect):
    with pytest.raises(InstrumentError, match=r"model 'ZX76-31R5' does not name its range"):
        connect("http", [Step("MN?", "MN=ZX76-31R5")])


def test_telnet_timeout_then_the_late_reply_is_never_read(connect):
    driver, peer = connect("telnet", [Step(":MN?", "MN=RCDAT-6000-110"), Step(":ATT?", "12.00", delay_s=0.4),
                                      Step(":ATT?", "13.00")], timeout_s=0.2)
    with pytest.raises(InstrumentTimeout, match=r"attenuator@1 \(telnet://.*\): no answer within 0.2 s to ':ATT\?'"):
        driver.attenuation()
    assert driver.attenuation() == 13.0  # on a fresh connection; the late 12.00 goes to the old one
    assert peer.connections == 2
    peer.assert_complete()


def test_every_exchange_is_transcripted(connect, tmp_path):
    driver, _peer = connect("http", [MODEL, Step("ATT?", "5.50")])
    driver.attenuation()
    driver.transcript.close()
    lines = (tmp_path / "transcript.jsonl").read_text()
    assert '"sent": "GET /MN?", "received": "200 MN=RCDAT-6000-110"' in lines
    assert '"sent": "GET /ATT?", "received": "200 5.50"' in lines


@pytest.mark.parametrize(("config", "message"), [
    ({"resource": "http://127.0.0.1:1"}, r"roles.attenuator@1.safe.attenuation_db: required for an attenuator"),
    ({"resource": "TCPIP0::1.2.3.4::23::SOCKET", "safe": {"attenuation_db": 0}},
     r"roles.attenuator@1.resource: an RCDAT attenuator is reached at 'http://host\[:port\]' or "
     r"'telnet://host\[:port\]', got 'TCPIP0::1.2.3.4::23::SOCKET'"),
    ({"resource": "telnet://127.0.0.1:x", "safe": {"attenuation_db": 0}}, r"port 'x' in 'telnet://127.0.0.1:x'"),
])
def test_bad_configuration_names_the_role(tmp_path, config, message):
    with pytest.raises(ConfigError, match=message):
        RcdatAttenuator("attenuator@1", RoleConfig(driver="rcdat", **config), SetpointLimits(), Transcript(None))


def test_an_unreachable_telnet_unit_names_role_and_address():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = RoleConfig(driver="rcdat", resource=f"telnet://127.0.0.1:{port}", safe={"attenuation_db": 0})
    driver = RcdatAttenuator("attenuator@1", config, SetpointLimits(), Transcript(None))
    with pytest.raises(InstrumentError, match=rf"attenuator@1 \(telnet://127.0.0.1:{port}\): cannot connect"):
        driver.open()


def test_telnet_after_a_frozen_command_every_exchange_reads_its_own_answer(tmp_path):
    """A unit that froze on one command and then answers everything one behind: the driver reconnects and
    set 0 reads back 0, not the late '1' of the command before."""
    unit = LaggingTelnetUnit()
    config = RoleConfig(driver="rcdat", resource=unit.resource, timeout_s=0.3, safe={"attenuation_db": 0})
    driver = RcdatAttenuator("attenuator@1", config, SetpointLimits(), Transcript(tmp_path / "transcript.jsonl"))
    try:
        driver.open()
        driver.set_attenuation(1)
        unit.freeze()
        with pytest.raises(InstrumentTimeout, match=r"attenuator@1 \(telnet://.*\): no answer within 0.3 s to "
                                                    r"':SETATT=2'"):
            driver.set_attenuation(2)
        driver.set_attenuation(0)
        assert driver.attenuation() == 0.0
        driver.set_attenuation(5.5)
        assert driver.attenuation() == 5.5
    finally:
        driver.close()
        driver.transcript.close()
        unit.close()
    assert unit.connections == 2
    records = [json.loads(line) for line in (tmp_path / "transcript.jsonl").read_text().splitlines()]
    assert [(r["sent"], r["received"], r.get("note")) for r in records[-8:]] == [
        (":SETATT=2", None, "timeout"),
        (None, None, f"reconnected to {unit.resource} after an unanswered or garbled exchange"),
        (":SETATT=0", "1", None), (":ATT?", "0.00", None), (":ATT?", "0.00", None),
        (":SETATT=5.5", "1", None), (":ATT?", "5.50", None), (":ATT?", "5.50", None)]


@pytest.mark.parametrize(("reply", "message"), [
    ("\x00\x81\x07\x13", r"answered ':ATT\?' with bytes that are not text: b'\\x00\\xc2\\x81\\x07\\x13'"),
    ("\x07" * 70000, r"answered ':ATT\?' with no line end within 4096 bytes: b'\\x07\\x07"),
], ids=["binary", "endless"])
def test_telnet_noise_is_an_instrument_error_and_the_next_exchange_reconnects(connect, reply, message):
    driver, peer = connect("telnet", [Step(":MN?", "MN=RCDAT-6000-110"), Step(":ATT?", reply), Step(":ATT?", "13.00")])
    start = time.monotonic()
    with pytest.raises(InstrumentError, match=rf"^attenuator@1 \({peer.resource}\): {message}") as raised:
        driver.attenuation()
    assert not isinstance(raised.value, InstrumentTimeout)
    assert time.monotonic() - start < 0.5
    assert driver.attenuation() == 13.0
    assert peer.connections == 2
    peer.assert_complete()


def test_telnet_options_the_unit_asks_for_are_refused(connect):
    driver, peer = connect("telnet", as_sent("telnet", [MODEL, Step("ATT?", "12.00")]))
    assert driver.attenuation() == 12.0
    # the greeting WILL ECHO, DO SGA, SB TTYPE SE: DONT ECHO, WONT SGA (RFC 854), nothing for the subnegotiation
    assert peer.negotiation == [bytes([255, 254, 1]), bytes([255, 252, 3])]


class RawRepliesUnit(TelnetServer):
    """A Telnet unit answering each CR LF line with the next of `replies`, raw bytes sent as they are, each split in
    two sends at `split` to test a reply arriving in pieces."""

    def __init__(self, replies, split=1):
        self.replies, self.split, self.received = list(replies), split, []
        super().__init__()

    def _converse(self, conn):
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                if not line.endswith(b"\n"):
                    return  # the driver's last refusal, as it hung up
                self.received.append(line)
                reply = self.replies.pop(0)
                conn.sendall(reply[: self.split])
                time.sleep(0.01)
                conn.sendall(reply[self.split:])


@pytest.mark.parametrize("replies", [
    [b"MN=RCDAT-6000-110\r", b"30.25\r"],  # CR only
    [b"MN=RCDAT-6000-110\r\0", b"30.25\r\0"],  # CR NUL (RFC 854)
    [b"MN=RCDAT-6000-110\n", b"30.25\n"],  # LF only
    [b"\xff\xfb\x01\xff\xfa\x18\x01\xff\xf0MN=RCDAT-6000-110\r\n", b"\xff\xf1\xff\xfd\x1f30.25\r\n"],  # IAC inside
], ids=["cr", "cr-nul", "lf", "negotiation-among-text"])
def test_telnet_replies_with_any_line_end_and_negotiation_among_them_are_read(tmp_path, opened, replies):
    for split in (1, 3):
        unit = RawRepliesUnit(replies, split)
        config = RoleConfig(driver="rcdat", resource=unit.resource, timeout_s=0.5, safe={"attenuation_db": 0})
        driver, _ = opened(RcdatAttenuator("attenuator@1", config, SetpointLimits(),
                                           Transcript(tmp_path / f"transcript{split}.jsonl")), unit)
        assert driver.model == "RCDAT-6000-110"
        assert driver.attenuation() == 30.25
        assert [NEGOTIATION.sub(b"", line) for line in unit.received] == [b":MN?\r\n", b":ATT?\r\n"]
