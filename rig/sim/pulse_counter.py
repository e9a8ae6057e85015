"""Simulated ADAM-6051 counter module: channel n counts the test-output pulses of one position's meter."""

from __future__ import annotations

from dataclasses import dataclass

from pymodbus.constants import ExcCodes

from rig.errors import ConfigError
from rig.sim.modbus import ModbusSim
from rig.sim.model import PhysicalModel, SimMeter


@dataclass
class Channel:
    """One counter input: its count is `pulses - zero` while counting, `held` while stopped."""

    meter: SimMeter | None
    position: int | None
    zero: int = 0
    held: int = 0
    counting: bool = True
    overflows_seen: int = 0  # wraps acknowledged by 'clear overflow'

    def pulses(self) -> int:
        return self.meter.pulses() if self.meter is not None else 0

    def total(self) -> int:
        """Pulses counted since the last clear (not yet wrapped)."""
        return self.pulses() - self.zero if self.counting else self.held

    def start(self, counting: bool) -> None:
        if counting and not self.counting:
            self.zero = self.pulses() - self.held
        elif not counting and self.counting:
            self.held = self.pulses() - self.zero
        self.counting = counting

    def clear(self) -> None:
        self.zero, self.held, self.overflows_seen = self.pulses(), 0, 0

    def preset(self, count: int) -> None:
        self.zero, self.held = self.pulses() - count, count


class PulseCounterSim(ModbusSim):
    """The map's counter block read live at the instant of each request, each channel modulo 2**32.

    Coils as the ADAM-6051 manual lays them out: input states (read only), and per channel start/stop (1 counts,
    0 holds the count), clear counter (write 1), clear overflow (reads the overflow flag; write 1 clears it) and
    latch status (reads 0: the inputs count, they do not latch; write 1 clears). Coils between the documented ones
    read 0 and refuse writes.

    Settings: `channels` (default: the module's), `channel_of_position` {position: channel} (default: position
    p on channel p - 1, as far as there are channels), `preset_counts` {channel: count} (the counts at start),
    plus those of ModbusSim. Channels without a position count nothing.
    """

    DEFAULT_MAP = "adam6051"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        super().__init__(role, model, settings)
        block = self.map.counters
        if block is None:
            raise ConfigError(f"{role}: register map {self.map.name!r} has no 'counters' block")
        self.block, self.coils = block, block.control_coils
        self.modulus = 1 << (16 * block.stride)
        wired = int(settings.get("channels", block.channels))
        if not 1 <= wired <= block.channels:
            raise ConfigError(f"{role}: channels {wired} is outside 1..{block.channels}, the channels of the "
                              f"{self.map.name} module")
        self.channels = self._wire(settings.get("channel_of_position"), wired)
        for channel in self.channels:
            channel.clear()
        for number, count in settings.get("preset_counts", {}).items():
            number = int(number)
            if not 0 <= number < wired:
                raise ConfigError(f"{role}: preset_counts names channel {number}, outside 0..{wired - 1}")
            self.channels[number].preset(int(count))

    def _wire(self, mapping: dict | None, wired: int) -> list[Channel]:
        """The module's channels, each with the meter whose test output it counts (channel_of_position)."""
        model, role = self.model, self.role
        positions = [meter.position for meter in model.meters]
        if mapping is None:
            mapping = {position: position - 1 for position in positions if position - 1 < wired}
        channels = [Channel(None, None) for _ in range(self.block.channels)]
        for position, channel in ((int(p), int(c)) for p, c in mapping.items()):
            if position not in positions:
                raise ConfigError(f"{role}: channel_of_position names position {position}, which the bench has not")
            if not 0 <= channel < wired:
                raise ConfigError(f"{role}: channel {channel} of position {position} is outside 0..{wired - 1}")
            if channels[channel].position is not None:
                raise ConfigError(f"{role}: channel {channel} is given to positions {channels[channel].position} "
                                  f"and {position}")
            channels[channel] = Channel(model.meter(position), position)
        return channels

    def count(self, channel: int) -> int:
        """The channel's register value now (advance the model first)."""
        return self.channels[channel].total() % self.modulus

    def overflowed(self, channel: int) -> bool:
        state = self.channels[channel]
        return state.total() // self.modulus > state.overflows_seen

    # -- registers --------------------------------------------------------------------------------------

    def counter_span(self) -> tuple[int, int]:
        block = self.block
        return block.base, block.base + block.channels * block.stride

    def served_address(self, table: str, address: int) -> bool:
        first, end = self.counter_span()
        return (table == self.block.table and first <= address < end) or super().served_address(table, address)

    def read_registers(self, table: str, address: int, count: int) -> list[int] | ExcCodes:
        registers = super().read_registers(table, address, count)
        if isinstance(registers, ExcCodes) or table != self.block.table:
            return registers
        first, end = self.counter_span()
        for channel in range(self.block.channels):
            words = self._counter_words(self.count(channel))
            for index, word in enumerate(words):
                register = first + channel * self.block.stride + index
                if address <= register < address + count and register < end:
                    registers[register - address] = word
        return registers

    def _counter_words(self, value: int) -> list[int]:
        if self.block.stride == 1:
            return [value & 0xFFFF]
        low, high = value & 0xFFFF, value >> 16
        return [low, high] if self.block.word_order == "little" else [high, low]

    # -- coils ------------------------------------------------------------------------------------------

    def coil_of(self, address: int) -> tuple[int, int] | None:
        """(channel, offset) of a control coil, or None."""
        coils = self.coils
        channel, offset = divmod(address - coils.base, coils.stride)
        return (channel, offset) if address >= coils.base and channel < self.block.channels else None

    def coil_end(self) -> int:
        return self.coils.address(self.block.channels, 0)

    def read_bits(self, table: str, address: int, count: int) -> list[bool] | ExcCodes:
        if table != "coil" or address + count > self.coil_end():
            return ExcCodes.ILLEGAL_ADDRESS
        self.model.now()
        return [self.coil_value(a) for a in range(address, address + count)]

    def coil_value(self, address: int) -> bool:
        located = self.coil_of(address)
        if located is None:
            return False  # input states: the twin's test outputs are idle between pulses
        channel, offset = located
        if offset == self.coils.start_stop:
            return self.channels[channel].counting
        if offset == self.coils.clear_overflow:
            return self.overflowed(channel)
        return False

    def write_coils(self, address: int, values: list[bool]) -> ExcCodes | None:
        located = [self.coil_of(a) for a in range(address, address + len(values))]
        if any(place is None for place in located) or address + len(values) > self.coil_end():
            return ExcCodes.ILLEGAL_ADDRESS
        self.model.now()
        for (channel, offset), value in zip(located, values, strict=True):
            self.on_coil(channel, offset, value)
        return None

    def on_coil(self, channel: int, offset: int, value: bool) -> None:
        state = self.channels[channel]
        if offset == self.coils.start_stop:
            state.start(value)
            self.model.truth.event("counter.start" if value else "counter.stop", channel=channel,
                                   position=state.position, by=self.role)
        elif offset == self.coils.clear_counter and value:
            state.clear()
            self.model.truth.event("counter.reset", channel=channel, position=state.position, by=self.role)
        elif offset == self.coils.clear_overflow and value:
            state.overflows_seen = state.total() // self.modulus
