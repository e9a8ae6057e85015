"""One deadline per HTTP exchange: the HES client and the RCDAT attenuator (HTTP) against loopback peers that trickle,
stream without end, flood, stay silent or answer noise; each fault ends within the role's timeout and the next
exchange on a fresh connection reads its own answer."""

import json
import re
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

import httpx
import pytest
from scripted_peer import QuietHandler, serve_http, stop_http

from drivers.attenuator import RcdatAttenuator
from drivers.hes import HesClient
from drivers.http_deadline import MAX_ANSWER_BYTES, DeadlineTransport, deadline
from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.errors import InstrumentError, InstrumentTimeout
from rig.transcript import Transcript

TIMEOUT_S = 1.0
MARGIN_S = 1.0
FAULT_CAP_S = 8.0  # a fault gives up after this long, so a driver without a deadline fails the test instead of hanging

Fault = Callable[[BinaryIO, threading.Event], bool | None]  # True: the connection stays open after it


def trickled(message: bytes, every_s: float = 0.5) -> Fault:
    """A fault: the message one byte every every_s."""
    def fault(out, stop):
        give_up = time.monotonic() + FAULT_CAP_S
        for i in range(len(message)):
            out.write(message[i:i + 1])
            if stop.wait(every_s) or time.monotonic() > give_up:
                return
    return fault


def streamed(head: bytes, piece: bytes, every_s: float, limit_bytes: int = 32 << 20) -> Fault:
    """A fault: head at once, then piece every every_s (0: as fast as the socket takes it) without end."""
    def fault(out, stop):
        give_up = time.monotonic() + FAULT_CAP_S
        out.write(head)
        sent = 0
        while sent < limit_bytes and time.monotonic() < give_up and not stop.wait(every_s):
            out.write(piece)
            sent += len(piece)
    return fault


def silent(out, stop):
    stop.wait(FAULT_CAP_S)


def sent_once(data: bytes, keep_open: bool = False) -> Fault:
    """A fault: data at once; keep_open: a whole response after which the connection stays open."""
    def fault(out, stop):
        out.write(data)
        return keep_open
    return fault


CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
TIMEOUT_FAULTS = {
    "headers trickled": trickled(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n12.00"),
    "body trickled": streamed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"x", 0.5),
    "endless body": streamed(CHUNKED, b"10\r\n0123456789abcdef\r\n", 0.05),
    "silent": silent,
}
FLOOD = streamed(CHUNKED, b"10000\r\n" + b"x" * 0x10000 + b"\r\n", 0)
NOISE = sent_once(bytes(range(256)) * 4)
BINARY_BODY = sent_once(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n\x00\xff\xfe\x81\x07\x13", keep_open=True)


class FaultyHttpPeer:
    """HTTP/1.1 on 127.0.0.1 answering each path from `answers`; while `faults` holds one, the next request gets it
    instead, after which its connection closes unless the fault says otherwise. Records each connection accepted."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.faults: list[Fault] = []
        self.accepted: list[tuple[str, int]] = []
        self.stop = threading.Event()
        peer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                peer.accepted.append(self.client_address)

            def do_GET(self):  # noqa: N802 - the library's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if peer.faults:
                    try:
                        self.close_connection = not peer.faults.pop(0)(self.wfile, peer.stop)
                    except OSError:
                        self.close_connection = True  # the client gave up
                    return
                body = peer.answers[self.path].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_GET  # noqa: N815

        self.server, self.resource = serve_http(Handler)

    def close(self):
        self.stop.set()
        stop_http(self.server)


RCDAT_ANSWERS = {"/MN?": "MN=RCDAT-6000-110", "/ATT?": "12.00"}
HES_ANSWERS = {"/status": json.dumps({"state": "running"}), "/version": json.dumps({"version": "2.1"})}


class Hes:
    """HesClient and its good exchange, the one a fault replaces."""

    answers = HES_ANSWERS
    sent = "GET /status"

    def __init__(self, resource, transcript):
        self.driver = HesClient("hes", RoleConfig(driver="hes_http", resource=resource, timeout_s=TIMEOUT_S),
                                SetpointLimits(), transcript)

    def exchange(self):
        return self.driver.request("GET", "/status")

    good = {"state": "running"}


class Rcdat:
    """RcdatAttenuator over HTTP and its good exchange."""

    answers = RCDAT_ANSWERS
    sent = "GET /ATT?"

    def __init__(self, resource, transcript):
        config = RoleConfig(driver="rcdat", resource=resource, timeout_s=TIMEOUT_S, safe={"attenuation_db": 0})
        self.driver = RcdatAttenuator("attenuator@1", config, SetpointLimits(), transcript)

    def exchange(self):
        return self.driver.attenuation()

    good = 12.0


@pytest.fixture
def opened(tmp_path):
    made = []

    def make(kind):
        peer = FaultyHttpPeer(kind.answers)
        client = kind(peer.resource, Transcript(tmp_path / "transcript.jsonl"))
        made.append((client, peer))
        client.driver.open()
        return client, peer

    yield make
    for client, peer in made:
        client.driver.close()
        peer.close()


def raises_within(expected, call, limit_s=TIMEOUT_S + MARGIN_S):
    """The error call raised, checked to have come within limit_s."""
    start = time.monotonic()
    with pytest.raises(expected) as raised:
        call()
    elapsed_s = time.monotonic() - start
    assert elapsed_s < limit_s, f"{raised.value} after {elapsed_s:.2f} s"
    return raised.value


@pytest.mark.parametrize("kind", [Hes, Rcdat])
@pytest.mark.parametrize("fault", TIMEOUT_FAULTS)
def test_a_stalling_peer_times_out_within_the_timeout_and_the_next_exchange_reads_its_own_answer(opened, kind, fault):
    client, peer = opened(kind)
    assert client.exchange() == kind.good
    peer.faults.append(TIMEOUT_FAULTS[fault])
    error = raises_within(InstrumentTimeout, client.exchange)
    assert str(error) == f"{client.driver.role} ({peer.resource}): no answer within 1 s to '{kind.sent}'"
    assert client.exchange() == kind.good
    assert len(peer.accepted) == 2  # the connection of the fault was not reused


@pytest.mark.parametrize("kind", [Hes, Rcdat])
def test_an_answer_beyond_the_bound_is_an_instrument_error_not_memory(opened, kind):
    client, peer = opened(kind)
    peer.faults.append(FLOOD)
    error = raises_within(InstrumentError, client.exchange, limit_s=TIMEOUT_S)
    assert not isinstance(error, InstrumentTimeout)
    assert str(error) == (f"{client.driver.role} ({peer.resource}): '{kind.sent}' failed: the answer exceeds "
                          f"{MAX_ANSWER_BYTES} bytes")
    assert client.exchange() == kind.good


@pytest.mark.parametrize("kind", [Hes, Rcdat])
@pytest.mark.parametrize(("fault", "message"), [
    (NOISE, r"'{sent}' failed: .*"),
    (BINARY_BODY, {Hes: r"'{sent}' answered 200 with a body that is not JSON: .*",
                   Rcdat: r"answered '{sent}' with bytes that are not text: b'\\x00\\xff\\xfe\\x81\\x07\\x13'"}),
], ids=["noise", "binary body"])
def test_noise_is_an_instrument_error_and_the_next_exchange_reconnects(opened, kind, fault, message):
    client, peer = opened(kind)
    assert client.exchange() == kind.good
    peer.faults.append(fault)
    pattern = (message[kind] if isinstance(message, dict) else message).format(sent=re.escape(kind.sent))
    error = raises_within(InstrumentError, client.exchange, limit_s=TIMEOUT_S)
    assert not isinstance(error, InstrumentTimeout)
    assert str(error).startswith(f"{client.driver.role} ({peer.resource}): ")
    assert re.fullmatch(pattern, str(error).split("): ", 1)[1]), str(error)
    assert client.exchange() == kind.good
    assert len(peer.accepted) == 2


# -- the transport alone ---------------------------------------------------------------------------------------


@pytest.fixture
def bare():
    peer = FaultyHttpPeer(RCDAT_ANSWERS)
    client = httpx.Client(base_url=peer.resource, transport=DeadlineTransport())
    yield client, peer
    client.close()
    peer.close()


def test_good_exchanges_under_deadlines_share_one_connection(bare):
    client, peer = bare
    for _ in range(3):
        with deadline(TIMEOUT_S):
            assert client.get("/ATT?").text == "12.00"
    assert len(peer.accepted) == 1


def test_httpcore_drops_the_connection_that_timed_out(bare):
    client, peer = bare
    with deadline(TIMEOUT_S):
        client.get("/ATT?")
    peer.faults.append(TIMEOUT_FAULTS["body trickled"])
    with deadline(TIMEOUT_S):
        raises_within(httpx.ReadTimeout, lambda: client.get("/ATT?"))
    with deadline(TIMEOUT_S):
        assert client.get("/ATT?").text == "12.00"
    assert len(peer.accepted) == 2


def test_a_deadline_already_passed_sends_nothing(bare):
    client, peer = bare
    with deadline(0), pytest.raises(httpx.ConnectTimeout):
        client.get("/ATT?")
    assert peer.accepted == []


def test_without_a_deadline_the_transport_is_plain_httpx(bare):
    client, peer = bare
    assert client.get("/MN?").text == "MN=RCDAT-6000-110"
