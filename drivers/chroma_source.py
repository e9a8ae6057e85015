"""Chroma 61500/61600 programmable AC source (SCPI)."""

from __future__ import annotations

from drivers.scpi import ScpiDriver, Setting, Switch
from rig.errors import InstrumentError
from rig.roles import AcSource

VOLTAGE_LEVEL = "[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]"


class Chroma61500Source(ScpiDriver, AcSource):
    """AC voltage source: 0-300 V, 15-1000 Hz; output off is its safe state.

    Every message is guarded (drivers.scpi): a voltage or frequency in it is checked against the limits before
    it is sent, and switching the output on first reads back the voltage the instrument holds.
    Read-back tolerance defaults to the 61500 specification (0.2 % of reading + 0.2 % of the 300 V range);
    a bench may override it with settings `voltage_accuracy_pct_reading` and `voltage_accuracy_pct_full_scale`.
    """

    RATINGS = {"voltage": (0.0, 300.0), "frequency": (15.0, 1000.0)}
    METER_RATINGS = {"voltage": "max_voltage_v"}
    FULL_SCALE_V = 300.0
    SETTINGS = (Setting(f"{VOLTAGE_LEVEL}:AC", "voltage", "V"),
                Setting(f"{VOLTAGE_LEVEL}:DC", "voltage", "V"),
                Setting(VOLTAGE_LEVEL, "voltage", "V"),  # a bare level, as other dialects take it
                Setting("[SOURce:]FREQuency[:IMMediate]", "frequency", "Hz"))
    SWITCHES = (Switch("OUTPut[:STATe]"),)
    HELD_SETPOINTS = (("SOUR:VOLT:AC?", "voltage", "V"),)

    def set_voltage(self, voltage_v: float) -> None:
        self.check_setpoint("voltage", voltage_v, "V")
        self.command(f"SOUR:VOLT:AC {voltage_v:.3f}")

    def set_frequency(self, frequency_hz: float) -> None:
        self.check_setpoint("frequency", frequency_hz, "Hz")
        self.command(f"SOUR:FREQ {frequency_hz:.3f}")

    def set_output(self, enabled: bool) -> None:
        """Switch the output; ON is sent only after the voltage the instrument holds is read back and checked."""
        self.command("OUTP ON" if enabled else "OUTP OFF")

    def output_enabled(self) -> bool:
        reply = self.query("OUTP?").strip().upper()
        if reply in ("1", "ON"):
            return True
        if reply in ("0", "OFF"):
            return False
        raise self.unexpected_reply("OUTP?", "ON/OFF", reply)

    def voltage_setpoint(self) -> float:
        return self.query_float("SOUR:VOLT:AC?")

    def measure_voltage(self) -> float:
        return self.query_float("MEAS:VOLT:ACDC?")

    def measure_frequency(self) -> float:
        return self.query_float("MEAS:FREQ?")

    def measure_current(self) -> float:
        return self.query_float("MEAS:CURR:AC?")

    def measure_power(self) -> float:
        return self.query_float("MEAS:POW:AC?")

    def voltage_readback_tolerance(self, voltage_v: float) -> float:
        settings = self.config.settings
        pct_reading = float(settings.get("voltage_accuracy_pct_reading", 0.2))
        pct_full_scale = float(settings.get("voltage_accuracy_pct_full_scale", 0.2))
        return abs(voltage_v) * pct_reading / 100 + self.FULL_SCALE_V * pct_full_scale / 100

    def make_safe(self) -> list[str]:
        self.command("OUTP OFF")
        if self.output_enabled():
            raise InstrumentError(f"{self.role} ({self.address}): output still ON after 'OUTP OFF'")
        return ["output OFF (confirmed by OUTP?)"]
