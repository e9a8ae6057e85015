"""Limits and verdicts, measurement descriptions, and setpoint bounds of a role."""

import math
import shutil
from pathlib import Path

import pytest

from rig.bench import setpoint_limits
from rig.config import load_bench
from rig.driver import Bound, SetpointLimits, driver_class
from rig.errors import ConfigError, SetpointRefused
from rig.measure import Limits, Measurement

SIM_BENCH = Path(__file__).resolve().parents[2] / "benches" / "sim.yaml"


# -- Limits -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "verdict"), [(1.0, "pass"), (1.5, "pass"), (2.0, "pass"),
                                                (0.999, "fail"), (2.001, "fail")])
def test_bounds_are_inclusive(value, verdict):
    assert Limits(low=1.0, high=2.0).verdict(value) == verdict


@pytest.mark.parametrize(("value", "verdict"), [(10.0, "pass"), (10.5, "pass"), (9.5, "pass"),
                                                (10.6, "marginal"), (9.4, "marginal"), (11.0, "marginal"),
                                                (9.0, "marginal"), (11.01, "fail"), (8.99, "fail")])
def test_marginal_band_inside_limits(value, verdict):
    assert Limits.within(10.0, 1.0, marginal=0.5).verdict(value) == verdict


def test_within_is_absolute():
    limits = Limits.within(230.0, 2.0)
    assert (limits.low, limits.high, limits.marginal_low, limits.marginal_high) == (228.0, 232.0, None, None)


def test_within_percent_of_negative_expected_value():
    limits = Limits.within_percent(-10.0, 2.0, marginal_percent=1.0)
    assert limits.low == pytest.approx(-10.2)
    assert limits.high == pytest.approx(-9.8)
    assert limits.marginal_low == pytest.approx(-10.1)
    assert limits.marginal_high == pytest.approx(-9.9)
    assert limits.verdict(-10.0) == "pass"
    assert limits.verdict(-10.15) == "marginal"
    assert limits.verdict(-9.7) == "fail"


def test_within_percent_of_positive_expected_value():
    limits = Limits.within_percent(200.0, 1.0)
    assert (limits.low, limits.high) == (198.0, 202.0)


def test_upper_limit_only():
    limits = Limits(high=5.0)
    assert limits.verdict(-1e9) == "pass"
    assert limits.verdict(5.0) == "pass"
    assert limits.verdict(5.01) == "fail"
    assert limits.describe() == "[-inf, 5]"


def test_lower_limit_only():
    limits = Limits(low=0.0)
    assert limits.verdict(1e9) == "pass"
    assert limits.verdict(-0.01) == "fail"
    assert limits.describe() == "[0, +inf]"


@pytest.mark.parametrize("limits", [Limits(0.0, 1.0), Limits(low=0.0), Limits(high=1.0),
                                    Limits.within(0.0, 1.0, marginal=0.5)])
def test_nan_fails(limits):
    assert limits.verdict(math.nan) == "fail"


def test_limits_need_a_bound():
    with pytest.raises(ConfigError, match="at least one limit"):
        Limits()


def test_low_above_high_is_refused():
    with pytest.raises(ConfigError, match=r"limit low 2\.0 is above high 1\.0"):
        Limits(low=2.0, high=1.0)


def test_equal_low_and_high_is_allowed():
    assert Limits(low=1.0, high=1.0).verdict(1.0) == "pass"


# -- Measurement ---------------------------------------------------------------------------------------------


def test_measurement_describe_names_value_unit_limits_and_verdict():
    measurement = Measurement(test="t", name="voltage", value=230.1, unit="V", low=229.0, high=231.0,
                              verdict="pass")
    assert measurement.describe() == "voltage = 230.1 V, limits [229, 231] V: PASS"


def test_measurement_describe_with_position_uncertainty_and_fail():
    measurement = Measurement(test="t", name="error", value=1.25, unit="%", low=-1.0, high=1.0,
                              verdict="fail", uncertainty=0.05, position=2, meter="SIM0002")
    assert measurement.describe() == "error at position 2 (SIM0002) = 1.25 +- 0.05 %, limits [-1, 1] %: FAIL"


def test_measurement_describe_one_sided_marginal():
    measurement = Measurement(test="t", name="power", value=4.9, unit="W", low=None, high=5.0,
                              verdict="marginal")
    assert measurement.describe() == "power = 4.9 W, limits [-inf, 5] W: MARGINAL"


def test_measurement_record_has_all_fields():
    record = Measurement(test="t", name="v", value=1.0, unit="V", low=0.0, high=2.0, verdict="pass",
                         t_mono=1.0, t_wall=2.0).as_record()
    assert record["name"] == "v" and record["verdict"] == "pass"
    assert (record["t_mono"], record["t_wall"], record["expected"]) == (1.0, 2.0, None)


# -- SetpointLimits ------------------------------------------------------------------------------------------


@pytest.fixture
def limits():
    limits = SetpointLimits()
    limits.add("voltage", 0.0, 300.0, "the rating of the chroma61500 instrument")
    limits.add("voltage", None, 264.0, "roles.source.limits.voltage_v in bench.yaml")
    limits.add("frequency", 45.0, 55.0, "roles.source.limits.frequency_hz in bench.yaml")
    return limits


def test_setpoint_within_bounds_passes(limits):
    limits.check("voltage", 264.0, "V", "source", "TCPIP0::host::5025::SOCKET")
    limits.check("voltage", 0.0, "V", "source", "TCPIP0::host::5025::SOCKET")
    limits.check("current", 1e6, "A", "source", "TCPIP0::host::5025::SOCKET")


def test_setpoint_above_role_limit_is_refused_with_origin(limits):
    with pytest.raises(SetpointRefused) as info:
        limits.check("voltage", 265.0, "V", "source", "TCPIP0::host::5025::SOCKET")
    assert str(info.value) == ("source (TCPIP0::host::5025::SOCKET): voltage 265 V refused: above 264 V, "
                               "roles.source.limits.voltage_v in bench.yaml")


def test_setpoint_below_range_is_refused_with_origin(limits):
    with pytest.raises(SetpointRefused) as info:
        limits.check("frequency", 44.5, "Hz", "source", "ASRL1")
    assert str(info.value) == ("source (ASRL1): frequency 44.5 Hz refused: below 45 Hz, "
                               "roles.source.limits.frequency_hz in bench.yaml")


def test_negative_voltage_refused_by_instrument_rating(limits):
    with pytest.raises(SetpointRefused, match=r"below 0 V, the rating of the chroma61500 instrument"):
        limits.check("voltage", -1.0, "V", "source", "ASRL1")


def test_nan_setpoint_is_refused(limits):
    with pytest.raises(SetpointRefused, match=r"source \(ASRL1\): voltage nan V refused: not a number"):
        limits.check("voltage", math.nan, "V", "source", "ASRL1")


def test_high_is_the_tightest_upper_bound(limits):
    assert limits.high("voltage") == 264.0
    assert limits.high("frequency") == 55.0
    assert limits.high("current") is None


# -- setpoint_limits of a bench ------------------------------------------------------------------------------


def test_sim_bench_voltage_bounds_name_their_origins():
    bench = load_bench(SIM_BENCH)
    limits = setpoint_limits(bench, "source", driver_class("chroma61500"))
    voltage = limits.bounds["voltage"]
    assert voltage[0] == Bound(0.0, 300.0, "the rating of the chroma61500 instrument")
    assert voltage[1] == Bound(None, 276.0, "roles.source.limits.voltage_v in sim.yaml")
    assert voltage[2] == Bound(None, 288.0, "the rating of meter SIM0001 at position 1 (max_voltage_v)")
    assert [bound.high for bound in voltage] == [300.0, 276.0, 288.0, 288.0, 288.0]
    assert limits.high("voltage") == 276.0


def test_sim_bench_frequency_bounds():
    limits = setpoint_limits(load_bench(SIM_BENCH), "source", driver_class("chroma61500"))
    assert limits.bounds["frequency"] == [
        Bound(15.0, 1000.0, "the rating of the chroma61500 instrument"),
        Bound(45.0, 55.0, "roles.source.limits.frequency_hz in sim.yaml")]


def test_sim_bench_refuses_setpoint_above_meter_rating_only_after_role_limit():
    limits = setpoint_limits(load_bench(SIM_BENCH), "source", driver_class("chroma61500"))
    with pytest.raises(SetpointRefused, match=r"above 276 V, roles\.source\.limits\.voltage_v in sim\.yaml"):
        limits.check("voltage", 280.0, "V", "source", "TCPIP0::127.0.0.1::51025::SOCKET")


def test_role_limit_origin_is_right_when_file_name_contains_limits(tmp_path):
    bench_path = tmp_path / "limits.yaml"
    shutil.copy(SIM_BENCH, bench_path)
    limits = setpoint_limits(load_bench(bench_path), "source", driver_class("chroma61500"))
    assert limits.bounds["voltage"][1].origin == "roles.source.limits.voltage_v in limits.yaml"
