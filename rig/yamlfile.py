"""YAML data files validated by pydantic; a bad file gives one line naming the file, the line and the field."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rig.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)
MERGE_TAG = "tag:yaml.org,2002:merge"
MISSING_SHOWN = 3  # missing fields named beside an unknown one


def yaml_line(root: yaml.Node | None, loc: tuple) -> int | None:
    """Line (1-based) of a pydantic error location in the YAML: the line of its key (or list item), else of the
    nearest enclosing one that exists."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def dotted(loc: tuple) -> str:
    """('roles', 'source', 'limits') -> 'roles.source.limits'."""
    return ".".join(str(part) for part in loc) or "(top level)"


def describe_error(error: dict) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "field required"
    return message


def _duplicate_keys(node: yaml.Node, loc: tuple = (), seen: set[int] | None = None) -> Iterator[tuple]:
    """(loc of the repeated key, its node, line of the first occurrence) for every key a mapping repeats."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG:
                if (key.tag, key.value) in first:
                    yield loc + (key.value,), key, first[(key.tag, key.value)]
                first.setdefault((key.tag, key.value), key.start_mark.line + 1)
            yield from _duplicate_keys(value, loc + (key.value if isinstance(key, yaml.ScalarNode) else "?",), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, loc + (index,), seen)


def read_yaml(path: Path, what: str) -> tuple[Any, yaml.Node | None]:
    """The data of a YAML file and its node tree (for line numbers); a key given twice in a mapping is refused."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte order mark some editors write
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: {what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return None, None
        duplicate = next(_duplicate_keys(root), None)
        if duplicate is not None:
            loc, key, first_line = duplicate
            raise ConfigError(f"{path}:{key.start_mark.line + 1}: {dotted(loc)}: given twice (first at line "
                              f"{first_line}); the second would silently replace the first")
        cycle = _alias_inside_itself(root)
        if cycle is not None:
            raise ConfigError(f"{path}:{cycle.start_mark.line + 1}: {what} holds an alias inside its own anchor "
                              f"(a structure that contains itself)")
        return yaml.SafeLoader("").construct_document(root), root
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: {what} is nested too deeply to read") from None
    except (ValueError, TypeError, AttributeError) as exc:  # pyyaml's constructors: 2020-13-45, !!int abc, ...
        node = _unreadable_scalar(root)
        where = f"{path}:{node.start_mark.line + 1}: {node.value[:40]!r}" if node is not None else str(path)
        raise ConfigError(f"{where}: not a value its form or tag allows ({exc})") from None


def _alias_inside_itself(root: yaml.Node) -> yaml.Node | None:
    """A collection node that contains itself through an alias ('a: &x [*x]'), or None."""
    walking, walked = set(), set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            walking.discard(id(node))
            walked.add(id(node))
            continue
        if id(node) in walking:
            return node
        if id(node) in walked or not isinstance(node, yaml.CollectionNode):
            continue
        walking.add(id(node))
        stack.append((node, True))
        children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else node.value
        stack.extend((child, False) for child in children)
    return None


def _unreadable_scalar(root: yaml.Node | None) -> yaml.ScalarNode | None:
    """The first scalar whose tag cannot construct it (a date such as 2020-13-45), for the error's line."""
    loader = yaml.SafeLoader("")
    stack, seen = [root] if root is not None else [], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except (ValueError, TypeError, AttributeError, yaml.YAMLError):
                return node
        elif isinstance(node, yaml.MappingNode):
            stack.extend(reversed([part for pair in node.value for part in pair]))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return None


def field_error(where: str, root: yaml.Node | None, loc: tuple, message: str, more: int = 0) -> ConfigError:
    """'file:line: field.path: message (and N more)'."""
    line = yaml_line(root, loc) if root is not None else None
    suffix = f" (and {more} more)" if more > 0 else ""
    return ConfigError(f"{where}{f':{line}' if line else ''}: {dotted(loc)}: {message}{suffix}")


def reported_error(errors: list[dict]) -> dict:
    """The pydantic error to report: an unknown field first (a misspelt key also leaves its field missing)."""
    return sorted(errors, key=lambda error: error["type"] != "extra_forbidden")[0]


def first_error(errors: list[dict]) -> tuple[tuple, str, int]:
    """(loc, message, number of further errors) of the error to report; for an unknown field the message names
    the missing field it resembles (else the missing fields beside it)."""
    first = reported_error(errors)
    loc = tuple(part for part in first["loc"] if part != "[key]")  # a mapping key that is itself wrong
    message, more = describe_error(first), len(errors) - 1
    if first["type"] == "extra_forbidden":
        missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and tuple(e["loc"][:-1]) == loc[:-1]]
        guess = difflib.get_close_matches(str(loc[-1]), missing, n=1)
        if guess:
            message += f" (did you mean {guess[0]!r}? it is missing)"
            more -= 1
        elif missing:
            shown = missing[:MISSING_SHOWN]
            message += f" (missing: {', '.join(shown)}{', ...' if len(missing) > len(shown) else ''})"
            more -= len(shown)
    return loc, message, more


def validate(model: type[Model], data: Any, where: str, root: yaml.Node | None = None) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, message, more = first_error(exc.errors())
        raise field_error(where, root, loc, message, more) from None


def load_model(path: Path, model: type[Model], what: str) -> Model:
    """Read a YAML file into a validated model."""
    data, root = read_yaml(path, what)
    return validate(model, data, str(path), root)
