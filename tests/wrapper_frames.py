"""Test helper: one IEC 62056-47 TCP wrapper frame read whole from a socket (8-byte header, then its length)."""

import socket


def read_wrapper_frame(sock: socket.socket) -> bytes:
    """The next frame, header included; AssertionError if the meter closes the connection first."""
    data = b""
    while len(data) < 8 or len(data) < 8 + int.from_bytes(data[6:8], "big"):
        chunk = sock.recv(4096)
        assert chunk, "the meter closed the connection"
        data += chunk
    return data
