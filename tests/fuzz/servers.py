"""The twin's servers under fuzzed traffic on their real transports (TCP, pty, HTTP), then asked a valid request.

Each `survive_*` sends `count` mutated messages (from valid seeds, as tests/fuzz/targets.py makes them) to one
server, draining what it answers, then checks with a fresh connection (a rig driver where there is one) that
the server still answers correctly. It returns what the check saw; a server that stopped answering raises.
"""

from __future__ import annotations

import os
import random
import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import httpx
from mutations import mutate
from targets import (
    HDLC_SEEDS,
    HES_BODY_SEEDS,
    MODBUS_REQUEST_SEEDS,
    TELNET_SEEDS,
    TWIN_AT_SEEDS,
    TWIN_DLMS_SEEDS,
    TWIN_SCPI_SEEDS,
    FuzzContext,
    hdlc_engine,
    hes_body_engine,
    scpi_engine,
    twin_at_engine,
)

from rig.driver import SetpointLimits

ANSWER_WAIT_S = 5.0


@dataclass
class Survival:
    """What one server went through: messages sent, and what the valid request afterwards got."""

    server: str
    sent: int
    answer: str
    server_errors: list[str] = field(default_factory=list)  # exceptions inside the server (an HTTP 500 too)


class Drain:
    """Reads and drops what a socket or pty sends, in a thread, until stopped."""

    def __init__(self, reader):
        self._reader = reader
        self._stop = threading.Event()
        self.received = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._reader()
            except (OSError, ValueError):
                return
            if data is None:
                continue
            if not data:
                return
            self.received += len(data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def _socket_reader(sock: socket.socket):
    sock.settimeout(0.05)

    def read():
        try:
            return sock.recv(65536)
        except TimeoutError:
            return None
    return read


def _send_all_fuzz(host: str, port: int, messages: list[bytes], per_connection: int = 10,
                   answer_wait_s: float = 0.005) -> int:
    """Send the messages, a new connection every `per_connection` of them (and whenever the server closed one),
    waiting after each up to answer_wait_s for the server to answer or close; the number sent."""
    sent = 0
    sock = None
    for index, message in enumerate(messages):
        if sock is not None and index % per_connection == 0:
            sock.close()
            sock = None
        try:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=ANSWER_WAIT_S)
            sock.sendall(message)
            sent += 1
            if select.select([sock], [], [], answer_wait_s)[0] and not sock.recv(65536):
                sock.close()  # the server closed the connection: the next message opens another
                sock = None
        except OSError:
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return sent


def _host_port(resource: str) -> tuple[str, int]:
    match = re.search(r"(?:://|TCPIP0::)([\d.]+)(?::|::)(\d+)", resource)
    return match.group(1), int(match.group(2))


def _read_line(sock: socket.socket, end: bytes) -> bytes:
    data, deadline = b"", time.monotonic() + ANSWER_WAIT_S
    while not data.endswith(end) and time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _messages(seeds: list[bytes], engine, count: int, rng: random.Random) -> list[bytes]:
    return [rng.choice(seeds) if rng.random() < 0.05 else engine(rng.choice(seeds), rng, seeds) for _ in range(count)]


# -- SCPI -------------------------------------------------------------------------------------------------------------


def survive_scpi(context: FuzzContext, count: int, rng: random.Random) -> Survival:
    host, port = _host_port(context.twin.resources["source"])
    fuzzed = _messages(TWIN_SCPI_SEEDS, scpi_engine, count, rng)
    messages = [message.replace(b"\n", b" ") + b"\n" for message in fuzzed]
    messages.append(b"VOLT " + b"9" * 70_000 + b"\n")  # longer than any message the server reads
    messages.append(b"*IDN?")  # a fragment without its LF, then the connection closes: never executed
    sent = _send_all_fuzz(host, port, messages)
    with socket.create_connection((host, port), timeout=ANSWER_WAIT_S) as sock:
        sock.sendall(b"*CLS;*IDN?\n")
        idn = _read_line(sock, b"\n")
        sock.sendall(b"SYST:ERR?\n")
        error = _read_line(sock, b"\n")
    return Survival("scpi", sent, (idn + error).decode("ascii", "replace"))


# -- Modbus TCP -------------------------------------------------------------------------------------------------------


def _mbap(pdu: bytes, transaction: int) -> bytes:
    return struct.pack(">HHH", transaction, 0, len(pdu)) + pdu


def survive_modbus(context: FuzzContext, count: int, rng: random.Random) -> Survival:
    host, port = _host_port(context.twin.resources["counter"])
    seeds = [_mbap(pdu, index) for index, pdu in enumerate(MODBUS_REQUEST_SEEDS)]
    sent = _send_all_fuzz(host, port, _messages(seeds, mutate, count, rng))
    with socket.create_connection((host, port), timeout=ANSWER_WAIT_S) as sock:
        sock.sendall(_mbap(b"\x01\x03\x00\x00\x00\x02", 0x4242))
        answer = b""
        while len(answer) < 6 or len(answer) < 6 + int.from_bytes(answer[4:6], "big"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return Survival("modbus", sent, answer.hex())


# -- DLMS: TCP wrapper and HDLC on a pty ------------------------------------------------------------------------------


def _dlms_driver(context: FuzzContext, role: str, resource: str):
    from drivers.dlms_meter import DlmsMeter
    config = context.role_config("dlms_meter", resource, timeout_s=5, settings={"client": "public", "deadline_s": 5})
    return DlmsMeter(role, config, SetpointLimits(), context.transcript)


def _read_clock(context: FuzzContext, role: str, resource: str) -> str:
    driver = _dlms_driver(context, role, resource)
    try:
        return driver.read_clock().isoformat()
    finally:
        driver.close()


def survive_dlms_wrapper(context: FuzzContext, count: int, rng: random.Random) -> Survival:
    resource = context.twin.resources["meter@1"]
    host, port = _host_port(resource)
    seeds = [struct.pack(">HHHH", 1, (16, 32)[seed[0] % 2], 1, len(seed) - 1) + seed[1:] for seed in TWIN_DLMS_SEEDS]
    sent = _send_all_fuzz(host, port, _messages(seeds, mutate, count, rng))
    return Survival("dlms-wrapper", sent, _read_clock(context, "meter@1", resource))


def _pty_fuzz(path: str, messages: list[bytes], end: bytes = b"") -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    drain = Drain(lambda: os.read(fd, 65536) if select.select([fd], [], [], 0.05)[0] else None)
    try:
        for message in messages:
            os.write(fd, message)
        if end:
            os.write(fd, end)
        time.sleep(0.2)
    finally:
        drain.stop()
        os.close(fd)
    return len(messages)


def survive_dlms_hdlc(context: FuzzContext, count: int, rng: random.Random) -> Survival:
    """After the fuzz the client stays silent longer than the link's inter-octet time-out, which discards any
    partial frame the fuzz left open (one whose length field promised more octets), then reads the clock."""
    from rig.sim.dlms.hdlc import INTER_OCTET_TIMEOUT_S
    path = context.twin.resources["meter@3"]
    sent = _pty_fuzz(path, _messages(HDLC_SEEDS, hdlc_engine, count, rng))
    time.sleep(INTER_OCTET_TIMEOUT_S + 0.1)
    return Survival("dlms-hdlc", sent, _read_clock(context, "meter@3", path))


# -- AT on a pty ------------------------------------------------------------------------------------------------------

LINE_SETTINGS = re.compile(rb"S0*[345]\s*=", re.IGNORECASE)  # S3, S4, S5 change the line framing itself


def survive_at(context: FuzzContext, count: int, rng: random.Random) -> Survival:
    from drivers.modem import AtModem
    path = context.twin.resources["modem@1"]
    messages = [m for m in _messages(TWIN_AT_SEEDS, twin_at_engine, count, rng) if not LINE_SETTINGS.search(m)]
    sent = _pty_fuzz(path, messages, end=b"\r")  # a last CR ends whatever line the fuzz left open
    config = context.role_config("at_modem", path, timeout_s=2)
    modem = AtModem("modem@1", config, SetpointLimits(), context.transcript)
    try:
        modem.open()
        identity = modem.identify()
    finally:
        modem.close()
    return Survival("at", sent, f"{identity.manufacturer} {identity.model} {identity.serial}")


# -- Telnet -----------------------------------------------------------------------------------------------------------


def survive_telnet(context: FuzzContext, count: int, rng: random.Random) -> Survival:
    host, port = _host_port(context.twin.resources["attenuator@2"])
    sent = _send_all_fuzz(host, port, _messages(TELNET_SEEDS, mutate, count, rng))
    with socket.create_connection((host, port), timeout=ANSWER_WAIT_S) as sock:
        sock.sendall(b":MN?\r\n")
        answer = _read_line(sock, b"\r\n")
    return Survival("telnet", sent, answer.decode("ascii", "replace"))


# -- HES HTTP ---------------------------------------------------------------------------------------------------------

HES_ROUTES = [("PUT", "/clock"), ("PUT", "/tariff"), ("PATCH", "/accounts/SIM0001"),
              ("POST", "/accounts/SIM0001/recharge"), ("POST", "/accounts/SIM0002/adjustment"),
              ("POST", "/accounts/SIM0003/emergency-credit"),
              ("POST", "/accounts/SIM0001/disconnect"), ("POST", "/accounts/SIM0001/connect"),
              ("POST", "/group-commands"), ("GET", "/commands"), ("GET", "/events"), ("GET", "/accounts/SIM0001")]
BODY_OF_ROUTE = {"/clock": 4, "/tariff": 3, "/accounts/SIM0001": 2, "recharge": 0, "adjustment": 1,
                 "/group-commands": 5}


def hes_headers(context: FuzzContext) -> dict[str, str]:
    """A bearer token the twin HES accepts, from the bench's secrets (an administrator's if it names one, else the
    lone `token`), or none when the bench gives none; never printed."""
    bench = context.twin.twin.bench
    config = bench.config.roles["hes"]
    secrets = {name: ref.resolve(f"hes.secrets.{name}", bench.path.parent) for name, ref in config.secrets.items()}
    twin_settings = bench.config.twin.instruments.get("hes", {}) if bench.config.twin else {}
    settings = {**config.settings, **twin_settings}
    operators = settings.get("operators") or {}
    ranked = sorted(operators, key=lambda name: operators[name] != "administrator")
    token = next((secrets[f"token_{name}"] for name in ranked if f"token_{name}" in secrets), None)
    token = token or secrets.get("token") or settings.get("token")
    return {"Authorization": f"Bearer {token}"} if isinstance(token, str) and token else {}


def _hes_requests(count: int, rng: random.Random) -> list[tuple[str, str, bytes, str]]:
    requests = []
    for _ in range(count):
        method, path = rng.choice(HES_ROUTES)
        kind = BODY_OF_ROUTE.get(path, BODY_OF_ROUTE.get(path.rsplit("/", 1)[-1], 6))
        seed = next(s for s in HES_BODY_SEEDS if s[0] == kind)
        body = hes_body_engine(seed, rng, HES_BODY_SEEDS)[1:]
        if rng.random() < 0.2:
            path = mutate(path.encode(), rng).decode("latin-1").replace("\n", "")
        if rng.random() < 0.1:
            method = rng.choice(("GET", "DELETE", "OPTIONS", "POST"))
        content_type = rng.choice(("application/json", "application/json", "application/json; charset=latin-1",
                                   "text/plain"))
        requests.append((method, path, body, content_type))
    return requests


def survive_hes(context: FuzzContext, count: int, rng: random.Random) -> Survival:
    base = context.twin.resources["hes"]
    headers = hes_headers(context)
    server_errors = []
    with httpx.Client(base_url=base, headers=headers, timeout=ANSWER_WAIT_S) as client:
        before = client.get("/version")
        for method, path, body, content_type in _hes_requests(count, rng):
            try:
                response = client.request(method, path, content=body, headers={"Content-Type": content_type})
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError):
                continue  # a path httpx itself refuses to send
            if response.status_code == 500:
                server_errors.append(f"{method} {path!r} {body[:200]!r}: {response.text[:200]}")
        host, port = _host_port(base)
        raw = [mutate(b"POST /accounts/SIM0001/recharge HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
                      rng) for _ in range(max(10, count // 10))]
        _send_all_fuzz(host, port, raw)  # garbage request heads, for aiohttp's own parser
        after = client.get("/version")
    if (after.status_code, after.text) != (before.status_code, before.text):
        raise AssertionError(f"HES answered GET /version with {after.status_code} {after.text!r} after the fuzz, "
                             f"{before.status_code} {before.text!r} before")
    return Survival("hes", count, f"{after.status_code} {after.text}", server_errors)


def survive(context: FuzzContext, kind: str, count: int, rng: random.Random) -> Survival:
    """One server's survival, with the exceptions the twin's loop caught meanwhile counted as its errors."""
    caught = len(context.server_exceptions)
    survival = SURVIVALS[kind](context, count, rng)
    survival.server_errors += context.server_exceptions[caught:]
    return survival


SURVIVALS = {"scpi": survive_scpi, "modbus": survive_modbus, "dlms-wrapper": survive_dlms_wrapper,
             "dlms-hdlc": survive_dlms_hdlc, "at": survive_at, "telnet": survive_telnet, "hes": survive_hes}
