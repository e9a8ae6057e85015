"""CurrentWatcher against reading functions whose value switches at known monotonic instants."""

import statistics
import time

import pytest

from rig.errors import InstrumentError, InstrumentTimeout, RigError
from rig.timing import CurrentWatcher, EventTimeout, Sample, find_crossing

POLL_S = 0.01


def switching(*instants, values=(5.0, 0.0)):
    """A reading that starts at values[0] and toggles between the two values at each monotonic instant."""
    def read():
        now = time.monotonic()
        return values[sum(1 for t in instants if now >= t) % 2]
    return read


@pytest.fixture
def watchers():
    started = []

    def start(read, **kwargs):
        watcher = CurrentWatcher(read, poll_s=kwargs.pop("poll_s", POLL_S), name="probe current", **kwargs).start()
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.stop(raise_error=False)


@pytest.mark.parametrize("delay_s", [0.0503, 0.1137, 0.2071])
def test_a_fall_is_placed_within_its_uncertainty_of_the_true_instant(watchers, delay_s):
    switch_at = time.monotonic() + delay_s
    watcher = watchers(switching(switch_at))
    event = watcher.wait_for("falls_below", 2.5, timeout_s=2.0)
    assert abs(event.t_mono - switch_at) <= event.uncertainty_s
    assert event.before_sample.t_send <= switch_at <= event.after_sample.t_reply
    assert (event.before_sample.value, event.after_sample.value) == (5.0, 0.0)
    assert (event.condition, event.threshold) == ("falls_below", 2.5)
    assert event.uncertainty_s < 5 * POLL_S  # a few periods even on a loaded host


def test_the_sample_latency_widens_the_uncertainty(watchers):
    switch_at = time.monotonic() + 0.08
    watcher = watchers(switching(switch_at, values=(0.0, 5.0)), sample_latency_s=0.004)
    event = watcher.wait_for("rises_above", 2.5, timeout_s=2.0)
    half_bracket = (event.after_sample.t_mono - event.before_sample.t_mono) / 2
    assert event.uncertainty_s == pytest.approx(half_bracket + 0.004)
    assert abs(event.t_mono - switch_at) <= event.uncertainty_s


def test_successive_waits_see_successive_crossings(watchers):
    start = time.monotonic()
    instants = [start + 0.06, start + 0.15, start + 0.23, start + 0.31]
    watcher = watchers(switching(*instants))
    events = [watcher.wait_for(condition, 2.5, timeout_s=2.0)
              for condition in ("falls_below", "rises_above", "falls_below", "rises_above")]
    for event, instant in zip(events, instants, strict=True):
        assert abs(event.t_mono - instant) <= event.uncertainty_s
    time.sleep(0.05)  # the next wait finds nothing new: the last crossing was consumed
    with pytest.raises(EventTimeout):
        watcher.wait_for("rises_above", 2.5, timeout_s=0.05)


def test_a_crossing_before_the_wait_is_still_found(watchers):
    switch_at = time.monotonic() + 0.03
    watcher = watchers(switching(switch_at))
    time.sleep(0.15)
    event = watcher.wait_for("falls_below", 2.5, timeout_s=0.01)
    assert abs(event.t_mono - switch_at) <= event.uncertainty_s


def test_samples_are_kept_at_the_poll_period(watchers):
    watcher = watchers(lambda: 1.0)
    time.sleep(0.3)
    samples = watcher.stop()
    series = watcher.series()
    assert len(series) == len(samples) >= 15
    steps = [b[0] - a[0] for a, b in zip(series, series[1:], strict=False)]
    assert all(step > 0 for step in steps)
    assert statistics.median(steps) == pytest.approx(POLL_S, rel=0.3)
    assert all(s.t_send <= s.t_mono <= s.t_reply for s in samples)


def test_timeout_says_what_was_awaited_and_what_was_seen(watchers):
    watcher = watchers(lambda: 5.0)
    start = time.monotonic()
    with pytest.raises(EventTimeout) as timeout:
        watcher.wait_for("falls_below", 0.5, timeout_s=0.2)
    assert 0.2 <= time.monotonic() - start < 1.0
    assert isinstance(timeout.value, RigError) and not isinstance(timeout.value, InstrumentError)
    message = str(timeout.value)
    assert message.startswith("waited 0.2 s for probe current to fall below 0.5 A: no crossing in ")
    assert "poll every 10 ms" in message
    assert "min 5 A, max 5 A; last readings: 5 A at -0.0" in message
    assert message.count(" A at ") == 5


def test_timeout_before_any_reading_says_so():
    watcher = CurrentWatcher(lambda: time.sleep(0.5) or 5.0, poll_s=POLL_S, name="probe current").start()
    try:
        with pytest.raises(EventTimeout, match=r"waited 0.05 s for probe current to rise above 1 A: no reading at all"):
            watcher.wait_for("rises_above", 1.0, timeout_s=0.05)
    finally:
        watcher.stop(raise_error=False)


def test_an_instrument_fault_is_raised_as_itself_not_as_a_timeout(watchers):
    calls = []

    def read():
        calls.append(1)
        if len(calls) > 3:
            raise InstrumentTimeout("load@1 (TCPIP0::127.0.0.1::1::SOCKET): no answer within 2 s to 'MEAS:CURR?'")
        return 5.0

    watcher = watchers(read)
    with pytest.raises(InstrumentTimeout, match=r"MEAS:CURR\?"):
        watcher.wait_for("falls_below", 2.5, timeout_s=2.0)
    with pytest.raises(InstrumentTimeout):
        watcher.stop()


def test_find_crossing_brackets_exactly():
    samples = [Sample(t, v, t - 0.001, t + 0.001) for t, v in [(0.00, 5.0), (0.01, 5.0), (0.02, 0.1), (0.03, 4.0)]]
    event, index = find_crossing(samples, "falls_below", 2.5, sample_latency_s=0.002)
    assert index == 2
    assert event.t_mono == pytest.approx(0.015)
    assert event.uncertainty_s == pytest.approx(0.005 + 0.002)
    assert find_crossing(samples, "rises_above", 2.5)[0].t_mono == pytest.approx(0.025)
    assert find_crossing(samples, "falls_below", 2.5, start=2) is None
    # a long exchange bounds the stamp's offset by its half-width when that exceeds the latency
    slow = [samples[1], Sample(0.02, 0.1, 0.012, 0.028)]
    assert find_crossing(slow, "falls_below", 2.5, sample_latency_s=0.002)[0].uncertainty_s == pytest.approx(0.013)
    with pytest.raises(ValueError, match="condition 'drops' is not one of falls_below, rises_above"):
        find_crossing(samples, "drops", 2.5)
