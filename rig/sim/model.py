"""The physical model shared by every simulated instrument."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rig.config import BenchConfig
from rig.sim.truth import TruthLog


@dataclass
class SimMeter:
    """A meter at one position; its voltage circuit hangs on the source."""

    position: int
    serial: str
    un_v: float
    self_consumption_w: float


@dataclass
class SourceState:
    output_on: bool = False
    voltage_setpoint_v: float = 0.0
    frequency_setpoint_hz: float = 50.0
    current_limit_a: float = 10.0


@dataclass
class PhysicalModel:
    """Voltage at the meters, the power their circuits draw, and the truth of every change."""

    truth: TruthLog
    rng: random.Random
    meters: list[SimMeter] = field(default_factory=list)
    source: SourceState = field(default_factory=SourceState)

    @classmethod
    def from_bench(cls, bench: BenchConfig, truth: TruthLog) -> PhysicalModel:
        twin = bench.twin
        seed = twin.seed if twin else 1
        consumption = twin.meter_self_consumption_w if twin else 5.0
        meters = [SimMeter(m.position, m.serial, m.un_v, consumption) for m in bench.positions]
        return cls(truth=truth, rng=random.Random(seed), meters=meters)

    def supply_voltage_v(self) -> float:
        """True RMS voltage at the meters' voltage circuits."""
        return self.source.voltage_setpoint_v if self.source.output_on else 0.0

    def supply_power_w(self) -> float:
        """Active power the meters' voltage circuits draw from the source (self-consumption)."""
        if self.supply_voltage_v() <= 0:
            return 0.0
        return sum(meter.self_consumption_w for meter in self.meters)

    def set_source_output(self, on: bool, by: str) -> None:
        if on != self.source.output_on:
            self.source.output_on = on
            self.truth.event("source.output", on=on, voltage_v=self.source.voltage_setpoint_v, by=by)

    def set_source_voltage(self, voltage_v: float, by: str) -> None:
        self.source.voltage_setpoint_v = voltage_v
        self.truth.event("source.voltage_setpoint", voltage_v=voltage_v, output_on=self.source.output_on, by=by)

    def set_source_frequency(self, frequency_hz: float, by: str) -> None:
        self.source.frequency_setpoint_hz = frequency_hz
        self.truth.event("source.frequency_setpoint", frequency_hz=frequency_hz, by=by)

    def snapshot(self) -> dict:
        return {"source": vars(self.source).copy(), "supply_voltage_v": self.supply_voltage_v(),
                "supply_power_w": self.supply_power_w()}
