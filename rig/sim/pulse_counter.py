"""Simulated ADAM-6051-like counter module: channel n counts the test-output pulses of one position's meter."""

from __future__ import annotations

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData

from rig.errors import ConfigError
from rig.sim.modbus import ModbusSim
from rig.sim.model import PhysicalModel, SimMeter


class PulseCounterSim(ModbusSim):
    """Counters read live at the instant of each request, modulo 2**bits; a reset coil clears one channel.

    Settings: `channels` (default from the map), `channel_of_position` {position: channel} (default: position
    p on channel p - 1, as far as there are channels), `preset_counts` {channel: count} (the counts at start),
    `firmware`, plus those of ModbusSim. Channels without a position read 0.
    """

    DEFAULT_MAP = "adam6051"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        super().__init__(role, model, settings)
        block = self.map.counters
        if block is None:
            raise ConfigError(f"{role}: register map {self.map.name!r} has no 'counters' block")
        self.block = block
        self.channels = int(settings.get("channels", block.channels))
        self.modulus = 1 << (16 * block.stride)
        if self.channels < 1 or block.base + self.channels * block.stride > 0x10000:
            raise ConfigError(f"{role}: channels {self.channels} does not fit the register map {self.map.name!r}")
        positions = [meter.position for meter in model.meters]
        mapping = settings.get("channel_of_position")
        if mapping is None:
            mapping = {position: position - 1 for position in positions if position - 1 < self.channels}
        self.meter_of_channel: dict[int, SimMeter] = {}
        self.position_of_channel: dict[int, int] = {}
        for position, channel in ((int(p), int(c)) for p, c in mapping.items()):
            if position not in positions:
                raise ConfigError(f"{role}: channel_of_position names position {position}, which the bench has not")
            if not 0 <= channel < self.channels:
                raise ConfigError(f"{role}: channel {channel} of position {position} is outside 0..{self.channels - 1}")
            if channel in self.meter_of_channel:
                raise ConfigError(f"{role}: channel {channel} is given to positions {self.position_of_channel[channel]}"
                                  f" and {position}")
            self.meter_of_channel[channel] = model.meter(position)
            self.position_of_channel[channel] = position
        self.offsets = [self._pulses(channel) for channel in range(self.channels)]
        for channel, count in settings.get("preset_counts", {}).items():
            channel = int(channel)
            if not 0 <= channel < self.channels:
                raise ConfigError(f"{role}: preset_counts names channel {channel}, outside 0..{self.channels - 1}")
            self.offsets[channel] = self._pulses(channel) - int(count)
        if "firmware" in settings and "firmware_version" in self.map.registers:
            self.fixed["firmware_version"] = str(settings["firmware"])

    def _pulses(self, channel: int) -> int:
        meter = self.meter_of_channel.get(channel)
        return meter.pulses() if meter is not None else 0

    def count(self, channel: int) -> int:
        """The channel's count now (advance the model first)."""
        return (self._pulses(channel) - self.offsets[channel]) % self.modulus

    def register_spans(self) -> dict[str, tuple[int, int]]:
        spans = super().register_spans()
        first, end = self.block.base, self.block.base + self.channels * self.block.stride
        if self.block.table in spans:
            other_first, other_end = spans[self.block.table]
            first, end = min(first, other_first), max(end, other_end)
        spans[self.block.table] = (first, end)
        return spans

    def coil_blocks(self) -> list[SimData]:
        return [SimData(self.block.reset_coils.base, values=[False] * self.channels, datatype=DataType.BITS)]

    def refresh(self, table: str, start_address: int, address: int, count: int, registers: list[int]) -> None:
        super().refresh(table, start_address, address, count, registers)
        block = self.block
        if table != block.table:
            return
        stride = block.stride
        first = max(0, (address - block.base) // stride)
        last = min(self.channels, (address + count - block.base + stride - 1) // stride)
        little = block.word_order == "little"
        for channel in range(first, last):
            value = self.count(channel)
            offset = block.base + channel * stride - start_address
            if stride == 1:
                registers[offset] = value & 0xFFFF
            elif little:
                registers[offset], registers[offset + 1] = value & 0xFFFF, value >> 16
            else:
                registers[offset], registers[offset + 1] = value >> 16, value & 0xFFFF

    def on_coils(self, address: int, values: list[bool]) -> ExcCodes | None:
        self.model.now()
        for index, bit in enumerate(values):
            channel = address + index - self.block.reset_coils.base
            if bit and 0 <= channel < self.channels:
                self.offsets[channel] = self._pulses(channel)
                self.model.truth.event("counter.reset", channel=channel,
                                       position=self.position_of_channel.get(channel), by=self.role)
        return None
