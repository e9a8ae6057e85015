"""Accuracy standards as data: load points, class limits per band, starting current, creep constants."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rig.config import MeterPosition
from rig.errors import ConfigError
from rig.yamlfile import load_model

PowerFactor = Literal["1", "0.5L", "0.8C"]
PF_PHASE_DEG = {"1": 0.0, "0.5L": 60.0, "0.8C": -36.86989764584402}  # current lagging voltage is positive


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LoadPointSpec(Strict):
    name: str
    of: Literal["base", "imax"]
    factor: Annotated[float, Field(gt=0)]


class Band(Strict):
    """Limit for from <= I / I_base < to (to: 'imax' includes Imax) at the listed power factors."""

    pf: list[PowerFactor]
    low: Annotated[float, Field(ge=0, alias="from")]
    high: float | Literal["imax"] = Field(alias="to")
    limit_pct: Annotated[float, Field(gt=0)]

    def contains(self, current_a: float, base_a: float, imax_a: float, pf: str) -> bool:
        if pf not in self.pf:
            return False
        ratio = current_a / base_a
        tolerance = 1e-9
        if ratio < self.low - tolerance:
            return False
        if self.high == "imax":
            return current_a <= imax_a * (1 + tolerance)
        return ratio < self.high - tolerance


class ClassSpec(Strict):
    limits: list[Band]
    starting_current_factor: Annotated[float, Field(gt=0)]
    creep_constant: Annotated[float, Field(gt=0)]
    meter_constant_limit_fraction: Annotated[float, Field(gt=0)] = 0.1


class Standard(Strict):
    standard: str
    base_current: Literal["Ib", "In"]
    load_points: list[LoadPointSpec]
    power_factors: list[PowerFactor]
    classes: dict[str, ClassSpec]


@dataclass(frozen=True)
class LoadPoint:
    """One test point for one meter rating: current, power factor and the class limit there."""

    name: str
    pf: str
    current_a: float
    limit_pct: float

    @property
    def phase_deg(self) -> float:
        return PF_PHASE_DEG[self.pf]

    @property
    def label(self) -> str:
        return f"{self.name.replace(' ', '')}-PF{self.pf}"

    def __repr__(self) -> str:
        return f"{self.name} ({self.current_a:g} A) PF {self.pf}, limit +-{self.limit_pct:g} %"


def load_standard(path: Path) -> Standard:
    return load_model(path, Standard, "limits file")


def class_spec(standard: Standard, meter: MeterPosition, where: str) -> ClassSpec:
    spec = standard.classes.get(meter.accuracy_class)
    if spec is None:
        raise ConfigError(f"{where}: no limits for class {meter.accuracy_class} "
                          f"(classes: {', '.join(standard.classes)})")
    return spec


def limit_for(spec: ClassSpec, current_a: float, base_a: float, imax_a: float, pf: str) -> float | None:
    """The class limit in % at this current and power factor, or None where the standard sets none."""
    for band in spec.limits:
        if band.contains(current_a, base_a, imax_a, pf):
            return band.limit_pct
    return None


def load_points(standard: Standard, meter: MeterPosition, where: str) -> list[LoadPoint]:
    """Every load point x power factor the standard sets a limit for, for this meter's rating."""
    spec = class_spec(standard, meter, where)
    points = []
    for pf in standard.power_factors:
        for point in standard.load_points:
            current = point.factor * (meter.imax_a if point.of == "imax" else meter.base_current_a)
            limit = limit_for(spec, current, meter.base_current_a, meter.imax_a, pf)
            if limit is not None:
                points.append(LoadPoint(point.name, pf, round(current, 6), limit))
    return points
