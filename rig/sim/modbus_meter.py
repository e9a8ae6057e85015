"""Simulated Eastron SDM630 meter data port, read live from the model (a single-phase connection on phase 1)."""

from __future__ import annotations

import math

from rig.sim.modbus import ModbusSim
from rig.sim.model import PhysicalModel

PHASE_1_TWINS = {  # single-phase connection: system figures are phase 1's
    "voltage_v": ("average_voltage_v",),
    "current_a": ("average_current_a", "sum_current_a"),
    "power_w": ("total_power_w",),
    "apparent_power_va": ("total_apparent_power_va",),
    "reactive_power_var": ("total_reactive_power_var",),
    "power_factor": ("total_power_factor",),
    "phase_angle_deg": ("total_phase_angle_deg",),
    "energy_import_kwh": ("energy_total_kwh", "l1_energy_import_kwh", "l1_energy_total_kwh"),
}


class ModbusMeterSim(ModbusSim):
    """Eastron SDM630 at one position (role 'meter@<position>'), read live from the model.

    Phase 1 carries the position's voltage, current, powers, power factor, phase angle and import energy; the
    system totals and averages equal phase 1's; phases 2 and 3, export and reactive energies, demands and THD
    read 0. Holding registers: serial number, node address (the device id), system type 1 (1p2w).
    Settings: `modbus_serial` (default 10000000 + position), plus those of ModbusSim.
    """

    DEFAULT_MAP = "sdm630"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        super().__init__(role, model, settings)
        position = model.position_of(role, "meter", f"the {self.map.name} twin of a meter's data port")
        self.position = position
        self.meter = model.meter(position)
        if "serial_number" in self.map.registers:
            self.fixed["serial_number"] = int(settings.get("modbus_serial", 10_000_000 + position))
        if "node_address" in self.map.registers:
            self.fixed["node_address"] = float(self.device_id)
        live = {"voltage_v": model.supply_voltage_v, "current_a": lambda: model.position_current_a(position),
                "power_w": lambda: model.position_power_w(position), "apparent_power_va": self._apparent_power,
                "reactive_power_var": self._reactive_power, "power_factor": self._power_factor,
                "phase_angle_deg": self._phase_angle, "frequency_hz": self._frequency,
                "energy_import_kwh": self._energy_kwh}
        for name, twins in PHASE_1_TWINS.items():
            live.update({twin: live[name] for twin in twins})
        self.live = {name: value_of for name, value_of in live.items() if name in self.map.registers}

    def _apparent_power(self) -> float:
        return self.model.supply_voltage_v() * self.model.position_current_a(self.position)

    def _reactive_power(self) -> float:
        apparent, active = self._apparent_power(), self.model.position_power_w(self.position)
        return math.sqrt(max(apparent * apparent - active * active, 0.0))

    def _power_factor(self) -> float:
        apparent = self._apparent_power()
        return self.model.position_power_w(self.position) / apparent if apparent > 0 else 1.0

    def _phase_angle(self) -> float:
        return math.degrees(math.acos(max(-1.0, min(1.0, self._power_factor()))))

    def _frequency(self) -> float:
        source = self.model.source
        return source.frequency_setpoint_hz if source.output_on else 0.0

    def _energy_kwh(self) -> float:
        return self.meter.register_energy_wh / 1000.0
