"""A loopback SCPI peer that expects an exact exchange: checks what a driver sends, byte for byte."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Step:
    expect: str
    reply: str | None = None  # None: stay silent, as an instrument does after a set command or a fault
    delay_s: float = 0.0


class ScriptedScpiPeer:
    """Serves one connection on 127.0.0.1; replies per script; records every line received."""

    def __init__(self, steps: list[Step]):
        self.steps = list(steps)
        self.received: list[str] = []
        self.mismatches: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.resource = f"TCPIP0::127.0.0.1::{self.port}::SOCKET"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(10)
        try:
            conn, _ = self._server.accept()
        except OSError:
            return
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
        self.received.append(line)
        if not self.steps:
            self.mismatches.append(f"unexpected {line!r}")
            return
        step = self.steps.pop(0)
        if line != step.expect:
            self.mismatches.append(f"expected {step.expect!r}, got {line!r}")
            return
        if step.reply is not None:
            if step.delay_s:
                time.sleep(step.delay_s)
            conn.sendall(step.reply.encode() + b"\n")

    def close(self) -> None:
        self._server.close()

    def assert_complete(self) -> None:
        assert self.mismatches == []
        assert [step.expect for step in self.steps] == [], "expected exchanges never happened"
