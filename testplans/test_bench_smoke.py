"""Bench smoke plan: every instrument answers, the source holds its voltage, the bench reaches safe state."""

import time

import pytest

from rig.plan import Equals, Limits

pytestmark = [pytest.mark.smoke, pytest.mark.feature("Smoke")]

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
    source.set_voltage(voltage_v)
    source.set_frequency(50.0)
    source.set_output(True)
    time.sleep(SETTLE_S)
    tolerance = source.voltage_readback_tolerance(voltage_v)
    measure("output_voltage", source.measure_voltage(), "V", Limits.within(voltage_v, tolerance))
    measure("output_frequency", source.measure_frequency(), "Hz", Limits.within(50.0, 0.1))


def test_safe_state_reached(bench, source, measure):
    """Driving the bench safe switches the energised source off: no voltage remains at the meters."""
    source.set_voltage(240.0)
    source.set_output(True)
    time.sleep(SETTLE_S)
    bench.make_safe("smoke plan")
    source = bench["source"]  # a role that failed to reach its safe state has latched the bench: ERROR here
    measure("output_enabled_after_safe_state", source.output_enabled(), "", Equals(False))
    measure("voltage_after_safe_state", source.measure_voltage(), "V", Limits(0.0, 1.0))
