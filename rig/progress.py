"""Progress of long points (pulses counted of needed, time left) on the terminal, without garbling pytest's output.

A measurement calls `update(...)` while it waits and `done()` when it stops waiting (`tracking()` does the
latter on every exit path); `wait(duration_s, what)` sleeps with progress. Where the status goes is set by
`install(sink)`: under pytest, `TerminalProgress` installs

* on a terminal (a TTY, not CI): a single status line under pytest's current line, redrawn in place at most
  every 0.2 s and erased (cursor put back where pytest left it) before pytest writes again;
* elsewhere (CI logs, pipes): one plain line at most every `interval_s` (10 s), and none for a wait shorter
  than that.

Without a sink the calls do nothing.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import pytest

PLAIN_INTERVAL_S = 10.0
TTY_REDRAW_S = 0.2
ERASE_TO_END = "\x1b[K"
CURSOR_UP = "\x1b[1A"


def format_duration(seconds: float | None) -> str:
    """'0.4 s', '12 s', '2 min 05 s', '1 h 02 min'; '?' when unknown."""
    if seconds is None or math.isnan(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass(frozen=True)
class Status:
    """What a waiting measurement has done of what it needs, and the time it expects still to take."""

    what: str
    done: float
    total: float
    unit: str
    remaining_s: float | None = None

    def text(self) -> str:
        share = f" ({min(100.0, 100 * self.done / self.total):.0f} %)" if self.total > 0 else ""
        left = f", {format_duration(self.remaining_s)} left" if self.remaining_s is not None else ""
        return f"{self.what}: {self.done:g} of {self.total:g} {self.unit}{share}{left}"


class ProgressSink(Protocol):
    def show(self, status: Status) -> None: ...

    def clear(self) -> None: ...


_sink: ProgressSink | None = None
_lock = threading.RLock()  # positions running together report from threads of their own
_thread = threading.local()  # .position: the position this thread runs, in a together run


class PositionsProgress:
    """The statuses of positions running together, shown as one: the plan, positions done of all, and the
    slowest position (most time left) with its wait."""

    def __init__(self, label: str, total: int):
        self.label = label
        self.total = total
        self.finished = 0
        self.statuses: dict[int, Status] = {}

    def combined(self) -> Status:
        head = f"{self.label}: {self.finished} of {self.total} positions done"
        if not self.statuses:
            return Status(self.label, self.finished, self.total, "positions done")
        number, slowest = max(self.statuses.items(), key=lambda item: item[1].remaining_s or 0.0)
        return Status(f"{head}; slowest: position {number}, {slowest.what}", slowest.done, slowest.total,
                      slowest.unit, slowest.remaining_s)


_positions: PositionsProgress | None = None


def install(sink: ProgressSink | None) -> None:
    """Send progress to sink (None: nowhere)."""
    global _sink
    _sink = sink


def begin_positions(label: str, total: int) -> None:
    """Positions start running together: their statuses are shown as one (see PositionsProgress)."""
    global _positions
    with _lock:
        _positions = PositionsProgress(label, total)


def end_positions() -> None:
    global _positions
    with _lock:
        _positions = None
        if _sink is not None:
            _sink.clear()


def running_position(number: int | None) -> None:
    """This thread runs position `number` of the positions running together (None: no longer)."""
    _thread.position = number


def position_finished(number: int) -> None:
    with _lock:
        if _positions is not None:
            _positions.finished += 1
            _positions.statuses.pop(number, None)
            if _sink is not None:
                _sink.show(_positions.combined())


def update(what: str, done: float, total: float, unit: str, remaining_s: float | None = None) -> None:
    with _lock:
        if _sink is None:
            return
        status = Status(what, done, total, unit, remaining_s)
        number = getattr(_thread, "position", None)
        if _positions is not None and number is not None:
            _positions.statuses[number] = status
            status = _positions.combined()
        _sink.show(status)


def done() -> None:
    """The wait is over: take the status off the terminal (of positions running together: this one's)."""
    with _lock:
        number = getattr(_thread, "position", None)
        if _positions is not None and number is not None:
            _positions.statuses.pop(number, None)
            return
        if _sink is not None:
            _sink.clear()


@contextmanager
def tracking() -> Iterator[None]:
    try:
        yield
    finally:
        done()


def wait(duration_s: float, what: str, *, step_s: float = 0.25, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleep duration_s, showing the seconds waited of duration_s."""
    end = clock() + duration_s
    with tracking():
        while (left := end - clock()) > 0:
            update(what, round(duration_s - left, 1), round(duration_s, 1), "s", left)
            sleep(min(step_s, left))


# -- sinks -------------------------------------------------------------------------------------------------


class PlainLines:
    """One line at most every interval_s, the first only once a wait has lasted interval_s (CI logs)."""

    def __init__(self, write_line: Callable[[str], None], interval_s: float = PLAIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, prefix: Callable[[], str] = str):
        self.write_line = write_line
        self.interval_s = interval_s
        self.clock = clock
        self.prefix = prefix
        self._last: float | None = None

    def show(self, status: Status) -> None:
        now = self.clock()
        if self._last is None:
            self._last = now
        elif now - self._last >= self.interval_s:
            self.write_line(f"{self.prefix()}{status.text()}")
            self._last = now

    def clear(self) -> None:
        self._last = None


class StatusLine:
    """A status line drawn under the terminal's current line and redrawn in place; clear() erases it and puts
    the cursor back at column_of_writer() on the line above, where the writer goes on."""

    def __init__(self, write_raw: Callable[[str], None], width: Callable[[], int],
                 column_of_writer: Callable[[], int], redraw_s: float = TTY_REDRAW_S,
                 clock: Callable[[], float] = time.monotonic, prefix: Callable[[], str] = str):
        self.write_raw = write_raw
        self.width = width
        self.column_of_writer = column_of_writer
        self.redraw_s = redraw_s
        self.clock = clock
        self.prefix = prefix
        self._column: int | None = None  # the writer's column while the status is shown
        self._drawn_at = -math.inf

    def show(self, status: Status) -> None:
        now = self.clock()
        if self._column is not None and now - self._drawn_at < self.redraw_s:
            return
        width = self.width()
        line = f"{self.prefix()}{status.text()}"
        if len(line) > width - 1:
            line = line[:max(0, width - 4)] + "..."
        text = "\r" + line + ERASE_TO_END
        if self._column is None:
            self._column = self.column_of_writer() % max(1, width)
            text = "\n" + text
        self.write_raw(text)
        self._drawn_at = now

    def clear(self) -> None:
        if self._column is None:
            return
        back = f"\x1b[{self._column}C" if self._column else ""
        self.write_raw("\r" + ERASE_TO_END + CURSOR_UP + "\r" + back)
        self._column = None


def plain_output_wanted(isatty: bool, environ: dict[str, str] | None = None) -> bool:
    """Plain lines unless on a terminal outside CI (CI logs keep escape sequences as garbage)."""
    environ = os.environ if environ is None else environ
    return not isatty or bool(environ.get("CI")) or environ.get("TERM") == "dumb"


class TerminalProgress:
    """pytest plugin: installs the sink for this session's terminal, names the running test in each status,
    and clears the status before pytest reports a test."""

    def __init__(self, config: pytest.Config, interval_s: float = PLAIN_INTERVAL_S):
        self.config = config
        self.interval_s = interval_s
        self.sink: StatusLine | PlainLines | None = None
        self.test = ""

    def _prefix(self) -> str:
        return f"{self.test}  " if self.test else ""

    def _out_of_capture(self):
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        return capman.global_and_fixture_disabled() if capman is not None else nullcontext()

    def pytest_sessionstart(self) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        writer = self.config.get_terminal_writer()

        def write_raw(text: str) -> None:
            with self._out_of_capture():
                reporter.write_raw(text, flush=True)

        def write_line(text: str) -> None:
            with self._out_of_capture():
                reporter.write_line(text)
                reporter.flush()

        if plain_output_wanted(bool(reporter.isatty())):
            self.sink = PlainLines(write_line, self.interval_s, prefix=self._prefix)
        else:
            self.sink = StatusLine(write_raw, lambda: writer.fullwidth, lambda: writer.width_of_current_line,
                                   prefix=self._prefix)
        install(self.sink)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.test = nodeid.rpartition("::")[2]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self) -> None:
        if self.sink is not None:
            self.sink.clear()

    def pytest_unconfigure(self) -> None:
        if self.sink is not None and _sink is self.sink:
            self.sink.clear()
            install(None)
