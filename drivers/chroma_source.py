"""Chroma 61500/61600 programmable AC source (SCPI)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from drivers.scpi import ScpiDriver, ScpiSettings, Setting, SwitchedOutput, number, setpoint
from rig.roles import AcSource

VOLTAGE_LEVEL = "[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]"


class ChromaSourceSettings(ScpiSettings):
    """Read-back tolerance of the voltage; the defaults are the 61500 specification."""

    voltage_accuracy_pct_reading: Annotated[float, Field(ge=0)] = 0.2
    voltage_accuracy_pct_full_scale: Annotated[float, Field(ge=0)] = 0.2


class Chroma61500Source(SwitchedOutput, ScpiDriver, AcSource):
    """AC voltage source: 0-300 V, 15-1000 Hz; output off is its safe state.

    Every message is guarded (drivers.scpi): a voltage or frequency in it is checked against the limits before
    it is sent, and switching the output on first reads back the voltage the instrument holds.
    Read-back tolerance defaults to the 61500 specification (0.2 % of reading + 0.2 % of the 300 V range);
    a bench may override it with settings `voltage_accuracy_pct_reading` and `voltage_accuracy_pct_full_scale`.
    """

    RATINGS = {"voltage": (0.0, 300.0), "frequency": (15.0, 1000.0)}
    METER_RATINGS = {"voltage": "max_voltage_v"}
    FULL_SCALE_V = 300.0
    SETTINGS_MODEL = ChromaSourceSettings
    GUARDS = (Setting(f"{VOLTAGE_LEVEL}:DC", "voltage", "V"),
              Setting(VOLTAGE_LEVEL, "voltage", "V"))  # a bare level, as other dialects take it

    set_voltage = setpoint("SOUR:VOLT:AC {:.3f}", "voltage", "V", header=f"{VOLTAGE_LEVEL}:AC")
    set_frequency = setpoint("SOUR:FREQ {:.3f}", "frequency", "Hz", header="[SOURce:]FREQuency[:IMMediate]")
    voltage_setpoint = number("SOUR:VOLT:AC?", held=("voltage", "V"))
    measure_voltage = number("MEAS:VOLT:ACDC?")
    measure_frequency = number("MEAS:FREQ?")
    measure_current = number("MEAS:CURR:AC?")
    measure_power = number("MEAS:POW:AC?")

    def voltage_readback_tolerance(self, voltage_v: float) -> float:
        settings = self.settings
        return (abs(voltage_v) * settings.voltage_accuracy_pct_reading / 100
                + self.FULL_SCALE_V * settings.voltage_accuracy_pct_full_scale / 100)
