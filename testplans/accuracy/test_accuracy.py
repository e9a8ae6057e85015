"""Metering accuracy (IEC 62053-21/-22, IS 13779 via IS 16444): error at the load points, starting current,
no-load creep and the register (dosage) test, for every meter position of the bench at once.

Method at a load point (details in rig.accuracy): the source and the phantom-load current source are set,
and the plan waits for the sources' settling time and for successive reference readings to agree. The
reference then integrates continuously while one poller reads every position's pulse count in one request
and another reads the reference's energy. Each position's window opens and closes on one of its own pulse
edges, so its meter energy is exactly pulses / K; the reference energy over that window is the reference's
energy rate times the window's duration. Nothing is started or stopped inside a window, so the command
latency of counter and reference (the gating skew) cannot enter the result; the window is extended until the
edge-time quantisation stays below 1/10 of the class limit. Error % = (E_meter - E_ref) / E_ref x 100.
"""

from __future__ import annotations

import math
import time

import pytest
from meter_groups import Energiser, MeterGroup, pulse_constants

from rig import progress
from rig.accuracy import GatedMeasurement, creep_minimum_time_s, error_pct, pulse_period_s, wait_until_settled
from rig.plan import Limits
from rig.report.attach import parameter
from rig.standards import LoadPoint, limit_for

pytestmark = [pytest.mark.accuracy]


def class_index(accuracy_class: str) -> float:
    return float(accuracy_class.rstrip("S"))


def expected_power_w(voltage_v: float, point: LoadPoint) -> float:
    return voltage_v * point.current_a * math.cos(math.radians(point.phase_deg))


@pytest.mark.feature("Error at load points")
def test_error_at_load_point(group: MeterGroup, point: LoadPoint, energiser: Energiser, reference, counter,
                             measure, accuracy_plan):
    """Error % of every position at one load point against the class limit of the standard."""
    parameter("load point", f"{point.name} ({point.current_a:g} A), PF {point.pf}")
    parameter("positions", group.numbers)
    meter = group.rating
    method = accuracy_plan.method
    energiser.apply(meter.un_v, meter.fn_hz, point)
    power_w = expected_power_w(meter.un_v, point)
    wait_until_settled(reference, power_w, min_settle_s=energiser.settle_s(),
                       tolerance_pct=method.settle_tolerance_pct, timeout_s=method.settle_timeout_s)
    windows = GatedMeasurement(
        counter, reference, pulse_constants(group), point.limit_pct, power_w, min_window_s=method.min_window_s,
        min_pulses=method.min_pulses, quantisation_fraction=method.quantisation_fraction,
        max_duration_s=method.max_point_s, counter_name=f"counter ({counter.address})").run()
    for position, window in windows.items():
        measure("error", window.error_pct, "%", Limits(-point.limit_pct, point.limit_pct),
                uncertainty=window.uncertainty_pct, position=position,
                details={"load_point": point.name, "current_a": point.current_a, "pf": point.pf,
                         "pulses": window.pulses, "window_s": round(window.window_s, 6),
                         "meter_energy_wh": window.meter_energy_wh,
                         "reference_energy_wh": window.reference_energy_wh,
                         "quantisation_pct": window.quantisation_pct})


@pytest.mark.feature("Starting current")
def test_starting_current(group: MeterGroup, energiser: Energiser, counter, measure, accuracy_plan):
    """At the starting current (PF 1) every meter starts and keeps registering: at least N pulses within
    the allowance times their theoretical duration, plus one period for the first pulse's phase."""
    meter = group.rating
    config = accuracy_plan.starting_current
    current_a = group.spec.starting_current_factor * meter.base_current_a
    point = LoadPoint("Ist", "1", current_a, limit_pct=math.inf)
    parameter("starting current", f"{current_a:g} A")
    energiser.apply(meter.un_v, meter.fn_hz, point)
    time.sleep(energiser.settle_s())
    power_w = expected_power_w(meter.un_v, point)
    periods = {m.position: pulse_period_s(m.test_output_constant, power_w) for m in group.positions}
    window_s = max(periods.values()) * (config.pulses * config.time_allowance + 1)
    before = counter.read_counts()
    progress.wait(window_s, "starting current")
    after = counter.read_counts()
    for position in group.numbers:
        measure("pulses_at_starting_current", after[position] - before[position], "pulses", Limits(low=config.pulses),
                position=position, details={"current_a": current_a, "window_s": window_s,
                                            "pulse_period_s": periods[position]})


@pytest.mark.feature("No-load creep")
def test_no_load_creep(group: MeterGroup, energiser: Energiser, counter, measure, accuracy_plan):
    """With 1.1 Un and the current circuit open, no meter gives more than one pulse in the minimum time
    dt = C / (k m Un Imax) of the standard."""
    meter = group.rating
    config = accuracy_plan.creep
    voltage_v = config.voltage_factor * meter.un_v
    duration_s = config.duration_factor * max(
        creep_minimum_time_s(group.spec.creep_constant, m.test_output_constant, m.measuring_elements, m.un_v,
                             m.imax_a) for m in group.positions)
    parameter("voltage", f"{voltage_v:g} V")
    parameter("duration", f"{duration_s:.1f} s")
    energiser.apply(voltage_v, meter.fn_hz, None)
    time.sleep(energiser.settle_s())
    before = counter.read_counts()
    progress.wait(duration_s, "no-load creep")
    after = counter.read_counts()
    for position in group.numbers:
        measure("creep_pulses", after[position] - before[position], "pulses", Limits(0, config.max_pulses),
                position=position, details={"voltage_v": voltage_v, "duration_s": duration_s})


@pytest.mark.feature("Register (dosage) test")
def test_register_dosage(group: MeterGroup, energiser: Energiser, positions, reference, counter, measure,
                         accuracy_plan):
    """The energy register moves with the reference within the class limit, and with the test output within
    the meter-constant limit. Registers, counters and reference are read at rest (current off), so nothing
    moves while they are read."""
    readers = {p.number: p.meter for p in positions if p.number in group.numbers and p.has("meter")}
    if not readers:
        pytest.skip(f"no position of {group.label} has a meter data interface (positions[].interface)")
    meter = group.rating
    config = accuracy_plan.dosage
    current_a = next(p.factor * (meter.imax_a if p.of == "imax" else meter.base_current_a)
                     for p in group.standard.load_points if p.name == config.load_point)
    limit_pct = limit_for(group.spec, current_a, meter.base_current_a, meter.imax_a, "1")
    point = LoadPoint(config.load_point, "1", current_a, limit_pct)
    meter_constant_limit_pct = group.spec.meter_constant_limit_fraction * class_index(meter.accuracy_class)
    energiser.apply(meter.un_v, meter.fn_hz, None)
    time.sleep(max(config.rest_s, energiser.settle_s()))
    reference.start_integration()
    registers_before = {p: reader.read_energy_import_kwh() for p, reader in readers.items()}
    counts_before = counter.read_counts()
    energiser.apply(meter.un_v, meter.fn_hz, point)
    time.sleep(config.duration_s)
    energiser.current_off()
    time.sleep(max(config.rest_s, energiser.settle_s()))
    reference_wh = reference.read_energy_wh()
    counts_after = counter.read_counts()
    for position, reader in readers.items():
        register_wh = (reader.read_energy_import_kwh() - registers_before[position]) * 1000
        constant = next(m.test_output_constant for m in group.positions if m.position == position)
        pulse_wh = (counts_after[position] - counts_before[position]) * 1000 / constant
        details = {"register_wh": register_wh, "reference_wh": reference_wh, "test_output_wh": pulse_wh,
                   "current_a": current_a, "duration_s": config.duration_s}
        measure("register_error", error_pct(register_wh, reference_wh), "%", Limits(-limit_pct, limit_pct),
                position=position, details=details)
        measure("register_vs_test_output", error_pct(register_wh, pulse_wh), "%",
                Limits(-meter_constant_limit_pct, meter_constant_limit_pct), position=position, details=details)
