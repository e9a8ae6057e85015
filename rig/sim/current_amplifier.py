"""Simulated phantom-load current amplifier of a meter test system (SCPI over a raw socket).

It drives the model's series current loop: amplitude and phase (current lagging voltage) go through the
model's setters, so the truth file records every change; read-backs show the settling actual current.
"""

from __future__ import annotations

from rig.sim.model import PhysicalModel
from rig.sim.scpi import ScpiInstrumentSim, parse_bool, parse_number

CURRENT_RANGE_A = (0.0, 120.0)
PHASE_RANGE_DEG = (-180.0, 180.0)


class CurrentAmplifierSim(ScpiInstrumentSim):
    """Answers like a 120 A current amplifier; the measured current carries a small noise."""

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        super().__init__(role, model, settings.get("idn", "RIG-SIM,PCA-120,SIM-PCA-0001,1.00"))
        self.current_noise_a = float(settings.get("current_noise_a", 0.0005))
        self.latency_s = float(settings.get("latency_s", 0.0))
        add = self.scpi.add
        add("OUTPut[:STATe]", lambda a: self.model.set_current_output(parse_bool(a), by=self.role))
        add("OUTPut[:STATe]?", lambda _a: "ON" if self.model.current.output_on else "OFF")
        add("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]", self._set_current)
        add("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]?",
            lambda _a: f"{self.model.current.current_setpoint_a:.4f}")
        add("[SOURce:]PHASe[:ADJust]", self._set_phase)
        add("[SOURce:]PHASe[:ADJust]?", lambda _a: f"{self.model.current.phase_deg:.3f}")
        for verb in ("FETCh", "MEASure"):
            add(f"{verb}[:SCALar]:CURRent[:AC]?", lambda _a: f"{self._current():.5f}")
            add(f"{verb}[:SCALar]:PHASe?", lambda _a: f"{self.model.current.phase_deg:.3f}")

    def _reset(self, _args: list[str]) -> None:
        self.model.set_current_output(False, by=f"{self.role} *RST")
        self.model.set_current(0.0, 0.0, by=f"{self.role} *RST")

    def _set_current(self, args: list[str]) -> None:
        self.model.set_current(parse_number(args, *CURRENT_RANGE_A, unit="A"), None, by=self.role)

    def _set_phase(self, args: list[str]) -> None:
        phase = parse_number(args, *PHASE_RANGE_DEG, unit="DEG")
        self.model.set_current(self.model.current.current_setpoint_a, phase, by=self.role)

    def _current(self) -> float:
        """Actual (settling) loop current plus noise; never negative."""
        return abs(self.model.circuit_current_a() + self.model.rng.gauss(0.0, self.current_noise_a))
