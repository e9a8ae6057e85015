"""Events timestamped from physical evidence: when did the current through a meter actually change?

A `CurrentWatcher` reads a current (e.g. an AC load's `measure_current`) every `poll_s` in a thread and stamps
each reading on the rig's monotonic clock (time.monotonic) at the middle of its exchange. A threshold crossing
happened after the last reading on the old side and before the first on the new side; the event is placed in
the middle of that bracket. Its uncertainty is the bracket's half-width plus the offset a stamp may have from
the instant the instrument really sampled: the larger of the instrument's sample latency and half the exchange
of either bracketing reading. The two add linearly: both are bounds, not standard deviations, and their worst
cases can coincide.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rig.errors import RigError

CONDITIONS = {"falls_below": "fall below", "rises_above": "rise above"}
SHOWN_READINGS = 5


class EventTimeout(RigError):
    """The physics did not do what a test waited for in time (not an instrument fault)."""


@dataclass(frozen=True)
class Sample:
    """One reading: stamped at the middle of its exchange, which ran from t_send to t_reply."""

    t_mono: float
    value: float
    t_send: float
    t_reply: float

    @property
    def half_exchange_s(self) -> float:
        return (self.t_reply - self.t_send) / 2


@dataclass(frozen=True)
class PhysicalEvent:
    """A threshold crossing: when (monotonic clock), within +-uncertainty_s, and the readings that bracket it."""

    t_mono: float
    uncertainty_s: float
    before_sample: Sample
    after_sample: Sample
    condition: str
    threshold: float


def _side(condition: str, value: float, threshold: float) -> bool:
    """True if value is on the far side of the crossing (the condition holds)."""
    return value < threshold if condition == "falls_below" else value > threshold


def find_crossing(samples: list[Sample], condition: str, threshold: float, start: int = 0,
                  sample_latency_s: float = 0.0) -> tuple[PhysicalEvent, int] | None:
    """The first crossing from samples[start:] on: (event, index of its after-sample), or None."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r} is not one of {', '.join(CONDITIONS)}")
    for index in range(max(start, 0) + 1, len(samples)):
        before, after = samples[index - 1], samples[index]
        if not _side(condition, before.value, threshold) and _side(condition, after.value, threshold):
            stamp_offset = max(sample_latency_s, before.half_exchange_s, after.half_exchange_s)
            event = PhysicalEvent(t_mono=(before.t_mono + after.t_mono) / 2,
                                  uncertainty_s=(after.t_mono - before.t_mono) / 2 + stamp_offset,
                                  before_sample=before, after_sample=after, condition=condition, threshold=threshold)
            return event, index
    return None


class CurrentWatcher:
    """Samples `read()` every `poll_s` in a thread; `wait_for` reports threshold crossings in order.

    Each `wait_for` looks from the after-sample of the previous event it returned (from the first reading at
    the start), so successive waits see successive crossings. A failing read stops the watcher; the next
    `wait_for` raises that error. All samples are kept (`samples`, `series()`) for a current-against-time record.
    """

    def __init__(self, read: Callable[[], float], poll_s: float = 0.01, sample_latency_s: float = 0.0,
                 name: str = "current", unit: str = "A", clock: Callable[[], float] = time.monotonic):
        if not poll_s > 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        self.read = read
        self.poll_s = poll_s
        self.sample_latency_s = sample_latency_s
        self.name = name
        self.unit = unit
        self.clock = clock
        self.samples: list[Sample] = []
        self.crossings: list[PhysicalEvent] = []  # every event wait_for returned, for the trace
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self._cursor = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    @classmethod
    def for_load(cls, load, poll_s: float = 0.01, name: str | None = None) -> CurrentWatcher:
        """A watcher on an AcLoad's current readings, with that load's sample latency."""
        return cls(load.measure_current, poll_s, load.current_sample_latency_s,
                   name=name or f"{getattr(load, 'role', 'load')} current")

    def start(self) -> CurrentWatcher:
        self.started_at = self.clock()
        self._thread.start()
        return self

    def resume(self) -> CurrentWatcher:
        """Sample again after a stop, appending to the same readings (a trace through a later reconnect)."""
        if self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> CurrentWatcher:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop(raise_error=False)

    def _run(self) -> None:
        next_at = self.clock()
        try:
            while not self._stop.is_set():
                t_send = self.clock()
                value = float(self.read())
                t_reply = self.clock()
                with self._changed:
                    self.samples.append(Sample((t_send + t_reply) / 2, value, t_send, t_reply))
                    self._changed.notify_all()
                next_at += self.poll_s
                now = self.clock()
                if next_at < now:  # fell behind (slow exchange, stalled host): keep the period, skip the missed
                    next_at += ((now - next_at) // self.poll_s + 1) * self.poll_s
                self._stop.wait(next_at - now)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by wait_for and stop
            with self._changed:
                self.error = exc
                self._changed.notify_all()

    def stop(self, raise_error: bool = True) -> list[Sample]:
        """Stop sampling; re-raise a read's error (unless told not to); return every sample."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if raise_error and self.error is not None:
            raise self.error
        return self.samples

    def series(self) -> list[tuple[float, float]]:
        """(t_mono, value) of every reading so far."""
        return [(sample.t_mono, sample.value) for sample in self.samples]

    def wait_for(self, condition: str, threshold_a: float, timeout_s: float) -> PhysicalEvent:
        """Block until the reading crosses threshold_a ('falls_below' or 'rises_above'); raise EventTimeout
        after timeout_s, or the read's own error if the instrument failed."""
        if condition not in CONDITIONS:
            raise ValueError(f"condition {condition!r} is not one of {', '.join(CONDITIONS)}")
        if self.started_at is None:
            raise RuntimeError(f"watcher {self.name!r} is not started")
        waited_from = self.clock()
        deadline = waited_from + timeout_s
        scan_from = self._cursor
        with self._changed:
            while True:
                found = find_crossing(self.samples, condition, threshold_a, scan_from, self.sample_latency_s)
                if found is not None:
                    event, self._cursor = found
                    self.crossings.append(event)
                    return event
                scan_from = max(self._cursor, len(self.samples) - 1)
                if self.error is not None:
                    raise self.error
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise EventTimeout(self._timeout_message(condition, threshold_a, timeout_s, waited_from))
                if not self._thread.is_alive():
                    raise EventTimeout(f"{self.name}: watcher stopped while waiting for the reading to "
                                       f"{CONDITIONS[condition]} {threshold_a:g} {self.unit}")
                self._changed.wait(min(remaining, max(self.poll_s, 0.001)))

    def _timeout_message(self, condition: str, threshold: float, timeout_s: float, waited_from: float) -> str:
        seen = self.samples[self._cursor:]
        wanted = f"{self.name} to {CONDITIONS[condition]} {threshold:g} {self.unit}"
        if not seen:
            return f"waited {timeout_s:g} s for {wanted}: no reading at all (poll every {self.poll_s * 1000:g} ms)"
        now = self.clock()
        values = [sample.value for sample in seen]
        last = ", ".join(f"{sample.value:.4g} {self.unit} at {sample.t_mono - now:+.3f} s"
                         for sample in seen[-SHOWN_READINGS:])
        return (f"waited {timeout_s:g} s for {wanted}: no crossing in {len(seen)} readings over "
                f"{seen[-1].t_mono - seen[0].t_mono:.3f} s (poll every {self.poll_s * 1000:g} ms, waiting since "
                f"{waited_from - now:+.3f} s); min {min(values):.4g} {self.unit}, max {max(values):.4g} {self.unit}; "
                f"last readings: {last}")


CROSSING_LABELS = {"falls_below": "cut", "rises_above": "restore"}
RESTORE_WAIT_S = 5.0
TRACE_TAIL_S = 0.3


def attach_trace(watcher: CurrentWatcher, events: dict[str, float | PhysicalEvent | None] | None = None, *,
                 recharge: Callable[[], object] | None = None, name: str | None = None) -> None:
    """Attach the watcher's readings to the running test's Allure result: a current-against-time plot with
    the events marked, and the readings and events as CSV.

    events: label -> monotonic instant or PhysicalEvent (None entries are left out); every crossing that
    `wait_for` returned is marked as well ('cut' when the current fell, 'restore' when it rose).
    recharge: a call that recharges the account and so reconnects the supply (e.g. the plan's restore). The
    watcher samples again through it; its start is marked 'recharge' and the current rising back above the
    last crossing's threshold (waited for up to RESTORE_WAIT_S after the call, then sampled TRACE_TAIL_S more)
    'restore'. The trace is attached even if the call raises; its error is raised after.
    """
    from rig.report.attach import attach_csv, attach_plot
    from rig.report.plots import TraceEvent, current_trace, events_csv, trace_csv

    marks = [TraceEvent(label, *((value.t_mono, value.uncertainty_s) if isinstance(value, PhysicalEvent)
                                 else (float(value), 0.0)))
             for label, value in (events or {}).items() if value is not None]
    try:
        if recharge is not None:
            watcher.resume()
            marks.append(TraceEvent("recharge", watcher.clock()))
            recharge()
            if watcher.crossings:
                last = watcher.crossings[-1]
                try:
                    watcher.wait_for("rises_above", last.threshold, RESTORE_WAIT_S)
                    time.sleep(TRACE_TAIL_S)  # the current after the restore, for the picture
                except EventTimeout:
                    pass  # no restore seen: the trace shows it
    finally:
        watcher.stop(raise_error=False)
        marks += [TraceEvent(CROSSING_LABELS[e.condition], e.t_mono, e.uncertainty_s) for e in watcher.crossings]
        samples = watcher.series()
        title = name or f"{watcher.name} against time"
        if samples:
            attach_plot(title, current_trace, samples, marks, unit=watcher.unit, title=title)
            attach_csv(f"{title} (readings)", trace_csv(samples, watcher.unit))
        attach_csv(f"{title} (events)", events_csv(marks))
