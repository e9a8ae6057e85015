"""What every fleet plan works through: the fleet (started once per run, its meters pushing to the head end and
registered with it, each with an account), the head end (only through the HeadEnd role, so a real head end with
the same fleet API serves as well as the twin's), the plan data and the limits; a baseline every plan starts
from: mains at every meter, every account in credit, without grace, supplied, nothing pending."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from rig.errors import ConfigError
from rig.plan import PlanData, wait_until
from rig.roles import Fleet, HeadEnd
from rig.roles.headend import FleetMeterSpec
from rig.yamlfile import read_yaml, validate

HERE = Path(__file__).parent
LIMITS_FILE = HERE / "limits.yaml"
PLAN_FILE = HERE / "plan.yaml"
BASELINE_ROUNDS = 5


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetLimits(Strict):
    """What the fleet plans judge by, per kind of bench (testplans/fleet/limits.yaml)."""

    group_disconnect_max_s: Annotated[float, Field(gt=0)]  # group disconnect asked -> every eligible meter cut
    reconnect_max_s: Annotated[float, Field(gt=0)]  # one meter: recharge sent -> supply restored (p50, p95, p99)
    restoration_max_s: Annotated[float, Field(gt=0)]  # mains back -> every meter supplied (p50, p95, p99)
    command_success_min_pct: Annotated[float, Field(gt=0, le=100)]  # commands executed on the meters
    trial_timeout_s: Annotated[float, Field(gt=0)]  # a cut or a restoration waited at most this long
    settle_s: Annotated[float, Field(ge=0)]  # watched after the last command, for a late switching


class LimitsFile(Strict):
    profiles: dict[str, FleetLimits]


def load_limits(option: str) -> FleetLimits:
    """'PROFILE' (of testplans/fleet/limits.yaml) or 'FILE.yaml:PROFILE'."""
    path_text, _, profile = option.rpartition(":")
    path = Path(path_text) if path_text else LIMITS_FILE
    data, root = read_yaml(path, "fleet limits")
    limits = validate(LimitsFile, data, str(path), root)
    if profile not in limits.profiles:
        raise ConfigError(f"{path}: no profile {profile!r} (profiles: {', '.join(limits.profiles)})")
    return limits.profiles[profile]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def share(serials: list[str], fraction: float, offset: int = 0) -> list[str]:
    """Every k-th meter from `offset` (k from the fraction), so a share is spread over shards and addresses."""
    if fraction <= 0:
        return []
    step = max(1, round(1 / fraction))
    return serials[offset % step::step]


class FleetPlans:
    """The fleet, the head end, the plan data and the limits, and the steps the fleet plans share."""

    def __init__(self, fleet: Fleet, hes: HeadEnd, plan: PlanData, limits: FleetLimits):
        self.fleet, self.hes, self.plan, self.limits = fleet, hes, plan, limits
        self.serials: list[str] = []

    @property
    def recharge(self) -> Decimal:
        return Decimal(str(self.plan.recharge))

    # -- set-up ------------------------------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the fleet (its meters pushing to the head end) and register every meter with the head end, each
        with an account in credit; once per run."""
        if not self.fleet.running:
            meters = self.fleet.start(self.hes.push_endpoint())
            specs = [FleetMeterSpec(m.serial, m.endpoint, self.recharge, feeder=f"FD{i % self.plan.feeders:02d}")
                     for i, m in enumerate(meters)]
            self.hes.register_fleet_meters(specs)
        self.serials = [m.serial for m in self.fleet.meters()]

    def accounts(self) -> dict[str, dict]:
        """The head end's view of every fleet meter, by serial."""
        return {m["account"]: m for m in self.hes.fleet_meters()}

    def parallel(self, action, serials: list[str]) -> list:
        with ThreadPoolExecutor(self.plan.workers) as pool:
            return list(pool.map(action, serials))

    def baseline(self) -> None:
        """Mains at every meter, every account in credit (at least the plan's recharge) and without grace, every
        relay closed, nothing pending at the head end."""
        self.fleet.mains_on()
        self.fleet.wait_mains(self.limits.trial_timeout_s)
        accounts = self.accounts()
        self.parallel(lambda s: self.hes.set_conversion_date(s, None),
                      [s for s, a in accounts.items() if a.get("grace_until")])
        self.parallel(lambda s: self.hes.adjust_balance(s, self.recharge - Decimal(accounts[s]["balance"]),
                                                        "fleet plan baseline"),
                      [s for s, a in accounts.items() if Decimal(a["balance"]) < self.recharge])
        self.wait_nothing_pending()
        for _round in range(BASELINE_ROUNDS):  # a command the head end lost is asked again
            states = self.fleet.states()
            open_ = [s for s, a in self.accounts().items()
                     if a["supply"] != "connected" or not states[s].relay_connected]
            if not open_:
                break
            self.parallel(self.hes.connect, open_)
            self.wait_nothing_pending()
        missing = [s for s, when in self.fleet.wait_supplied(self.serials, self.limits.trial_timeout_s).items()
                   if when is None]
        if missing:
            raise ConfigError(f"fleet baseline: {len(missing)} meters not supplied within "
                              f"{self.limits.trial_timeout_s:g} s (first: {', '.join(missing[:5])})")

    def wait_nothing_pending(self, timeout_s: float | None = None) -> None:
        wait_until(lambda: not any(a["pending_command"] for a in self.accounts().values()),
                   timeout_s or self.limits.trial_timeout_s, "no command pending at the head end", poll_s=0.2)

    def debit(self, serials: list[str]) -> None:
        """Take every rupee of credit from these accounts."""
        accounts = self.accounts()
        self.parallel(lambda s: self.hes.adjust_balance(s, -Decimal(accounts[s]["balance"]), "fleet plan: no credit"),
                      [s for s in serials if Decimal(accounts[s]["balance"]) > 0])

    def wait_cut(self, serials: list[str], timeout_s: float, poll_s: float = 0.1) -> dict[str, float | None]:
        """The monotonic instant each meter's own relay was first seen open (None: not within timeout_s)."""
        seen: dict[str, float | None] = dict.fromkeys(serials)
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.fleet.states()
            now = time.monotonic()
            for serial, when in seen.items():
                if when is None and not states[serial].relay_connected:
                    seen[serial] = now
            if all(when is not None for when in seen.values()) or now > deadline:
                return seen
            time.sleep(poll_s)

    def cut_meters(self) -> set[str]:
        """The meters whose own relay is open."""
        return {serial for serial, state in self.fleet.states().items() if not state.relay_connected}

    def approved_group_disconnect(self, serials: list[str], reason: str):
        """A group disconnect asked by an operator with the disconnect right and, when the head end holds it for a
        second operator, approved by the bench's operator (the head end re-judges every account then)."""
        with self.hes.as_role("disconnect", other_than=self.hes.operator) as requester:
            group = requester.group_command("disconnect", serials, reason=reason)
        return self.hes.approve_group(group.id) if group.awaiting_approval else group

    @contextmanager
    def hes_clock(self):
        """The head end's clock put back where it would have been when the block ends."""
        before, began = self.hes.clock(), time.monotonic()
        try:
            yield before
        finally:
            self.hes.set_clock(before + timedelta(seconds=time.monotonic() - began))

    def local_time(self, name: str) -> datetime:
        """A local time of the plan data (ISO 8601 with its UTC offset)."""
        text = getattr(self.plan, name)
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"{PLAN_FILE}: {name}: {text!r} is not an ISO 8601 time") from None

    def differences(self) -> list[dict]:
        """Meters whose supply the head end records otherwise than the meter's own relay holds it."""
        states = self.fleet.states()
        return [{"meter": s, "hes": a["supply"], "meter_relay": "connected" if states[s].relay_connected else "open"}
                for s, a in self.accounts().items()
                if s in states and (a["supply"] == "connected") != states[s].relay_connected]


def latency_details(latencies: list[float]) -> dict:
    return {"meters": len(latencies), "p50_s": round(percentile(latencies, 0.5), 4),
            "p95_s": round(percentile(latencies, 0.95), 4), "p99_s": round(percentile(latencies, 0.99), 4),
            "max_s": round(max(latencies), 4)}
