"""The current through a position's relay into its own load: does it flow, when was it cut, when restored."""

from __future__ import annotations

import time

from rig import progress
from rig.plan.shared import check_stopping
from rig.plan.waiting import poll_until
from rig.roles import AcLoad
from rig.timing import CurrentWatcher, EventTimeout, PhysicalEvent, Sample

WAIT_SLICE_S = 0.5  # a wait for a crossing looks up this often: progress shown, an interrupted run stops it


class LoadWatch:
    """Reads the load's current every poll_s (a CurrentWatcher); the relay is judged closed above half of load_a.

    `cut` and `restored` return the crossing (instant and uncertainty on the rig's monotonic clock), or None when
    it did not come within the time given: the plan records that as not observed (FAIL), not as a rig error.
    """

    def __init__(self, load: AcLoad, load_a: float, poll_s: float, name: str | None = None):
        self.load = load
        self.load_a = load_a
        self.threshold_a = load_a / 2
        self.watcher = CurrentWatcher.for_load(load, poll_s=poll_s, name=name)

    def __enter__(self) -> LoadWatch:
        self.watcher.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.watcher.stop(raise_error=False)

    @property
    def samples(self) -> list[Sample]:
        return self.watcher.samples

    @property
    def latency_s(self) -> float:
        """The load's typical delay from a query to its sample: part of every timing's uncertainty."""
        return self.load.current_sample_latency_s

    def latest(self) -> float:
        return self.watcher.samples[-1].value if self.watcher.samples else 0.0

    def flowing(self, timeout_s: float) -> bool:
        """Whether the latest reading shows current through the relay (above half of load_a) within timeout_s."""
        return bool(poll_until(lambda: self.latest() > self.threshold_a, timeout_s, self.watcher.poll_s))

    def cut(self, timeout_s: float) -> PhysicalEvent | None:
        return self._crossing("falls_below", timeout_s)

    def restored(self, timeout_s: float) -> PhysicalEvent | None:
        return self._crossing("rises_above", timeout_s)

    def readings_between(self, start: float, end: float = float("inf")) -> list[float]:
        return [s.value for s in self.watcher.samples if start <= s.t_mono <= end]

    def _crossing(self, condition: str, timeout_s: float) -> PhysicalEvent | None:
        what = "the current to " + ("fall (cut)" if condition == "falls_below" else "rise (restored)")
        start = time.monotonic()
        deadline = start + timeout_s
        with progress.tracking():
            while True:
                left = deadline - time.monotonic()
                try:
                    return self.watcher.wait_for(condition, self.threshold_a, max(0.0, min(left, WAIT_SLICE_S)))
                except EventTimeout:
                    if self.watcher.error is not None:
                        raise self.watcher.error from None
                    if left <= WAIT_SLICE_S:
                        return None
                check_stopping(f"waiting for {what}")
                progress.update(f"waiting for {what}", round(time.monotonic() - start, 1), round(timeout_s, 1),
                                "s", deadline - time.monotonic())


def energy_crossing(samples: list[Sample], voltage_v: float, start_s: float, energy_j: float) -> tuple[float, float]:
    """Instant at which the energy integrated from start_s reaches energy_j, and the reading period there."""
    total = 0.0
    for before, after in zip(samples, samples[1:], strict=False):
        if after.t_mono <= start_s:
            continue
        begin = max(before.t_mono, start_s)
        step_j = voltage_v * before.value * (after.t_mono - begin)
        if total + step_j >= energy_j:
            fraction = (energy_j - total) / step_j if step_j else 0.0
            return begin + fraction * (after.t_mono - begin), after.t_mono - before.t_mono
        total += step_j
    raise AssertionError(f"the load drew only {total:.1f} J of the {energy_j:.1f} J the credit buys")


def energy_between(samples: list[Sample], voltage_v: float, start: float, end: float) -> float:
    """Energy (J) the load drew from start to end, from its readings."""
    return sum(voltage_v * a.value * (b.t_mono - a.t_mono) for a, b in zip(samples, samples[1:], strict=False)
               if start <= a.t_mono < end)
