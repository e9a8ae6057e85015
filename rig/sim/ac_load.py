"""Simulated Chroma 63800 AC electronic load on one position's own load path, behind that meter's relay.

The load sees the supply voltage only while the meter's relay is closed; it draws a sine current at PF 1 in
CURR (A), POW (W) or RES (ohm) mode through the model, so the truth file records every change. It keeps a
level per mode, as the instrument does, and hands the model the level of its present mode. Its readings are
of its own path (not the phantom-load loop) with a small noise. Protections switch the input off (truth event
"load" by "<role> OCP|OPP|OVP") when the rating is exceeded, checked at each command line it handles.
"""

from __future__ import annotations

from rig.sim.model import PhysicalModel
from rig.sim.scpi import (
    ILLEGAL_PARAMETER,
    MISSING_PARAMETER,
    ScpiError,
    ScpiInstrumentSim,
    parse_bool,
    parse_number,
)

CURRENT_RATING_A = 36.0  # a 63803
POWER_RATING_W = 3600.0
VOLTAGE_RATING_V = 350.0
RESISTANCE_RANGE_OHM = (1.0, 10000.0)  # (unverified) overridable with settings resistance_range_ohm: [min, max]
MODE_UNITS = {"CURR": "A", "POW": "W", "RES": "OHM"}  # the suffix unit of each mode's level
# the 63800 manual's [LOAD:]MODE parameters: 0|CURR, 1|POW, 2|VOLT, 3|RES, 4|RLC, ...; the twin simulates three
MODE_NAMES = {"CURR": "CURR", "CURRENT": "CURR", "POW": "POW", "POWER": "POW", "RES": "RES", "RESISTANCE": "RES",
              "0": "CURR", "1": "POW", "3": "RES"}


class ChromaLoadSim(ScpiInstrumentSim):
    """Answers like a Chroma 63803 for role 'load@<position>'."""

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        position = model.position_of(role, "load", "an AC load on a position's own load path")
        super().__init__(role, model, settings.get("idn", f"Chroma ATE,63803,SIM63803-{position:04d},1.20"))
        self.position = position
        self.current_noise_a = float(settings.get("current_noise_a", 0.002))
        self.voltage_noise_v = float(settings.get("voltage_noise_v", 0.02))
        self.latency_s = float(settings.get("latency_s", 0.001))
        low, high = settings.get("resistance_range_ohm", RESISTANCE_RANGE_OHM)
        self.resistance_range_ohm = (float(low), float(high))
        self.ranges = {"CURR": (0.0, CURRENT_RATING_A), "POW": (0.0, POWER_RATING_W), "RES": self.resistance_range_ohm}
        load = self.meter.load
        self.levels = self._default_levels()
        self.levels[load.mode] = load.setpoint
        add = self.scpi.add
        add("[LOAD:]MODE", self._set_mode)
        add("[LOAD:]MODE?", lambda _a: self.meter.load.mode)
        add("LOAD[:STATe]", lambda a: self.model.set_load(self.position, by=self.role, on=parse_bool(a)))
        add("LOAD[:STATe]?", lambda _a: "ON" if self.meter.load.on else "OFF")
        for mode, header in (("CURR", "CURRent"), ("POW", "POWer"), ("RES", "RESistance")):
            self.scpi.add(f"{header}[:STATic][:L1]", lambda a, m=mode: self._set_level(m, a))
            self.scpi.add(f"{header}[:STATic][:L1]?", lambda _a, m=mode: f"{self.levels[m]:.4f}")
        for verb in ("MEASure", "FETCh"):
            add(f"{verb}:CURRent[:AC]?", lambda _a: f"{self._noisy(self._current(), self.current_noise_a):.5f}")
            add(f"{verb}:VOLTage[:AC]?", lambda _a: f"{self._noisy(self._voltage(), self.voltage_noise_v):.3f}")
            add(f"{verb}:POWer[:AC]?", lambda _a: f"{self._power():.3f}")

    @property
    def meter(self):
        return self.model.meter(self.position)

    def _default_levels(self) -> dict[str, float]:
        return {"CURR": 0.0, "POW": 0.0, "RES": self.resistance_range_ohm[1]}

    def _reset(self, _args: list[str]) -> None:
        self.levels = self._default_levels()
        self.model.set_load(self.position, by=f"{self.role} *RST", on=False, mode="CURR", setpoint=0.0)

    def _set_mode(self, args: list[str]) -> None:
        if not args:
            raise ScpiError(MISSING_PARAMETER)
        mode = MODE_NAMES.get(args[0].upper())
        if mode is None:
            raise ScpiError(ILLEGAL_PARAMETER, f"{args[0]} (the twin simulates CURR, POW, RES)")
        self.model.set_load(self.position, by=self.role, mode=mode, setpoint=self.levels[mode])

    def _set_level(self, mode: str, args: list[str]) -> None:
        self.levels[mode] = parse_number(args, *self.ranges[mode], unit=MODE_UNITS[mode])
        if self.meter.load.mode == mode:
            self.model.set_load(self.position, by=self.role, setpoint=self.levels[mode])

    def _voltage(self) -> float:
        """Voltage at the load's terminals: the supply's while the meter's relay is closed (the model as handle()
        advanced it for this message)."""
        return self.model.supply_voltage_v() if self.meter.relay_closed else 0.0

    def _current(self) -> float:
        return self.meter.load.current_a(self._voltage())

    def _power(self) -> float:
        voltage = self._voltage()
        return abs(voltage * (self.meter.load.current_a(voltage) + self.model.rng.gauss(0.0, self.current_noise_a)))

    def _noisy(self, true_value: float, noise: float) -> float:
        return abs(true_value + self.model.rng.gauss(0.0, noise))

    def _protect(self) -> None:
        if not self.meter.load.on:
            return
        voltage = self._voltage()
        current = self.meter.load.current_a(voltage)
        for name, tripped in (("OVP", voltage > VOLTAGE_RATING_V), ("OCP", current > CURRENT_RATING_A),
                              ("OPP", voltage * current > POWER_RATING_W)):
            if tripped:
                self.model.set_load(self.position, by=f"{self.role} {name}", on=False)
                return

    def handle(self, message: str) -> str | None:
        self.model.state_now()
        self._protect()
        reply = self.scpi.execute(message)
        self._protect()
        return reply
