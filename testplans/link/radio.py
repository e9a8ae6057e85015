"""Helpers of the link plans: limits, the sweep, a position's RF path, and one reconnect-latency trial.

A trial is judged by physics: the supply is cut by the HES (credit used up), then a recharge is accepted by
the HES (the instant its answer arrives, +- half the request's round trip), and the latency runs to the instant
the current through the meter's relay into the position's load rises again (CurrentWatcher on the load).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import allure
from pydantic import BaseModel, ConfigDict, Field

from rig.errors import ConfigError, InstrumentTimeout, RigError
from rig.timing import CurrentWatcher, EventTimeout
from rig.yamlfile import read_yaml, validate

HERE = Path(__file__).parent
LIMITS_FILE = HERE / "limits.yaml"
LOAD_A = 5.0
POLL_S = 0.01
RECHARGE = 500.0
SETTLED = ("executed", "failed", "cancelled")  # HES command statuses; any other is still pending


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


class BenchSetupError(RigError):
    """The bench did not reach the state a plan needs (not a fault of the meter or the HES)."""


@dataclass
class RadioPath:
    """A position's RF attenuator and, where the bench has one, its modem's AT port."""

    attenuator: object
    modem: object | None

    def set_attenuation(self, attenuation_db: float) -> float:
        """Set and read back; the attenuation the instrument holds."""
        self.attenuator.set_attenuation(attenuation_db)
        return self.attenuator.attenuation()

    def registered(self) -> bool | None:
        """The modem's registration (AT+CEREG?); None without a modem."""
        return None if self.modem is None else self.modem.registration().registered

    def wait_registration(self, registered: bool, timeout_s: float) -> bool:
        """Until the modem reports this registration state; False if it did not within timeout_s."""
        deadline = time.monotonic() + timeout_s
        while self.registered() != registered:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def restore(self) -> None:
        """Attenuation 0 and the modem back on 4G (each plan's finalizer, also after a failure)."""
        try:
            self.attenuator.set_attenuation(0.0)
        finally:
            if self.modem is not None and self.modem.technology() != "4g":
                self.modem.set_technology("4g")


@dataclass(frozen=True)
class Trial:
    """One reconnect: latency (s) from the recharge's acceptance to current flowing, None if it did not flow."""

    latency_s: float | None
    uncertainty_s: float
    waited_s: float
    command: str | None


def wait_until(check, timeout_s: float, what: str, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise EventTimeout(f"waited {timeout_s:g} s for {what}")
        time.sleep(poll_s)


def wait_for_flow(watcher: CurrentWatcher, timeout_s: float) -> None:
    """Until the latest reading shows the load's current flowing through the relay."""
    wait_until(lambda: watcher.samples and watcher.samples[-1].value > LOAD_A / 2, timeout_s,
               f"{watcher.name} above {LOAD_A / 2:g} A", poll_s=watcher.poll_s)


def cut_supply(hes, account: str, watcher: CurrentWatcher, timeout_s: float) -> None:
    """Use up the account's credit; the HES disconnects: the current through the relay stops and the HES has
    recorded the disconnect as executed."""
    hes.adjust_balance(account, -hes.balance(account), reason="link plan: credit used up")
    watcher.wait_for("falls_below", LOAD_A / 2, timeout_s=timeout_s)
    wait_until(lambda: (lambda a: a["supply"] == "disconnected" and not a["pending_command"])(hes.account(account)),
               timeout_s, f"the HES to record account {account} disconnected")


def reconnect_trial(hes, account: str, watcher: CurrentWatcher, timeout_s: float, note: str) -> Trial:
    """Cut the supply, then recharge and time the return of the current. A reconnect that does not come within
    timeout_s gives latency None."""
    cut_supply(hes, account, watcher, timeout_s)
    sent = time.monotonic()
    answer = hes.recharge(account, RECHARGE, reference=f"link plan: {note} {time.time_ns()}")
    answered = time.monotonic()
    command = (answer.get("reconnect") or {}).get("id")
    accepted_at, half_request = (sent + answered) / 2, (answered - sent) / 2
    try:
        rise = watcher.wait_for("rises_above", LOAD_A / 2, timeout_s=timeout_s)
    except EventTimeout:
        return Trial(None, half_request, time.monotonic() - accepted_at, command)
    return Trial(rise.t_mono - accepted_at, rise.uncertainty_s + half_request, rise.t_mono - accepted_at, command)


def pending_command(hes, account: str) -> dict | None:
    """The account's command the HES has not settled (executed, failed or cancelled), if any."""
    return next((c for c in hes.commands(account=account) if c["status"] not in SETTLED), None)


def wait_for_no_pending_command(hes, account: str, timeout_s: float) -> None:
    """Until the HES has no command pending for the account; InstrumentTimeout naming it after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while (pending := pending_command(hes, account)) is not None:
        if time.monotonic() > deadline:
            raise InstrumentTimeout(f"{hes.role} ({hes.address}): account {account}: command {pending['id']} "
                                    f"({pending['action']}, {pending['origin']}) still {pending['status']!r} "
                                    f"{timeout_s:g} s after restoring the supply")
        time.sleep(0.05)


def supply_position(source, load, hes, account: str, meter, voltage_v: float, timeout_s: float) -> None:
    """Supply on, the account in credit and the meter connected, the load drawing LOAD_A through the relay; returns
    once the HES has no command pending for the account (none sent later can switch the supply under a trial)."""
    source.set_voltage(voltage_v)
    if not source.output_enabled():
        source.set_output(True)
    if hes.balance(account) <= 0 or not meter.relay_state()["output_state"]:
        hes.recharge(account, RECHARGE, reference=f"link plan: restore supply {time.time_ns()}")
    wait_for_no_pending_command(hes, account, timeout_s)
    wait_until(lambda: meter.relay_state()["output_state"], timeout_s, f"meter of {account} to reconnect")
    load.set_mode("CURR")
    load.set_level(LOAD_A)
    load.set_input(True)


def step_row(profile: str, attenuation_db: float, latencies: list[float]) -> dict:
    """A row of the latency table (the plot's input)."""
    return {"profile": profile, "attenuation_db": attenuation_db, "median_s": percentile(latencies, 0.5),
            "p95_s": percentile(latencies, 0.95), "max_s": max(latencies)}


def latency_sweep(label, position, hes, meter, watcher, radio_path, measure, link_limits, sweep, trials,
                  limit_s, timeout_s) -> list[dict]:
    """The sweep's trials on the current technology; the table rows (profile `label`) of the usable steps."""
    account = position.serial
    rows = []
    for attenuation_db in sweep:
        held_db = radio_path.set_attenuation(attenuation_db)
        if radio_path.modem is not None and not radio_path.wait_registration(True, link_limits.registration_wait_s):
            allure.attach(f"{label}: no registration at {held_db:g} dB: sweep ended", name=f"{label} link lost")
            break
        latencies, timed_out = [], False
        for trial in range(1, trials + 1):
            result = reconnect_trial(hes, account, watcher, timeout_s,
                                     f"{label} {held_db:g} dB trial {trial}")
            details = {"technology": label, "attenuation_db": held_db, "trial": trial, "command": result.command,
                       "reconnected": result.latency_s is not None}
            value = result.latency_s if result.latency_s is not None else result.waited_s
            measure(f"reconnect_latency_{label}", value, "s", low=0.0, high=limit_s, uncertainty=result.uncertainty_s,
                    position=position.position, details=details)
            if result.latency_s is None:
                timed_out = True
                break
            latencies.append(result.latency_s)
        if latencies:
            row = step_row(label, held_db, latencies)
            rows.append(row)
            measure(f"reconnect_latency_{label}_step_max", row["max_s"], "s", low=0.0, high=limit_s,
                    position=position.position, details={**row, "trials": latencies})
        if timed_out:
            break
    return rows
