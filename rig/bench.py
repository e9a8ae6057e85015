"""Bench lifecycle: open drivers in order, record identities, drive everything safe on every exit path."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rig.config import BenchFile, RoleConfig, bench_roles, position_of_role
from rig.driver import Driver, Identity, SetpointLimits, driver_class
from rig.errors import BenchBroken, ConfigError, InstrumentError, PositionBroken, RigError
from rig.transcript import Transcript

ROLE_LIMIT_FIELDS = {"voltage_v": ("voltage", "V"), "current_a": ("current", "A"), "power_w": ("power", "W")}
ROLE_RANGE_FIELDS = {"frequency_hz": "frequency", "attenuation_db": "attenuation"}
METER_FAULT = re.compile(r"^meter@(\d+) \(")  # drivers name their role first in every message
POSITION_ROLE = re.compile(r"@(\d+)$")


def setpoint_limits(bench: BenchFile, role: str, cls: type[Driver]) -> SetpointLimits:
    """Every bound on a role's setpoints: the instrument's rating, the role's limits, the meters' ratings."""
    config = bench_roles(bench.config)[role]
    limits = SetpointLimits()
    for quantity, (low, high) in cls.RATINGS.items():
        limits.add(quantity, low, high, f"the rating of the {config.driver} instrument")
    for field, (quantity, _unit) in ROLE_LIMIT_FIELDS.items():
        value = getattr(config.limits, field)
        if value is not None:
            limits.add(quantity, None, value, f"roles.{role}.limits.{field} in {bench.path.name}")
    for field, quantity in ROLE_RANGE_FIELDS.items():
        span = getattr(config.limits, field)
        if span is not None:
            limits.add(quantity, span.min, span.max, f"roles.{role}.limits.{field} in {bench.path.name}")
    for quantity, attribute in cls.METER_RATINGS.items():
        for meter in bench.config.positions:
            limits.add(quantity, None, getattr(meter, attribute),
                       f"the rating of meter {meter.serial} at position {meter.position} ({attribute})")
    return limits


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the bench is being made safe; re-deliver them afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _frame: pending.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for number in pending[:1]:
            signal.raise_signal(number)


def _run_with_timeout(action: Callable[[], Any], timeout_s: float) -> tuple[str, Any]:
    """Run action in a worker thread; ('ok', result), ('error', exception) or ('timeout', None)."""
    outcome: list[tuple[str, Any]] = []

    def worker() -> None:
        try:
            outcome.append(("ok", action()))
        except BaseException as exc:  # noqa: BLE001 - reported, never swallowed silently
            outcome.append(("error", exc))

    thread = threading.Thread(target=worker, daemon=True, name="make-safe")
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else ("timeout", None)


class Bench:
    """The instruments of one bench, opened in YAML order and made safe in reverse order."""

    def __init__(self, bench: BenchFile, transcript: Transcript, resources: dict[str, str] | None = None,
                 on_safe_state: Callable[[str, list[dict]], None] | None = None):
        self.file = bench
        self.config = bench.config
        self.roles = bench_roles(bench.config)
        self.transcript = transcript
        self.resources = resources or {}
        self.on_safe_state = on_safe_state
        self.drivers: dict[str, Driver] = {}
        self.identities: dict[str, Identity] = {}
        self.broken: str | None = None
        self.broken_positions: dict[int, str] = {}  # a meter under test that stopped answering breaks its position
        self.safe_after_latch = False  # a safe-state attempt was made while the bench was latched broken
        self._lock = threading.RLock()

    def role_config(self, role: str) -> RoleConfig:
        config = self.roles[role]
        if role in self.resources:
            config = config.model_copy(update={"resource": self.resources[role]})
        return config

    def open_role(self, role: str) -> Identity:
        """Open one role's driver and read its identity. Every driver that could be constructed is kept, so it is
        made safe, even if it then fails to open or identify itself; any failure is raised as a RigError naming
        the role."""
        config = self.role_config(role)
        try:
            cls = driver_class(config.driver)
            secrets = {name: ref.resolve(f"roles.{role}.secrets.{name} in {self.file.path.name}",
                                         self.file.path.parent)
                       for name, ref in config.secrets.items()}
            for value in secrets.values():
                self.transcript.add_secret(value)
            driver = cls(role, config, setpoint_limits(self.file, role, cls), self.transcript, secrets)
        except RigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a driver's own bug or a bad setting, named by role
            raise ConfigError(f"{role} ({config.resource}): driver {config.driver} refused its configuration: "
                              f"{type(exc).__name__}: {exc}") from None
        self.drivers[role] = driver  # made safe from here on: an open that failed half way may still reach it
        try:
            driver.open()
        except Exception as exc:  # noqa: BLE001
            raise _as_rig_error(role, config.resource, "cannot open", exc) from None
        try:
            identity = driver.identify()
        except Exception as exc:  # noqa: BLE001
            raise _as_rig_error(role, config.resource, "cannot identify", exc) from None
        self.identities[role] = identity
        return identity

    def open(self) -> None:
        """Open every role, then drive the whole bench safe (a killed earlier run may have left it live).

        A role that cannot be opened does not stop the others: each one that opens is made safe, then the bench
        is latched broken naming every role that failed; a meter under test that cannot be reached (`meter@N`)
        breaks only its position."""
        failures = []
        for role in self.roles:
            try:
                self.open_role(role)
            except RigError as exc:
                if role.startswith("meter@") and isinstance(exc, InstrumentError):
                    self.latch_position(position_of_role(role), str(exc))  # a meter under test: its position only
                else:
                    failures.append(str(exc))
        if failures:
            self.latch("; ".join(failures))
        self.make_safe("start of run")
        if self.broken:
            raise BenchBroken(f"bench broken: {self.broken}")

    def __getitem__(self, role: str) -> Driver:
        if self.broken:
            raise BenchBroken(f"bench broken: {self.broken}")
        at = POSITION_ROLE.search(role)
        if at is not None:
            self.check_position(int(at.group(1)))
        try:
            return self.drivers[role]
        except KeyError:
            raise ConfigError(f"bench {self.config.name!r} ({self.file.path.name}) has no role {role!r} "
                              f"(roles: {', '.join(self.roles)})") from None

    def latch(self, cause: str) -> None:
        """Mark the bench broken; the first cause is kept."""
        if self.broken is None:
            self.broken = cause
            self.transcript.record("bench", None, None, note=f"bench broken: {cause}")

    def latch_position(self, number: int, cause: str) -> None:
        """Mark one position broken (its meter stopped answering); the first cause is kept, the bench goes on."""
        if number not in self.broken_positions:
            self.broken_positions[number] = cause
            self.transcript.record(f"meter@{number}", None, None, note=f"position {number} broken: {cause}")

    def check_position(self, number: int) -> None:
        if number in self.broken_positions:
            raise PositionBroken(f"position {number} broken: {self.broken_positions[number]}")

    def make_safe(self, reason: str) -> list[dict]:
        """Drive every opened role to its safe state, each under its own timeout; record what was done.
        Recording can fail (a full disk): that never stops the next role from being made safe."""
        actions: list[dict] = []
        with self._lock, signals_deferred():
            for role in reversed(list(self.drivers)):
                driver = self.drivers[role]
                start = time.monotonic()
                status, result = _run_with_timeout(driver.make_safe, driver.config.safe_timeout_s)
                action = {"role": role, "address": driver.address, "status": status,
                          "duration_s": round(time.monotonic() - start, 4)}
                if status == "ok":
                    action["done"] = result
                elif status == "timeout":
                    action["error"] = f"no safe state within {driver.config.safe_timeout_s:g} s"
                    self.latch(f"{role} ({driver.address}): {action['error']}")
                else:
                    action["error"] = str(result) if isinstance(result, RigError) else repr(result)
                    self.latch(f"{role} ({driver.address}): safe state failed: {action['error']}")
                actions.append(action)
                self.transcript.record(role, None, None, note=f"safe state ({reason}): {status}")
            self.safe_after_latch = self.broken is not None
        if self.on_safe_state is not None:
            try:
                self.on_safe_state(reason, actions)
            except Exception as exc:  # noqa: BLE001 - the safe state is done; its record is reported
                print(f"rig: safe state ({reason}) done but not recorded: {exc!r}", file=sys.stderr)
        return actions

    def close(self, reason: str = "end of run") -> list[dict]:
        actions = self.make_safe(reason)
        for driver in reversed(list(self.drivers.values())):
            with contextlib.suppress(Exception):
                driver.close()
        self.drivers.clear()
        return actions


def _as_rig_error(role: str, address: str, what: str, exc: Exception) -> RigError:
    """exc as a RigError naming the role and address (a bare ValueError or UnicodeDecodeError names neither)."""
    if isinstance(exc, RigError):
        return exc
    return InstrumentError(f"{role} ({address}): {what}: {type(exc).__name__}: {exc}")


def is_driver_fault(exc: BaseException) -> bool:
    return isinstance(exc, InstrumentError)


def meter_fault_position(exc: BaseException) -> int | None:
    """The position whose meter under test raised exc (a fault of that position, not of the bench), else None."""
    if not isinstance(exc, InstrumentError):
        return None
    found = METER_FAULT.match(str(exc))
    return int(found.group(1)) if found else None
