"""Defect profiles for the twin: a YAML file that makes chosen meters (or the HES, or the link) misbehave."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rig.config import BenchFile, bench_roles
from rig.errors import ConfigError
from rig.yamlfile import read_yaml, validate, yaml_line

HES_DRIVER = "hes_http"  # the driver whose simulator the `hes:` section makes misbehave


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorBand(Strict):
    """Registration error `value` % while the current lies in [low, high] A at power factor `pf`."""

    current_a: tuple[float, float]
    pf: Literal["1", "0.5L", "0.8C"]
    value: float

    @model_validator(mode="before")
    @classmethod
    def _pf_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("pf"), int | float):
            data = {**data, "pf": f"{data['pf']:g}"}
        return data

    @field_validator("current_a")
    @classmethod
    def _ordered_band(cls, band: tuple[float, float]) -> tuple[float, float]:
        low, high = band
        if low < 0 or low > high:
            raise ValueError(f"a band is [low, high] with 0 <= low <= high, got [{low:g}, {high:g}]: it would "
                             f"never apply")
        return band


class MeterDefects(Strict):
    error_pct: list[ErrorBand] = []
    starting_current_a: Annotated[float, Field(gt=0)] | None = None
    creep_pulses_per_hour: Annotated[float, Field(ge=0)] = 0.0
    register_error_pct: float = 0.0
    relay_open_delay_s: Annotated[float, Field(ge=0)] = 0.0  # the relay opens this long after the meter decides to
    relay_stuck: Literal["closed", "open"] | None = None  # the physical relay never leaves this state
    relay_state_inverted: bool = False  # disconnect control output_state reports the opposite of the relay
    load_limit_ignored: bool = False  # the limiter never trips
    relay_state_volatile: bool = False  # the relay and control state are lost at power loss: connected at power-up
    reconnect_extra_delay_s: Annotated[float, Field(ge=0)] = 0.0  # the relay closes this late after a reconnect
    loses_queued_commands: bool = False  # a command that waited out a link outage is acknowledged, never executed
    duplicate_execution: bool = False  # a command that waited out a link outage runs again after the next command
    interface_dead: bool = False  # the data port (TCP wrapper, HDLC) accepts connections and never answers
    tamper_not_logged: bool = False  # a cover-open tamper never enters the event log
    tamper_logged_late_s: Annotated[float, Field(ge=0)] = 0.0  # it enters this late, timestamped when it does
    reader_can_disconnect: bool = False  # the meter reader association (LLS) may operate the disconnect control
    accepts_replay: bool = False  # ciphered frames with an invocation counter not above the last are accepted
    ignores_hls_tag: bool = False  # GCM tags and the HLS-GMAC reply f(StoC) are not verified

    def error_pct_at(self, current_a: float, pf: str | None) -> float:
        for band in self.error_pct:
            low, high = band.current_a
            if band.pf == pf and low <= current_a <= high:
                return band.value
        return 0.0


class HesDefects(Strict):
    """The `hes:` section: a head-end system that misbehaves."""

    disconnect_delay_s: Annotated[float, Field(ge=0)] = 0.0  # extra wait after exhaustion before the disconnect
    ignore_friendly_hours: bool = False  # disconnects inside the policy's no-disconnection windows
    skip_alerts: list[float] = []  # thresholds (%) whose alerts are never sent
    disconnect_positive_balance: bool = False  # group disconnects skip the positive-balance guard
    ignore_emergency_credit: bool = False  # disconnects at zero balance while emergency credit is active
    no_auth: bool = False  # serves every request without a valid token and whatever the operator's role
    skip_approval: bool = False  # a group disconnect above approval_above_meters runs without a second approver
    no_audit: bool = False  # commands and refused attempts never enter the audit log
    batch_without_balance_check: bool = False  # group disconnects skip every eligibility check (balance, windows)
    storm_drops_commands_pct: Annotated[float, Field(ge=0, le=100)] = 0.0  # with more commands pending than
    # STORM_PENDING_COMMANDS (rig/sim/hes/hooks.py), this share of new ones is acknowledged and never sent
    reconnect_all_at_once: bool = False  # no bound on concurrent DLMS exchanges with fleet meters


class LinkDefects(Strict):
    """The `link:` section: a radio path that misbehaves (rig/sim/link.py)."""

    extra_latency_s: Annotated[float, Field(ge=0)] = 0.0  # added to every delivery
    drop_rate: Annotated[float, Field(ge=0, le=1)] = 0.0  # share of deliveries lost, on top of the link's own
    rsrp_report_offset_db: float = 0.0  # the meter and its modem report the signal this far off


class Defects(Strict):
    positions: dict[int, MeterDefects] = {}
    hes: HesDefects = HesDefects()
    link: LinkDefects = LinkDefects()

    def for_position(self, position: int) -> MeterDefects:
        return self.positions.get(position, MeterDefects())


def load_defects(path: str | Path | None) -> Defects:
    """Read a defects YAML; ConfigError naming file and field when it is wrong."""
    if path is None:
        return Defects()
    path = Path(path)
    data, root = read_yaml(path, "defects file")
    return validate(Defects, data or {}, str(path), root)


def check_defects(path: str | Path, bench: BenchFile) -> Defects:
    """Read a defects YAML and hold it against the bench it will run on: defects of a position the bench lacks,
    or of an HES it has not, would never show, so they are refused (ConfigError naming file, line and field)."""
    path = Path(path)
    data, root = read_yaml(path, "defects file")
    defects = validate(Defects, data or {}, str(path), root)
    if defects.hes.model_fields_set and not any(c.driver == HES_DRIVER for c in bench_roles(bench.config).values()):
        raise ConfigError(f"{path}:{yaml_line(root, ('hes',))}: hes: bench {bench.name!r} ({bench.path.name}) has "
                          f"no head-end system (a role with driver {HES_DRIVER})")
    positions = [meter.position for meter in bench.config.positions]
    for position in defects.positions:
        if position not in positions:
            loc = ("positions", position)
            raise ConfigError(f"{path}:{yaml_line(root, loc)}: positions.{position}: bench {bench.name!r} "
                              f"({bench.path.name}) has no position {position} (positions: "
                              f"{', '.join(map(str, positions)) or 'none'})")
    return defects
