"""Error, limit, pulse-count and edge arithmetic of the accuracy method, against hand-computed cases."""

from pathlib import Path

import pytest

from rig.accuracy import (
    EdgeTracker,
    count_delta,
    creep_minimum_time_s,
    edge_time,
    error_pct,
    least_squares_slope,
    pulse_period_s,
    pulses_needed,
    pulses_to_wh,
    required_window_s,
    robust_slope,
)
from rig.config import MeterPosition
from rig.errors import InstrumentError
from rig.standards import limit_for, load_points, load_standard

PLANS = Path(__file__).resolve().parents[2] / "testplans" / "accuracy"


def test_error_pct():
    assert error_pct(101.0, 100.0) == pytest.approx(1.0)
    assert error_pct(99.5, 100.0) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        error_pct(1.0, 0.0)


def test_pulse_energy_and_period():
    assert pulses_to_wh(3200, 3200) == 1000.0
    assert pulse_period_s(3200, 240 * 0.5) == pytest.approx(9.375)  # 5 % Ib of 10 A at 240 V
    assert pulse_period_s(3200, 240 * 0.04) == pytest.approx(117.1875)  # starting current 40 mA


def test_pulses_needed_for_a_window():
    assert pulses_needed(2.0, 1e6, 2400.0, min_pulses=2) == 1334  # period 1.5 ms
    assert pulses_needed(2.0, 3200, 120.0, min_pulses=2) == 2  # one pulse per 9.4 s: the minimum rules


def test_required_window_keeps_quantisation_within_a_tenth_of_the_limit():
    assert required_window_s(0.0004, limit_pct=1.0, fraction_of_limit=0.1) == pytest.approx(0.4)
    assert required_window_s(0.0004, limit_pct=0.2, fraction_of_limit=0.1) == pytest.approx(2.0)


def test_edge_time_between_polls_and_within_one_period():
    assert edge_time(10.0, 10.002, None) == pytest.approx((10.001, 0.001))
    assert edge_time(10.0, 10.002, 0.0005) == pytest.approx((10.00175, 0.00025))


def test_least_squares_slope():
    slope, standard_error = least_squares_slope([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0])
    assert slope == pytest.approx(2.0) and standard_error == pytest.approx(0.0)
    slope, standard_error = least_squares_slope([0.0, 1.0, 2.0], [0.0, 1.0, 1.0])
    assert slope == pytest.approx(0.5) and standard_error == pytest.approx(0.2886751, rel=1e-6)


def test_creep_minimum_time():
    assert creep_minimum_time_s(600e6, 3200, 1, 240.0, 60.0) == pytest.approx(781.25)  # 13.02 min
    assert creep_minimum_time_s(600e6, 1e6, 1, 240.0, 60.0) == pytest.approx(2.5)


def test_count_delta_handles_32_bit_wrap_and_backwards():
    assert count_delta(2**32 - 2, 3) == 5
    assert count_delta(10, 7) == -3


def polls(edges_s, poll_s=0.1, until_s=3.0):
    samples, t = [], 0.0
    while t <= until_s + 1e-9:
        samples.append((round(t, 6), {1: sum(1 for e in edges_s if e <= t)}))
        t += poll_s
    return samples


def test_edge_tracker_opens_and_closes_windows_on_edges():
    tracker = EdgeTracker({1: 3600.0}, power_w=1000.0, counter_name="counter")  # one pulse per second
    tracker.feed(polls([0.55, 1.55, 2.55]))
    window = tracker.windows[1]
    assert window.pulses == 2
    assert window.start_s == pytest.approx(0.55) and window.end_s == pytest.approx(2.55)
    assert window.start_half_width_s == pytest.approx(0.05)
    assert window.meter_energy_wh == pytest.approx(2 / 3.6)


def test_edge_tracker_refuses_a_counter_that_goes_backwards_or_jumps():
    backwards = EdgeTracker({1: 3600.0}, 1000.0, "counter (tcp://127.0.0.1:1)")
    with pytest.raises(InstrumentError, match=r"counter \(tcp://127.0.0.1:1\): position 1 counter went backwards"):
        backwards.feed([(0.0, {1: 5}), (0.1, {1: 4})])
    jump = EdgeTracker({1: 3600.0}, 1000.0, "counter")
    with pytest.raises(InstrumentError, match="position 1 counter jumped by 100 pulses in 100.0 ms"):
        jump.feed([(0.0, {1: 5}), (0.1, {1: 105})])


def meter(**rating):
    base = {"position": 1, "serial": "A1", "accuracy_class": "1", "ib_a": 10, "imax_a": 60, "un_v": 240,
            "meter_constant_imp_per_kwh": 3200}
    return MeterPosition.model_validate({**base, **rating})


def test_class_1_direct_meter_load_points_and_limits():
    standard = load_standard(PLANS / "iec62053-21.yaml")
    points = load_points(standard, meter(), "test")
    assert len(points) == 19  # 7 at PF 1, 6 each at 0.5L and 0.8C (no limit at 0.05 Ib there)
    by_label = {p.label: p for p in points}
    assert by_label["0.05Ib-PF1"].current_a == 0.5 and by_label["0.05Ib-PF1"].limit_pct == 1.5
    assert by_label["Imax-PF1"].current_a == 60 and by_label["Imax-PF1"].limit_pct == 1.0
    assert by_label["0.1Ib-PF0.5L"].limit_pct == 1.5 and by_label["0.2Ib-PF0.8C"].limit_pct == 1.0
    assert "0.05Ib-PF0.5L" not in by_label


def test_class_2_and_ct_class_limits():
    direct = load_standard(PLANS / "iec62053-21.yaml")
    spec = direct.classes["2"]
    assert limit_for(spec, 0.5, 10, 60, "1") == 2.5 and limit_for(spec, 1.0, 10, 60, "1") == 2.0
    ct = load_standard(PLANS / "iec62053-22.yaml")
    points = {p.label: p for p in load_points(ct, meter(accuracy_class="0.2S", ib_a=None, in_a=5, imax_a=6), "t")}
    assert points["0.01In-PF1"].limit_pct == 0.4 and points["0.05In-PF1"].limit_pct == 0.2
    assert points["0.02In-PF0.5L"].limit_pct == 0.5 and points["Imax-PF0.8C"].limit_pct == 0.3
    assert "0.01In-PF0.5L" not in points
    assert limit_for(ct.classes["0.5S"], 0.25, 5, 6, "1") == 0.5


def test_weighted_slope_trusts_the_closely_known_points():
    times, values = [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.6]
    unweighted, _ = least_squares_slope(times, values)
    weighted, _ = least_squares_slope(times, values, [1.0, 1.0, 1.0, 1e-6])
    assert unweighted == pytest.approx(1.18) and weighted == pytest.approx(1.0, abs=1e-5)


def test_robust_slope_drops_a_reading_stamped_late():
    times = [i * 0.02 for i in range(50)]
    values = [2.0 * t for t in times]
    times[25] += 0.01  # the host stalled before stamping this reading
    assert least_squares_slope(times, values)[0] != pytest.approx(2.0, rel=1e-6)
    assert robust_slope(times, values)[0] == pytest.approx(2.0, rel=1e-9)
