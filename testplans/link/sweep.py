"""Helpers of the link plans: limits, the sweep, a position's RF path, and reconnect-latency trials.

A trial is judged by physics: the supply is cut by the HES (credit used up), then a recharge is accepted by
the HES (the instant its answer arrives, +- half the request's round trip), and the latency runs to the instant
the current through the meter's relay into the position's load rises again (the position's LoadWatch). The cut
is set up at 0 dB, the best signal, and only the reconnect runs at the step's attenuation: at the edge of coverage
a cut would take its own polls and retries, which are not what the trial measures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from rig.bench import Bench
from rig.errors import ConfigError, RigError
from rig.plan import Limits, LoadWatch, Measurements, PlanData, Position, poll_until, supply, wait_until
from rig.report.attach import attach_text
from rig.roles import AcSource, HeadEnd
from rig.yamlfile import read_yaml, validate

HERE = Path(__file__).parent
LIMITS_FILE = HERE / "limits.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinkLimits(Strict):
    """What the link plans judge by, per kind of bench (testplans/link/limits.yaml)."""

    reconnect_max_s: Annotated[float, Field(gt=0)]  # one meter, recharge accepted -> current flows, on 4G
    group_reconnect_max_s: Annotated[float, Field(gt=0)]  # every position, first recharge accepted -> last flows
    reconnect_2g_max_s: Annotated[float, Field(gt=0)]  # the lab's expectation of the same on 2G
    min_2g_over_4g_ratio: Annotated[float, Field(gt=0)]  # 2G median latency / 4G median at the same step, at least
    trial_timeout_s: Annotated[float, Field(gt=0)]  # a step of a trial (cut, reconnect) waited at most this long
    trial_timeout_2g_s: Annotated[float, Field(gt=0)]  # the same on 2G (a poll, retries after the head end's timeout)
    cell_rsrp_dbm: float  # bench calibration: RSRP at the modem's antenna port with 0 dB attenuation
    rsrp_tolerance_db: Annotated[float, Field(ge=0)]
    registration_loss_dbm: float  # below this RSRP the modem is expected to lose registration
    outage_attenuation_db: Annotated[float, Field(ge=0)]  # set for the link recovery plan's outage
    outage_hold_s: Annotated[float, Field(gt=0)]  # the outage lasts at least this long with commands pending
    recovery_max_s: Annotated[float, Field(gt=0)]  # after the signal is back, every pending command executed
    settle_s: Annotated[float, Field(ge=0)]  # watched after the last command, for a late or repeated execution
    registration_wait_s: Annotated[float, Field(gt=0)]  # for the modem to (re)register after a change


class LimitsFile(Strict):
    profiles: dict[str, LinkLimits]


def load_limits(option: str) -> LinkLimits:
    """'PROFILE' (of testplans/link/limits.yaml) or 'FILE.yaml:PROFILE'."""
    path_text, _, profile = option.rpartition(":")
    path = Path(path_text) if path_text else LIMITS_FILE
    data, root = read_yaml(path, "link limits")
    limits = validate(LimitsFile, data, str(path), root)
    if profile not in limits.profiles:
        raise ConfigError(f"{path}: no profile {profile!r} (profiles: {', '.join(limits.profiles)})")
    return limits.profiles[profile]


def parse_sweep(text: str) -> list[float]:
    """'0,30,40' -> [0.0, 30.0, 40.0]: attenuation steps in dB, each >= 0."""
    try:
        steps = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--link-sweep: expected attenuations in dB separated by commas, got {text!r}") from None
    if not steps or any(step < 0 or not math.isfinite(step) for step in steps):
        raise ConfigError(f"--link-sweep: expected one or more attenuations >= 0 dB, got {text!r}")
    return steps


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Link:
    """What every link plan uses: the source, the HES (the bench's, when first used), the plan data, the limits,
    the sweep and the trial counts, and a position's supply through its relay."""

    def __init__(self, bench: Bench, source: AcSource, options: dict):
        self.bench, self.source = bench, source
        self.plan: PlanData = options["plan"]
        self.limits: LinkLimits = options["limits"]
        self.sweep: list[float] = options["sweep"]
        self.trials: int = options["link_trials"]
        self.trials_2g: int = options["link_2g_trials"]

    @cached_property
    def hes(self) -> HeadEnd:
        return self.bench["hes"]

    @contextmanager
    def radio(self, pos: Position) -> Iterator[RadioPath]:
        """The position's RF path; attenuation 0 and 4G again when the plan ends, also after a failure."""
        path = RadioPath(pos)
        try:
            yield path
        finally:
            path.restore()

    def supply(self, pos: Position) -> float:
        """The position supplied through its relay, nothing pending at the head end (no on-demand read: a slow or
        lossy link, which these plans provoke, may never fit one in the head end's deadline); the supply voltage."""
        return supply(pos, self.source, self.hes, self.plan.load_a, recharge=self.plan.recharge,
                      timeout_s=self.limits.trial_timeout_s, read_meter=False)


class BenchSetupError(RigError):
    """The bench did not reach the state a plan needs (not a fault of the meter or the HES)."""


class RadioPath:
    """A position's RF attenuator and, where the bench has one, its modem's AT port."""

    def __init__(self, pos: Position):
        self.attenuator = pos.attenuator
        self.modem = pos.modem

    def set_attenuation(self, attenuation_db: float) -> float:
        """Set and read back; the attenuation the instrument holds."""
        self.attenuator.set_attenuation(attenuation_db)
        return self.attenuator.attenuation()

    def registered(self) -> bool | None:
        """The modem's registration (AT+CEREG?); None without a modem."""
        return None if self.modem is None else self.modem.registration().registered

    def wait_registration(self, registered: bool, timeout_s: float) -> bool:
        """Until the modem reports this registration state; False if it did not within timeout_s."""
        return poll_until(lambda: self.registered() == registered, timeout_s) is not None

    def restore(self) -> None:
        """Attenuation 0 and the modem back on 4G (each plan's finalizer, also after a failure)."""
        try:  # 4G first: at 0 dB a modem still on 2G would start a 2G re-attach the next plan waits out
            if self.modem is not None and self.modem.technology() != "4g":
                self.modem.set_technology("4g")
        finally:
            self.attenuator.set_attenuation(0.0)


@dataclass(frozen=True)
class Trial:
    """One reconnect: latency (s) from the recharge's acceptance to current flowing, None if it did not flow."""

    latency_s: float | None
    uncertainty_s: float
    waited_s: float
    command: str | None


def cut_supply(hes: HeadEnd, account: str, watch: LoadWatch, timeout_s: float) -> None:
    """Use up the account's credit; the HES disconnects: the current through the relay stops and the HES has
    recorded the disconnect as executed."""
    hes.adjust_balance(account, -hes.balance(account), reason="link plan: credit used up")
    if watch.cut(timeout_s) is None:
        raise BenchSetupError(f"account {account}: the supply was not cut within {timeout_s:g} s of using up the "
                              f"credit: no reconnect to time")
    wait_until(lambda: hes.account(account).disconnected, timeout_s,
               f"the HES to record account {account} disconnected")


def reconnect_trial(hes: HeadEnd, account: str, watch: LoadWatch, timeout_s: float, note: str,
                    recharge: float) -> Trial:
    """Recharge the account whose supply is cut and time the return of the current. A reconnect that does not come
    within timeout_s gives latency None."""
    sent = time.monotonic()
    answer = hes.recharge(account, recharge, reference=f"link plan: {note} {time.time_ns()}")
    answered = time.monotonic()
    command = answer.reconnect.id if answer.reconnect else None
    accepted_at, half_request = (sent + answered) / 2, (answered - sent) / 2
    rise = watch.restored(timeout_s)
    if rise is None:
        return Trial(None, half_request, time.monotonic() - accepted_at, command)
    return Trial(rise.t_mono - accepted_at, rise.uncertainty_s + half_request, rise.t_mono - accepted_at, command)


def step_row(profile: str, attenuation_db: float, latencies: list[float]) -> dict:
    """A row of the latency table (the plot's input)."""
    return {"profile": profile, "attenuation_db": attenuation_db, "median_s": percentile(latencies, 0.5),
            "p95_s": percentile(latencies, 0.95), "max_s": max(latencies)}


@dataclass
class Sweep:
    """One position's latency sweep on one technology: its steps, trials per step, limit and trial timeout."""

    label: str
    steps: list[float]
    trials: int
    limit_s: float
    timeout_s: float


def latency_sweep(sweep: Sweep, pos: Position, link: Link, watch: LoadWatch, radio_path: RadioPath,
                  measure: Measurements) -> list[dict]:
    """The sweep's trials on the current technology; the table rows (profile `label`) of the usable steps. A step
    without registration ends the sweep; so does a trial that does not reconnect (recorded as not observed)."""
    rows = []
    for attenuation_db in sweep.steps:
        held_db = radio_path.set_attenuation(attenuation_db)
        if radio_path.modem is not None and not radio_path.wait_registration(True, link.limits.registration_wait_s):
            attach_text(f"{sweep.label} link lost", f"{sweep.label}: no registration at {held_db:g} dB: sweep ended")
            break
        latencies = []
        for trial in range(1, sweep.trials + 1):
            latency = measure.declare(f"reconnect_latency_{sweep.label}", "s", Limits(0.0, sweep.limit_s))
            if held_db > 0:
                radio_path.set_attenuation(0.0)
            cut_supply(link.hes, pos.serial, watch, sweep.timeout_s)
            if held_db > 0:
                radio_path.set_attenuation(attenuation_db)
            result = reconnect_trial(link.hes, pos.serial, watch, sweep.timeout_s,
                                     f"{sweep.label} {held_db:g} dB trial {trial}", link.plan.recharge)
            details = {"technology": sweep.label, "attenuation_db": held_db, "trial": trial,
                       "command": result.command, "reconnected": result.latency_s is not None}
            if result.latency_s is None:
                latency.not_observed(result.waited_s, uncertainty=result.uncertainty_s, details=details)
                break
            latency(result.latency_s, uncertainty=result.uncertainty_s, details=details)
            latencies.append(result.latency_s)
        if latencies:
            row = step_row(sweep.label, held_db, latencies)
            rows.append(row)
            measure(f"reconnect_latency_{sweep.label}_step_max", row["max_s"], "s", Limits(0.0, sweep.limit_s),
                    details={**row, "trials": latencies})
        if len(latencies) < sweep.trials:
            break
    return rows
