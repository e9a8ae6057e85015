"""Energy meter with a Modbus data port (Eastron SDM630-like register map)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from drivers.modbus import ModbusTcpDriver
from rig.config import DriverSettings, RoleConfig, driver_settings
from rig.roles import MeterReadout


class ModbusMeterSettings(DriverSettings):
    """Settings of a meter's Modbus port: its register map and device id."""

    register_map: str = "sdm630"  # a packaged map's name or a path
    device_id: Annotated[int, Field(ge=0, le=255)] = 1
    modbus_serial: int | None = None  # the serial number the twin's meter reports; a real meter has its own


class ModbusMeter(ModbusTcpDriver, MeterReadout):
    """A meter's own Modbus port (Eastron SDM630-like map by default): energy register and instantaneous values."""

    DEFAULT_MAP = "sdm630"
    KIND = "meter"
    INSTANTANEOUS = ("voltage_v", "current_a", "power_w", "power_factor")

    def __init__(self, role: str, config: RoleConfig, *args, **kwargs):
        self.settings = driver_settings(ModbusMeterSettings, role, config.settings)
        super().__init__(role, config, *args, **kwargs)

    def read_energy_import_kwh(self) -> float:
        return float(self.read_quantity("energy_import_kwh"))

    def read_instantaneous(self) -> dict[str, float]:
        """{'voltage_v', 'current_a', 'power_w', 'power_factor'}, in one request when the map allows."""
        values = self.read_quantities(list(self.INSTANTANEOUS))
        return {name: float(values[name]) for name in self.INSTANTANEOUS}
