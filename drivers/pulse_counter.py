"""Advantech ADAM-6051 counter module over Modbus TCP: one channel per meter position."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from drivers.modbus import ModbusSettings, ModbusTcpDriver
from rig.errors import ConfigError, InstrumentError
from rig.roles import PulseCounter


class CounterSettings(ModbusSettings):
    """Settings of a counter module: how many channels it has, and which channel counts which position."""

    channels: Annotated[int, Field(ge=1)] | None = None  # channels wired; default: all the module has
    channel_of_position: dict[int, int] = {}
    positions: list[int] | None = None


class Adam6051Counter(ModbusTcpDriver, PulseCounter):
    """Reads every mapped channel in one request; counts are extended past the counters' 2**32 wrap.

    As the manual's map has it: counters in holding registers (function code 3, low word first), channel n
    cleared by writing 1 to its clear-counter coil (00034 + 4n), started by its start/stop coil (00033 + 4n):
    open() starts every mapped channel that is stopped.
    Settings: `channels` (channels wired; default and at most the module's), `channel_of_position` {position:
    channel} (default p -> p - 1), `positions` (the positions to report; default the keys of
    channel_of_position, else 1..channels), plus those of ModbusTcpDriver. A count that goes back without
    wrapping (module restarted, or cleared by someone else) is an InstrumentError.
    """

    DEFAULT_MAP = "adam6051"
    KIND = "counter"
    SETTINGS_MODEL = CounterSettings

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = self.settings
        block = self.map.counters
        if block is None:
            raise ConfigError(f"roles.{self.role}.settings.register_map: map {self.map.name!r} has no 'counters'")
        self.block = block
        self.channels = settings.channels if settings.channels is not None else block.channels
        if self.channels > block.channels:
            raise ConfigError(f"roles.{self.role}.settings.channels: {self.channels} is more than the "
                              f"{block.channels} channels of the {self.map.name} module")
        mapping = settings.channel_of_position
        positions = settings.positions or sorted(mapping) or range(1, self.channels + 1)
        self.channel_of_position = {p: mapping.get(p, p - 1) for p in positions}
        used: dict[int, int] = {}
        for position, channel in self.channel_of_position.items():
            if not 0 <= channel < self.channels:
                raise ConfigError(f"roles.{self.role}.settings: channel {channel} of position {position} is outside "
                                  f"0..{self.channels - 1}")
            if channel in used:
                raise ConfigError(f"roles.{self.role}.settings: channel {channel} is given to positions "
                                  f"{used[channel]} and {position}")
            used[channel] = position
        first, last = min(used), max(used)
        stride = block.stride
        if (last - first + 1) * stride > self.map.max_read_registers:
            raise ConfigError(f"roles.{self.role}.settings: channels {first}..{last} span more than one read "
                              f"request covers ({self.map.max_read_registers // stride} channels)")
        self._read_address = block.base + first * stride
        self._read_count = (last - first + 1) * stride
        # (position, index of the low word, index of the high word) in the response
        self._slots = []
        for position, channel in sorted(self.channel_of_position.items()):
            index = (channel - first) * stride
            if stride == 1:
                low, high = index, None
            else:
                low, high = (index, index + 1) if block.word_order == "little" else (index + 1, index)
            self._slots.append((position, low, high))
        self.modulus = 1 << (16 * stride)
        self._last_raw: dict[int, int] = {}
        self._wraps: dict[int, int] = {}

    @property
    def positions(self) -> list[int]:
        return sorted(self.channel_of_position)

    def read_counts(self) -> dict[int, int]:
        """Every mapped position's count, from one read request (one instant for all channels)."""
        registers = self.read_registers(self.block.table, self._read_address, self._read_count)
        counts = {}
        last_raw, wraps, half = self._last_raw, self._wraps, self.modulus >> 1
        for position, low, high in self._slots:
            raw = registers[low] if high is None else registers[low] | registers[high] << 16
            previous = last_raw.get(position)
            if previous is not None and raw < previous:
                if previous - raw < half:
                    raise InstrumentError(
                        f"{self._where()}: count of position {position} (channel "
                        f"{self.channel_of_position[position]}) went back from {previous} to {raw}: module "
                        f"restarted or counter cleared outside this driver")
                wraps[position] = wraps.get(position, 0) + self.modulus
            last_raw[position] = raw
            counts[position] = raw + wraps.get(position, 0)
        return counts

    def open(self) -> None:
        super().open()
        self.start_counting()

    def start_counting(self) -> None:
        """Write 1 to the start/stop coil of every mapped channel that is stopped (one read, then one write each)."""
        coils = self.block.control_coils
        channels = sorted(self.channel_of_position.values())
        first = coils.address(channels[0], coils.start_stop)
        states = self.read_coils(first, coils.address(channels[-1], coils.start_stop) - first + 1)
        for channel in channels:
            address = coils.address(channel, coils.start_stop)
            if not states[address - first]:
                self.write_coil(address, True)

    def reset(self, positions: list[int] | None = None) -> None:
        """Clear the counters of these positions (default: all): 1 to each channel's clear-counter coil."""
        positions = self.positions if positions is None else list(positions)
        unknown = [p for p in positions if p not in self.channel_of_position]
        if unknown:
            raise ConfigError(f"{self.role}: no channel for position(s) {unknown} (positions: {self.positions})")
        coils = self.block.control_coils
        for channel in sorted({self.channel_of_position[p] for p in positions}):
            self.write_coil(coils.address(channel, coils.clear_counter), True)
        for position in positions:
            self._last_raw.pop(position, None)
            self._wraps.pop(position, None)
