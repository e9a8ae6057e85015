"""Simulated energy meter with a Modbus data port (Eastron SDM630-like), read live from the model."""

from __future__ import annotations

from rig.sim.modbus import ModbusSim
from rig.sim.model import PhysicalModel


class ModbusMeterSim(ModbusSim):
    """Eastron SDM630-like meter at one position (role 'meter@<position>'), read live from the model.

    Settings: `modbus_serial` (default 10000000 + position), plus those of ModbusSim.
    """

    DEFAULT_MAP = "sdm630"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        super().__init__(role, model, settings)
        position = model.position_of(role, "meter", f"the {self.map.name} twin of a meter's data port")
        self.meter = model.meter(position)
        if "serial_number" in self.map.registers:
            self.fixed["serial_number"] = int(settings.get("modbus_serial", 10_000_000 + position))
        live = {"voltage_v": model.supply_voltage_v, "current_a": lambda: model.position_current_a(position),
                "power_w": lambda: model.position_power_w(position), "power_factor": self._power_factor,
                "frequency_hz": self._frequency, "energy_import_kwh": self._energy_kwh}
        self.live = {name: value_of for name, value_of in live.items() if name in self.map.registers}

    def _power_factor(self) -> float:
        position = self.meter.position
        apparent = self.model.supply_voltage_v() * self.model.position_current_a(position)
        return self.model.position_power_w(position) / apparent if apparent > 0 else 1.0

    def _frequency(self) -> float:
        source = self.model.source
        return source.frequency_setpoint_hz if source.output_on else 0.0

    def _energy_kwh(self) -> float:
        return self.meter.register_energy_wh / 1000.0
