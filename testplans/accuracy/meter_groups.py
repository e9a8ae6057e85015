"""The accuracy plan's data and helpers: plan YAML, meter groups of the bench, energising the bench."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from rig.config import MeterPosition
from rig.errors import ConfigError
from rig.roles import AcSource, CurrentSource
from rig.standards import ClassSpec, LoadPoint, Standard, class_spec, load_standard
from rig.yamlfile import load_model


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MethodConfig(Strict):
    min_window_s: Annotated[float, Field(gt=0)] = 2.0
    min_pulses: Annotated[int, Field(ge=1)] = 2
    quantisation_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1
    settle_tolerance_pct: Annotated[float, Field(gt=0)] = 0.05
    settle_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    max_point_s: Annotated[float, Field(gt=0)] = 600.0


class StartingConfig(Strict):
    pulses: Annotated[int, Field(ge=1)] = 3
    time_allowance: Annotated[float, Field(ge=1)] = 1.5


class CreepConfig(Strict):
    voltage_factor: Annotated[float, Field(ge=1)] = 1.1
    duration_factor: Annotated[float, Field(ge=1)] = 1.0
    max_pulses: Annotated[int, Field(ge=0)] = 1


class RegisterConfig(Strict):
    load_point: str = "Imax"
    duration_s: Annotated[float, Field(gt=0)] = 3.0
    rest_s: Annotated[float, Field(ge=0)] = 0.5


class AccuracyPlan(Strict):
    standards: dict[str, str]
    method: MethodConfig = MethodConfig()
    starting_current: StartingConfig = StartingConfig()
    creep: CreepConfig = CreepConfig()
    dosage: RegisterConfig = Field(RegisterConfig(), alias="register")


@dataclass(frozen=True)
class MeterGroup:
    """Positions of one rating, measured together on one energisation."""

    positions: tuple[MeterPosition, ...]
    standard: Standard
    standard_file: Path

    @property
    def rating(self) -> MeterPosition:
        return self.positions[0]

    @property
    def spec(self) -> ClassSpec:
        return class_spec(self.standard, self.rating, str(self.standard_file))

    @property
    def label(self) -> str:
        m = self.rating
        return f"class{m.accuracy_class}-{m.base_current_a:g}-{m.imax_a:g}A-{m.un_v:g}V"

    @property
    def numbers(self) -> list[int]:
        return [m.position for m in self.positions]

    def __repr__(self) -> str:
        return f"{self.label} positions {self.numbers}"


def load_plan(path: Path) -> AccuracyPlan:
    return load_model(path, AccuracyPlan, "accuracy plan")


def meter_groups(plan_path: Path, positions: list[MeterPosition]) -> list[MeterGroup]:
    """Positions grouped by rating, each with the limits file of its class."""
    plan = load_plan(plan_path)
    groups: dict[tuple, list[MeterPosition]] = {}
    for meter in positions:
        key = (meter.accuracy_class, meter.base_current_a, meter.imax_a, meter.un_v, meter.fn_hz)
        groups.setdefault(key, []).append(meter)
    result = []
    for members in groups.values():
        name = plan.standards.get(members[0].accuracy_class)
        if name is None:
            raise ConfigError(f"{plan_path}: standards: no limits file for class {members[0].accuracy_class}")
        standard_file = plan_path.parent / name
        result.append(MeterGroup(tuple(members), load_standard(standard_file), standard_file))
    return result


class Energiser:
    """Brings voltage and current to a point; every setpoint is checked before anything is switched on."""

    def __init__(self, source: AcSource, current: CurrentSource):
        self.source = source
        self.current = current

    def apply(self, voltage_v: float, frequency_hz: float, point: LoadPoint | None) -> None:
        self.source.check_setpoint("voltage", voltage_v, "V")
        self.source.check_setpoint("frequency", frequency_hz, "Hz")
        if point is not None:
            self.current.check_setpoint("current", point.current_a, "A")
            self.current.check_setpoint("phase", point.phase_deg, "deg")
        self.source.set_voltage(voltage_v)
        self.source.set_frequency(frequency_hz)
        if not self.source.output_enabled():
            self.source.set_output(True)
        if point is None:
            self.current.set_output(False)
            return
        self.current.set_current(point.current_a)
        self.current.set_phase(point.phase_deg)
        if not self.current.output_enabled():
            self.current.set_output(True)

    def current_off(self) -> None:
        self.current.set_output(False)

    def settle_s(self) -> float:
        return max(self.source.config.settle_s, self.current.config.settle_s)


def pulse_constants(group: MeterGroup) -> dict[int, float]:
    return {m.position: m.test_output_constant for m in group.positions}
