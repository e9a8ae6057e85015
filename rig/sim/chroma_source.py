"""Simulated Chroma 61500/61600 AC source: SCPI dialect of the real unit, physics from the shared model."""

from __future__ import annotations

from rig.sim.model import PhysicalModel
from rig.sim.scpi import ScpiInstrumentSim, parse_bool, parse_number

VOLTAGE_RANGE_V = (0.0, 300.0)
FREQUENCY_RANGE_HZ = (15.0, 1000.0)
CURRENT_LIMIT_RANGE_A = (0.0, 40.0)


class ChromaSourceSim(ScpiInstrumentSim):
    """Answers like a Chroma 61504; measurement readings carry a small gain error and noise."""

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        super().__init__(role, model, settings.get("idn", "Chroma ATE,61504,SIM61504-0001,1.10"))
        self.voltage_gain_error = float(settings.get("voltage_gain_error", 0.0005))
        self.voltage_noise_v = float(settings.get("voltage_noise_v", 0.02))
        self.latency_s = float(settings.get("latency_s", 0.0))
        self.output_stuck_on = bool(settings.get("output_stuck_on", False))  # a welded output relay
        add = self.scpi.add
        add("OUTPut[:STATe]", self._set_output)
        add("OUTPut[:STATe]?", lambda _a: "ON" if self.model.source.output_on else "OFF")
        add("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]:AC", self._set_voltage)
        add("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]:AC?",
            lambda _a: f"{self.model.source.voltage_setpoint_v:.3f}")
        add("[SOURce:]FREQuency[:IMMediate]", self._set_frequency)
        add("[SOURce:]FREQuency[:IMMediate]?", lambda _a: f"{self.model.source.frequency_setpoint_hz:.3f}")
        add("[SOURce:]CURRent:LIMit", self._set_current_limit)
        add("[SOURce:]CURRent:LIMit?", lambda _a: f"{self.model.source.current_limit_a:.3f}")
        for verb in ("FETCh", "MEASure"):
            add(f"{verb}[:SCALar]:VOLTage[:ACDC]?", lambda _a: f"{self._voltage():.3f}")
            add(f"{verb}[:SCALar]:VOLTage:AC?", lambda _a: f"{self._voltage():.3f}")
            add(f"{verb}[:SCALar]:FREQuency?", lambda _a: f"{self._frequency():.3f}")
            add(f"{verb}[:SCALar]:CURRent[:AC]?", lambda _a: f"{self._current():.4f}")
            add(f"{verb}[:SCALar]:CURRent:ACDC?", lambda _a: f"{self._current():.4f}")
            add(f"{verb}[:SCALar]:POWer[:AC][:REAL]?", lambda _a: f"{self.model.supply_power_w():.3f}")
            add(f"{verb}[:SCALar]:POWer[:AC]:PFACtor?", lambda _a: "1.000" if self._current() else "0.000")

    def _set_output(self, args: list[str]) -> None:
        on = parse_bool(args)
        if on or not self.output_stuck_on:
            self.model.set_source_output(on, by=self.role)

    def _reset(self, _args: list[str]) -> None:
        self.model.set_source_output(False, by=f"{self.role} *RST")
        self.model.set_source_voltage(0.0, by=f"{self.role} *RST")
        self.model.set_source_frequency(50.0, by=f"{self.role} *RST")

    def _set_voltage(self, args: list[str]) -> None:
        self.model.set_source_voltage(parse_number(args, *VOLTAGE_RANGE_V, unit="V"), by=self.role)

    def _set_frequency(self, args: list[str]) -> None:
        self.model.set_source_frequency(parse_number(args, *FREQUENCY_RANGE_HZ, unit="HZ"), by=self.role)

    def _set_current_limit(self, args: list[str]) -> None:
        self.model.source.current_limit_a = parse_number(args, *CURRENT_LIMIT_RANGE_A, unit="A")

    def _voltage(self) -> float:
        true_v = self.model.supply_voltage_v()
        if true_v <= 0:
            return abs(self.model.rng.gauss(0.0, self.voltage_noise_v))
        return true_v * (1 + self.voltage_gain_error) + self.model.rng.gauss(0.0, self.voltage_noise_v)

    def _frequency(self) -> float:
        return self.model.source.frequency_setpoint_hz if self.model.source.output_on else 0.0

    def _current(self) -> float:
        voltage = self.model.supply_voltage_v()
        return self.model.supply_power_w() / voltage if voltage > 0 else 0.0
