"""Bench descriptions: YAML validated on load, errors naming file, line and field."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rig.errors import ConfigError
from rig.yamlfile import dotted, first_error, read_yaml, reported_error, validate, yaml_line

ACCURACY_CLASSES = ("0.2S", "0.5S", "1", "2")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """Where a secret lives: an environment variable or a file. Never the value itself."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_values(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("inline secrets are not allowed; use {env: NAME} or {file: PATH}")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self, where: str, base_dir: Path | None = None) -> str:
        """The secret's value; a relative file path is taken from base_dir (the bench file's folder)."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"{where}: environment variable {self.env} is not set")
            if not value.strip():
                raise ConfigError(f"{where}: environment variable {self.env} is empty")
            return value
        path = self.file if self.file.is_absolute() or base_dir is None else base_dir / self.file
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: secret file {path} is not UTF-8 text") from None
        if not value:
            raise ConfigError(f"{where}: secret file {path} is empty")
        return value


class Range(Strict):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class RoleLimits(Strict):
    """Safety limits of one role; a driver refuses setpoints beyond them before sending."""

    voltage_v: Annotated[float, Field(gt=0)] | None = None
    current_a: Annotated[float, Field(gt=0)] | None = None
    power_w: Annotated[float, Field(gt=0)] | None = None
    frequency_hz: Range | None = None
    attenuation_db: Range | None = None


class Calibration(Strict):
    """An instrument's calibration: when, under which certificate, and when the next one is due."""

    date: date
    certificate: str | None = None
    due: date | None = None

    @model_validator(mode="after")
    def _due_after_date(self) -> Calibration:
        if self.due is not None and self.due < self.date:
            raise ValueError(f"due {self.due} is before the calibration date {self.date}")
        return self


class RoleConfig(Strict):
    driver: str
    resource: str
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 2.0
    safe_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    settle_s: Annotated[float, Field(ge=0, le=600)] = 0.0  # time the instrument's output needs after a change
    limits: RoleLimits = RoleLimits()
    safe: dict[str, float] = {}
    settings: dict[str, Any] = {}
    secrets: dict[str, SecretRef] = {}
    calibration: Calibration | None = None  # of the instrument, shown on certificates

    @field_validator("resource")
    @classmethod
    def _no_credentials(cls, resource: str) -> str:
        scheme, sep, rest = resource.partition("://")
        netloc = rest.split("/")[0]
        if sep and "@" in netloc:
            raise ValueError(f"credentials in the address ({scheme}://***@{netloc.rpartition('@')[2]}) are not "
                             f"allowed: give them under 'secrets:' as {{env: NAME}} or {{file: PATH}}")
        return resource


class DriverSettings(Strict):
    """Base of a driver's settings model (`settings:` of a role); a setting the driver does not know is refused."""


Settings = TypeVar("Settings", bound=DriverSettings)


def driver_settings(model: type[Settings], role: str, settings: dict[str, Any]) -> Settings:
    """A role's settings validated by its driver's model; ConfigError naming roles.<role>.settings.<field>."""
    try:
        return model.model_validate(settings)
    except ValidationError as exc:
        errors = exc.errors()
        loc, message, more = first_error(errors)
        first = reported_error(errors)
        if first["type"] == "extra_forbidden":
            message += f" (settings of this driver: {', '.join(model.model_fields) or 'none'})"
        elif first["type"] != "missing":
            message += f" (got {first['input']!r})"
        suffix = f" (and {more} more)" if more > 0 else ""
        raise ConfigError(f"roles.{role}.settings.{dotted(loc)}: {message}{suffix}") from None


class MeterPosition(Strict):
    """A meter under test at one position of the bench, with its rating."""

    position: Annotated[int, Field(ge=1, le=99)]
    serial: Annotated[str, Field(min_length=1)]
    accuracy_class: Literal["0.2S", "0.5S", "1", "2"]
    ib_a: Annotated[float, Field(gt=0)] | None = None
    in_a: Annotated[float, Field(gt=0)] | None = None
    imax_a: Annotated[float, Field(gt=0)]
    un_v: Annotated[float, Field(gt=0)]
    fn_hz: Annotated[float, Field(gt=0)] = 50.0
    meter_constant_imp_per_kwh: Annotated[float, Field(gt=0)]
    test_output_imp_per_kwh: Annotated[float, Field(gt=0)] | None = None
    measuring_elements: Annotated[int, Field(ge=1, le=3)] = 1
    max_voltage_factor: Annotated[float, Field(ge=1.0, le=2.0)] = 1.2
    interface: RoleConfig | None = None  # the meter's own communication port (DLMS, Modbus), role "meter@<n>"
    load: RoleConfig | None = None  # a load path of this position's own, through its relay, role "load@<n>"
    attenuator: RoleConfig | None = None  # RF attenuator in front of this meter's modem, role "attenuator@<n>"
    modem: RoleConfig | None = None  # AT port of this meter's modem (or a twin modem on the same RF path), "modem@<n>"
    cover: RoleConfig | None = None  # what opens and closes this meter's terminal cover (tamper), "cover@<n>"

    @field_validator("accuracy_class", mode="before")
    @classmethod
    def _class_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _one_base_current(self) -> MeterPosition:
        if (self.ib_a is None) == (self.in_a is None):
            raise ValueError("give exactly one of 'ib_a' (direct meters) or 'in_a' (CT meters)")
        if self.imax_a <= self.base_current_a:
            raise ValueError(f"imax_a {self.imax_a} must be above the base current {self.base_current_a}")
        return self

    @property
    def base_current_a(self) -> float:
        return self.ib_a if self.ib_a is not None else self.in_a

    @property
    def test_output_constant(self) -> float:
        """Pulse constant (imp/kWh) of the output the scanning head reads: a test output if set."""
        return self.test_output_imp_per_kwh or self.meter_constant_imp_per_kwh

    @property
    def max_voltage_v(self) -> float:
        return self.un_v * self.max_voltage_factor


class TwinConfig(Strict):
    """The digital twin that stands in for the instruments."""

    autostart: bool = False
    ephemeral_ports: bool = True
    seed: int = 1
    meter_self_consumption_w: Annotated[float, Field(ge=0)] = 5.0
    current_settle_tau_s: Annotated[float, Field(ge=0)] = 0.05
    instruments: dict[str, dict[str, Any]] = {}
    link: dict[str, Any] = {}  # the radio link model (rig/sim/link.py LinkSettings): cell RSRP, 4g/2g profiles


class FleetConfig(Strict):
    """A fleet of meters in front of the bench's head end (rig/roles/fleet.py Fleet): the twin's fleet (rig/fleet/),
    its shards in local processes (engine local) or as Ray actors (engine ray, on the cluster at `address`)."""

    driver: Literal["twin_fleet"] = "twin_fleet"  # drivers/twin_fleet.py
    engine: Literal["local", "ray"] = "local"
    address: str | None = None  # engine ray: the cluster to join (None: a local Ray head)
    meters: Annotated[int, Field(ge=1, le=1_000_000)] = 300
    shards: Annotated[int, Field(ge=1, le=1000)] = 2
    seed: int = 0  # consumption drawn from it; serials come from the layout alone
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # every meter's TCP wrapper port (0: a free one each)
    first_octet: Annotated[int, Field(ge=1, le=254)] = 10  # meters listen on 127.<first_octet>.x.y upwards
    time_scale: Annotated[float, Field(gt=0)] = 1.0  # fleet time runs this much faster (consumption)
    secret_file: Path  # hex digits the meters' keys derive from (relative to the bench file); the HES holds the same


HISTORY_SCHEMES = ("postgresql", "postgres")


def database_url_problem(url: str) -> str | None:
    """What keeps an address from naming a PostgreSQL history database, said without any secret; None if nothing.
    A password in the address is refused: it would end up in shell history, process lists and run records."""
    parts = urlsplit(url)
    if parts.scheme not in HISTORY_SCHEMES:
        return "not a PostgreSQL address (postgresql://USER@HOST:PORT/DATABASE)"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number (postgresql://USER@HOST:PORT/DATABASE)"
    if parts.password is not None or "password" in parse_qs(parts.query):
        where = f"{parts.scheme}://{parts.username or ''}:***@{parts.hostname or ''}{f':{port}' if port else ''}"
        return f"a password in the address ({where}{parts.path}) is not allowed"
    if not parts.hostname:
        return "no host in the address (postgresql://USER@HOST:PORT/DATABASE)"
    if not parts.path.strip("/"):
        return "no database in the address (postgresql://USER@HOST:PORT/DATABASE)"
    return None


class HistoryConfig(Strict):
    """The lab's history database (PostgreSQL) every run is uploaded to, besides results/history.sqlite; a run
    that cannot upload stays pending in its folder and the next run uploads it."""

    url: str  # postgresql://USER@HOST:PORT/DATABASE, no password
    secrets: dict[Literal["password"], SecretRef] = {}
    connect_timeout_s: Annotated[int, Field(ge=2, le=60)] = 5
    attempts: Annotated[int, Field(ge=1, le=10)] = 3

    @field_validator("url")
    @classmethod
    def _postgres_without_password(cls, url: str) -> str:
        problem = database_url_problem(url)
        if problem is not None:
            hint = ": give it under 'secrets: {password: ...}' as {env: NAME} or {file: PATH}"
            raise ValueError(problem + (hint if problem.startswith("a password") else ""))
        return url


class BenchConfig(Strict):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    lock_dir: Path | None = None
    twin: TwinConfig | None = None
    roles: dict[str, RoleConfig]
    positions: list[MeterPosition] = []
    fleet: FleetConfig | None = None  # a fleet of meters for the fleet plans (testplans/fleet/)
    history: HistoryConfig | None = None  # the lab's PostgreSQL history database (rig/history_db.py)

    @field_validator("positions")
    @classmethod
    def _unique_positions(cls, positions: list[MeterPosition]) -> list[MeterPosition]:
        for attribute in ("position", "serial"):
            seen = set()
            for index, meter in enumerate(positions):
                value = getattr(meter, attribute)
                if value in seen:
                    raise ValueError(f"{attribute} {value!r} appears twice (again at positions[{index}])")
                seen.add(value)
        return positions


POSITION_ROLES = {"interface": "meter", "load": "load", "attenuator": "attenuator",
                  "modem": "modem", "cover": "cover"}  # MeterPosition field -> role name prefix


def bench_roles(config: BenchConfig) -> dict[str, RoleConfig]:
    """Every role of a bench: the named roles, then each position's meter interface as 'meter@<position>', its
    own load as 'load@<position>', its attenuator and modem as 'attenuator@<position>' and 'modem@<position>'."""
    roles = dict(config.roles)
    for meter in config.positions:
        for field, prefix in POSITION_ROLES.items():
            role_config = getattr(meter, field)
            if role_config is not None:
                roles[f"{prefix}@{meter.position}"] = role_config
    return roles


def role_location(config: BenchConfig, role: str) -> tuple:
    """Where a role is described: ('roles', 'counter') or ('positions', 0, 'interface') for 'meter@1'."""
    position = position_of_role(role)
    if position is None:
        return ("roles", role)
    index = next(i for i, m in enumerate(config.positions) if m.position == position)
    field = next(f for f, prefix in POSITION_ROLES.items() if role.startswith(prefix + "@"))
    return ("positions", index, field)


def position_of_role(role: str) -> int | None:
    """3 for 'meter@3', 'load@3', 'attenuator@3' or 'modem@3'; None for a bench-wide role."""
    prefix, _, number = role.partition("@")
    return int(number) if prefix in POSITION_ROLES.values() and number.isdigit() else None


class BenchFile(Strict):
    """A validated bench description and the file it came from."""

    path: Path
    config: BenchConfig

    @property
    def name(self) -> str:
        return self.config.name


def load_bench(path: str | os.PathLike, known_drivers: set[str] | None = None) -> BenchFile:
    """Read and validate a bench YAML; raise ConfigError with one line naming file, line and field."""
    path = Path(path)
    data, root = read_yaml(path, "bench file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a bench file must be a mapping with 'name', 'roles' and 'positions'")
    config = validate(BenchConfig, data, str(path), root)
    if known_drivers is not None:
        for role, role_config in bench_roles(config).items():
            if role_config.driver not in known_drivers:
                loc = role_location(config, role) + ("driver",)
                raise ConfigError(
                    f"{path}:{yaml_line(root, loc)}: {'.'.join(map(str, loc))}: unknown driver "
                    f"{role_config.driver!r} (known: {', '.join(sorted(known_drivers))})"
                )
    return BenchFile(path=path.resolve(), config=config)


def bench_json_schema() -> dict:
    schema = BenchConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Meter HIL Rig bench description"
    return schema
