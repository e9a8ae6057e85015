"""Meter error by pulse-edge gating against a continuously integrating reference.

The method, and why:

* The counter module and the reference meter cannot be started on the same instant: each command has its own
  latency, and at 2.4 kW a 10 ms skew is already 0.2 % of a 5 s window. So nothing is started or stopped
  inside the measuring window. The reference integrates continuously from before the window; the counters
  run freely and are never reset.
* Two pollers run side by side: one reads every position's count in a single Modbus request (one instant for
  all positions), the other reads the reference's integrated energy. Each reading is stamped with the rig's
  monotonic clock where in its exchange the instrument takes it (the middle, unless the bench says).
* For each position the window opens and closes on a pulse edge: an edge lies between the last poll that
  still showed the old count and the first that shows the new one (and within one pulse period of that poll),
  so the meter's energy over the window is exactly its pulse count / K, and the edge time is known to a
  half-width h. Windows of different positions differ; that does not matter.
* The reference energy over a position's window is the reference's energy rate (least-squares slope of its
  integrated energy over the polls) times the window's duration. A constant latency of either instrument
  shifts all its time stamps alike and cancels; only jitter remains, and the fit averages it out.
* The window is extended until the edge half-widths (the quantisation of this method) stay below a set
  fraction (default 1/10) of the class limit and a minimum number of pulses and a minimum time have passed.

Error % = (E_meter - E_ref) / E_ref x 100, with E_meter = pulses / K.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rig import progress
from rig.errors import InstrumentError, RigError
from rig.roles import PulseCounter, ReferenceMeter

COUNTER_MODULUS = 2**32


class SettlingError(RigError):
    """The reference reading did not settle: the rig cannot measure this point (ERROR, not FAIL)."""


# -- arithmetic ---------------------------------------------------------------------------------------------


def error_pct(meter_energy_wh: float, reference_energy_wh: float) -> float:
    """(E_meter - E_ref) / E_ref x 100."""
    if reference_energy_wh <= 0:
        raise ValueError(f"reference energy must be positive, got {reference_energy_wh} Wh")
    return (meter_energy_wh - reference_energy_wh) / reference_energy_wh * 100.0


def pulses_to_wh(pulses: int, constant_imp_per_kwh: float) -> float:
    return pulses * 1000.0 / constant_imp_per_kwh


def pulse_period_s(constant_imp_per_kwh: float, power_w: float) -> float:
    """T = 3.6e6 / (K x P)."""
    return 3.6e6 / (constant_imp_per_kwh * power_w)


def pulses_needed(window_s: float, constant_imp_per_kwh: float, power_w: float, min_pulses: int) -> int:
    """Pulses a window of window_s holds at this power, never fewer than min_pulses."""
    return max(min_pulses, math.ceil(window_s / pulse_period_s(constant_imp_per_kwh, power_w)))


def required_window_s(edge_half_widths_s: float, limit_pct: float, fraction_of_limit: float) -> float:
    """Shortest window whose edge-time uncertainty (sum of both half-widths) stays within fraction x limit."""
    return edge_half_widths_s / (fraction_of_limit * limit_pct / 100.0)


def edge_time(t_before: float, t_after: float, pulse_period: float | None) -> tuple[float, float]:
    """Estimate of the last pulse edge seen at poll t_after (not yet at t_before): (middle, half-width).

    The edge came after t_before, and less than one pulse period before t_after (else the next pulse would
    have followed by t_after).
    """
    earliest = t_before if pulse_period is None else max(t_before, t_after - pulse_period)
    return (earliest + t_after) / 2, (t_after - earliest) / 2


def least_squares_slope(times: list[float], values: list[float],
                        weights: list[float] | None = None) -> tuple[float, float]:
    """Slope of values over times (weighted least squares if weights are given) and its standard error."""
    n = len(times)
    if n < 3:
        raise ValueError("at least three points are needed for a slope and its standard error")
    w = weights or [1.0] * n
    total = sum(w)
    mean_t = sum(wi * t for wi, t in zip(w, times, strict=True)) / total
    mean_v = sum(wi * v for wi, v in zip(w, values, strict=True)) / total
    s_tt = sum(wi * (t - mean_t) ** 2 for wi, t in zip(w, times, strict=True))
    slope = sum(wi * (t - mean_t) * (v - mean_v) for wi, t, v in zip(w, times, values, strict=True)) / s_tt
    residuals = [v - (mean_v + slope * (t - mean_t)) for t, v in zip(times, values, strict=True)]
    variance = sum(wi * r * r for wi, r in zip(w, residuals, strict=True)) / (n - 2)
    return slope, math.sqrt(variance / s_tt)


def robust_slope(times: list[float], values: list[float], reject_sigma: float = 3.0) -> tuple[float, float]:
    """Least-squares slope after dropping the points whose residual exceeds reject_sigma times the rms
    (readings stamped late because the host stalled), then fitting again."""
    slope, _ = least_squares_slope(times, values)
    mean_t, mean_v = sum(times) / len(times), sum(values) / len(values)
    residuals = [v - (mean_v + slope * (t - mean_t)) for t, v in zip(times, values, strict=True)]
    rms = math.sqrt(sum(r * r for r in residuals) / len(residuals))
    kept = [(t, v) for t, v, r in zip(times, values, residuals, strict=True) if abs(r) <= reject_sigma * rms]
    if len(kept) < 3 or len(kept) == len(times):
        return least_squares_slope(times, values)
    return least_squares_slope([t for t, _ in kept], [v for _, v in kept])


def creep_minimum_time_s(constant_c: float, constant_imp_per_kwh: float, elements: int, un_v: float,
                         imax_a: float) -> float:
    """No-load test time: dt = C / (k x m x Un x Imax) minutes (IEC 62053-21: C = 600e6 class 1, 480e6 class 2)."""
    return constant_c / (constant_imp_per_kwh * elements * un_v * imax_a) * 60.0


# -- polling -----------------------------------------------------------------------------------------------


@dataclass
class Poller:
    """Calls read() as fast as the instrument answers, stamping each value with the monotonic clock."""

    read: Callable[[], object]
    name: str
    sample_instant: str = "middle"  # stamp at the exchange's send, middle or reply
    samples: list[tuple[float, object]] = field(default_factory=list)
    error: BaseException | None = None
    interval_s: float = 0.0

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poll-{self.name}", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                before = time.monotonic()
                value = self.read()
                after = time.monotonic()
                stamp = {"send": before, "reply": after}.get(self.sample_instant, (before + after) / 2)
                self.samples.append((stamp, value))
                if self.interval_s:
                    self._stop.wait(self.interval_s)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by stop()
            self.error = exc

    def stop(self) -> list[tuple[float, object]]:
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise self.error
        return self.samples


@dataclass
class PositionWindow:
    """One position's pulse-edge window and its result."""

    position: int
    constant_imp_per_kwh: float
    pulses: int = 0
    start_s: float | None = None
    end_s: float | None = None
    start_half_width_s: float = 0.0
    end_half_width_s: float = 0.0
    reference_energy_wh: float = 0.0
    error_pct: float = math.nan
    quantisation_pct: float = math.nan
    uncertainty_pct: float = math.nan
    edges: list[tuple[float, int, float]] = field(default_factory=list)  # (time, pulses so far, half-width)

    @property
    def window_s(self) -> float:
        return (self.end_s - self.start_s) if self.start_s is not None and self.end_s is not None else 0.0

    @property
    def meter_energy_wh(self) -> float:
        return pulses_to_wh(self.pulses, self.constant_imp_per_kwh)


def count_delta(previous: int, current: int) -> int:
    """Counts gained between two reads of a 32-bit counter (negative: it went backwards)."""
    delta = (current - previous) % COUNTER_MODULUS
    return delta - COUNTER_MODULUS if delta > COUNTER_MODULUS // 2 else delta


class EdgeTracker:
    """Follows every position's first and last pulse edge as counter samples arrive (each sample once).

    A count that goes backwards, or jumps by far more than the power allows, is an instrument error.
    """

    def __init__(self, constants: dict[int, float], power_w: float, counter_name: str, jump_factor: float = 4.0):
        self.windows = {p: PositionWindow(p, k) for p, k in constants.items()}
        self.periods = {p: pulse_period_s(k, power_w) if power_w > 0 else None for p, k in constants.items()}
        self.counter_name = counter_name
        self.jump_factor = jump_factor
        self._start_counts: dict[int, int] = {}
        self._last: tuple[float, dict[int, int]] | None = None

    def feed(self, samples: list[tuple[float, dict[int, int]]]) -> None:
        for sample in samples:
            if self._last is not None:
                self._compare(self._last, sample)
            self._last = sample

    def _compare(self, earlier: tuple[float, dict[int, int]], later: tuple[float, dict[int, int]]) -> None:
        (t_before, before), (t_after, after) = earlier, later
        for position, window in self.windows.items():
            gained = count_delta(before[position], after[position])
            if gained == 0:
                continue
            period = self.periods[position]
            if gained < 0:
                raise InstrumentError(f"{self.counter_name}: position {position} counter went backwards "
                                      f"({before[position]} -> {after[position]})")
            allowed = self.jump_factor * (t_after - t_before) / period + 2 if period else 2
            if gained > allowed:
                raise InstrumentError(f"{self.counter_name}: position {position} counter jumped by {gained} pulses "
                                      f"in {(t_after - t_before) * 1000:.1f} ms (at most {allowed:.0f} possible)")
            edge, half_width = edge_time(t_before, t_after, period)
            if position not in self._start_counts:
                self._start_counts[position] = after[position]
                window.start_s, window.start_half_width_s = edge, half_width
            else:
                window.pulses = count_delta(self._start_counts[position], after[position])
                window.end_s, window.end_half_width_s = edge, half_width
            window.edges.append((edge, window.pulses, half_width))


@dataclass
class GatedMeasurement:
    """Runs the two pollers until every position's window is long enough, then computes the errors."""

    counter: PulseCounter
    reference: ReferenceMeter
    constants: dict[int, float]  # position -> test-output constant, imp/kWh
    limit_pct: float
    power_w: float  # expected active power, to size windows and bound counter jumps
    min_window_s: float = 2.0
    min_pulses: int = 2
    quantisation_fraction: float = 0.1
    max_duration_s: float = 600.0
    counter_name: str = "counter"

    def target_window_s(self, half_widths_s: float) -> float:
        return max(self.min_window_s, required_window_s(half_widths_s, self.limit_pct, self.quantisation_fraction))

    def _complete(self, windows: dict[int, PositionWindow]) -> bool:
        for window in windows.values():
            if window.end_s is None or window.pulses < self.min_pulses:
                return False
            if window.window_s < self.target_window_s(window.start_half_width_s + window.end_half_width_s):
                return False
        return True

    def _report_progress(self, windows: dict[int, PositionWindow]) -> None:
        """Pulses counted of needed at the position furthest from done, and the time it still needs."""
        if self.power_w <= 0:
            return
        slowest = None
        for position, window in windows.items():
            end_half_width_s = window.end_half_width_s if window.end_s is not None else window.start_half_width_s
            needed = pulses_needed(self.target_window_s(window.start_half_width_s + end_half_width_s),
                                   window.constant_imp_per_kwh, self.power_w, self.min_pulses)
            left_s = max(0, needed - window.pulses) * pulse_period_s(window.constant_imp_per_kwh, self.power_w)
            if slowest is None or left_s > slowest[3]:
                slowest = (position, window.pulses, needed, left_s)
        if slowest is not None:
            position, pulses, needed, left_s = slowest
            progress.update(f"position {position}", pulses, needed, "pulses", left_s)

    def run(self) -> dict[int, PositionWindow]:
        if not self.reference.integration_running():
            self.reference.start_integration()
        tracker = EdgeTracker(self.constants, self.power_w, self.counter_name)
        counts = Poller(self.counter.read_counts, "counter").start()
        energy = Poller(self.reference.read_energy_wh, "reference", self.reference.sample_instant).start()
        started = time.monotonic()
        seen = 0
        try:
            while counts.error is None and energy.error is None:
                time.sleep(0.05)
                available = len(counts.samples)
                tracker.feed(counts.samples[seen:available])
                seen = available
                windows = tracker.windows
                if self._complete(windows) and len(energy.samples) >= 3:
                    break
                if time.monotonic() - started > self.max_duration_s:
                    short = sorted(p for p, w in windows.items() if w.end_s is None or w.pulses < self.min_pulses)
                    raise InstrumentError(f"{self.counter_name}: no complete pulse window within "
                                          f"{self.max_duration_s:g} s at position(s) {short}")
                self._report_progress(windows)
        finally:
            progress.done()
            count_samples = counts.stop()
            energy_samples = energy.stop()
        tracker.feed(count_samples[seen:])
        windows = tracker.windows
        rate_wh_per_s, rate_se = robust_slope([t for t, _ in energy_samples], [float(e) for _, e in energy_samples])
        self.reference_power_w = rate_wh_per_s * 3600
        if rate_wh_per_s <= 0:
            raise InstrumentError(f"reference: integrated energy does not grow ({rate_wh_per_s * 3600:.3g} W)")
        u_reference = self.reference.accuracy_class_pct / math.sqrt(3)
        u_rate = rate_se / rate_wh_per_s * 100
        for window in windows.values():
            window.reference_energy_wh = rate_wh_per_s * window.window_s
            window.quantisation_pct = (window.start_half_width_s + window.end_half_width_s) / window.window_s * 100
            if len(window.edges) >= 3:
                # every edge of the window, not only the first and last: the fitted pulse rate averages out
                # the edge-time quantisation of each, weighing each edge by how closely it is known
                floor_s = 1e-5
                pulse_rate, pulse_rate_se = least_squares_slope(
                    [t for t, _, _ in window.edges], [float(n) for _, n, _ in window.edges],
                    [1 / max(h, floor_s) ** 2 for _, _, h in window.edges])
                meter_energy_wh = pulse_rate * window.window_s * 1000 / window.constant_imp_per_kwh
                u_pulses = pulse_rate_se / pulse_rate * 100
            else:
                meter_energy_wh = window.meter_energy_wh
                u_pulses = math.hypot(window.start_half_width_s, window.end_half_width_s) / math.sqrt(3) \
                    / window.window_s * 100
            window.error_pct = error_pct(meter_energy_wh, window.reference_energy_wh)
            # standard uncertainties: reference class (rectangular), meter pulse rate, reference rate; k = 2
            window.uncertainty_pct = 2 * math.sqrt(u_reference**2 + u_pulses**2 + u_rate**2)
        return windows


def wait_until_settled(reference: ReferenceMeter, expected_power_w: float, *, min_settle_s: float,
                       tolerance_pct: float, timeout_s: float, expected_tolerance_pct: float = 5.0,
                       readings: int = 3) -> dict[str, float]:
    """Wait min_settle_s, then until `readings` successive reference readings agree within tolerance_pct of the
    expected power and their mean lies within expected_tolerance_pct of it; SettlingError after timeout_s."""
    time.sleep(min_settle_s)
    deadline = time.monotonic() + timeout_s
    scale = max(abs(expected_power_w), 1e-9)
    recent: list[dict[str, float]] = []
    while True:
        recent = (recent + [reference.measure()])[-readings:]
        powers = [r["power_w"] for r in recent]
        if len(recent) == readings:
            spread_pct = (max(powers) - min(powers)) / scale * 100
            offset_pct = abs(sum(powers) / readings - expected_power_w) / scale * 100
            if spread_pct <= tolerance_pct and offset_pct <= expected_tolerance_pct:
                return recent[-1]
        if time.monotonic() > deadline:
            raise SettlingError(f"reference reading did not settle within {timeout_s:g} s: last power readings "
                                f"{', '.join(f'{p:.5g}' for p in powers)} W, expected {expected_power_w:.5g} W")
        time.sleep(0.02)
