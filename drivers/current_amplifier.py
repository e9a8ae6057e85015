"""Phantom-load current amplifier of a meter test system (SCPI)."""

from __future__ import annotations

from drivers.scpi import ScpiDriver, Setting, Switch
from rig.errors import InstrumentError
from rig.roles import CurrentSource


class ScpiCurrentAmplifier(ScpiDriver, CurrentSource):
    """Current amplifier: 0-120 A at a phase of -180..180 deg (current lagging voltage is positive).

    No current beyond any meter's Imax: a current in any message is checked before it is sent, and switching the
    output on first reads back the current the instrument holds. Output off with the current set to 0 is its
    safe state.
    """

    RATINGS = {"current": (0.0, 120.0), "phase": (-180.0, 180.0)}
    METER_RATINGS = {"current": "imax_a"}
    SETTINGS = (Setting("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]", "current", "A"),)
    SWITCHES = (Switch("OUTPut[:STATe]"),)
    HELD_SETPOINTS = (("SOUR:CURR?", "current", "A"),)

    def set_current(self, current_a: float) -> None:
        self.check_setpoint("current", current_a, "A")
        self.command(f"SOUR:CURR {current_a:.4f}")

    def set_phase(self, phase_deg: float) -> None:
        self.check_setpoint("phase", phase_deg, "deg")
        self.command(f"SOUR:PHAS {phase_deg:.3f}")

    def set_output(self, enabled: bool) -> None:
        """Switch the output; ON is sent only after the current the instrument holds is read back and checked."""
        self.command("OUTP ON" if enabled else "OUTP OFF")

    def output_enabled(self) -> bool:
        reply = self.query("OUTP?").strip().upper()
        if reply in ("1", "ON"):
            return True
        if reply in ("0", "OFF"):
            return False
        raise self.unexpected_reply("OUTP?", "ON/OFF", reply)

    def current_setpoint(self) -> float:
        return self.query_float("SOUR:CURR?")

    def phase_setpoint(self) -> float:
        return self.query_float("SOUR:PHAS?")

    def measure_current(self) -> float:
        return self.query_float("MEAS:CURR?")

    def measure_phase(self) -> float:
        return self.query_float("MEAS:PHAS?")

    def make_safe(self) -> list[str]:
        self.command("OUTP OFF")
        if self.output_enabled():
            raise InstrumentError(f"{self.role} ({self.address}): output still ON after 'OUTP OFF'")
        self.command("SOUR:CURR 0.0000")
        return ["output OFF (confirmed by OUTP?)", "current setpoint 0 A"]
