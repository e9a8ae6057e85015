"""The head-end system (HES) as a plan sees it: accounts and their credit, recharges, alerts, commands, clock.

Results are dataclasses; a request the head end refuses or fails raises `rig.errors.HeadEndError` (status, body;
a 401 or 403 names the operator refused, never the token).
Operators: a head end serves operators by bearer token, each with an HES role (read_only, auditor, recharge,
disconnect, administrator); the role acts as the bench's operator, and `as_operator(name)`, `as_role(role)`,
`without_token()` and `with_unknown_token()` give a head end acting as another (use it in a `with` block).
A group disconnect above the head end's blast radius waits for a second operator (`approve_group`); every command
and refused attempt is in its audit log (`audit`).
A head end that serves a fleet (the twin's: rig/sim/hes/fleet.py) registers fleet meters in bulk
(`register_fleet_meters`), lists them (`fleet_meters`), says where meters push (`push_endpoint`) and reports its
fleet metrics (`fleet_metrics`); one without a fleet API raises NotImplementedError there.
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
    """A group command: the commands the head end accepted and the accounts it refused, with its reasons; one of
    more meters than the blast radius is held (`awaiting_approval`) until a second operator approves it."""

    id: str
    commands: list[Command]
    refused: dict[str, str]  # account -> reason
    status: str = "accepted"  # accepted, awaiting_approval, approved, rejected
    requested_by: str | None = None
    approved_by: str | None = None
    held: list[str] = field(default_factory=list)  # accounts waiting for the approval
    skipped: dict[str, str] = field(default_factory=dict)  # account -> why it was no longer eligible at approval
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def awaiting_approval(self) -> bool:
        return self.status == "awaiting_approval"


@dataclass(frozen=True)
class AuditEntry(Answer):
    """One entry of the head end's audit log: who (operator, None when unauthenticated), what, which meters, when,
    with what outcome (done, held, denied, refused, failed) and HTTP status."""

    seq: int
    local_time: str
    operator: str | None
    action: str
    accounts: list[str]
    outcome: str
    status: int
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def as_record(self) -> dict:
        return dict(self.raw) or {k: v for k, v in asdict(self).items() if k != "raw"}


@dataclass(frozen=True)
class FleetMeterSpec:
    """A fleet meter to register: serial, endpoint ('tcp://127.x.y.z:port'), opening balance (None: the head end's
    default) and optional group and feeder tags."""

    serial: str
    endpoint: str
    balance: Decimal | None = None
    group: str | None = None
    feeder: str | None = None


class HeadEnd(ABC):
    """What a plan asks of the head end."""

    operator: str | None = None  # the operator this head end acts as (None: no token, or one the bench names not)

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

    @abstractmethod
    def disconnect(self, account: str) -> Command:
        """An operator's disconnect of one account."""

    @abstractmethod
    def connect(self, account: str) -> Command: ...

    @abstractmethod
    def group(self, group_id: str) -> GroupCommand: ...

    @abstractmethod
    def approve_group(self, group_id: str) -> GroupCommand:
        """Approve a group command held for a second operator, as this head end's operator."""

    @abstractmethod
    def reject_group(self, group_id: str) -> GroupCommand: ...

    @abstractmethod
    def approval_above_meters(self) -> int | None:
        """The largest group disconnect run without a second approver; None if the head end does not say."""

    @abstractmethod
    def audit(self, operator: str | None = None, action: str | None = None, account: str | None = None,
              outcome: str | None = None, since: int = 0) -> list[AuditEntry]: ...

    @abstractmethod
    def operators(self) -> dict[str, str]:
        """The operators the bench holds a token for, with their HES roles."""

    @abstractmethod
    def as_operator(self, name: str) -> HeadEnd:
        """This head end as another operator of the bench."""

    @abstractmethod
    def as_role(self, role: str, other_than: str | None = None) -> HeadEnd:
        """This head end as an operator with that HES role (not `other_than`)."""

    @abstractmethod
    def without_token(self) -> HeadEnd: ...

    @abstractmethod
    def with_unknown_token(self) -> HeadEnd: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> HeadEnd:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def pending_command(self, account: str) -> Command | None:
        """The account's command the head end has not settled, if any."""
        return next((c for c in self.commands(account=account) if not c.settled), None)

    # -- fleet (optional) ------------------------------------------------------------------------------------

    def register_fleet_meters(self, meters: list[FleetMeterSpec]) -> int:
        """Register fleet meters, each with its prepaid account; how many were registered."""
        raise NotImplementedError(f"{type(self).__name__} has no fleet API")

    def fleet_meters(self, group: str | None = None, feeder: str | None = None,
                     reachable: bool | None = None) -> list[dict]:
        """Every fleet meter (account fields and the head end's view of the meter), in registration order."""
        raise NotImplementedError(f"{type(self).__name__} has no fleet API")

    def fleet_metrics(self) -> dict:
        """Reads done and failed, command latencies, pushes, concurrent exchanges (the head end's own counts)."""
        raise NotImplementedError(f"{type(self).__name__} has no fleet API")

    def reset_fleet_metrics(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} has no fleet API")

    def push_endpoint(self) -> tuple[str, int] | None:
        """(host, port) where meters push their notifications; None if the head end listens for none."""
        raise NotImplementedError(f"{type(self).__name__} has no fleet API")
