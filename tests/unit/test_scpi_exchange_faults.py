"""Faults of an SCPI exchange against a scripted loopback peer: one deadline per exchange, resynchronisation."""

import os
import threading
import time
import tty

import pytest
from scripted_peer import Step

from drivers.chroma_source import Chroma61500Source
from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.errors import InstrumentError, InstrumentTimeout
from rig.transcript import Transcript

QUERY = "MEAS:VOLT:ACDC?"


@pytest.fixture
def connect(scripted):
    def make(steps, timeout_s=0.5):
        return scripted(Chroma61500Source, "source", steps, timeout_s=timeout_s)

    return make


@pytest.mark.parametrize(("raw", "trickle_s"), [
    (b"2" * 100, 0.5),  # a byte every 0.5 s, never a terminator
    (b"229.9\n", 0.5),  # the terminator only after 3 s
    (b"2" * 1000, 0.02),  # a byte every 20 ms, never a terminator
], ids=["0.5s-no-terminator", "0.5s-terminator-at-3s", "20ms-no-terminator"])
def test_a_trickled_reply_costs_the_timeout_and_no_more(connect, raw, trickle_s):
    source, peer = connect([Step(QUERY, raw=raw, trickle_s=trickle_s), Step("MEAS:FREQ?", "50.00")], timeout_s=2.0)
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout) as error:
        source.measure_voltage()
    elapsed_s = time.monotonic() - start
    assert 1.99 <= elapsed_s < 2.5
    assert str(error.value).startswith(f"source ({peer.resource}): no answer within 2 s to {QUERY!r} (got b'2")
    assert str(error.value).endswith("' without the terminator)")
    assert_resynchronised(source, peer)  # on a new session: none of the trickle is read


def test_silence_after_a_reconnect_costs_one_timeout(connect):
    source, peer = connect([Step(QUERY, None), Step(QUERY, None)], timeout_s=0.3)
    for _ in range(2):
        start = time.monotonic()
        with pytest.raises(InstrumentTimeout, match=r"no answer within 0.3 s to 'MEAS:VOLT:ACDC\?'$"):
            source.measure_voltage()
        assert 0.29 <= time.monotonic() - start < 0.8
    peer.assert_complete()
    assert peer.connections == 2


def assert_resynchronised(source, peer):
    """The next query reads its own answer, on a second connection, and the script is complete."""
    assert source.measure_frequency() == 50.0
    peer.assert_complete()
    assert peer.connections == 2


def test_undecodable_reply_names_role_address_and_command_then_resynchronises(connect):
    source, peer = connect([Step(QUERY, raw=b"\xff\xfe\x00garbage\n229.9\n"), Step("MEAS:FREQ?", "50.00")])
    with pytest.raises(InstrumentError) as error:
        source.measure_voltage()
    assert type(error.value) is InstrumentError
    assert str(error.value) == (f"source ({peer.resource}): sent {QUERY!r}, got a reply that is not ASCII/UTF-8 "
                                f"text: b'\\xff\\xfe\\x00garbage'")
    assert_resynchronised(source, peer)  # not the stray 229.9 behind the garbage


def test_garbled_text_reply_is_an_instrument_error_and_resynchronises(connect):
    source, peer = connect([Step(QUERY, raw=b"#$%garbage\n229.9\n"), Step("MEAS:FREQ?", "50.00")])
    with pytest.raises(InstrumentError) as error:
        source.measure_voltage()
    assert str(error.value) == f"source ({peer.resource}): sent {QUERY!r}, expected a number, got '#$%garbage'"
    assert_resynchronised(source, peer)


def test_text_that_is_not_ascii_is_refused_before_sending(connect):
    source, peer = connect([Step("*OPC?", "1")])
    with pytest.raises(InstrumentError, match=r"source \(.*\): cannot send 'MEAS:VOLT° \?': not ASCII text; nothing"):
        source.query("MEAS:VOLT° ?")
    assert source.query("*OPC?") == "1"
    assert peer.received == ["*OPC?"]


def test_a_closed_driver_does_not_reopen_by_itself(connect):
    source, peer = connect([])
    source.close()
    with pytest.raises(InstrumentError, match=r"source \(.*\): not open when sending 'MEAS:VOLT:ACDC\?'"):
        source.measure_voltage()
    assert peer.connections <= 1


class PtyPeer:
    """The far end of a pseudo-terminal (an ASRL resource): answers MEAS:FREQ?, and answers MEAS:VOLT:ACDC? with
    a byte every 0.5 s, never a terminator, until stopped."""

    def __init__(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.resource = f"ASRL{os.ttyname(self._slave)}::INSTR"
        self.stop_trickle = threading.Event()
        self.trickle = threading.Thread(target=self._trickle, daemon=True)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        buffer = b""
        while True:
            try:
                buffer += os.read(self._master, 100)
            except OSError:
                return
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line == QUERY.encode():
                    self.trickle.start()
                elif line == b"MEAS:FREQ?":
                    os.write(self._master, b"50.00\n")

    def _trickle(self):
        while not self.stop_trickle.wait(0.5):
            os.write(self._master, b"2")

    def close(self):
        self.stop_trickle.set()
        os.close(self._slave)
        os.close(self._master)


def test_a_trickle_on_a_serial_line_costs_the_timeout_and_no_more():
    peer = PtyPeer()
    config = RoleConfig(driver="chroma61500", resource=peer.resource, timeout_s=2.0)
    source = Chroma61500Source("source", config, SetpointLimits(), Transcript(None))
    source.open()
    try:
        start = time.monotonic()
        with pytest.raises(InstrumentTimeout, match=r"no answer within 2 s to 'MEAS:VOLT:ACDC\?' \(got b'2"):
            source.measure_voltage()
        assert 1.99 <= time.monotonic() - start < 2.5
        peer.stop_trickle.set()
        peer.trickle.join()  # whatever it sent after the timeout waits on the line
        assert source.measure_frequency() == 50.0
    finally:
        source.close()
        peer.close()
