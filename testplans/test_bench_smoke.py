"""Bench smoke plan: every instrument answers, the source holds its voltage, the bench reaches safe state."""

import time

import allure
import pytest

pytestmark = [pytest.mark.smoke, allure.epic("Bench"), allure.feature("Smoke")]

SETTLE_S = 0.2


def test_every_role_identifies(bench):
    """Each role, the positions' meters, loads, attenuators and modems too, answered its identity query with maker,
    model, serial and firmware."""
    for role in bench.roles:
        identity = bench.identities[role]
        assert identity.manufacturer and identity.model and identity.serial and identity.firmware, (
            f"{role}: incomplete identity {identity.raw!r}")


@pytest.mark.parametrize("voltage_v", [230.0, 240.0, 253.0])
def test_source_holds_voltage(source, measure, voltage_v):
    """The source's measured output matches its setpoint within the instrument's read-back accuracy."""
    allure.dynamic.parameter("voltage_v", voltage_v)
    source.set_voltage(voltage_v)
    source.set_frequency(50.0)
    source.set_output(True)
    time.sleep(SETTLE_S)
    tolerance = source.voltage_readback_tolerance(voltage_v)
    measure("output_voltage", source.measure_voltage(), "V", expected=voltage_v, tolerance=tolerance)
    measure("output_frequency", source.measure_frequency(), "Hz", expected=50.0, tolerance=0.1)


def test_safe_state_reached(bench, source, measure):
    """Driving the bench safe switches the energised source off: no voltage remains at the meters."""
    source.set_voltage(240.0)
    source.set_output(True)
    time.sleep(SETTLE_S)
    bench.make_safe("smoke plan")
    source = bench["source"]  # a role that failed to reach its safe state has latched the bench: ERROR here
    assert source.output_enabled() is False
    measure("voltage_after_safe_state", source.measure_voltage(), "V", low=0.0, high=1.0)
