"""A plan's constants (load current, credit seconds, poll periods, ...) as YAML data a lab edits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rig.errors import ConfigError
from rig.yamlfile import read_yaml


class PlanData:
    """Read-only attributes from a YAML mapping: numbers, text, lists and nested sections. An attribute the file
    does not hold is a ConfigError naming the file and the key."""

    def __init__(self, values: dict[str, Any], where: str):
        self._values = values
        self._where = where

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            value = self._values[name]
        except KeyError:
            raise ConfigError(f"{self._where}: no {name!r} (keys: {', '.join(self._values)})") from None
        return PlanData(value, f"{self._where}.{name}") if isinstance(value, dict) else value

    def __repr__(self) -> str:
        return f"PlanData({self._where}: {self._values!r})"


def _check(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _check(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]")
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number, a text, a list or a section, got {value!r}")


def load_plan_data(path: Path) -> PlanData:
    data, _root = read_yaml(path, "plan data")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of plan constants")
    _check(data, str(path))
    return PlanData(data, str(path))
