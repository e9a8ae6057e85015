"""SCPI over VISA (pyvisa + pyvisa-py): one deadline per exchange, every exchange transcripted, every fault named.

A driver is a table of declared methods: `setpoint`, `switch`, `flag`, `number` and `action`, each naming what it
sends, and a safe state (`SAFE`, steps of `SafeState`) that make_safe runs. Every message a driver sends, raw or
from its own methods, passes one guard first: a setting of a bounded quantity is checked against the role's
SetpointLimits, and a command that switches an output or input on makes the driver read back and check the
setpoints the instrument holds. The guard's tables (`SETTINGS`, `SWITCHES`, `HELD_SETPOINTS`) are gathered from
the declared methods, plus `GUARDS` for headers no method sends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MethodType
from typing import Annotated, Any, ClassVar

import pyvisa
from pydantic import Field
from pyvisa import constants
from pyvisa.errors import VisaIOError
from pyvisa.resources import MessageBasedResource, TCPIPSocket

from drivers.scpi_messages import ProgramUnit, parsed_units, setting_value
from rig.config import DriverSettings
from rig.driver import Driver, Identity
from rig.errors import InstrumentError, InstrumentTimeout, SetpointRefused
from rig.resources import Accepts

_resource_managers: dict[str, pyvisa.ResourceManager] = {}

SOCKET_CHUNK = 16  # bytes one read call asks of a TCP socket: a reply in one call
SOCKET_SLICE_MS = 20  # the longest one read call on a TCP socket waits: the deadline is checked between calls


def resource_manager(backend: str = "@py") -> pyvisa.ResourceManager:
    if backend not in _resource_managers:
        _resource_managers[backend] = pyvisa.ResourceManager(backend)
    return _resource_managers[backend]


# -- what the guard looks for -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """A header that programs a bounded quantity, e.g. ('[SOURce:]FREQuency[:IMMediate]', 'frequency', 'Hz')."""

    header: str
    quantity: str
    unit: str


@dataclass(frozen=True)
class Switch:
    """A header whose parameter switches an output or input; `refused` names why ON is never sent, if so."""

    header: str
    refused: str = ""


@dataclass(frozen=True)
class Held:
    """A query that reads back a setpoint the instrument holds, checked before anything switches on."""

    query: str
    quantity: str
    unit: str


Guard = Setting | Switch | Held


# -- declared methods -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    """A driver method declared as data: `run(driver, *args)`, and what it adds to the driver's guard."""

    run: Callable[..., Any]
    guards: tuple[Guard, ...] = ()

    def __set_name__(self, owner: type, name: str) -> None:
        self.run.__name__, self.run.__qualname__ = name, f"{owner.__qualname__}.{name}"

    def __get__(self, driver: ScpiDriver | None, owner: type | None = None):
        return self if driver is None else MethodType(self.run, driver)


def setpoint(send: str, quantity: str, unit: str, header: str = "") -> Declared:
    """Set a bounded quantity: checked against the limits, sent as `send` formatted with the value, confirmed.
    `header` is the pattern the guard recognises in any message, e.g. '[SOURce:]FREQuency[:IMMediate]'; without
    it, a raw message setting the quantity is left to the instrument."""

    def run(driver: ScpiDriver, value: float) -> None:
        driver.check_setpoint(quantity, value, unit)
        driver.command(send.format(value))

    run.__doc__ = f"Set the {quantity} ({unit}): {send!r}, refused beyond the limits before anything is sent."
    return Declared(run, (Setting(header, quantity, unit),) if header else ())


def switch(send: str, header: str) -> Declared:
    """Switch an output or input: '<send> ON' or '<send> OFF', confirmed; ON only after the held setpoints pass."""

    def run(driver: ScpiDriver, enabled: bool) -> None:
        driver.command(f"{send} {'ON' if enabled else 'OFF'}")

    run.__doc__ = f"'{send} ON' or '{send} OFF'; ON is sent only after the setpoints held are read back and checked."
    return Declared(run, (Switch(header),))


def flag(query: str, on: tuple[str, ...] = ("1", "ON"), off: tuple[str, ...] = ("0", "OFF")) -> Declared:
    """Read a state: a reply in `on` is True, in `off` False, anything else an InstrumentError."""

    def run(driver: ScpiDriver) -> bool:
        reply = driver.query(query).strip().upper()
        if reply in on or reply in off:
            return reply in on
        raise driver.unexpected_reply(query, f"{on[-1]}/{off[-1]}", reply)

    run.__doc__ = f"{query!r}: {'/'.join(on)} -> True, {'/'.join(off)} -> False."
    return Declared(run)


def number(query: str, held: tuple[str, str] | None = None) -> Declared:
    """Read a number; `held` (quantity, unit) marks a read-back of a setpoint, checked before switching on."""

    def run(driver: ScpiDriver) -> float:
        return driver.query_float(query)

    run.__doc__ = f"The number {query!r} answers."
    return Declared(run, (Held(query, *held),) if held else ())


def action(send: str) -> Declared:
    """Send a command without a parameter, confirmed by the error queue."""

    def run(driver: ScpiDriver) -> None:
        driver.command(send)

    run.__doc__ = f"{send!r}, confirmed."
    return Declared(run)


@dataclass(frozen=True)
class SafeState:
    """One step of a driver's safe state: send `send`; with `confirm` (a flag query), check that `off` (what the
    step switches off: 'output') is OFF now. `says` is what a step without confirmation did, in words."""

    send: str
    off: str = ""
    confirm: str = ""
    says: str = ""

    def run(self, driver: ScpiDriver) -> str:
        driver.command(self.send)
        if not self.confirm:
            return self.says or f"sent {self.send!r}"
        if flag(self.confirm).run(driver):
            raise InstrumentError(f"{driver.role} ({driver.address}): {self.off} still ON after {self.send!r}")
        return f"{self.off} OFF (confirmed by {self.confirm})"


class SwitchedOutput:
    """Declarations of an instrument with one output, switched by OUTPut ON|OFF; output OFF is its safe state.
    Listed before ScpiDriver among a driver's bases."""

    SAFE: ClassVar[tuple[SafeState, ...]] = (SafeState("OUTP OFF", off="output", confirm="OUTP?"),)
    set_output = switch("OUTP", header="OUTPut[:STATe]")
    output_enabled = flag("OUTP?")


def error_class(code: int) -> str:
    """What an error-queue code says, by its SCPI-99 range (volume 2, 21.8)."""
    if -199 <= code <= -100:
        return "a command error: the instrument could not parse the message"
    if -299 <= code <= -200:
        return "an execution error: the instrument parsed the message but could not carry it out"
    if -399 <= code <= -300:
        return "a device-specific error"
    if -499 <= code <= -400:
        return "a query error"
    return "an error the instrument defines" if code > 0 else "an error of no SCPI class"


class ScpiSettings(DriverSettings):
    """Settings of every SCPI driver."""

    visa_backend: Annotated[str, Field(min_length=1)] = "@py"  # pyvisa's backend: '@py' (pyvisa-py), '@ivi', ...


# -- the driver -------------------------------------------------------------------------------------------------


class _NoReply(Exception):
    """The exchange's deadline passed; `partial` holds what arrived."""

    def __init__(self, partial: bytes):
        super().__init__()
        self.partial = partial


class ScpiDriver(Driver):
    """A driver whose instrument speaks SCPI through a VISA resource.

    Exchanges are serialised by a lock, so a poller thread and the bench's safe-state path can share a session.
    A query (write and reply) ends within the role's timeout_s, however slowly the reply trickles in. After a
    timeout, a transport fault or a reply that is not text or not of the expected form, the session is closed
    and the next exchange opens a new one, so no late or stray byte is ever read as another command's answer.
    """

    TERMINATION = "\n"
    SETTINGS_MODEL = ScpiSettings
    ACCEPTS = Accepts(("visa",), "a SCPI instrument is reached at a VISA resource name such as "
                                 "'TCPIP0::192.0.2.10::5025::SOCKET'")
    SAFE: ClassVar[tuple[SafeState, ...]] = ()
    GUARDS: ClassVar[tuple[Guard, ...]] = ()  # headers the guard recognises that no declared method sends
    # gathered from the declared methods and GUARDS
    SETTINGS: ClassVar[tuple[Setting, ...]] = ()
    SWITCHES: ClassVar[tuple[Switch, ...]] = ()
    HELD_SETPOINTS: ClassVar[tuple[Held, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        members: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            members.update(vars(klass))
        guards = [guard for member in members.values() if isinstance(member, Declared) for guard in member.guards]
        guards += cls.GUARDS
        cls.SETTINGS = tuple(guard for guard in guards if isinstance(guard, Setting))
        cls.SWITCHES = tuple(guard for guard in guards if isinstance(guard, Switch))
        cls.HELD_SETPOINTS = tuple(guard for guard in guards if isinstance(guard, Held))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._exchange_lock = threading.RLock()
        self.session: MessageBasedResource | None = None
        self._reconnect = False

    # -- session ------------------------------------------------------------------------------------------------

    def open(self) -> None:
        self._open_session(self.config.timeout_s)
        self.transcript.record(self.role, None, None, note=f"opened {self.address}")

    def _open_session(self, open_timeout_s: float) -> None:
        try:
            self.session = resource_manager(self.settings.visa_backend).open_resource(
                self.address, read_termination=self.TERMINATION, write_termination=self.TERMINATION,
                open_timeout=max(1, int(open_timeout_s * 1000)), timeout=int(self.config.timeout_s * 1000))
        except Exception as exc:  # pyvisa-py raises a bare Exception when a TCP connect times out
            raise InstrumentError(f"{self.role} ({self.address}): cannot open: {exc}") from None
        if isinstance(self.session, TCPIPSocket):
            # a read hands over the bytes that came once they pause (a socket session keeps them by default, then
            # drops them with a timeout): _read_reply gathers them up to the terminator
            self.session.set_visa_attribute(constants.ResourceAttribute.suppress_end_enabled, False)
        self._reconnect = False

    def close(self) -> None:
        session, self.session = self.session, None
        self._reconnect = False
        if session is not None:
            try:
                session.close()
            except (VisaIOError, OSError):
                pass

    def _drop_session(self, reason: str) -> None:
        self.close()
        self._reconnect = True
        self.transcript.record(self.role, None, None,
                               note=f"closed {self.address} after {reason}; the next exchange reconnects")

    def _session_for(self, message: str, deadline: float) -> MessageBasedResource:
        if self.session is None and self._reconnect:
            remaining_s = deadline - time.monotonic()
            try:
                self._open_session(remaining_s)
            except InstrumentError as exc:
                raise InstrumentError(f"{exc} (reconnecting to send {message!r})") from None
            if self.session.interface_type == constants.InterfaceType.asrl:  # the same wire: drop what waits on it
                self.session.flush(constants.BufferOperation.discard_read_buffer)
            self.transcript.record(self.role, None, None, note=f"reopened {self.address}")
        if self.session is None:
            raise InstrumentError(f"{self.role} ({self.address}): not open when sending {message!r}")
        return self.session

    # -- exchanges ----------------------------------------------------------------------------------------------

    def _fail(self, exc: Exception, sent: str) -> InstrumentError:
        if isinstance(exc, VisaIOError) and exc.error_code == constants.StatusCode.error_timeout:
            return InstrumentTimeout(f"{self.role} ({self.address}): no answer within {self.config.timeout_s:g} s "
                                     f"to {sent!r}")
        if isinstance(exc, ConnectionError):
            return InstrumentError(f"{self.role} ({self.address}): not reachable ({exc.strerror}) "
                                   f"when sending {sent!r}")
        return InstrumentError(f"{self.role} ({self.address}): exchange {sent!r} failed: {exc}")

    @staticmethod
    def _give_remaining_time(session: MessageBasedResource, deadline: float, partial: bytes = b"",
                             slice_ms: float | None = None) -> None:
        """The session's timeout: the time left to the deadline (at most slice_ms); _NoReply once it is spent."""
        remaining_ms = (deadline - time.monotonic()) * 1000
        if remaining_ms < 1:
            raise _NoReply(partial)
        session.timeout = remaining_ms if slice_ms is None else min(remaining_ms, slice_ms)

    def _read_reply(self, session: MessageBasedResource, deadline: float) -> bytes:
        """Read up to the terminator within the deadline. pyvisa-py restarts its timeout on every read call and,
        within one, never times out while bytes keep arriving, so no call may run long: on a TCP socket each call
        asks for at most SOCKET_CHUNK bytes and waits at most SOCKET_SLICE_MS (a whole reply in one call; a device
        trickling bytes holds a call for at most SOCKET_CHUNK short gaps); elsewhere (serial, GPIB, whose reads drop
        what they got when they time out) by single bytes, each read given only the time left."""
        end = self.TERMINATION.encode()
        socket = isinstance(session, TCPIPSocket)
        reply = bytearray()
        with session.ignore_warning(constants.StatusCode.success_max_count_read):
            while not reply.endswith(end):
                self._give_remaining_time(session, deadline, bytes(reply), SOCKET_SLICE_MS if socket else None)
                try:
                    chunk, _status = session.visalib.read(session.session, SOCKET_CHUNK if socket else 1)
                except VisaIOError as exc:
                    if exc.error_code != constants.StatusCode.error_timeout:
                        raise
                    if not socket or time.monotonic() >= deadline:
                        raise _NoReply(bytes(reply)) from None
                    continue
                reply += chunk
        return bytes(reply[: -len(end)])

    def _transact(self, message: str, read_reply: bool) -> str:
        """Send one message and, if asked, read its reply, all within timeout_s; return the reply ('' if none)."""
        deadline = time.monotonic() + self.config.timeout_s
        try:
            data = (message + self.TERMINATION).encode("ascii")
        except UnicodeEncodeError:
            raise InstrumentError(f"{self.role} ({self.address}): cannot send {message!r}: not ASCII text; "
                                  f"nothing sent") from None
        session = self._session_for(message, deadline)
        t_sent = time.monotonic()
        fault = "an interrupted exchange"
        raw = None
        try:
            self._give_remaining_time(session, deadline)
            session.write_raw(data)
            if read_reply:
                raw = self._read_reply(session, deadline)
            fault = ""
        except _NoReply as no_reply:
            fault = f"a timeout on {message!r}"
            partial = no_reply.partial.decode("ascii", "backslashreplace") or None
            self.transcript.record(self.role, message, partial, t_mono=t_sent, note="no answer in time")
            detail = f" (got {no_reply.partial!r} without the terminator)" if no_reply.partial else ""
            raise InstrumentTimeout(f"{self.role} ({self.address}): no answer within {self.config.timeout_s:g} s "
                                    f"to {message!r}{detail}") from None
        except (VisaIOError, OSError) as exc:
            fault = f"a failed exchange {message!r}"
            self.transcript.record(self.role, message, None, t_mono=t_sent, note=str(exc))
            raise self._fail(exc, message) from None
        finally:
            if fault:
                self._drop_session(fault)
        if raw is None:
            self.transcript.record(self.role, message, None, t_mono=t_sent)
            return ""
        try:
            reply = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.transcript.record(self.role, message, raw.decode("ascii", "backslashreplace"), t_mono=t_sent,
                                   note="reply is not ASCII/UTF-8 text")
            self._drop_session(f"an undecodable reply to {message!r}")
            raise InstrumentError(f"{self.role} ({self.address}): sent {message!r}, got a reply that is not "
                                  f"ASCII/UTF-8 text: {raw!r}") from None
        self.transcript.record(self.role, message, reply, t_mono=t_sent)
        return reply

    def write(self, command: str) -> None:
        with self._exchange_lock:
            self.check_message(command)
            self._transact(command, read_reply=False)

    def query(self, command: str) -> str:
        with self._exchange_lock:
            self.check_message(command)
            return self._transact(command, read_reply=True)

    def unexpected_reply(self, sent: str, expected: str, reply: str) -> InstrumentError:
        """The error for a reply of the wrong form; the reply stream may be out of step, so reconnect first."""
        with self._exchange_lock:
            if self.session is not None:
                self._drop_session(f"an unexpected reply to {sent!r}")
        return InstrumentError(f"{self.role} ({self.address}): sent {sent!r}, expected {expected}, got {reply!r}")

    def query_float(self, command: str) -> float:
        reply = self.query(command)
        try:
            return float(reply)
        except ValueError:
            raise self.unexpected_reply(command, "a number", reply) from None

    def command(self, command: str) -> None:
        """Send a setting and confirm the instrument accepted it (chained SYST:ERR? in the same message); an error
        it reports (-108 parameter not allowed, -131 invalid suffix, -222 data out of range, ...) is an
        InstrumentError naming the role, the address, the command, the error and its class."""
        reply = self.query(f"{command};:SYST:ERR?")
        code, _, message = reply.partition(",")
        try:
            error_code = int(code)
        except ValueError:
            raise self.unexpected_reply(command, "an error-queue entry", reply) from None
        if error_code != 0:
            raise InstrumentError(f"{self.role} ({self.address}): refused {command!r}: {error_code},{message} "
                                  f"({error_class(error_code)})")

    def identify(self) -> Identity:
        """*IDN? as 'maker,model,serial,firmware'; commas after the third are the firmware's own, as in the Chroma
        61500's '...,1.00,1.01,1.02' (display, waveform and remote firmware)."""
        reply = self.query("*IDN?")
        fields = [part.strip() for part in reply.split(",", 3)]
        if len(fields) != 4 or not fields[0] or not fields[1]:
            raise self.unexpected_reply("*IDN?", "'maker,model,serial,firmware'", reply)
        return Identity(*fields, raw=reply)

    def make_safe(self) -> list[str]:
        """Run the declared safe state (`SAFE`), step by step; a failed confirmation is an InstrumentError."""
        return [step.run(self) for step in self.SAFE] or ["nothing to switch (measuring instrument)"]

    # -- the setpoint guard -------------------------------------------------------------------------------------

    def check_setting(self, quantity: str, value: float, unit: str) -> None:
        """Check one value of a bounded quantity; a driver whose quantity needs more than its limits overrides."""
        self.check_setpoint(quantity, value, unit)

    def check_held_setpoints(self) -> None:
        """Read back and check the setpoints the instrument holds; runs before anything switches on."""
        for held in self.HELD_SETPOINTS:
            self.check_setting(held.quantity, self.query_float(held.query), held.unit)

    def check_message(self, message: str) -> None:
        """Raise SetpointRefused, before anything of `message` is sent, if it sets a bounded quantity beyond the
        limits, switches on what this driver never switches on, or switches on while the instrument holds a
        setpoint beyond them."""
        if not (self.SETTINGS or self.SWITCHES):
            return
        switching_on = ""
        for unit in parsed_units(message):
            if unit.query:
                continue
            for setting in self.SETTINGS:
                if unit.addresses(setting.header):
                    self._check_setting_unit(setting, unit)
            for switch in self.SWITCHES:
                if unit.addresses(switch.header) and unit.parameter.upper() not in ("OFF", "0"):
                    if switch.refused:
                        raise SetpointRefused(f"{self.role} ({self.address}): {unit.text!r} refused: "
                                              f"{switch.refused}; nothing sent")
                    switching_on = switching_on or unit.text
        if switching_on:
            try:
                self.check_held_setpoints()
            except SetpointRefused as refused:
                raise SetpointRefused(f"{refused} (held by the instrument, read back before {switching_on!r}; "
                                      f"not sent)") from None

    def _check_setting_unit(self, setting: Setting, unit: ProgramUnit) -> None:
        value = setting_value(unit.parameter, setting.unit)
        if value is None:
            raise SetpointRefused(f"{self.role} ({self.address}): {setting.quantity} {unit.parameter!r} in "
                                  f"{unit.text!r} refused: not a number in {setting.unit} this driver can check; "
                                  f"nothing sent")
        try:
            self.check_setting(setting.quantity, value, setting.unit)
        except SetpointRefused as refused:
            raise SetpointRefused(f"{refused} (in {unit.text!r}; nothing sent)") from None
