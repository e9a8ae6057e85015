"""The physical model shared by every simulated instrument.

One AC voltage source feeds every meter's voltage circuit in parallel; one phantom-load current source drives
the same current, at a programmable phase angle, through every meter's current circuit in series. Each meter
integrates active energy from the true V, I and phase, emits test-output pulses at its constant and keeps an
energy register; defect profiles bend what it registers. Each meter's terminal cover has a switch (opening it
is a tamper its twin logs). Time is the host's monotonic clock, and the state is advanced analytically (the
current settles exponentially after each change), so a read at any instant sees exactly the energy that flowed
until then.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rig.config import BenchConfig, position_of_role
from rig.errors import ConfigError
from rig.sim.defects import Defects, MeterDefects
from rig.sim.link import LinkSettings, RadioLink
from rig.sim.truth import TruthLog
from rig.yamlfile import validate

PF_ANGLE_TOLERANCE_DEG = 5.0
PF_ANGLES_DEG = {"1": 0.0, "0.5L": 60.0, "0.8C": -math.degrees(math.acos(0.8))}
GOOD_METER_START_FRACTION_OF_BASE = 0.0015  # a sound meter registers from 0.15 % of Ib/In
MAX_DEFERRED_S = 0.01  # how long the meters' energies may lag behind readings of voltage, current and power


def pf_label(phase_deg: float) -> str | None:
    """The named power factor a phase angle stands for (current lagging voltage is positive), if any."""
    for label, angle in PF_ANGLES_DEG.items():
        if abs(phase_deg - angle) <= PF_ANGLE_TOLERANCE_DEG:
            return label
    return None


@dataclass
class LoadState:
    """An AC electronic load on a position's own load path (through that meter's relay); sine current, PF 1."""

    on: bool = False
    mode: str = "CURR"  # CURR (A), POW (W) or RES (ohm)
    setpoint: float = 0.0

    def current_a(self, voltage_v: float) -> float:
        if not self.on or voltage_v <= 0 or self.setpoint <= 0:
            return 0.0
        if self.mode == "CURR":
            return self.setpoint
        if self.mode == "POW":
            return self.setpoint / voltage_v
        return voltage_v / self.setpoint


@dataclass
class SimMeter:
    """A meter at one position: voltage circuit on the source, current circuit in the series loop."""

    position: int
    serial: str
    un_v: float
    base_current_a: float
    self_consumption_w: float
    test_output_imp_per_kwh: float
    defects: MeterDefects = field(default_factory=MeterDefects)
    relay_closed: bool = True  # the physical contacts
    relay_commanded: bool = True  # what the meter's disconnect control last decided (closed: True)
    relay_opens_at: float | None = None  # a decided opening still under way (the relay_open_delay_s defect)
    cover_open: bool = False  # the terminal cover's switch
    load: LoadState = field(default_factory=LoadState)
    pulse_energy_wh: float = 0.0  # what the test output has counted, in Wh of pulses (pulses = Wh * K / 1000)
    register_energy_wh: float = 0.0
    true_energy_wh: float = 0.0

    def __post_init__(self) -> None:
        if self.defects.relay_stuck is not None:
            self.relay_closed = self.defects.relay_stuck == "closed"

    @property
    def start_threshold_a(self) -> float:
        if self.defects.starting_current_a is not None:
            return self.defects.starting_current_a
        return GOOD_METER_START_FRACTION_OF_BASE * self.base_current_a

    def pulses(self) -> int:
        return int(self.pulse_energy_wh * self.test_output_imp_per_kwh / 1000.0)

    def advance(self, energy_wh: float, in_phase_a: float, quadrature_a: float, voltage_v: float,
                duration_s: float) -> None:
        """Register `energy_wh` of true import energy that flowed in `duration_s` at this current (its components
        in phase with the voltage and in quadrature)."""
        current_a = math.hypot(in_phase_a, quadrature_a)
        start_threshold_a = self.start_threshold_a
        if voltage_v > 0 and current_a < start_threshold_a and self.defects.creep_pulses_per_hour:
            creep_wh = self.defects.creep_pulses_per_hour * duration_s / 3600 * 1000.0 / self.test_output_imp_per_kwh
            self.pulse_energy_wh += creep_wh
            self.register_energy_wh += creep_wh
        if energy_wh <= 0 or current_a < start_threshold_a:
            return
        self.true_energy_wh += energy_wh
        error_pct = 0.0
        if self.defects.error_pct:  # the phase angle is needed only to find an error band
            phase_deg = math.degrees(math.atan2(quadrature_a, in_phase_a)) if current_a else 0.0
            error_pct = self.defects.error_pct_at(current_a, pf_label(phase_deg))
        registered = energy_wh * (1 + error_pct / 100)
        self.pulse_energy_wh += registered
        self.register_energy_wh += registered * (1 + self.defects.register_error_pct / 100)


@dataclass
class SourceState:
    output_on: bool = False
    voltage_setpoint_v: float = 0.0
    frequency_setpoint_hz: float = 50.0
    current_limit_a: float = 10.0


@dataclass
class CurrentSourceState:
    """Phantom-load current amplifier: amplitude settles with time constant settle_tau_s."""

    output_on: bool = False
    current_setpoint_a: float = 0.0
    phase_deg: float = 0.0
    settle_tau_s: float = 0.05
    current_a: float = 0.0  # actual RMS current at the last advance


@dataclass
class PhysicalModel:
    """Voltage, current, energy and pulses of every position, and the truth of every change."""

    truth: TruthLog
    rng: random.Random
    meters: list[SimMeter] = field(default_factory=list)
    source: SourceState = field(default_factory=SourceState)
    current: CurrentSourceState = field(default_factory=CurrentSourceState)
    circuit_energy_wh: float = 0.0  # true active energy through the series current circuit since start
    defects: Defects = field(default_factory=Defects)
    clock: Callable[[], float] = time.monotonic
    radios: dict[int, RadioLink] = field(default_factory=dict)
    cover_watchers: dict[int, list[Callable[[bool, str], None]]] = field(default_factory=dict)
    last_t: float = field(default_factory=time.monotonic)
    _step_inputs: tuple[float, float, float] | None = field(default=None, repr=False)  # V, I in phase, I quadrature
    _deferred_s: float = field(default=0.0, repr=False)  # time at _step_inputs not yet in the meters' energies
    _meter_index: tuple[list[SimMeter], dict[int, SimMeter]] | None = field(default=None, repr=False)

    @classmethod
    def from_bench(cls, bench: BenchConfig, truth: TruthLog, defects: Defects | None = None) -> PhysicalModel:
        twin = bench.twin
        seed = twin.seed if twin else 1
        consumption = twin.meter_self_consumption_w if twin else 5.0
        defects = defects or Defects()
        meters = [SimMeter(m.position, m.serial, m.un_v, m.base_current_a, consumption, m.test_output_constant,
                           defects.for_position(m.position)) for m in bench.positions]
        model = cls(truth=truth, rng=random.Random(seed), meters=meters, defects=defects)
        if twin is not None:
            model.current.settle_tau_s = twin.current_settle_tau_s
        link_settings = validate(LinkSettings, twin.link if twin else {}, "twin.link")
        for meter in meters:
            model.radios[meter.position] = RadioLink(meter.position, link_settings, defects.link, truth,
                                                     random.Random(f"{seed}-link-{meter.position}"), model.clock)
        return model

    def radio(self, position: int) -> RadioLink:
        """The radio path between this position's meter and the head end."""
        return self.radios[position]

    # -- time ----------------------------------------------------------------------------------------------

    def now(self) -> float:
        """Advance the model to the present instant and return it."""
        t = self.state_now()
        self._integrate_meters()
        return t

    def state_now(self) -> float:
        """Advance the model to the present instant and return it, for a reading of voltage, current or power: the
        meters' energies may lag up to MAX_DEFERRED_S behind (now() brings them up to date)."""
        t = self.clock()
        self.advance_to(t)
        return t

    def advance_to(self, t: float) -> None:
        """Advance to t, opening each delayed relay at its own instant on the way."""
        while True:
            due = [m for m in self.meters if m.relay_opens_at is not None and m.relay_opens_at <= t]
            if not due:
                break
            at = min(m.relay_opens_at for m in due)
            self._integrate_to(at)
            self._integrate_meters()
            for meter in due:
                if meter.relay_opens_at == at:
                    meter.relay_opens_at = None
                    meter.relay_closed = False
                    self.truth.event("relay", position=meter.position, closed=False, by="relay_open_delay_s",
                                     at_mono=at, defect="relay_open_delay_s",
                                     delay_s=meter.defects.relay_open_delay_s)
        self._integrate_to(t)

    def _integrate_to(self, t: float) -> None:
        dt = t - self.last_t
        if dt <= 0:
            return
        self.last_t = t
        state = self.current
        target = state.current_setpoint_a if state.output_on else 0.0
        start_current = state.current_a
        decay = math.exp(-dt / state.settle_tau_s) if state.settle_tau_s > 0 else 0.0
        # integral of I(t) = target + (start - target) * exp(-t / tau) over dt
        charge_as = target * dt + (start_current - target) * state.settle_tau_s * (1 - decay)
        state.current_a = target + (start_current - target) * decay
        voltage = self.supply_voltage_v()
        loop_closed = self.series_loop_closed()
        settled = start_current == target  # then exactly the target, which charge_as / dt may miss by a rounding
        series_a = (target if settled else charge_as / dt) if loop_closed and voltage > 0 else 0.0
        phase = math.radians(state.phase_deg)
        self.circuit_energy_wh += max(voltage * series_a * math.cos(phase) * dt / 3600.0, 0.0)
        inputs = (voltage, series_a * math.cos(phase), series_a * math.sin(phase))
        if inputs != self._step_inputs:
            self._integrate_meters()
            self._step_inputs = inputs
        self._deferred_s += dt
        if self._deferred_s >= MAX_DEFERRED_S:
            self._integrate_meters()

    def _integrate_meters(self) -> None:
        """Bring every meter's energy up to date over the time deferred at unchanged inputs (the same supply
        voltage and series current, and no change of a relay or load, each of which advances the model first)."""
        dt, self._deferred_s = self._deferred_s, 0.0
        if dt <= 0 or self._step_inputs is None:
            return
        voltage, series_in_phase, quadrature = self._step_inputs
        for meter in self.meters:
            in_phase = series_in_phase + (meter.load.current_a(voltage) if meter.relay_closed else 0.0)
            meter.advance(max(voltage * in_phase * dt / 3600.0, 0.0), in_phase, quadrature, voltage, dt)

    # -- quantities ---------------------------------------------------------------------------------------

    def supply_voltage_v(self) -> float:
        """True RMS voltage at the meters' voltage circuits."""
        return self.source.voltage_setpoint_v if self.source.output_on else 0.0

    def series_loop_closed(self) -> bool:
        """The phantom-load current loop runs through every meter's relay: one open relay breaks it."""
        return all(meter.relay_closed for meter in self.meters)

    def circuit_current_a(self) -> float:
        """Current in the series loop of the phantom load."""
        self.state_now()
        return self.current.current_a if self.series_loop_closed() and self.supply_voltage_v() > 0 else 0.0

    def position_current_a(self, position: int) -> float:
        """True RMS current through one meter: the series loop's plus its own load path's."""
        self.state_now()
        meter = self.meter(position)
        voltage = self.supply_voltage_v()
        load_a = meter.load.current_a(voltage) if meter.relay_closed else 0.0
        series_a = self.circuit_current_a()
        phase = math.radians(self.current.phase_deg)
        return math.hypot(series_a * math.cos(phase) + load_a, series_a * math.sin(phase))

    def active_power_w(self) -> float:
        """True active power of the series current circuit (what the reference measures)."""
        return self.supply_voltage_v() * self.circuit_current_a() * math.cos(math.radians(self.current.phase_deg))

    def position_power_w(self, position: int) -> float:
        """True active power through one meter (series loop and own load path)."""
        meter = self.meter(position)
        voltage = self.supply_voltage_v()
        load_a = meter.load.current_a(voltage) if meter.relay_closed else 0.0
        return voltage * (self.circuit_current_a() * math.cos(math.radians(self.current.phase_deg)) + load_a)

    def supply_power_w(self) -> float:
        """Active power the meters' voltage circuits draw from the voltage source (self-consumption)."""
        if self.supply_voltage_v() <= 0:
            return 0.0
        return sum(meter.self_consumption_w for meter in self.meters)

    def meter(self, position: int) -> SimMeter:
        index = self._meter_index
        if index is None or index[0] is not self.meters or len(index[1]) != len(self.meters):
            index = self._meter_index = (self.meters, {m.position: m for m in self.meters})
        meter = index[1].get(position)
        return meter if meter is not None else next(m for m in self.meters if m.position == position)

    def position_of(self, role: str, prefix: str, what: str) -> int:
        """N of a role '<prefix>@N' naming a position the bench has; ConfigError naming the role otherwise."""
        position = position_of_role(role)
        if position is None or not role.startswith(f"{prefix}@"):
            raise ConfigError(f"{role}: {what} serves a meter position (role '{prefix}@<n>')")
        if not any(meter.position == position for meter in self.meters):
            raise ConfigError(f"{role}: no meter at position {position}")
        return position

    # -- changes ------------------------------------------------------------------------------------------

    def set_source_output(self, on: bool, by: str) -> None:
        self.now()
        if on != self.source.output_on:
            self.source.output_on = on
            self.truth.event("source.output", on=on, voltage_v=self.source.voltage_setpoint_v, by=by)

    def set_source_voltage(self, voltage_v: float, by: str) -> None:
        self.now()
        self.source.voltage_setpoint_v = voltage_v
        self.truth.event("source.voltage_setpoint", voltage_v=voltage_v, output_on=self.source.output_on, by=by)

    def set_source_frequency(self, frequency_hz: float, by: str) -> None:
        self.now()
        self.source.frequency_setpoint_hz = frequency_hz
        self.truth.event("source.frequency_setpoint", frequency_hz=frequency_hz, by=by)

    def set_current_output(self, on: bool, by: str) -> None:
        self.now()
        if on != self.current.output_on:
            self.current.output_on = on
            self.truth.event("current.output", on=on, current_a=self.current.current_setpoint_a,
                             phase_deg=self.current.phase_deg, by=by)

    def set_current(self, current_a: float, phase_deg: float | None, by: str) -> None:
        self.now()
        self.current.current_setpoint_a = current_a
        if phase_deg is not None:
            self.current.phase_deg = phase_deg
        self.truth.event("current.setpoint", current_a=current_a, phase_deg=self.current.phase_deg,
                         output_on=self.current.output_on, by=by)

    def set_relay(self, position: int, closed: bool, by: str) -> None:
        """The meter decides to switch its load relay; the truth records the physical change and when it happened.
        A stuck relay stays as it is; with relay_open_delay_s the contacts open that long after the decision."""
        self.now()
        meter = self.meter(position)
        meter.relay_commanded = closed
        defects = meter.defects
        if defects.relay_stuck is not None:
            if meter.relay_closed != closed:
                self.truth.event("relay.stuck", position=position, commanded_closed=closed,
                                 closed=meter.relay_closed, defect="relay_stuck", by=by)
            return
        if not closed and meter.relay_closed and defects.relay_open_delay_s > 0:
            if meter.relay_opens_at is None:
                meter.relay_opens_at = self.clock() + defects.relay_open_delay_s
                self.truth.event("relay.opening", position=position, opens_at_mono=meter.relay_opens_at,
                                 delay_s=defects.relay_open_delay_s, defect="relay_open_delay_s", by=by)
                self._wake_at(defects.relay_open_delay_s)
            return
        meter.relay_opens_at = None  # a decision to close cancels an opening under way
        if meter.relay_closed != closed:
            meter.relay_closed = closed
            self.truth.event("relay", position=position, closed=closed, by=by)

    def _wake_at(self, delay_s: float) -> None:
        """Advance the model after delay_s on the running event loop (none in a unit test: the next read does)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(delay_s, self.now)

    def watch_cover(self, position: int, watcher: Callable[[bool, str], None]) -> None:
        """Call watcher(cover_open, by) whenever the cover of this position opens or closes."""
        self.cover_watchers.setdefault(position, []).append(watcher)

    def set_cover(self, position: int, cover_open: bool, by: str) -> None:
        """Open or close a meter's terminal cover (a tamper when opened); truth event 'cover'."""
        self.now()
        meter = self.meter(position)
        if meter.cover_open == cover_open:
            return
        meter.cover_open = cover_open
        self.truth.event("cover", position=position, open=cover_open, by=by)
        for watcher in self.cover_watchers.get(position, []):
            watcher(cover_open, by)

    def set_load(self, position: int, by: str, *, on: bool | None = None, mode: str | None = None,
                 setpoint: float | None = None) -> None:
        self.now()
        load = self.meter(position).load
        if on is not None:
            load.on = on
        if mode is not None:
            load.mode = mode
        if setpoint is not None:
            load.setpoint = setpoint
        self.truth.event("load", position=position, on=load.on, mode=load.mode, setpoint=load.setpoint, by=by)

    def snapshot(self) -> dict:
        self.now()
        return {"source": vars(self.source).copy(), "current": vars(self.current).copy(),
                "supply_voltage_v": self.supply_voltage_v(), "supply_power_w": self.supply_power_w(),
                "circuit_energy_wh": self.circuit_energy_wh,
                "meters": {m.position: {"pulses": m.pulses(), "register_energy_wh": m.register_energy_wh,
                                        "true_energy_wh": m.true_energy_wh, "relay_closed": m.relay_closed,
                                        "relay_commanded": m.relay_commanded, "cover_open": m.cover_open,
                                        "load": vars(m.load).copy()} for m in self.meters}}
