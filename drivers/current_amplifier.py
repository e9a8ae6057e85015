"""Phantom-load current amplifier of a meter test system (SCPI)."""

from __future__ import annotations

from drivers.scpi import SafeState, ScpiDriver, SwitchedOutput, number, setpoint
from rig.roles import CurrentSource


class ScpiCurrentAmplifier(SwitchedOutput, ScpiDriver, CurrentSource):
    """Current amplifier: 0-120 A at a phase of -180..180 deg (current lagging voltage is positive).

    No current beyond any meter's Imax: a current in any message is checked before it is sent, and switching the
    output on first reads back the current the instrument holds. Output off with the current set to 0 is its
    safe state.
    """

    RATINGS = {"current": (0.0, 120.0), "phase": (-180.0, 180.0)}
    METER_RATINGS = {"current": "imax_a"}
    SAFE = (*SwitchedOutput.SAFE, SafeState("SOUR:CURR 0.0000", says="current setpoint 0 A"))

    set_current = setpoint("SOUR:CURR {:.4f}", "current", "A",
                           header="[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]")
    set_phase = setpoint("SOUR:PHAS {:.3f}", "phase", "deg")  # a raw phase is left to the instrument
    current_setpoint = number("SOUR:CURR?", held=("current", "A"))
    phase_setpoint = number("SOUR:PHAS?")
    measure_current = number("MEAS:CURR?")
    measure_phase = number("MEAS:PHAS?")
