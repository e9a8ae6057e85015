"""The fault-injecting TCP proxy, mode by mode, in front of a loopback echo server."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from rig.sim.fault_proxy import GARBAGE, Mode, ProxyThread

DEADLINE_S = 5.0


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes every chunk; `received` collects what reached it, `arrived` is set at each chunk."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.received = b""
        self.arrived = threading.Event()
        super().__init__(("127.0.0.1", 0), EchoHandler)


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while chunk := self.request.recv(4096):
            self.server.received += chunk
            self.server.arrived.set()
            self.request.sendall(chunk)


@pytest.fixture
def echo():
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo):
    with ProxyThread(echo.server_address, trickle_s=0.05) as running:
        yield running


def connect(proxy: ProxyThread, timeout_s: float = DEADLINE_S) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout_s)


def receive(sock: socket.socket, size: int) -> bytes:
    """Exactly size bytes, or what came before the peer closed; the socket's timeout bounds each wait."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_pass_forwards_both_ways(proxy, echo):
    with connect(proxy) as client:
        client.sendall(b"*IDN?\n")
        assert receive(client, 6) == b"*IDN?\n"
    assert echo.received == b"*IDN?\n"


def test_freeze_holds_everything_keeps_the_connection_and_releases_on_pass(proxy, echo):
    with connect(proxy, timeout_s=0.3) as client:
        proxy.set_mode(Mode.FREEZE)
        client.sendall(b"OUTP OFF\n")
        assert not echo.arrived.wait(0.3)  # held by the proxy
        with pytest.raises(TimeoutError):
            client.recv(1)  # nothing back, yet no end of stream
        proxy.set_mode(Mode.PASS)
        assert echo.arrived.wait(DEADLINE_S)
        client.settimeout(DEADLINE_S)
        assert receive(client, 9) == b"OUTP OFF\n"


def test_freeze_holds_a_reply_under_way(echo):
    with ProxyThread(echo.server_address, Mode.TRICKLE, trickle_s=0.5) as proxy, connect(proxy, 0.8) as client:
        client.sendall(b"abc")
        assert receive(client, 1) == b"a"
        proxy.set_mode(Mode.FREEZE)  # within the half second before the next byte
        with pytest.raises(TimeoutError):
            client.recv(1)
        proxy.set_mode(Mode.PASS)
        assert receive(client, 2) == b"bc"


def test_trickle_forwards_requests_at_once_and_replies_a_byte_at_a_time(proxy, echo):
    proxy.set_mode(Mode.TRICKLE)
    with connect(proxy) as client:
        start = time.monotonic()
        client.sendall(b"12345\n")
        assert echo.arrived.wait(DEADLINE_S)
        request_s = time.monotonic() - start
        assert receive(client, 6) == b"12345\n"
        elapsed_s = time.monotonic() - start
    assert request_s < 0.05 * 5
    assert elapsed_s >= 0.05 * 5  # five gaps of trickle_s between six bytes


def test_garbage_answers_each_request_and_still_forwards_it(proxy, echo):
    proxy.set_mode(Mode.GARBAGE)
    with connect(proxy, timeout_s=0.3) as client:
        client.sendall(b"OUTP?\n")
        assert receive(client, len(GARBAGE)) == GARBAGE
        assert echo.arrived.wait(DEADLINE_S)
        assert echo.received == b"OUTP?\n"
        with pytest.raises(TimeoutError):
            client.recv(1)  # the echo's own reply is swallowed
    with pytest.raises(UnicodeDecodeError):
        GARBAGE.decode("ascii")


def test_drop_closes_live_connections_and_new_ones(proxy, echo):
    with connect(proxy) as live:
        live.sendall(b"x")
        assert receive(live, 1) == b"x"
        proxy.set_mode(Mode.DROP)
        assert live.recv(1) == b""  # closed by the proxy
    with connect(proxy) as late:
        assert late.recv(1) == b""
    proxy.set_mode(Mode.PASS)
    with connect(proxy) as again:
        again.sendall(b"y")
        assert receive(again, 1) == b"y"


def test_unreachable_upstream_closes_the_client():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with ProxyThread(("127.0.0.1", closed_port)) as proxy, connect(proxy) as client:
        assert client.recv(1) == b""
