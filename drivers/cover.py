"""The meter's terminal cover of one position (role 'cover@N'): opened and closed by an actuator or an operator.

Two drivers fill the role `rig.roles.Cover`:
- `cover_switch`: a cover actuator on a line protocol over TCP (the twin's `rig/sim/cover_switch.py`): 'OPEN',
  'CLOSE', 'STATE?', '*IDN?', one reply line each ('OK', 'OPEN' | 'CLOSED', 'ERR ...').
- `operator_prompt`: a bench without an actuator asks its operator on a terminal (resource: the terminal device,
  '/dev/tty' for the rig's own terminal) and waits for Enter; 'n' means it could not be done (ERROR), no answer
  within `answer_timeout_s` is an InstrumentTimeout (ERROR: the rig could not act, the meter is not to blame).
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import Annotated

from pydantic import Field

from rig.config import DriverSettings
from rig.driver import Driver, Identity
from rig.errors import InstrumentError, InstrumentTimeout
from rig.resources import Accepts
from rig.roles import Cover

MAX_LINE = 4096


class CoverSwitch(Driver, Cover):
    """A cover actuator reached at 'tcp://host:port'; its safe state closes the cover."""

    ACCEPTS = Accepts(("tcp",), "a cover switch is reached at 'tcp://host:port'")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._socket: socket.socket | None = None
        self._buffer = b""

    def open(self) -> None:
        try:
            self._socket = socket.create_connection((self.resource.host, self.resource.port),
                                                    timeout=self.config.timeout_s)
        except OSError as exc:
            raise InstrumentError(f"{self.role} ({self.address}): cannot connect: {exc.strerror or exc}") from None
        self.transcript.record(self.role, None, None, note=f"opened {self.address}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def identify(self) -> Identity:
        reply = self.exchange("*IDN?")
        fields = [part.strip() for part in reply.split(",")]
        if len(fields) != 4:
            raise InstrumentError(f"{self.role} ({self.address}): sent '*IDN?', expected 'maker,model,serial,"
                                  f"firmware', got {reply!r}")
        return Identity(*fields, raw=reply)

    def make_safe(self) -> list[str]:
        self.close_cover()
        return ["cover closed (confirmed by STATE?)"]

    def open_cover(self) -> None:
        self._switch("OPEN")

    def close_cover(self) -> None:
        self._switch("CLOSE")

    def cover_open(self) -> bool:
        reply = self.exchange("STATE?")
        if reply not in ("OPEN", "CLOSED"):
            raise InstrumentError(f"{self.role} ({self.address}): sent 'STATE?', expected OPEN or CLOSED, "
                                  f"got {reply!r}")
        return reply == "OPEN"

    def _switch(self, command: str) -> None:
        reply = self.exchange(command)
        if reply != "OK":
            raise InstrumentError(f"{self.role} ({self.address}): sent {command!r}, expected OK, got {reply!r}")
        if self.cover_open() != (command == "OPEN"):
            raise InstrumentError(f"{self.role} ({self.address}): sent {command!r} but STATE? disagrees")

    def exchange(self, command: str) -> str:
        """One command line and its reply line, within timeout_s; the connection is dropped after a fault."""
        if self._socket is None:
            self.open()
        t_sent = time.monotonic()
        deadline = t_sent + self.config.timeout_s
        try:
            self._socket.sendall(command.encode("ascii") + b"\n")
            reply = self._read_line(deadline)
        except (OSError, UnicodeDecodeError, InstrumentError) as exc:
            self.transcript.record(self.role, command, None, t_mono=t_sent, note=str(exc))
            self.close()
            if isinstance(exc, TimeoutError):
                raise InstrumentTimeout(f"{self.role} ({self.address}): no answer within "
                                        f"{self.config.timeout_s:g} s to {command!r}") from None
            raise InstrumentError(f"{self.role} ({self.address}): {command!r} failed: {exc}") from None
        self.transcript.record(self.role, command, reply, t_mono=t_sent)
        return reply

    def _read_line(self, deadline: float) -> str:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise InstrumentError(f"no line end within {MAX_LINE} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._socket.settimeout(remaining)
            chunk = self._socket.recv(MAX_LINE)
            if not chunk:
                raise ConnectionError("connection closed by the cover switch")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("ascii").strip()


class OperatorSettings(DriverSettings):
    answer_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0


class OperatorPrompt(Driver, Cover):
    """An operator at a terminal opens and closes the cover when asked; nothing is switched in a safe state."""

    SETTINGS_MODEL = OperatorSettings
    ACCEPTS = Accepts(("serial",), "an operator prompt's resource is the terminal device, e.g. '/dev/tty'")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fd: int | None = None
        self._is_open: bool | None = None  # what the operator last confirmed

    def open(self) -> None:
        try:
            self._fd = os.open(self.resource.path, os.O_RDWR | os.O_NOCTTY)
        except OSError as exc:
            raise InstrumentError(f"{self.role} ({self.address}): no terminal to ask the operator on: "
                                  f"{exc.strerror or exc}") from None
        self.transcript.record(self.role, None, None, note=f"opened {self.address}")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def identify(self) -> Identity:
        return Identity("operator", "terminal prompt", self.address, "-", raw=self.address)

    def make_safe(self) -> list[str]:
        return ["operator: nothing to switch"]

    def open_cover(self) -> None:
        self.ask("open the meter's terminal cover")
        self._is_open = True

    def close_cover(self) -> None:
        self.ask("close the meter's terminal cover")
        self._is_open = False

    def cover_open(self) -> bool | None:
        return self._is_open

    def ask(self, instruction: str) -> None:
        """Print the instruction and wait for Enter (done) or 'n' (cannot) within answer_timeout_s."""
        if self._fd is None:
            raise InstrumentError(f"{self.role} ({self.address}): not open")
        prompt = f"\n[rig] {self.role}: {instruction}, then press Enter ('n' if you cannot): "
        t_sent = time.monotonic()
        os.write(self._fd, prompt.encode())
        answer = self._read_answer(t_sent + self.settings.answer_timeout_s)
        self.transcript.record(self.role, prompt.strip(), answer, t_mono=t_sent)
        if answer is None:
            raise InstrumentTimeout(f"{self.role} ({self.address}): the operator did not confirm '{instruction}' "
                                    f"within {self.settings.answer_timeout_s:g} s")
        if answer.lower() in ("n", "no"):
            raise InstrumentError(f"{self.role} ({self.address}): the operator could not {instruction}")

    def _read_answer(self, deadline: float) -> str | None:
        typed = b""
        while b"\n" not in typed and b"\r" not in typed:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self._fd, MAX_LINE)
            if not chunk:
                raise InstrumentError(f"{self.role} ({self.address}): the terminal closed")
            typed += chunk
        return typed.decode(errors="replace").strip()
