"""Report plots and run-level Allure files: PNGs that show what they claim, CSV tables, clear errors."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from rig.errors import ConfigError
from rig.report.allure_files import CATEGORIES, environment, write_categories, write_environment
from rig.report.plots import (
    ErrorPoint,
    TraceEvent,
    current_trace,
    error_curve,
    error_points_csv,
    latency_csv,
    latency_curve,
)

TAB_BLUE = (31, 119, 180)
TAB_ORANGE = (255, 127, 14)
RED = (255, 0, 0)


def pixels(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def count_colour(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 8) -> int:
    return int((np.abs(image - np.array(rgb)).max(axis=2) <= tolerance).sum())


LATENCY = [
    {"profile": "LTE good", "attenuation_db": 0, "median_s": 1.2, "p95_s": 1.8, "max_s": 2.5},
    {"profile": "LTE good", "attenuation_db": 20, "median_s": 1.9, "p95_s": 2.9, "max_s": 4.0},
    {"profile": "LTE good", "attenuation_db": 40, "median_s": 3.5, "p95_s": 6.0, "max_s": 9.0},
    {"profile": "NB-IoT", "attenuation_db": 0, "median_s": 2.2, "p95_s": 3.1, "max_s": 4.2},
    {"profile": "NB-IoT", "attenuation_db": 40, "median_s": 7.5, "p95_s": 11.0, "max_s": 15.0},
]


def test_latency_curve_draws_one_colour_per_profile():
    both = pixels(latency_curve(LATENCY))
    assert both.shape == (450, 800, 3)
    assert count_colour(both, TAB_BLUE) > 300  # first profile
    assert count_colour(both, TAB_ORANGE) > 300  # second profile
    one = pixels(latency_curve([row for row in LATENCY if row["profile"] == "NB-IoT"]))
    assert count_colour(one, TAB_BLUE) > 300
    assert count_colour(one, TAB_ORANGE) == 0


def test_latency_table_as_csv_keeps_every_row():
    lines = latency_csv(LATENCY).splitlines()
    assert lines[0] == "profile,attenuation_db,median_s,p95_s,max_s"
    assert lines[1] == "LTE good,0.0,1.2,1.8,2.5"
    assert len(lines) == 1 + len(LATENCY)


def test_latency_rows_with_a_missing_or_bad_field_are_named():
    with pytest.raises(ConfigError, match=r"latency table row 1: missing p95_s"):
        latency_curve([LATENCY[0], {k: v for k, v in LATENCY[1].items() if k != "p95_s"}])
    with pytest.raises(ConfigError, match=r"latency table row 0 \(profile 'x'\)"):
        latency_curve([{**LATENCY[0], "profile": "x", "max_s": "slow"}])
    with pytest.raises(ConfigError, match="no rows"):
        latency_curve([])


def points(error_at_ib: float) -> list[ErrorPoint]:
    out = []
    for pf, limit_by_current in (("1", {0.5: 1.5, 1.0: 1.0, 5.0: 1.0, 10.0: 1.0, 60.0: 1.0}),
                                 ("0.5L", {1.0: 1.5, 2.0: 1.0, 10.0: 1.0, 60.0: 1.0})):
        for current, limit in limit_by_current.items():
            error = error_at_ib if (current, pf) == (10.0, "1") else 0.1 * math.log10(current)
            out.append(ErrorPoint(f"{current}A", current, pf, error, -limit, limit, 0.02,
                                  "fail" if abs(error) > limit else "pass"))
    return out


def test_error_curve_draws_each_pf_and_circles_points_out_of_limits():
    good = pixels(error_curve("position 1 (SIM0001)", points(0.05)))
    assert good.shape == (450, 800, 3)
    assert count_colour(good, TAB_BLUE) > 200 and count_colour(good, TAB_ORANGE) > 200
    assert count_colour(good, RED) == 0
    bad = pixels(error_curve("position 2 (SIM0002)", points(1.8)))
    assert count_colour(bad, RED) > 50


def test_error_points_csv():
    lines = error_points_csv(points(1.8)).splitlines()
    assert lines[0] == "load_point,current_a,pf,error_pct,uncertainty_pct,low_pct,high_pct,verdict"
    assert "10.0A,10.0,1,1.8,0.02,-1.0,1.0,fail" in lines


def test_error_point_from_a_measurement_record():
    record = {"test": "t", "name": "error", "value": -0.2, "low": -1.0, "high": 1.0, "uncertainty": 0.03,
              "verdict": "pass", "details": {"load_point": "Ib", "current_a": 10.0, "pf": "0.5L"}}
    assert ErrorPoint.from_measurement(record) == ErrorPoint("Ib", 10.0, "0.5L", -0.2, -1.0, 1.0, 0.03, "pass")
    with pytest.raises(ConfigError, match="details lack current_a, pf"):
        ErrorPoint.from_measurement({**record, "details": {}})


def test_current_trace_has_a_zoomed_panel_per_group_of_events():
    samples = [(100 + i * 0.01, 5.0 if i < 300 or i >= 330 else 0.0) for i in range(400)]
    events = [TraceEvent("exhaustion", 102.5), TraceEvent("cut", 103.005, 0.005),
              TraceEvent("recharge", 103.2), TraceEvent("restore", 103.295, 0.005)]
    two_groups = pixels(current_trace(samples, events))  # exhaustion | cut, recharge, restore
    assert two_groups.shape == (int(100 * (3.2 + 2 * 2)), 800, 3)
    event_red = (214, 39, 40)  # tab:red: the first event's (antialiased, dashed) line
    assert count_colour(two_groups, event_red, tolerance=40) > 200
    whole = pixels(current_trace(samples, []))
    assert whole.shape == (int(100 * 3.2), 800, 3)
    assert count_colour(whole, event_red, tolerance=40) == 0
    with pytest.raises(ValueError, match="no readings"):
        current_trace([], events)


RUN = {"bench": {"name": "lab 2", "path": "/b/lab2.yaml"}, "python": "3.11.7", "git_revision": "abc",
       "host": "h", "start": "2026-01-01T00:00:00+00:00", "packages": {"pytest": "9.1.1"},
       "instruments": {"source": {"driver": "chroma61500", "resource": "TCPIP0::10.0.0.1::2101::SOCKET",
                                  "manufacturer": "Chroma ATE", "model": "61504", "serial": "S1", "firmware": "1.10"},
                       "meter@1": {"driver": "dlms_meter", "resource": "tcp://10.0.0.2:4059",
                                   "manufacturer": "M", "model": "X", "serial": "SN1", "firmware": "2.0.1"}},
       "meters": [{"position": 1, "serial": "SN1", "accuracy_class": "1", "firmware": None}]}


def test_environment_names_bench_instruments_meters_and_versions(tmp_path):
    env = environment(RUN)
    assert env["bench"] == "lab 2 (/b/lab2.yaml)"
    assert env["instrument.source"] == ("Chroma ATE 61504, serial S1, firmware 1.10 "
                                        "(chroma61500 at TCPIP0::10.0.0.1::2101::SOCKET)")
    assert env["meter.1"] == "serial SN1, class 1, firmware 2.0.1"  # from the meter's own identity
    assert env["package.pytest"] == "9.1.1" and env["python"] == "3.11.7"
    text = write_environment(tmp_path, {**RUN, "bench": {"name": "lab: 2 µ", "path": "/b"}}).read_text()
    assert "bench=lab: 2 \\u00b5 (/b)\n" in text
    assert "instrument.meter@1=M X, serial SN1, firmware 2.0.1 (dlms_meter at tcp://10.0.0.2:4059)\n" in text


def test_categories_separate_meter_failures_from_rig_errors(tmp_path):
    path = write_categories(tmp_path)
    assert path.name == "categories.json"
    by_name = {c["name"]: c for c in CATEGORIES}
    assert by_name["Meter out of limits"]["matchedStatuses"] == ["failed"]
    assert by_name["Rig or instrument error"]["matchedStatuses"] == ["broken"]
    assert by_name["Skipped"]["matchedStatuses"] == ["skipped"]
    assert path.read_text().count('"name"') == len(CATEGORIES)
