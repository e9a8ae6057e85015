"""Simulated reference standard meter (class 0.02) on SCPI: readings and energy integration from the model.

Readings of voltage, current and active power carry a static gain error (`gain_error_pct`) and gaussian
noise of sigma = class / 3 % of the value (`accuracy_class_pct`); the power factor, a ratio, carries the
noise only. `MEAS:VOLT?;CURR?;POW?;PFAC?` answers one line "v;i;p;pf" (PFACtor also resolves directly under
MEASure/FETCh, so the relative chain after `POW?` finds it).

Integration starts and stops at the instant the command is processed, and integrates the model's true
active energy through the series current circuit (times the gain error). Every command line waits
`latency_s` plus a uniform jitter of up to `latency_jitter_s` before it is processed, as a real instrument's
interface does: a naive gating method (reset the meters' counters, start the integration, wait, stop, read)
then shows its skew error, since the instrument's gate opens and closes later than the host believes.
"""

from __future__ import annotations

import math

from rig.sim.model import PhysicalModel
from rig.sim.scpi import ScpiInstrumentSim


class ReferenceMeterSim(ScpiInstrumentSim):
    """Answers like a class 0.02 reference standard meter."""

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        super().__init__(role, model, settings.get("idn", "RIG-SIM,RSM-002,SIM-RSM-0001,2.01"))
        self.accuracy_class_pct = float(settings.get("accuracy_class_pct", 0.02))
        self.gain_error = float(settings.get("gain_error_pct", 0.005)) / 100
        self.base_latency_s = float(settings.get("latency_s", 0.02))
        self.latency_jitter_s = float(settings.get("latency_jitter_s", 0.002))
        self.running = False
        self._start: tuple[float, float] | None = None  # (t, circuit energy Wh) at INT:STAR
        self._stop: tuple[float, float] | None = None  # (t, circuit energy Wh) at INT:STOP
        add = self.scpi.add
        for verb in ("FETCh", "MEASure"):
            add(f"{verb}[:SCALar]:VOLTage[:AC]?", lambda _a: f"{self._reading(self.model.supply_voltage_v()):.4f}")
            add(f"{verb}[:SCALar]:CURRent[:AC]?", lambda _a: f"{self._reading(self.model.circuit_current_a()):.5f}")
            add(f"{verb}[:SCALar]:POWer[:AC][:REAL]?", lambda _a: f"{self._reading(self.model.active_power_w()):.4f}")
            add(f"{verb}[:SCALar]:POWer[:AC]:PFACtor?", lambda _a: f"{self._power_factor():.5f}")
            add(f"{verb}[:SCALar]:PFACtor?", lambda _a: f"{self._power_factor():.5f}")
        add("INTegrate:STARt", self._start_integration, parameters=0)
        add("INTegrate:STOP", self._stop_integration, parameters=0)
        add("INTegrate:STATe?", lambda _a: "RUN" if self.running else "STOP")
        add("FETCh:ENERgy[:ACTive]?", lambda _a: f"{self.energy_wh():.9E}")
        add("FETCh:INTegrate:TIME?", lambda _a: f"{self.integration_time_s():.6f}")

    @property
    def latency_s(self) -> float:
        """Delay before each command line is processed: a fresh draw at every read."""
        if self.latency_jitter_s <= 0:
            return self.base_latency_s
        return self.base_latency_s + self.model.rng.uniform(0.0, self.latency_jitter_s)

    def _noise(self, value: float) -> float:
        return self.model.rng.gauss(0.0, abs(value) * self.accuracy_class_pct / 100 / 3)

    def _reading(self, true_value: float) -> float:
        return true_value * (1 + self.gain_error) + self._noise(true_value)

    def _power_factor(self) -> float:
        if self.model.supply_voltage_v() <= 0 or self.model.circuit_current_a() <= 0:
            return 0.0
        true_pf = math.cos(math.radians(self.model.current.phase_deg))
        return max(-1.0, min(1.0, true_pf + self._noise(true_pf)))

    def _reset(self, _args: list[str]) -> None:
        self.running = False
        self._start = self._stop = None

    def _start_integration(self, _args: list[str]) -> None:
        t = self.model.now()
        self._start = (t, self.model.circuit_energy_wh)
        self._stop = None
        self.running = True

    def _stop_integration(self, _args: list[str]) -> None:
        if self.running:
            t = self.model.now()
            self._stop = (t, self.model.circuit_energy_wh)
            self.running = False

    def _span(self) -> tuple[float, float]:
        """(seconds, true Wh) integrated since the last start; frozen at the stop."""
        if self._start is None:
            return 0.0, 0.0
        if self._stop is not None:
            end = self._stop
        else:
            t = self.model.now()
            end = (t, self.model.circuit_energy_wh)
        return end[0] - self._start[0], end[1] - self._start[1]

    def energy_wh(self) -> float:
        return self._span()[1] * (1 + self.gain_error)

    def integration_time_s(self) -> float:
        return self._span()[0]
