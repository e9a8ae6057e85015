"""Modbus register maps: YAML data read by the drivers and the twin alike, validated on load.

A map names each quantity with its table, address, type, unit, word order and access, says where the instrument's
identity lives, which register span the device answers block reads over, and (for counter modules) describes the
block of channel counters, the input coils and each channel's control coils. Each packaged map is held to its
device's manual by tests/conformance (clients the rig did not write).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rig.errors import ConfigError
from rig.yamlfile import describe_error, field_error, read_yaml

MAP_DIR = Path(__file__).resolve().parent
MAX_READ_REGISTERS = 125  # registers one Modbus read request may return

WordOrder = Literal["big", "little"]
ValueType = Literal["uint16", "int16", "uint32", "int32", "float32", "string"]
STRUCT_CODES = {"uint16": "H", "int16": "h", "uint32": "I", "int32": "i", "float32": "f"}
WIDTHS = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2}

Address = Annotated[int, Field(ge=0, le=0xFFFF)]


def encode(value: int | float | str, value_type: str, word_order: str = "big", length: int | None = None) -> list[int]:
    """Registers holding `value`; word_order 'big' puts the high word first, 'little' the low word first.

    Strings are ASCII, two characters a register (first character in the high byte), NUL-padded to `length`.
    """
    if value_type == "string":
        data = str(value).encode("ascii")
        size = 2 * (length if length is not None else (len(data) + 1) // 2)
        if len(data) > size:
            raise ValueError(f"{value!r} is longer than {size} characters")
        data = data.ljust(size, b"\0")
        return [data[i] << 8 | data[i + 1] for i in range(0, size, 2)]
    code = STRUCT_CODES[value_type]
    data = struct.pack(f">{code}", value if code == "f" else int(value))
    words = [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]
    return words[::-1] if word_order == "little" else words


def decode(registers: list[int], value_type: str, word_order: str = "big") -> int | float | str:
    """The value held in `registers` (inverse of `encode`); strings lose their NUL and space padding."""
    if value_type == "string":
        data = b"".join(word.to_bytes(2, "big") for word in registers)
        return data.rstrip(b"\0 ").decode("ascii", errors="replace")
    words = list(registers[::-1] if word_order == "little" else registers)
    if len(words) != WIDTHS[value_type]:
        raise ValueError(f"{value_type} needs {WIDTHS[value_type]} register(s), got {len(words)}")
    data = b"".join(word.to_bytes(2, "big") for word in words)
    return struct.unpack(f">{STRUCT_CODES[value_type]}", data)[0]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantity(Strict):
    """One value in a register table."""

    table: Literal["input", "holding"]
    address: Address
    type: ValueType
    length: Annotated[int, Field(ge=1, le=MAX_READ_REGISTERS)] | None = None  # registers; strings only
    word_order: WordOrder = "big"
    unit: str = ""
    description: str = ""
    value: int | float | str | None = None  # fixed content (e.g. a model code); the twin serves it
    access: Literal["r", "rw"] = "r"  # 'rw': the device keeps what is written (function codes 6 and 16)

    @model_validator(mode="after")
    def _consistent(self) -> Quantity:
        if (self.type == "string") != (self.length is not None):
            raise ValueError("'length' (in registers) is required for strings and only for strings")
        if self.address + self.count > 0x10000:
            raise ValueError(f"address {self.address} + {self.count} register(s) runs past 65535")
        if self.value is not None:
            try:
                self.encode(self.value)
            except (ValueError, TypeError, struct.error) as exc:
                raise ValueError(f"value {self.value!r} does not fit {self.type}: {exc}") from None
        return self

    @property
    def count(self) -> int:
        return self.length if self.type == "string" else WIDTHS[self.type]

    def encode(self, value: int | float | str) -> list[int]:
        return encode(value, self.type, self.word_order, self.length)

    def decode(self, registers: list[int]) -> int | float | str:
        return decode(registers, self.type, self.word_order)


class IdentityField(Strict):
    """A fixed text, or a quantity's value put through a Python format string."""

    text: str | None = None
    quantity: str | None = None
    format: str = "{}"

    @model_validator(mode="after")
    def _one_source(self) -> IdentityField:
        if (self.text is None) == (self.quantity is None):
            raise ValueError("give exactly one of 'text' or 'quantity'")
        return self


class IdentitySpec(Strict):
    manufacturer: IdentityField
    model: IdentityField
    serial: IdentityField = IdentityField(text="-")
    firmware: IdentityField = IdentityField(text="-")


class ControlCoils(Strict):
    """Channel n's control coils are `base + stride * n + offset` (0-based protocol addresses)."""

    base: Address
    stride: Annotated[int, Field(ge=1)] = 4
    start_stop: int = 0      # 1: the channel counts, 0: it holds its count
    clear_counter: int = 1   # write 1: the count goes to 0
    clear_overflow: int = 2  # reads the overflow flag; write 1 clears it
    latch_status: int = 3    # reads the latch flag; write 1 clears it

    def address(self, channel: int, offset: int) -> int:
        return self.base + self.stride * channel + offset


class CounterBlock(Strict):
    """Channel n's counter occupies `stride` registers from `base + stride * n`; `channels` is the module's count."""

    table: Literal["input", "holding"] = "holding"
    base: Address
    type: Literal["uint16", "uint32"] = "uint32"
    word_order: WordOrder = "big"
    channels: Annotated[int, Field(ge=1)]  # channels the module has; a role's settings may use fewer
    input_coils: Address | None = None  # coil input_coils + n reads input n's state
    control_coils: ControlCoils
    description: str = ""

    @property
    def stride(self) -> int:
        return WIDTHS[self.type]


class BlockReads(Strict):
    """A span of one table the device answers block reads over (undocumented registers in it read 0)."""

    table: Literal["input", "holding"]
    first: Address
    end: Annotated[int, Field(ge=1, le=0x10000)]  # one past the last register


class RegisterMap(Strict):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    word_order: WordOrder = "big"  # default for every multi-register quantity and the counters
    max_read_registers: Annotated[int, Field(ge=1, le=MAX_READ_REGISTERS)] = MAX_READ_REGISTERS  # per request
    block_reads: list[BlockReads] = []
    identity: IdentitySpec
    registers: dict[str, Quantity] = {}
    counters: CounterBlock | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_word_order(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        order = data.get("word_order", "big")
        if isinstance(data.get("registers"), dict):
            registers = {name: ({"word_order": order, **entry} if isinstance(entry, dict) else entry)
                         for name, entry in data["registers"].items()}
            data = {**data, "registers": registers}
        if isinstance(data.get("counters"), dict):
            data = {**data, "counters": {"word_order": order, **data["counters"]}}
        return data

    def quantity(self, name: str) -> Quantity:
        try:
            return self.registers[name]
        except KeyError:
            raise ConfigError(f"register map {self.name!r} has no quantity {name!r} "
                              f"(quantities: {', '.join(self.registers)})") from None

    def identity_texts(self, values: dict[str, int | float | str]) -> dict[str, str]:
        """manufacturer, model, serial and firmware as texts, given the values of the identity's quantities.

        Raises ValueError naming the quantity when a value does not fit its format."""
        texts = {}
        for part in ("manufacturer", "model", "serial", "firmware"):
            field = getattr(self.identity, part)
            if field.text is not None:
                texts[part] = field.text
                continue
            try:
                texts[part] = field.format.format(values[field.quantity])
            except (ValueError, TypeError, IndexError) as exc:
                raise ValueError(f"{field.quantity} = {values[field.quantity]!r} does not fit the identity format "
                                 f"{field.format!r} of map {self.name!r}: {exc}") from None
        return texts


def _semantic_errors(register_map: RegisterMap) -> list[tuple[tuple, str]]:
    """Checks across fields: identity registers exist, quantities of one table do not overlap."""
    errors = []
    for part in ("manufacturer", "model", "serial", "firmware"):
        field = getattr(register_map.identity, part)
        if field.quantity is not None and field.quantity not in register_map.registers:
            errors.append((("identity", part, "quantity"), f"no quantity {field.quantity!r} in 'registers'"))
    by_table: dict[str, list[tuple[int, int, str]]] = {}
    for name, quantity in register_map.registers.items():
        by_table.setdefault(quantity.table, []).append((quantity.address, quantity.count, name))
    for entries in by_table.values():
        entries.sort()
        for (address, count, name), (next_address, _n, next_name) in zip(entries, entries[1:], strict=False):
            if next_address < address + count:
                errors.append((("registers", next_name, "address"), f"overlaps {name!r} "
                               f"(registers {address}..{address + count - 1})"))
    return errors


def map_path(name: str | os.PathLike) -> Path:
    """A packaged map by name ('sdm630'), or a path to a map file of one's own."""
    text = str(name)
    if os.sep in text or "/" in text or text.endswith((".yaml", ".yml")):
        return Path(text)
    path = MAP_DIR / f"{text}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in MAP_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown register map {text!r} (known: {', '.join(known)}; or give a path to a "
                          f"map file)")
    return path


def load_register_map(name: str | os.PathLike) -> RegisterMap:
    """Read and validate a register map; ConfigError names the file, line and field when it is wrong."""
    path = map_path(name)
    data, root = read_yaml(path, "register map")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a register map must be a mapping with 'name', 'identity' and 'registers'")
    try:
        register_map = RegisterMap.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        loc = tuple(errors[0]["loc"])
        problems = [(loc, describe_error(errors[0]))]
        more = len(errors) - 1
    else:
        problems = _semantic_errors(register_map)
        more = len(problems) - 1
    if problems:
        loc, message = problems[0]
        raise field_error(str(path), root, loc, message, more)
    return register_map
