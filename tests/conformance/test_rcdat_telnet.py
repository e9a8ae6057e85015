"""The Mini-Circuits RCDAT programmable attenuator over Telnet (RCDAT programming manual, Ethernet control: Telnet
on port 23, commands ':MN?', ':SN?', ':ATT?', ':SETATT=<dB>', each answered with one line), spoken by a raw socket
as a real Telnet client speaks it (RFC 854/855): the client opens with its option negotiation, ends lines with
CR LF, a bare CR or CR NUL, and takes the server's own Telnet commands out of what it reads.

SETATT answers 1 (set), 0 (refused: not a valid value) or 2 (above the model's range: the maximum is set).
"""

from __future__ import annotations

import re
import socket
import time

import pytest

pytestmark = pytest.mark.role("attenuator@2")

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ECHO, SGA, STATUS, TTYPE, NAWS, TSPEED, LFLOW, LINEMODE, NEW_ENVIRON = 1, 3, 5, 24, 31, 32, 33, 34, 39
# what a Linux telnet client sends when it connects: DO SGA, WILL TTYPE/NAWS/TSPEED/LFLOW/LINEMODE/NEW-ENVIRON,
# DO STATUS
CLIENT_OPENING = bytes([IAC, DO, SGA, IAC, WILL, TTYPE, IAC, WILL, NAWS, IAC, WILL, TSPEED, IAC, WILL, LFLOW,
                        IAC, WILL, LINEMODE, IAC, WILL, NEW_ENVIRON, IAC, DO, STATUS])
ANSWERS = {DO: (WILL, WONT), WILL: (DO, DONT)}  # RFC 854: a request is agreed to or refused
CR_WAIT_S = 0.2  # after a CR that ends what arrived: how long an LF or NUL of the same line end may take
MODEL = re.compile(r"MN=RC\w*DAT-\d+-(\d+(?:\.\d+)?)")


class TelnetClient:
    """A raw Telnet client: line(text) sends text + the line end; reply() reads the next non-empty line of data,
    with the server's commands taken out (IAC IAC is a data 0xFF) and kept in `commands`."""

    def __init__(self, host: str, port: int, timeout_s: float = 3.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.timeout_s = timeout_s
        self.data = b""
        self.raw = b""
        self.commands: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, text: str, end: bytes = b"\r\n") -> None:
        self.send(text.encode("ascii") + end)

    def _take_commands(self) -> None:
        while (start := self.raw.find(bytes([IAC]))) >= 0:
            self.data += self.raw[:start]
            rest = self.raw[start:]
            if len(rest) < 2:
                self.raw = rest
                return
            if rest[1] == IAC:
                self.data, self.raw = self.data + b"\xff", rest[2:]
            elif rest[1] in (DO, DONT, WILL, WONT):
                if len(rest) < 3:
                    self.raw = rest
                    return
                self.commands.append(rest[:3])
                self.raw = rest[3:]
            elif rest[1] == SB:
                end = rest.find(bytes([IAC, SE]))
                if end < 0:
                    self.raw = rest
                    return
                self.commands.append(rest[: end + 2])
                self.raw = rest[end + 2:]
            else:
                self.commands.append(rest[:2])
                self.raw = rest[2:]
        self.data, self.raw = self.data + self.raw, b""

    def _receive(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"nothing more within {self.timeout_s} s; data {self.data!r}, commands "
                                 f"{self.commands!r}")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(4096)
        if not chunk:
            raise AssertionError(f"the attenuator closed the connection; data {self.data!r}")
        self.raw += chunk
        self._take_commands()

    def reply(self) -> str:
        """The next non-empty line; a CR that ends the data so far waits CR_WAIT_S for an LF or NUL of its own."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            match = re.search(rb"\r\n|\r\0|\r|\n", self.data)
            if match is not None and match.group() == b"\r" and match.end() == len(self.data):
                try:
                    self._receive(min(deadline, time.monotonic() + CR_WAIT_S))
                    continue
                except (AssertionError, TimeoutError):
                    pass  # a bare CR: the line ends there
            if match is not None:
                line, self.data = self.data[: match.start()], self.data[match.end():]
                if line.strip():
                    return line.decode("ascii").strip()
                continue
            self._receive(deadline)

    def answers_to(self, requests: list[tuple[int, int]], timeout_s: float = 3.0) -> dict[tuple[int, int], int]:
        """The server's answer verb to each (verb, option) request the client sent, waited for."""
        deadline = time.monotonic() + timeout_s
        while True:
            answered = {(verb, option): command[1] for verb, option in requests for command in self.commands
                        if len(command) == 3 and command[2] == option and command[1] in ANSWERS[verb]}
            if len(answered) == len(requests):
                return answered
            self._receive(deadline)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def telnet(device):
    client = TelnetClient(device.host, device.port)
    client.send(CLIENT_OPENING)
    yield client
    client.close()


def opening_requests() -> list[tuple[int, int]]:
    return [(CLIENT_OPENING[i + 1], CLIENT_OPENING[i + 2]) for i in range(0, len(CLIENT_OPENING), 3)]


def test_every_option_a_telnet_client_asks_for_is_answered(telnet):
    answers = telnet.answers_to(opening_requests())
    assert set(answers) == set(opening_requests())


@pytest.mark.twin_only
def test_the_twin_refuses_every_option_exactly(telnet):
    answers = telnet.answers_to(opening_requests())
    assert answers == {(verb, option): (WONT if verb == DO else DONT) for verb, option in opening_requests()}
    assert all(len(command) == 3 for command in telnet.commands)  # nothing asked of the client in return


@pytest.mark.parametrize("end", [b"\r\n", b"\r", b"\r\0", b"\n"], ids=["crlf", "cr", "cr-nul", "lf"])
def test_model_and_serial_after_the_negotiation_with_any_line_end(telnet, end):
    telnet.line(":MN?", end)
    assert MODEL.fullmatch(telnet.reply())
    telnet.line(":SN?", end)
    assert re.fullmatch(r"SN=\w+", telnet.reply())


def test_a_command_sent_in_pieces_with_negotiation_inside_is_one_command(telnet):
    telnet.send(b":M")
    telnet.send(bytes([IAC, DONT, ECHO]))  # a negotiation between two bytes of a command
    telnet.send(b"N?\r")
    telnet.send(b"\n:SN?\r\n")
    assert MODEL.fullmatch(telnet.reply())
    assert telnet.reply().startswith("SN=")


def test_attenuation_is_a_number_of_db_on_the_quarter_db_step(telnet):
    telnet.line(":ATT?", b"\r")
    value = float(telnet.reply())
    assert value >= 0 and (value * 4).is_integer()


def model_range_db(telnet: TelnetClient) -> float:
    telnet.line(":MN?")
    return float(MODEL.fullmatch(telnet.reply()).group(1))


@pytest.mark.changes_outputs
def test_setatt_sets_reads_back_and_refuses_per_the_manual(telnet):
    telnet.line(":ATT?")
    held = float(telnet.reply())
    maximum = model_range_db(telnet)
    try:
        telnet.line(":SETATT=30.25", b"\r")
        assert telnet.reply() == "1"
        telnet.line(":ATT?", b"\r")
        assert float(telnet.reply()) == 30.25
        telnet.line(":SETATT=30.1")  # off the 0.25 dB step
        assert telnet.reply() == "0"
        telnet.line(":ATT?")
        assert float(telnet.reply()) == 30.25
        telnet.line(f":SETATT={maximum + 10:g}")  # above the range: the maximum is set
        assert telnet.reply() == "2"
        telnet.line(":ATT?")
        assert float(telnet.reply()) == maximum
    finally:
        telnet.line(f":SETATT={held:g}")
        assert telnet.reply() == "1"


@pytest.mark.changes_outputs
def test_a_setatt_fragment_left_by_a_closing_client_is_not_executed(device, telnet):
    telnet.line(":ATT?")
    held = float(telnet.reply())
    dying = TelnetClient(device.host, device.port)
    dying.send(CLIENT_OPENING + f":SETATT={held + 1:g}".encode("ascii"))
    dying.sock.shutdown(socket.SHUT_WR)
    try:
        while dying.sock.recv(4096):
            pass  # the refusals of its negotiation, then the close
    except TimeoutError:
        pass
    finally:
        dying.close()
    telnet.line(":ATT?")
    assert float(telnet.reply()) == held
