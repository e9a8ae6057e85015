"""The HES twin's prepaid engine: one account per position, charged from meter reads at the tariff, with the
alerts, disconnects and reconnects its policy calls for (rig/prepaid.py), the HES clock, and its records.

Every change of state is a truth event ("hes.<kind>") and an entry in the HES's own event log. Defects act
through the engine's hooks (rig/sim/hes/hooks.py), never inside the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from rig import money
from rig.errors import ConfigError
from rig.money import CumulativeCharge
from rig.prepaid import AccountState, Blocker, PrepaidPolicy, emergency_credit_left, load_policy
from rig.sim.hes.audit import AuditLog
from rig.sim.hes.auth import Role
from rig.sim.hes.commands import Command, CommandExecutor
from rig.sim.hes.hooks import EngineHooks
from rig.sim.hes.meter_link import MeterLink
from rig.sim.model import PhysicalModel

if TYPE_CHECKING:
    from rig.sim.hes.fleet import Fleet, FleetMeter


STOP_WAIT_S = 2.0  # a stopping HES waits this long for its cancelled tasks to end

class AccountSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    balance: Decimal | None = None  # INR, whole paise
    converted_at: datetime | None = None  # conversion to prepaid: starts the policy's grace period


class HesSettings(BaseModel):
    """Settings of the HES twin (role settings and twin.instruments.<role> merged; unknown keys ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    policy: str | dict = "uppcl"  # a name in testplans/prepaid/policies, a path, or the policy itself
    read_interval_s: Annotated[float, Field(gt=0)] | None = None  # default: the policy's meter_read_interval_s
    opening_balance: Decimal = Decimal("100.00")  # INR, whole paise, within the policy's max_balance
    accounts: dict[str, AccountSettings] = {}
    start_local_time: datetime | None = None  # HES clock at start (default: wall clock in the policy's offset)
    clock_offset_s: float = 0.0
    latency_s: Annotated[float, Field(ge=0)] = 0.0  # added before every HTTP answer
    command_delay_s: Annotated[float, Field(ge=0)] = 0.0  # queued -> sent
    link_latency_s: Annotated[float, Field(ge=0)] = 0.0  # one exchange with a meter
    command_attempts: Annotated[int, Field(ge=1)] = 10  # a command the meter does not answer is tried this often
    command_retry_s: Annotated[float, Field(gt=0)] = 1.0  # wait after an unanswered attempt
    meter_link: Literal["dlms", "model"] = "dlms"  # DLMS/COSEM over the radio link (DlmsMeterLink) or the model
    dlms_deadline_s: Annotated[float, Field(gt=0)] = 5.0  # one DLMS exchange with a meter, once the radio carried it
    read_deadline_s: Annotated[float, Field(gt=0)] = 1.5  # an on-demand read answers 504 without a reading by then
    token: str | None = None  # a lone administrator's bearer token (operator "operator"), besides `operators`
    operators: dict[str, Role] = {}  # operator -> role; each one's token is the secret token_<operator>
    auth_realm: str = "hes"  # the realm of the WWW-Authenticate challenge
    approval_above_meters: Annotated[int, Field(ge=1)] = 10  # a larger group disconnect needs a second approver
    log_requests: bool = False  # every HTTP request as a 'hes.request' truth event
    manufacturer: str = "Rig twin"
    product: str = "HES-SIM"
    instance: str = "SIM-HES-0001"
    version: str = "1.0"
    # the fleet (rig/sim/hes/fleet.py): meters registered over POST /fleet/meters, beside the bench's positions
    fleet_secret: SecretStr | None = None  # hex digits: the secret each fleet meter's keys derive from (a secret)
    push_port: Annotated[int, Field(ge=0, le=65535)] | None = 0  # push listener (0: a free port; None: none)
    push_host: str = "127.0.0.1"  # the address the push listener binds
    max_concurrent_exchanges: Annotated[int, Field(ge=1, le=10_000)] = 100  # DLMS exchanges with fleet meters
    fleet_link_latency_s: Annotated[float, Field(ge=0)] = 0.0  # added to every exchange with a fleet meter
    fleet_link_loss_pct: Annotated[float, Field(ge=0, le=100)] = 0.0  # exchanges with fleet meters lost
    fleet_command_expiry_s: Annotated[float, Field(gt=0)] = 3600.0  # a command waiting for its meter fails then


class MeterReadFailed(Exception):
    """A register read the meter did not answer; the message says why."""


@dataclass
class Account:
    state: AccountState
    position: int | None  # the bench's position; None for a fleet meter
    last_energy_wh: Decimal | None = None  # the register as last read, exactly
    metering: CumulativeCharge | None = None  # the energy charged at the current tariff since it took effect
    supply: str = "connected"  # as the HES believes after its executed commands
    disconnected_by: str | None = None
    in_flight: str | None = None  # id of a command not yet executed or failed
    exhausted_at: float | None = None  # monotonic
    deferred: str | None = None  # why the due disconnect is held back
    recharge_refs: set[str] = field(default_factory=set)
    reading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one register read at a time
    fleet: FleetMeter | None = None  # a fleet meter's registration (rig/sim/hes/fleet.py)


class PrepaidEngine:
    """Accounts of every position, the policy that judges them, the HES clock, the records, and the commands."""

    def __init__(self, role: str, model: PhysicalModel, settings: HesSettings, link: MeterLink, hooks: EngineHooks):
        self.role = role
        self.model = model
        self.settings = settings
        self.link = link
        self.hooks = hooks
        self.policy: PrepaidPolicy = load_policy(settings.policy)
        self.tariff_per_kwh = self.policy.tariff_per_kwh
        self.read_interval_s = settings.read_interval_s or self.policy.meter_read_interval_s
        serials = {meter.serial for meter in model.meters}
        unknown = set(settings.accounts) - serials
        if unknown:
            raise ConfigError(f"{role}: settings.accounts names {', '.join(sorted(unknown))}, which no position "
                              f"holds (meters: {', '.join(sorted(serials))})")
        self.accounts: dict[str, Account] = {}
        for meter in model.meters:
            extra = settings.accounts.get(meter.serial, AccountSettings())
            opening = extra.balance if extra.balance is not None else settings.opening_balance
            try:
                state = self.policy.new_account(meter.serial, opening, extra.converted_at)
            except money.MoneyError as exc:
                raise ConfigError(f"{role}: settings: opening balance of {meter.serial} {exc}") from None
            self.accounts[meter.serial] = Account(state, meter.position)
        self.offset_s = settings.clock_offset_s
        self._mono_origin = model.clock()
        start = settings.start_local_time or datetime.now(self.policy.tz)
        self._local_origin = start if start.tzinfo else start.replace(tzinfo=self.policy.tz)
        self.alerts: list[dict] = []
        self.events: list[dict] = []
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self.executor = CommandExecutor(self)
        self.audit = AuditLog()
        self.fleet: Fleet | None = None  # the fleet meters' registry, link, read scheduler and push listener

    # -- clock ---------------------------------------------------------------------------------------------

    def local_now(self) -> datetime:
        """The HES clock: aware, in the policy's UTC offset."""
        elapsed = self.model.clock() - self._mono_origin + self.offset_s
        return (self._local_origin + timedelta(seconds=elapsed)).astimezone(self.policy.tz)

    def offset_for(self, local_time: datetime) -> float:
        """The clock offset that makes the HES's clock read local_time now (naive: in the policy's zone)."""
        if local_time.tzinfo is None:
            local_time = local_time.replace(tzinfo=self.policy.tz)
        return self.offset_s + (local_time - self.local_now()).total_seconds()

    def set_clock(self, local_time: datetime) -> None:
        self.set_offset(self.offset_for(local_time))

    def set_offset(self, offset_s: float) -> None:
        self.offset_s = offset_s
        self.record("clock", offset_s=self.offset_s, local_time=self.iso(self.local_now()))
        self.evaluate_all()

    def set_tariff(self, per_kwh: Decimal) -> None:
        """A new tariff, for the energy each account's register counts from its last reading on."""
        self.tariff_per_kwh = per_kwh
        self.policy = self.policy.model_copy(update={"tariff_per_kwh": per_kwh})
        for account in self.accounts.values():
            if account.last_energy_wh is not None:
                account.metering = CumulativeCharge(account.last_energy_wh, per_kwh)
        self.record("tariff", per_kwh=per_kwh)

    def iso(self, moment: datetime | None) -> str | None:
        """ISO 8601 with the policy's offset (naive times are local)."""
        if moment is None:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=self.policy.tz)).isoformat(timespec="milliseconds")

    # -- records -------------------------------------------------------------------------------------------

    def record(self, kind: str, truth_only: bool = False, **fields: Any) -> None:
        """A truth event 'hes.<kind>' and, unless truth_only (what a defect did), an entry of the HES's event log.
        Amounts are written as the API writes them (rig.money: "12.30")."""
        fields = {key: _wire(key, value) for key, value in fields.items()}
        self.model.truth.event(f"hes.{kind}", role=self.role, hes_time=self.iso(self.local_now()), **fields)
        if not truth_only:
            self.events.append({"seq": next(self._seq), "local_time": self.iso(self.local_now()),
                                "type": kind, **fields})

    def account_json(self, account: Account) -> dict:
        state = account.state
        allowed, why = self.policy.disconnect_allowed(self.local_now(), state)
        return {"account": state.account_id, "meter": state.account_id, "position": account.position,
                "balance": money.text(state.balance), "currency": self.policy.currency,
                "last_recharge": money.text(state.last_recharge), "arrears": money.text(state.arrears),
                "alerts_sent": list(state.alerts_sent),
                "emergency_credit": {"state": state.emergency_credit,
                                     "taken": money.text(state.emergency_credit_taken)},
                "grace_until": self.iso(state.grace_until),
                "supply": account.supply, "disconnected_by": account.disconnected_by,
                "exhausted": self.policy.credit_exhausted(state), "pending_command": account.in_flight,
                "disconnect_allowed": allowed, "disconnect_reason": why,
                "last_energy_wh": _energy_json(account.last_energy_wh),
                **(account.fleet.as_json() if account.fleet is not None else {})}

    def link_for(self, account: Account) -> tuple[MeterLink, Any]:
        """The link that reaches the account's meter, and the meter's address on it (position or serial)."""
        if account.fleet is not None and self.fleet is not None:
            return self.fleet.link, account.state.account_id
        return self.link, account.position

    # -- reads ---------------------------------------------------------------------------------------------

    async def read_account(self, account: Account) -> None:
        """Read the meter's register and charge the energy since the last read; a read the meter does not answer
        is a 'read_failed' event and MeterReadFailed."""
        async with account.reading:
            link, address = self.link_for(account)
            try:
                energy_wh = await link.read_energy_wh(address)
            except Exception as exc:  # noqa: BLE001 - any link fault is recorded, the next read tries again
                cause = str(exc) or type(exc).__name__
                self.record("read_failed", account=account.state.account_id, error=cause)
                raise MeterReadFailed(cause) from None
            self._charge(account, _exact_energy(energy_wh))

    def _charge(self, account: Account, energy_wh: Decimal) -> None:
        """Charge the energy since the last reading without rounding drift (rig.money.CumulativeCharge)."""
        state = account.state
        previous, account.last_energy_wh = account.last_energy_wh, energy_wh
        if previous is None or energy_wh < previous or account.metering is None:
            account.metering = CumulativeCharge(energy_wh, self.tariff_per_kwh)
            if previous is None:
                self.record("baseline", account=state.account_id, energy_wh=energy_wh)
            elif energy_wh < previous:
                self.record("register_back", account=state.account_id, previous_wh=previous, energy_wh=energy_wh)
            return
        if energy_wh == previous:
            return
        cost = account.metering.charge_to(energy_wh)
        account.state = self.policy.charge(account.state, cost)
        self.record("balance", account=state.account_id, energy_wh=energy_wh, delta_wh=energy_wh - previous,
                    charged=cost, balance=account.state.balance, arrears=account.state.arrears)
        self.note_emergency_credit(account, state)

    def note_emergency_credit(self, account: Account, before: AccountState) -> None:
        """An 'emergency_credit' event when the account's emergency credit changed state since `before`."""
        if account.state.emergency_credit != before.emergency_credit:
            self.record("emergency_credit", account=before.account_id, state=account.state.emergency_credit,
                        taken=account.state.emergency_credit_taken)

    async def read_loop(self) -> None:
        """One reader per position's account, so a meter out of reach (its reads queued on the link) delays no
        other (fleet meters: their read scheduler, rig/sim/hes/fleet_schedule.py)."""
        await asyncio.gather(*(self._read_account_loop(account) for account in self.accounts.values()
                               if account.fleet is None))

    async def _read_account_loop(self, account: Account) -> None:
        """Read every read interval; a read due while a command is pending is skipped (commands go first)."""
        loop = asyncio.get_running_loop()
        next_read = loop.time()
        while True:
            try:
                if not account.in_flight:
                    with contextlib.suppress(MeterReadFailed):  # recorded; the balance stands as last read
                        await self.read_account(account)
                self.evaluate(account)
            except Exception as exc:  # noqa: BLE001 - the engine keeps running; the truth says what broke
                self.record("error", truth_only=True, error=repr(exc))
            next_read = max(next_read + self.read_interval_s, loop.time())  # a slow link skips, never bunches
            await asyncio.sleep(next_read - loop.time())

    def spawn(self, coroutine) -> asyncio.Task:
        """A task of this HES: cancelled when it stops."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Cancel every task of this HES (the read loop, reads, commands) at once; a stop waits for them at most
        STOP_WAIT_S (hundreds of fleet commands waiting for their meters have been seen to outlast a cancel)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_S)

    # -- policy --------------------------------------------------------------------------------------------

    def blockers(self, account: Account, group: bool) -> list[Blocker]:
        """Reasons against disconnecting now, as this HES (with its hooks) sees them."""
        return self.hooks.blockers(self.policy.disconnect_blockers(self.local_now(), account.state), group)

    def evaluate(self, account: Account) -> None:
        """Send due alerts; send the disconnect or reconnect the balance calls for."""
        self._send_alerts(account)
        state = account.state
        account_id = state.account_id
        if not self.hooks.exhausted(self.policy, state):
            account.exhausted_at = account.deferred = None
            if account.supply == "disconnected" and account.disconnected_by == "prepaid" and not account.in_flight:
                self.queue(account, "connect", "prepaid")
            return
        if account.exhausted_at is None:
            account.exhausted_at = self.model.clock()
            self.record("exhausted", account=account_id, balance=state.balance)
        if account.supply != "connected" or account.in_flight:
            return
        blockers = self.blockers(account, group=False)
        held = None if blockers else self.hooks.before_disconnect(account, self.model.clock())
        if held is not None:
            if account.deferred != "defect":
                account.deferred = "defect"
                self.record("disconnect_deferred", truth_only=True, account=account_id, reason=held)
            return
        reason = "; ".join(b.reason for b in blockers)
        if blockers:
            if account.deferred != reason:
                account.deferred = reason
                self.record("disconnect_deferred", account=account_id, reason=reason)
            return
        account.deferred = None
        if not self.policy.credit_exhausted(state):
            self.record("emergency_credit_ignored", truth_only=True, account=account_id, balance=state.balance,
                        emergency_credit_left=emergency_credit_left(state), defect="ignore_emergency_credit")
        self.queue(account, "disconnect", "prepaid")

    def _send_alerts(self, account: Account) -> None:
        state = account.state
        for threshold in self.policy.due_alerts(state):
            account.state = state = replace(state, alerts_sent=(*state.alerts_sent, threshold))
            defect = self.hooks.alert_suppressed(threshold)
            if defect is not None:
                self.record("alert_suppressed", truth_only=True, account=state.account_id, threshold_pct=threshold,
                            defect=defect)
                continue
            alert = {"seq": len(self.alerts) + 1, "account": state.account_id, "threshold_pct": threshold,
                     "balance": money.text(state.balance), "local_time": self.iso(self.local_now())}
            self.alerts.append(alert)
            self.record("alert", account=state.account_id, threshold_pct=threshold, balance=state.balance)

    def evaluate_all(self) -> None:
        for account in self.accounts.values():
            self.evaluate(account)

    def queue(self, account: Account, action: str, origin: str, group: str | None = None,
              by: str | None = None) -> Command:
        """A command for the account; `by` names the operator who asked for it (None: the HES itself)."""
        return self.executor.queue(account, action, origin, group, by)


def _exact_energy(energy_wh: Decimal | int | float) -> Decimal:
    """A link's reading as a Decimal (a float by its shortest text, as the register would show it)."""
    if isinstance(energy_wh, Decimal):
        return energy_wh
    return Decimal(energy_wh if isinstance(energy_wh, int) else repr(float(energy_wh)))


def _energy_json(energy_wh: Decimal | None) -> float | None:
    """A register reading as a JSON number (its shortest text is the reading's, e.g. 1234.567)."""
    return None if energy_wh is None else float(energy_wh)


def _wire(key: str, value: Any) -> Any:
    """A record's value as the API writes it: amounts with two decimals, a tariff with two to four, energy as a
    number."""
    if not isinstance(value, Decimal):
        return value
    if key == "per_kwh" or key.startswith("tariff"):
        return money.rate_text(value)
    if key.endswith("_wh"):
        return float(value)
    return money.text(value)
