"""A loopback SCPI peer that expects an exact exchange: checks what a driver sends, byte for byte.

It accepts any number of connections (a driver reconnects after a fault) and serves each in its own thread;
the script is shared, in order, across them.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Step:
    expect: str
    reply: str | None = None  # None: stay silent, as an instrument does after a set command or a fault
    delay_s: float = 0.0
    raw: bytes | None = None  # sent as is instead of reply + "\n": garbage, or bytes without a terminator
    trickle_s: float = 0.0  # send the reply one byte every trickle_s
    late: bool = False  # hold the reply until the next line arrives (on any connection), then send it first


class ScriptedScpiPeer:
    """Serves connections on 127.0.0.1; replies per script; records every line received."""

    def __init__(self, steps: list[Step]):
        self.steps = list(steps)
        self.received: list[str] = []
        self.mismatches: list[str] = []
        self.connections = 0
        self.released: list[bytes] = []  # late replies, as they were sent
        self._held: list[tuple[socket.socket, bytes]] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(10)
        self.port = self._server.getsockname()[1]
        self.resource = f"TCPIP0::127.0.0.1::{self.port}::SOCKET"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            conn.settimeout(10)
            while True:
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._answer(conn, line.decode())

    def _answer(self, conn: socket.socket, line: str) -> None:
        with self._lock:
            held, self._held = self._held, []
            self.received.append(line)
            step = self.steps.pop(0) if self.steps else None
            if step is None:
                self.mismatches.append(f"unexpected {line!r}")
            elif line != step.expect:
                self.mismatches.append(f"expected {step.expect!r}, got {line!r}")
                step = None
        for late_conn, data in held:
            self.released.append(data)
            self._send(late_conn, data)
        if step is None or (step.reply is None and step.raw is None):
            return
        data = step.raw if step.raw is not None else step.reply.encode() + b"\n"
        if step.late:
            with self._lock:
                self._held.append((conn, data))
            return
        if step.delay_s:
            time.sleep(step.delay_s)
        if not step.trickle_s:
            self._send(conn, data)
            return
        for index in range(len(data)):
            if self._stop.wait(step.trickle_s) or not self._send(conn, data[index:index + 1]):
                return

    @staticmethod
    def _send(conn: socket.socket, data: bytes) -> bool:
        try:
            conn.sendall(data)
        except OSError:  # the driver closed this connection
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self._server.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def assert_complete(self) -> None:
        assert self.mismatches == []
        assert [step.expect for step in self.steps] == [], "expected exchanges never happened"


class QuietHandler(BaseHTTPRequestHandler):
    """An HTTP request handler that logs nothing."""

    def log_message(self, *_args):
        pass


def serve_http(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A threaded HTTP server for handler on a free loopback port, serving in the background, and its resource."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def stop_http(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


class TelnetServer:
    """Accepts connections on a free loopback port, counting them, each served by _converse(conn) in its own thread.
    A subclass sets its own state before calling this __init__, which starts serving."""

    def __init__(self):
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.resource = f"telnet://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self._server.settimeout(10)
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._converse, args=(conn,), daemon=True).start()

    def _converse(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self):
        self._server.close()
