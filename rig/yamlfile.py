"""YAML data files validated by pydantic; a bad file gives one line naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rig.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def yaml_line(root: yaml.Node | None, loc: tuple) -> int | None:
    """Line (1-based) of the YAML node at a pydantic error location, as near as it can be found."""
    node, line = root, None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def describe_error(error: dict) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "field required"
    return message


def read_yaml(path: Path, what: str) -> tuple[Any, yaml.Node | None]:
    """The data of a YAML file and its node tree (for line numbers)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}") from None


def field_error(where: str, root: yaml.Node | None, loc: tuple, message: str, more: int = 0) -> ConfigError:
    """'file:line: field.path: message (and N more)'."""
    line = yaml_line(root, loc) if root is not None else None
    field = ".".join(str(part) for part in loc) or "(top level)"
    suffix = f" (and {more} more)" if more > 0 else ""
    return ConfigError(f"{where}{f':{line}' if line else ''}: {field}: {message}{suffix}")


def validate(model: type[Model], data: Any, where: str, root: yaml.Node | None = None) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        raise field_error(where, root, tuple(errors[0]["loc"]), describe_error(errors[0]), len(errors) - 1) from None


def load_model(path: Path, model: type[Model], what: str) -> Model:
    """Read a YAML file into a validated model."""
    data, root = read_yaml(path, what)
    return validate(model, data, str(path), root)
