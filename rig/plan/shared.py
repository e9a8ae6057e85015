"""Positions together: a plan written for one position runs for every selected position of the bench at once.

A plan marked `together` runs its function once per position, each in a thread of its own, when the first of its
tests (one per position) comes up; each test then reports its own position's outcome. What every position shares
is said in the plan:

* `once(name, action)`: the first position to get there runs action; the others wait for it and get its result
  (the source switched on, a tariff chosen and set, a day picked on the head end's calendar);
* `together(name, action)`: runs when every position still running has got there (the head end's clock moved,
  the supply switched off): no position is left behind a shared change.

Each position's n-th call of a name meets the others' n-th call. A position that ends (passes, fails, errors)
leaves the group, so no one waits for it. When every running position waits at a `together` that cannot complete
(they wait at different steps), each gets a SharedStepError naming where the others wait. Outside a group (one
position, a test without `pos`) both just run the action.

`stopping()` is set when the run is interrupted: waits end at once (Interrupted) so the bench can be made safe.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rig.errors import RigError

T = TypeVar("T")
POLL_S = 0.05
JOIN_AFTER_STOP_S = 15.0  # after an interrupt, how long the positions' threads get to end their current exchange


class SharedStepError(RigError):
    """Positions running together cannot meet at a shared step, or the step failed for them all."""


class Interrupted(RigError):
    """The run is stopping (Ctrl-C, SIGTERM): a position's wait ended early."""


@dataclass
class _Step:
    arrived: set[int] = field(default_factory=set)
    started: bool = False
    done: bool = False
    ok: bool = True
    value: Any = None


class Group:
    """The positions of one together run and their shared steps."""

    def __init__(self, label: str, numbers: list[int]):
        self.label = label
        self.numbers = list(numbers)
        self.running = set(numbers)
        self.stop = threading.Event()
        self._cond = threading.Condition()
        self._steps: dict[str, _Step] = {}
        self._calls: dict[int, Counter] = {number: Counter() for number in numbers}
        self._waiting: dict[int, str] = {}  # position -> together step it waits at
        self._deadlock: str | None = None  # once the positions cannot meet, every wait at a together step fails

    def leave(self, number: int) -> None:
        with self._cond:
            self.running.discard(number)
            self._waiting.pop(number, None)
            self._cond.notify_all()

    def once(self, number: int, name: str, action: Callable[[], T]) -> T:
        key = self._key(number, name)
        with self._cond:
            step = self._steps.setdefault(key, _Step())
            step.arrived.add(number)
            run_it = not step.started
            step.started = True
            if not run_it:
                self._wait(lambda: step.done, number, None)
        if run_it:
            self._run(step, action)
        return self._result(step, name)

    def together(self, number: int, name: str, action: Callable[[], T]) -> T:
        key = self._key(number, name)
        with self._cond:
            step = self._steps.setdefault(key, _Step())
            step.arrived.add(number)
            self._cond.notify_all()
            self._waiting[number] = key
            try:
                self._wait(lambda: step.done or (not step.started and self.running <= step.arrived), number, key)
            finally:
                self._waiting.pop(number, None)
            run_it = not step.done and not step.started
            step.started = True
        if run_it:
            self._run(step, action)
        with self._cond:
            self._wait(lambda: step.done, number, None)
        return self._result(step, name)

    def _key(self, number: int, name: str) -> str:
        calls = self._calls.setdefault(number, Counter())
        calls[name] += 1
        return f"{name} #{calls[name]}"

    def _wait(self, ready: Callable[[], bool], number: int, key: str | None) -> None:
        while True:
            if key is not None and self._deadlock is not None:
                raise SharedStepError(f"position {number}: {self._deadlock}")
            if ready():
                return
            if self.stop.is_set():
                raise Interrupted(f"{self.label}: position {number}: the run is stopping")
            if key is not None and self._check_deadlock():
                continue
            self._cond.wait(POLL_S)

    def _check_deadlock(self) -> bool:
        """Whether every running position waits at a together step and none of those steps has all of them."""
        if self._deadlock is not None or not self.running or not self.running <= set(self._waiting):
            return False
        if any(self.running <= self._steps[key].arrived for key in set(self._waiting.values())):
            return False
        where = ", ".join(f"position {n} at {self._waiting[n]!r}" for n in sorted(self.running))
        self._deadlock = (f"{self.label}: the positions wait at different shared steps ({where}); a plan must reach "
                          f"its together() steps in the same order everywhere")
        self._cond.notify_all()
        return True

    def _run(self, step: _Step, action: Callable[[], T]) -> None:
        try:
            step.value = action()
        except BaseException as exc:  # noqa: BLE001 - each position raises it as its own
            step.ok, step.value = False, exc
        with self._cond:
            step.done = True
            self._cond.notify_all()

    @staticmethod
    def _result(step: _Step, name: str):
        if not step.ok:
            raise SharedStepError(f"shared step {name!r} failed: {step.value}") from step.value
        return step.value


_context = threading.local()


def enter(group: Group, number: int) -> None:
    """This thread runs position `number` of group."""
    _context.group, _context.number = group, number


def current() -> tuple[Group, int] | None:
    group = getattr(_context, "group", None)
    return (group, _context.number) if group is not None else None


def once(name: str, action: Callable[[], T]) -> T:
    """Run action once for every position running together; each gets its result (see the module doc)."""
    where = current()
    return where[0].once(where[1], name, action) if where else action()


def together(name: str, action: Callable[[], T]) -> T:
    """Run action when every position still running has reached this step; each gets its result."""
    where = current()
    return where[0].together(where[1], name, action) if where else action()


_interrupted = threading.Event()


def stopping() -> bool:
    """The run is being stopped (or this thread's group is)."""
    where = current()
    return _interrupted.is_set() or (where is not None and where[0].stop.is_set())


def check_stopping(what: str) -> None:
    if stopping():
        raise Interrupted(f"the run is stopping: {what} abandoned")


def interrupt_all() -> None:
    """Every together run's waits end (Interrupted), at once."""
    _interrupted.set()


def for_each(positions: list, action: Callable[[Any], T]) -> list[T]:
    """action(position) for every position at once, each in a thread of its own (supplying or restoring the
    positions of a plan that runs once for the whole bench); the results in order. When any fails, the first
    failure is raised after all have ended."""
    results: list[Any] = [None] * len(positions)
    errors: list[BaseException] = []

    def run(index: int, position) -> None:
        try:
            results[index] = action(position)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, p), daemon=True, name=f"for each {p}")
               for i, p in enumerate(positions)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:  # an interrupt: the threads' waits end, and they end before the bench is made safe
        interrupt_all()
        for thread in threads:
            thread.join(JOIN_AFTER_STOP_S / max(1, len(threads)))
        raise
    if errors:
        raise errors[0]
    return results
