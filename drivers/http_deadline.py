"""One deadline per HTTP exchange for httpx clients: connect, send, status line, headers and body end in time.

httpx's timeouts bound each socket operation, so a peer that trickles its answer or never stops sending holds a
request as long as it likes. `DeadlineTransport` runs httpx's connection pool on a network backend whose streams
wait at most the time left until the deadline that `deadline(timeout_s)` sets around a request (then httpcore's
timeout, which httpx raises as httpx.ConnectTimeout, WriteTimeout or ReadTimeout), and that stop an answer
beyond `max_bytes` (httpx.ReadError). httpcore closes a connection whose exchange failed, so it is never reused.
Outside `deadline()` the transport is plain httpx.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import httpcore
import httpx

MAX_ANSWER_BYTES = 1 << 20  # status line, headers and body as received


@dataclass
class _Exchange:
    deadline: float  # time.monotonic()
    bytes_left: int
    max_bytes: int


_current: ContextVar[_Exchange | None] = ContextVar("http_exchange", default=None)


class AnswerTooLarge(httpcore.ReadError):
    """An answer beyond its exchange's max_bytes; httpx raises it as httpx.ReadError."""


@contextmanager
def deadline(timeout_s: float, max_bytes: int = MAX_ANSWER_BYTES) -> Iterator[None]:
    """Requests made inside end within timeout_s from now, with answers of at most max_bytes."""
    token = _current.set(_Exchange(time.monotonic() + timeout_s, max_bytes, max_bytes))
    try:
        yield
    finally:
        _current.reset(token)


def _time_left(timeout: float | None, timeout_error: type[httpcore.TimeoutException]) -> float | None:
    """The smaller of httpcore's timeout and the time left until the deadline; timeout_error once it has passed."""
    exchange = _current.get()
    if exchange is None:
        return timeout
    left = exchange.deadline - time.monotonic()
    if left <= 0:
        raise timeout_error("the deadline of the exchange has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the deadline of the current exchange."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))
        exchange = _current.get()
        if exchange is not None:
            exchange.bytes_left -= len(data)
            if exchange.bytes_left < 0:
                raise AnswerTooLarge(f"the answer exceeds {exchange.max_bytes} bytes")
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, its streams bound by the deadline of the current exchange."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable | None = None) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable | None = None) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's HTTP/1.1 transport (no proxy), its connection pool on the deadline backend."""

    def __init__(self, verify: ssl.SSLContext | str | bool = True) -> None:
        super().__init__(verify=verify)
        self._pool = httpcore.ConnectionPool(  # as httpx builds it, with httpx's default limits
            ssl_context=httpx.create_ssl_context(verify=verify), max_connections=100, max_keepalive_connections=20,
            keepalive_expiry=5.0, network_backend=DeadlineBackend())
