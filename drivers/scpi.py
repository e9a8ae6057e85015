"""SCPI over VISA (pyvisa + pyvisa-py): every exchange transcripted, every fault named."""

from __future__ import annotations

import threading
import time

import pyvisa
from pyvisa import constants
from pyvisa.errors import VisaIOError

from rig.driver import Driver, Identity
from rig.errors import InstrumentError, InstrumentTimeout

_resource_managers: dict[str, pyvisa.ResourceManager] = {}


def resource_manager(backend: str = "@py") -> pyvisa.ResourceManager:
    if backend not in _resource_managers:
        _resource_managers[backend] = pyvisa.ResourceManager(backend)
    return _resource_managers[backend]


class ScpiDriver(Driver):
    """A driver whose instrument speaks SCPI through a VISA resource.

    Exchanges are serialised by a lock, so a poller thread and the bench's safe-state path can share a session.
    """

    TERMINATION = "\n"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._exchange = threading.RLock()

    def open(self) -> None:
        try:
            self.session = resource_manager(self.config.settings.get("visa_backend", "@py")).open_resource(
                self.address, read_termination=self.TERMINATION, write_termination=self.TERMINATION,
                timeout=int(self.config.timeout_s * 1000))
        except (VisaIOError, OSError, ValueError) as exc:
            raise InstrumentError(f"{self.role} ({self.address}): cannot open: {exc}") from None
        self._interrupted = False
        self.transcript.record(self.role, None, None, note=f"opened {self.address}")

    def close(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            try:
                session.close()
            except (VisaIOError, OSError):
                pass
            self.session = None

    def _fail(self, exc: Exception, sent: str) -> InstrumentError:
        if isinstance(exc, VisaIOError) and exc.error_code == constants.StatusCode.error_timeout:
            return InstrumentTimeout(f"{self.role} ({self.address}): no answer within {self.config.timeout_s:g} s "
                                     f"to {sent!r}")
        if isinstance(exc, ConnectionError):
            return InstrumentError(f"{self.role} ({self.address}): not reachable ({exc.strerror}) "
                                   f"when sending {sent!r}")
        return InstrumentError(f"{self.role} ({self.address}): exchange {sent!r} failed: {exc}")

    def _discard_stale_replies(self) -> None:
        """After an interrupted exchange, drop any late reply so the next query reads its own answer."""
        session = self.session
        timeout = session.timeout
        session.timeout = 50
        try:
            while True:
                stale = session.read()
                self.transcript.record(self.role, None, stale, note="discarded stale reply")
        except VisaIOError:
            pass
        finally:
            session.timeout = timeout
            self._interrupted = False

    def write(self, command: str) -> None:
        with self._exchange:
            self._write(command)

    def _write(self, command: str) -> None:
        if self._interrupted:
            self._discard_stale_replies()
        self._interrupted = True
        try:
            self.session.write(command)
        except (VisaIOError, OSError) as exc:
            raise self._fail(exc, command) from None
        self._interrupted = False
        self.transcript.record(self.role, command, None)

    def query(self, command: str) -> str:
        with self._exchange:
            return self._query(command)

    def _query(self, command: str) -> str:
        if self._interrupted:
            self._discard_stale_replies()
        t_sent = time.monotonic()
        self._interrupted = True
        try:
            reply = self.session.query(command)
        except (VisaIOError, OSError) as exc:
            self.transcript.record(self.role, command, None, t_mono=t_sent, note=str(exc))
            raise self._fail(exc, command) from None
        self._interrupted = False
        self.transcript.record(self.role, command, reply, t_mono=t_sent)
        return reply

    def query_float(self, command: str) -> float:
        reply = self.query(command)
        try:
            return float(reply)
        except ValueError:
            raise InstrumentError(f"{self.role} ({self.address}): sent {command!r}, expected a number, "
                                  f"got {reply!r}") from None

    def command(self, command: str) -> None:
        """Send a setting and confirm the instrument accepted it (chained SYST:ERR? in the same message)."""
        reply = self.query(f"{command};:SYST:ERR?")
        code, _, message = reply.partition(",")
        try:
            error_code = int(code)
        except ValueError:
            raise InstrumentError(f"{self.role} ({self.address}): sent {command!r}, expected an error-queue "
                                  f"entry, got {reply!r}") from None
        if error_code != 0:
            raise InstrumentError(f"{self.role} ({self.address}): refused {command!r}: {error_code},{message}")

    def identify(self) -> Identity:
        reply = self.query("*IDN?")
        fields = [part.strip() for part in reply.split(",")]
        if len(fields) != 4 or not fields[0] or not fields[1]:
            raise InstrumentError(f"{self.role} ({self.address}): sent '*IDN?', expected "
                                  f"'maker,model,serial,firmware', got {reply!r}")
        return Identity(*fields, raw=reply)
