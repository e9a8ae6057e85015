"""The head-end system (HES) as a plan sees it: accounts and their credit, recharges, alerts, commands, clock.

Results are dataclasses; a request the head end refuses or fails raises `rig.errors.HeadEndError` (status, body).
Money is `decimal.Decimal` in whole paise (rig.money): balances, amounts and emergency credit; the tariff to
0.0001 per kWh. An amount a plan passes may be a Decimal, an int, a decimal string or a float whose shortest
text has at most two decimals (500.0, 12.25); a plan rounds what it computes with `rig.money.paise` first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal

from rig.money import ZERO

SETTLED = ("executed", "failed", "cancelled")  # a command in any other status is still pending


class Answer:
    """The head end's own answer stays readable by key (`account["grace_until"]`) for what the fields leave out."""

    raw: dict

    def __getitem__(self, key: str):
        return self.raw[key]


@dataclass(frozen=True)
class EmergencyCredit:
    state: str  # none, available, active, used
    taken: Decimal


@dataclass(frozen=True)
class Account(Answer):
    """A consumer's prepaid account as the head end holds it."""

    id: str
    balance: Decimal
    currency: str
    supply: str  # connected, disconnected
    pending_command: str | None  # id of the command the head end has not settled
    emergency_credit: EmergencyCredit
    last_energy_wh: float | None = None
    disconnect_reason: str | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # everything the head end said

    @property
    def credit_left(self) -> Decimal:
        """Balance plus emergency credit still to spend (never below 0)."""
        taken = self.emergency_credit.taken if self.emergency_credit.state == "active" else ZERO
        return max(self.balance + taken, ZERO)

    @property
    def disconnected(self) -> bool:
        """The head end records the supply cut and has nothing pending for the account."""
        return self.supply == "disconnected" and not self.pending_command


@dataclass(frozen=True)
class Command(Answer):
    """A connect or disconnect the head end sends to a meter."""

    id: str
    account: str
    action: str  # connect, disconnect
    origin: str  # prepaid, recharge, emergency_credit, operator, group
    status: str  # queued, sent, retrying, then executed, failed or cancelled
    attempts: int = 0
    group: str | None = None
    error: str | None = None
    reason: str | None = None
    history: list[dict] = field(default_factory=list, compare=False)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    def as_record(self) -> dict:
        record = asdict(self)
        del record["raw"]
        return record


@dataclass(frozen=True)
class Credited(Answer):
    """The account after a recharge or an emergency credit, and the reconnect it queued (if any)."""

    account: Account
    reconnect: Command | None
    raw: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Alert(Answer):
    seq: int
    account: str
    threshold_pct: float
    balance: Decimal
    local_time: str
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def as_record(self) -> dict:
        return dict(self.raw) or {k: v for k, v in asdict(self).items() if k != "raw"}


@dataclass(frozen=True)
class GroupCommand(Answer):
    """A group command: the commands the head end accepted and the accounts it refused, with its reasons."""

    id: str
    commands: list[Command]
    refused: dict[str, str]  # account -> reason
    raw: dict = field(default_factory=dict, compare=False, repr=False)


class HeadEnd(ABC):
    """What a plan asks of the head end."""

    @abstractmethod
    def policy_name(self) -> str | None:
        """The prepaid policy the head end says it runs; None if it does not say."""

    @abstractmethod
    def account(self, account: str) -> Account: ...

    @abstractmethod
    def balance(self, account: str) -> Decimal: ...

    @abstractmethod
    def read_now(self, account: str) -> Account:
        """An on-demand read of the account's meter; the account as charged after it."""

    @abstractmethod
    def recharge(self, account: str, amount: Decimal | int | float | str, reference: str | None = None
                 ) -> Credited: ...

    @abstractmethod
    def adjust_balance(self, account: str, amount: Decimal | int | float | str, reason: str) -> Account: ...

    @abstractmethod
    def request_emergency_credit(self, account: str) -> Credited: ...

    @abstractmethod
    def tariff(self) -> Decimal:
        """Price of a kWh, in the account's currency."""

    @abstractmethod
    def set_tariff(self, per_kwh: Decimal | int | float | str) -> None: ...

    @abstractmethod
    def alerts(self, account: str | None = None) -> list[Alert]: ...

    @abstractmethod
    def command(self, command_id: str) -> Command: ...

    @abstractmethod
    def commands(self, account: str | None = None, group: str | None = None) -> list[Command]: ...

    @abstractmethod
    def group_command(self, action: str, accounts: list[str], reason: str | None = None) -> GroupCommand: ...

    @abstractmethod
    def clock(self) -> datetime: ...

    @abstractmethod
    def set_clock(self, local_time: datetime) -> datetime: ...

    def pending_command(self, account: str) -> Command | None:
        """The account's command the head end has not settled, if any."""
        return next((c for c in self.commands(account=account) if not c.settled), None)
