"""Energy meter with a Modbus data port (the Eastron SDM630 register map)."""

from __future__ import annotations

from drivers.modbus import ModbusSettings, ModbusTcpDriver
from rig.roles import MeterReadout


class ModbusMeterSettings(ModbusSettings):
    """Settings of a meter's Modbus port."""

    modbus_serial: int | None = None  # the serial number the twin's meter reports; a real meter has its own


class ModbusMeter(ModbusTcpDriver, MeterReadout):
    """A meter's own Modbus port (Eastron SDM630 map by default): energy register and instantaneous values."""

    DEFAULT_MAP = "sdm630"
    KIND = "meter"
    INSTANTANEOUS = ("voltage_v", "current_a", "power_w", "power_factor")
    SETTINGS_MODEL = ModbusMeterSettings

    def read_energy_import_kwh(self) -> float:
        return float(self.read_quantity("energy_import_kwh"))

    def read_instantaneous(self) -> dict[str, float]:
        """{'voltage_v', 'current_a', 'power_w', 'power_factor'}, in one request when the map allows."""
        values = self.read_quantities(list(self.INSTANTANEOUS))
        return {name: float(values[name]) for name in self.INSTANTANEOUS}
