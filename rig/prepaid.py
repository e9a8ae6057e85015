"""Managed prepayment rules as data: a policy per discom (YAML) and the pure logic the HES twin and the plans share.

The head-end system holds each consumer's balance, charges it from meter reads, sends alerts at thresholds
in % of the last recharge, sends the disconnect when the credit is exhausted - never inside a no-disconnection
window (daily hours that may wrap midnight, weekdays, dated holidays), a grace period or emergency credit -
and the reconnect on recharge. Local times are naive datetimes in the policy's UTC offset; aware datetimes are
converted first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rig import money
from rig.errors import ConfigError
from rig.money import ZERO
from rig.yamlfile import read_yaml, validate

POLICY_DIR = Path(__file__).resolve().parent.parent / "testplans" / "prepaid" / "policies"
LIMITS_FILE = POLICY_DIR.parent / "limits.yaml"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
CALENDAR_BLOCKERS = frozenset({"holiday", "weekday", "hours"})
EMERGENCY_CREDIT_STATES = ("available", "active", "used")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _clock_time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"quote times in YAML ('HH:MM'): an unquoted time reads as the number {value}")
    return value


class DailyWindow(Strict):
    """A daily no-disconnection window [start, end) in local time; end before start wraps midnight."""

    start: time
    end: time

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            start, sep, end = data.partition("-")
            if not sep:
                raise ValueError(f"a daily window is 'HH:MM-HH:MM', got {data!r}")
            return {"start": start.strip(), "end": end.strip()}
        return data

    @field_validator("start", "end", mode="before")
    @classmethod
    def _times(cls, value: Any) -> Any:
        return _clock_time(value)

    @model_validator(mode="after")
    def _not_empty(self) -> DailyWindow:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start:%H:%M}: give a window of some length")
        return self

    @property
    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


class Holiday(Strict):
    date: date
    name: str = ""


class NoDisconnection(Strict):
    """When the HES must not disconnect: daily hours, whole weekdays and dated public holidays."""

    daily: list[DailyWindow] = []
    weekdays: list[Weekday] = []
    holidays: list[Holiday] = []

    @field_validator("weekdays", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return [day.lower() if isinstance(day, str) else day for day in value] if isinstance(value, list) else value

    @field_validator("holidays")
    @classmethod
    def _unique_dates(cls, holidays: list[Holiday]) -> list[Holiday]:
        seen: set[date] = set()
        for index, holiday in enumerate(holidays):
            if holiday.date in seen:
                raise ValueError(f"date {holiday.date} appears twice (again at holidays[{index}])")
            seen.add(holiday.date)
        return holidays


class EmergencyCredit(Strict):
    """Credit lent when the balance runs out: taken automatically at zero or on the consumer's request."""

    amount: Annotated[Decimal, Field(ge=0, decimal_places=2)] = ZERO
    automatic: bool = False

    @field_validator("amount")
    @classmethod
    def _in_paise(cls, amount: Decimal) -> Decimal:
        return amount.quantize(money.PAISA)


@dataclass(frozen=True)
class AccountState:
    """One consumer's prepaid account as the HES holds it (amounts in the policy's currency, rig.money)."""

    account_id: str
    balance: Decimal
    last_recharge: Decimal  # the base of the alert thresholds
    arrears: Decimal = ZERO  # consumption beyond the floor when the balance may not go negative; paid first
    alerts_sent: tuple[float, ...] = ()
    grace_until: datetime | None = None  # local time
    emergency_credit: str = "available"  # available, active, used (since the last recharge)
    emergency_credit_taken: Decimal = ZERO


@dataclass(frozen=True)
class Blocker:
    """One reason a disconnect may not be sent now; `kind` is balance, grace, emergency_credit or a calendar kind."""

    kind: str
    reason: str


class PrepaidPolicy(Strict):
    """A discom's prepaid rules."""

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    utc_offset: Annotated[str, Field(pattern=r"^[+-]\d{2}:\d{2}$")] = "+05:30"
    currency: str = "INR"
    tariff_per_kwh: Annotated[Decimal, Field(gt=0, le=money.MAX_TARIFF, decimal_places=4)]
    max_recharge: Annotated[Decimal, Field(gt=0, decimal_places=2)] = Decimal("100000.00")
    max_balance: Annotated[Decimal, Field(gt=0, le=Decimal("1e12"), decimal_places=2)] = money.MAX_BALANCE
    meter_read_interval_s: Annotated[float, Field(gt=0)]
    alert_thresholds_pct: list[Annotated[float, Field(ge=0, le=100)]] = [30.0, 10.0, 0.0]
    no_disconnection: NoDisconnection = NoDisconnection()
    grace_period_days: Annotated[float, Field(ge=0)] = 0.0
    emergency_credit: EmergencyCredit = EmergencyCredit()
    negative_balance_allowed: bool = False

    @model_validator(mode="after")
    def _recharge_within_balance(self) -> PrepaidPolicy:
        if self.max_recharge > self.max_balance:
            raise ValueError(f"max_recharge {self.max_recharge} is above max_balance {self.max_balance}")
        return self

    @field_validator("tariff_per_kwh", "max_recharge", "max_balance")
    @classmethod
    def _to_step(cls, value: Decimal, info) -> Decimal:
        return value.quantize(money.RATE_STEP if info.field_name == "tariff_per_kwh" else money.PAISA)

    @field_validator("alert_thresholds_pct")
    @classmethod
    def _descending(cls, thresholds: list[float]) -> list[float]:
        if len(set(thresholds)) != len(thresholds):
            raise ValueError("a threshold appears twice")
        return sorted(thresholds, reverse=True)

    # -- time ----------------------------------------------------------------------------------------------

    @property
    def tz(self) -> timezone:
        sign = -1 if self.utc_offset.startswith("-") else 1
        hours, minutes = self.utc_offset[1:].split(":")
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))

    def local(self, moment: datetime) -> datetime:
        """Naive local time of `moment` (aware datetimes are converted to the policy's offset)."""
        return moment.astimezone(self.tz).replace(tzinfo=None) if moment.tzinfo else moment

    def grace_until(self, converted_at: datetime | None) -> datetime | None:
        """End of the grace period after conversion to prepaid (local time), or None without one."""
        if converted_at is None or self.grace_period_days <= 0:
            return None
        return self.local(converted_at) + timedelta(days=self.grace_period_days)

    # -- disconnection -------------------------------------------------------------------------------------

    def calendar_blockers(self, moment: datetime) -> list[Blocker]:
        """The no-disconnection windows `moment` lies in: holiday, weekday, daily hours."""
        local = self.local(moment)
        rules = self.no_disconnection
        blockers = [Blocker("holiday", f"public holiday {h.date}" + (f" ({h.name})" if h.name else ""))
                    for h in rules.holidays if h.date == local.date()]
        weekday = WEEKDAYS[local.weekday()]
        if weekday in rules.weekdays:
            blockers.append(Blocker("weekday", f"no disconnection on {weekday.capitalize()}s"))
        blockers += [Blocker("hours", f"no-disconnection hours {w.label}") for w in rules.daily
                     if w.contains(local.time())]
        return blockers

    def disconnect_blockers(self, moment: datetime, account: AccountState) -> list[Blocker]:
        """Every reason the account may not be disconnected at `moment`; empty when it may."""
        local = self.local(moment)
        blockers = []
        if account.balance > 0:
            blockers.append(Blocker("balance", f"balance {account.balance:.2f} {self.currency} is positive"))
        if account.grace_until is not None and local < self.local(account.grace_until):
            blockers.append(Blocker("grace", f"grace period until {self.local(account.grace_until):%Y-%m-%d %H:%M}"))
        if emergency_credit_left(account) > 0:
            blockers.append(Blocker("emergency_credit", f"emergency credit in use "
                                    f"({emergency_credit_left(account):.2f} {self.currency} left)"))
        return blockers + self.calendar_blockers(local)

    def disconnect_allowed(self, moment: datetime, account: AccountState) -> tuple[bool, str]:
        """(True, why) when a disconnect may be sent now, else (False, every reason against it)."""
        blockers = self.disconnect_blockers(moment, account)
        if blockers:
            return False, "; ".join(b.reason for b in blockers)
        return True, f"credit exhausted (balance {account.balance:.2f} {self.currency}), no window applies"

    def next_disconnect_time(self, moment: datetime, horizon_days: int = 60) -> datetime | None:
        """The first local instant at or after `moment` outside every calendar window (None within the horizon)."""
        local = self.local(moment)
        candidates = [local]
        for offset in range(horizon_days + 1):
            day = local.date() + timedelta(days=offset)
            candidates.append(datetime.combine(day, time()))
            candidates += [datetime.combine(day, w.end) for w in self.no_disconnection.daily]
        for candidate in sorted(c for c in candidates if c >= local):
            if not self.calendar_blockers(candidate):
                return candidate
        return None

    # -- money (rig.money: Decimal, whole paise) ----------------------------------------------------------

    def new_account(self, account_id: str, opening_balance: Decimal | int | str, converted_at: datetime | None = None
                    ) -> AccountState:
        opening = money.amount(opening_balance, high=self.max_balance)
        return AccountState(account_id, opening, opening, grace_until=self.grace_until(converted_at))

    def cost(self, energy_wh: Decimal) -> Decimal:
        """What energy_wh costs at the tariff, rounded to the paisa once."""
        if not energy_wh.is_finite() or energy_wh < 0:
            raise ValueError(f"energy to charge must be a finite non-negative amount, got {energy_wh}")
        return money.energy_cost(energy_wh, self.tariff_per_kwh)

    def charge(self, account: AccountState, cost: Decimal) -> AccountState:
        """Debit the cost of energy (already rounded to the paisa, never negative)."""
        if cost < 0 or cost != cost.quantize(money.PAISA):
            raise ValueError(f"a charge must be a non-negative amount in whole paise, got {cost}")
        return self._debit(account, cost)

    def _debit(self, account: AccountState, amount: Decimal) -> AccountState:
        """Automatic emergency credit starts at zero balance; below the floor (zero, less emergency credit taken)
        a balance that may not go negative stays at the floor and the rest becomes arrears."""
        balance = account.balance - amount
        state, taken = account.emergency_credit, account.emergency_credit_taken
        credit = self.emergency_credit
        if state == "available" and balance <= 0 and credit.automatic and credit.amount > 0:
            state, taken = "active", credit.amount
        if state == "active" and balance <= -taken:
            state = "used"
        arrears = account.arrears
        if not self.negative_balance_allowed and balance < -taken:
            arrears += -taken - balance
            balance = -taken
        return replace(account, balance=balance, arrears=arrears, emergency_credit=state, emergency_credit_taken=taken)

    def _credit(self, account: AccountState, amount: Decimal) -> AccountState:
        """Arrears are paid first; a positive balance repays emergency credit and makes it available again."""
        paid = min(amount, account.arrears)
        balance = account.balance + amount - paid
        state, taken = account.emergency_credit, account.emergency_credit_taken
        if balance > 0:
            state, taken = "available", ZERO
        return replace(account, balance=balance, arrears=account.arrears - paid, emergency_credit=state,
                       emergency_credit_taken=taken)

    def _within_bound(self, before: AccountState, after: AccountState) -> AccountState:
        """The new state, unless its balance or arrears would leave +-max_balance (MoneyError)."""
        for what, value in (("balance", after.balance), ("arrears", after.arrears)):
            if abs(value) > self.max_balance:
                raise money.MoneyError(f"would take the {what} from {money.text(getattr(before, what))} to "
                                       f"{money.text(value)}, beyond the bound of {money.text(self.max_balance)}")
        return after

    def recharge(self, account: AccountState, amount: Decimal | int | str) -> AccountState:
        """Credit a recharge in (0, max_recharge]; alerts start over with this recharge as their base.
        MoneyError (a ValueError) saying why an amount is refused."""
        try:
            paid = money.amount(amount, high=self.max_recharge, positive=True)
        except money.MoneyError as exc:
            raise money.MoneyError(f"a recharge {exc}") from None
        credited = self._within_bound(account, self._credit(account, paid))
        return replace(credited, last_recharge=paid, alerts_sent=())

    def adjust(self, account: AccountState, amount: Decimal | int | str) -> AccountState:
        """A balance adjustment outside recharges (credit > 0, debit < 0); alerts and their base stay."""
        try:
            change = money.amount(amount, high=self.max_balance, nonzero=True)
        except money.MoneyError as exc:
            raise money.MoneyError(f"an adjustment {exc}") from None
        after = self._credit(account, change) if change > 0 else self._debit(account, -change)
        return self._within_bound(account, after)

    def take_emergency_credit(self, account: AccountState) -> AccountState:
        """Emergency credit on the consumer's request; ValueError saying why when it is not available."""
        if self.emergency_credit.amount <= 0:
            raise ValueError(f"policy {self.name} grants no emergency credit")
        if account.emergency_credit == "active":
            raise ValueError("emergency credit is already in use")
        if account.emergency_credit == "used":
            raise ValueError("emergency credit was already used since the last recharge")
        return replace(account, emergency_credit="active", emergency_credit_taken=self.emergency_credit.amount)

    def credit_exhausted(self, account: AccountState) -> bool:
        """No balance and no emergency credit left: the disconnect is due (windows permitting)."""
        return account.balance <= 0 and emergency_credit_left(account) <= 0

    def due_alerts(self, account: AccountState) -> list[float]:
        """Thresholds (% of the last recharge) the balance has reached and no alert was sent for, highest first;
        compared exactly (a threshold of 30 % of 100.00 INR is reached at 30.00 INR)."""
        base = max(account.last_recharge, ZERO)
        return [t for t in self.alert_thresholds_pct
                if t not in account.alerts_sent and account.balance * 100 <= base * money.exact(t)]


def emergency_credit_left(account: AccountState) -> Decimal:
    """Emergency credit still to spend (0 unless it is active)."""
    if account.emergency_credit != "active":
        return ZERO
    return max(account.balance + account.emergency_credit_taken, ZERO)


# -- files ---------------------------------------------------------------------------------------------------


class PrepaidLimits(Strict):
    """Timing limits a prepaid plan judges the HES and the meter by."""

    cutoff_after_exhaustion_max_s: Annotated[float, Field(gt=0)]
    credit_left_at_cutoff_max: Annotated[float, Field(ge=0)] = 0.0  # a measurement limit (rig.measure)
    reconnect_after_recharge_max_s: Annotated[float, Field(gt=0)]
    alert_after_threshold_max_s: Annotated[float, Field(gt=0)]
    group_command_max_s: Annotated[float, Field(gt=0)]
    on_demand_read_max_s: Annotated[float, Field(gt=0)]
    commands_executed_min_pct: Annotated[float, Field(ge=0, le=100)] = 100.0
    limiter_trip_tolerance_s: Annotated[float, Field(ge=0)]  # beyond min_over_threshold_duration
    power_cycle_hold_s: Annotated[float, Field(gt=0)]  # watched after power returns for a spurious reconnect


class LimitsFile(Strict):
    profiles: dict[str, PrepaidLimits]


def load_policy(source: str | Path | dict) -> PrepaidPolicy:
    """A policy from a mapping, a file path, or a name in testplans/prepaid/policies ('uppcl', 'bihar')."""
    if isinstance(source, dict):
        return validate(PrepaidPolicy, source, "prepaid policy")
    path = Path(source)
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1:
        path = POLICY_DIR / f"{path}.yaml"
    data, root = read_yaml(path, "prepaid policy")
    return validate(PrepaidPolicy, data, str(path), root)


def load_limits(profile: str = "twin", path: str | Path | None = None) -> PrepaidLimits:
    """One profile of the prepaid limits file (default testplans/prepaid/limits.yaml)."""
    path = Path(path) if path is not None else LIMITS_FILE
    data, root = read_yaml(path, "prepaid limits")
    limits = validate(LimitsFile, data, str(path), root)
    if profile not in limits.profiles:
        raise ConfigError(f"{path}: no profile {profile!r} (profiles: {', '.join(limits.profiles)})")
    return limits.profiles[profile]
