"""Loopback peers that answer a rig driver with whatever bytes a fuzz case holds, over the driver's real transport:
a SCPI socket (one reply per line), a Modbus TCP socket (one reply per request, its transaction id patched in),
the device side of a pty (one reply per AT command line) and an HTTP server (one JSON body for every request)."""

from __future__ import annotations

import http.server
import os
import select
import socket
import threading
import tty


class _SocketPeer:
    """Accepts connections on a free loopback port, each served by _serve(conn) in its own thread."""

    def __init__(self):
        self.reply = b""
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._serve_quietly, args=(conn,), daemon=True).start()

    def _serve_quietly(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._serve(conn)
            except OSError:
                pass

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._server.close()
        for conn in self._open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ScpiReplyPeer(_SocketPeer):
    """Answers every line received with `reply` (a line end appended)."""

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        while chunk := conn.recv(4096):
            buffer += chunk
            while b"\n" in buffer:
                _line, buffer = buffer.split(b"\n", 1)
                conn.sendall(self.reply + b"\n")

    @property
    def resource(self) -> str:
        return f"TCPIP0::127.0.0.1::{self.port}::SOCKET"


class ModbusReplyPeer(_SocketPeer):
    """Answers every Modbus TCP request with `reply`, its first two bytes (the transaction id) set to the
    request's, then closes the connection: a reply shorter than its length field ends at once, not at a timeout."""

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        while chunk := conn.recv(4096):
            buffer += chunk
            if len(buffer) >= 6 and len(buffer) >= 6 + int.from_bytes(buffer[4:6], "big"):
                reply = bytearray(self.reply)
                reply[:2] = buffer[:2]
                conn.sendall(bytes(reply))
                conn.shutdown(socket.SHUT_RDWR)
                return

    @property
    def resource(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


class AtReplyPty:
    """The modem's side of a pty: answers every command line (ended by CR) with `reply`, then a final ERROR, so
    an exchange always ends however the reply was mutated."""

    CLOSER = b"\r\nERROR\r\n"

    def __init__(self):
        self.reply = b"\r\nOK\r\n"
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                buffer += os.read(self.master, 4096)
            except OSError:
                return
            while b"\r" in buffer:
                _line, buffer = buffer.split(b"\r", 1)
                os.write(self.master, self.reply + self.CLOSER)

    def close(self) -> None:
        self._stop.set()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class HttpReplyPeer:
    """An HTTP/1.1 server on a free loopback port answering every request 200 with `reply` as its JSON body."""

    def __init__(self):
        self.reply = b"{}"
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(peer.reply)))
                self.end_headers()
                self.wfile.write(peer.reply)

            do_GET = do_POST = do_PUT = do_PATCH = _answer

            def log_message(self, *_args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.resource = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
