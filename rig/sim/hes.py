"""Head-end system twin: managed prepayment for the bench's positions, served as an HTTP/JSON API (aiohttp).

One account per position, its id the meter's serial. Every read interval the HES reads each meter's energy
register through a `MeterLink`, charges the energy at the tariff, sends the alerts the policy asks for, and
sends the disconnect when the credit is exhausted and no window, grace period or emergency credit forbids it;
a recharge reconnects. Every change of state is a truth event ("hes.<kind>") and an entry in the HES's own
event log. The API is the one drivers/hes.py speaks (routes in `HesSim.routes`).

By default (`meter_link: dlms`) the HES reaches each twin DLMS meter as a DLMS/COSEM client over the position's
radio link (rig/sim/dlms_link.py): a command stays 'queued' while the link cannot carry it, is 'sent' when it
does and 'executed' when the meter has answered. Each account is read by its own task.

A disconnect is judged again at the last moment before it is sent (and before every retry) by the same guard that
let it be queued: one the account no longer calls for (a recharge, a grace period or a window since) is
'cancelled', with the reason, and never reaches the meter. An on-demand read (POST /accounts/{id}/read) answers
200 only with a fresh reading: 502 when the meter could not be read, 504 when no reading came within
`read_deadline_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rig.config import position_of_role
from rig.errors import ConfigError
from rig.prepaid import CALENDAR_BLOCKERS, AccountState, Blocker, PrepaidPolicy, emergency_credit_left, load_policy
from rig.sim.dlms_link import DlmsMeterLink
from rig.sim.dlms_meter import DlmsMeterSim
from rig.sim.model import PhysicalModel


class MeterLink(Protocol):
    """How the HES reaches a position's meter: energy register reads and the remote disconnect/reconnect.
    A command calls `on_sent()` when it leaves the head end (the link carried it), then returns once the meter
    has executed it; it raises when the meter does not answer or refuses. `on_sent()` may raise to withdraw the
    command at that moment: the exception leaves the link call and nothing reaches the meter."""

    async def read_energy_wh(self, position: int) -> float: ...

    async def disconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None: ...

    async def reconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None: ...


class ModelMeterLink:
    """Reaches the meters inside the twin, after `latency_s`: through a position's simulated meter (its disconnect
    control state machine) where the bench has one, else on the model directly; no radio link, no protocol
    (HES setting `meter_link: model`, and the stand-in for positions without a twin DLMS meter)."""

    def __init__(self, model: PhysicalModel, by: str = "hes", latency_s: float = 0.0):
        self.model = model
        self.by = by
        self.latency_s = latency_s
        self.meters: dict[int, Any] = {}  # position -> simulated meter with remote_disconnect/remote_reconnect

    async def _exchange(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    async def read_energy_wh(self, position: int) -> float:
        await self._exchange()
        self.model.now()
        return self.model.meter(position).register_energy_wh

    async def disconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None:
        if on_sent is not None:
            on_sent()
        await self._exchange()
        if position in self.meters:
            self.meters[position].remote_disconnect(by=f"{self.by} remote disconnect")
        else:
            self.model.set_relay(position, False, by=f"{self.by} remote disconnect")

    async def reconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None:
        if on_sent is not None:
            on_sent()
        await self._exchange()
        if position in self.meters:
            self.meters[position].remote_reconnect(by=f"{self.by} remote reconnect")
        else:
            self.model.set_relay(position, True, by=f"{self.by} remote reconnect")


class AccountSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    balance: float | None = None
    converted_at: datetime | None = None  # conversion to prepaid: starts the policy's grace period


class HesSettings(BaseModel):
    """Settings of the HES twin (role settings and twin.instruments.<role> merged; unknown keys ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    policy: str | dict = "uppcl"  # a name in testplans/prepaid/policies, a path, or the policy itself
    read_interval_s: Annotated[float, Field(gt=0)] | None = None  # default: the policy's meter_read_interval_s
    opening_balance: float = 100.0
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
    token: str | None = None  # bearer token the API demands, if set
    log_requests: bool = False  # every HTTP request as a 'hes.request' truth event
    manufacturer: str = "Rig twin"
    product: str = "HES-SIM"
    instance: str = "SIM-HES-0001"
    version: str = "1.0"


class ApiError(Exception):
    """An error answer: {"error": message, **fields} with this HTTP status."""

    def __init__(self, status: int, message: str, **fields: Any):
        super().__init__(message)
        self.status = status
        self.fields = fields


class MeterReadFailed(Exception):
    """A register read the meter did not answer; the message says why."""


class CommandWithdrawn(Exception):
    """A command the HES takes back just before sending it; the message says why."""


@dataclass
class Command:
    id: str
    account: str
    position: int
    action: str  # disconnect, connect
    origin: str  # prepaid, recharge, emergency_credit, operator, group
    group: str | None = None
    status: str = "queued"  # queued, sent, retrying, then executed, failed or cancelled
    error: str | None = None
    reason: str | None = None  # why it was cancelled
    attempts: int = 0
    history: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"id": self.id, "account": self.account, "action": self.action, "origin": self.origin,
                "group": self.group, "status": self.status, "error": self.error, "reason": self.reason,
                "attempts": self.attempts, "history": self.history}


@dataclass
class Account:
    state: AccountState
    position: int
    last_energy_wh: float | None = None
    supply: str = "connected"  # as the HES believes after its executed commands
    disconnected_by: str | None = None
    in_flight: str | None = None  # id of a command not yet executed or failed
    exhausted_at: float | None = None  # monotonic
    deferred: str | None = None  # why the due disconnect is held back
    recharge_refs: set[str] = field(default_factory=set)
    reading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one register read at a time


def _outcome_seen(task: asyncio.Task) -> None:
    """Take a finished task's outcome, so that a read failing after its caller stopped waiting (a 'read_failed'
    event already) is not reported again as an exception nobody retrieved."""
    if not task.cancelled():
        task.exception()


def _number(body: dict, key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"'{key}' must be a number, got {value!r}")
    return float(value)


class HesSim:
    """Managed-prepayment HES for every position of the bench (driver "hes_http", transport "http")."""

    transport = "http"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        self.role = role
        self.model = model
        try:
            self.settings = HesSettings.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{role}: settings.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        self.defects = model.defects.hes
        self.policy: PrepaidPolicy = load_policy(self.settings.policy)
        self.tariff_per_kwh = self.policy.tariff_per_kwh
        self.read_interval_s = self.settings.read_interval_s or self.policy.meter_read_interval_s
        self.model_link = ModelMeterLink(model, by=role, latency_s=self.settings.link_latency_s)
        self.link: MeterLink = self.model_link
        if self.settings.meter_link == "dlms":
            self.link = DlmsMeterLink(model, self.model_link, by=role, deadline_s=self.settings.dlms_deadline_s)
        serials = {meter.serial for meter in model.meters}
        unknown = set(self.settings.accounts) - serials
        if unknown:
            raise ConfigError(f"{role}: settings.accounts names {', '.join(sorted(unknown))}, which no position "
                              f"holds (meters: {', '.join(sorted(serials))})")
        self.accounts: dict[str, Account] = {}
        for meter in model.meters:
            extra = self.settings.accounts.get(meter.serial, AccountSettings())
            opening = extra.balance if extra.balance is not None else self.settings.opening_balance
            state = self.policy.new_account(meter.serial, opening, extra.converted_at)
            self.accounts[meter.serial] = Account(state, meter.position)
        self.offset_s = self.settings.clock_offset_s
        self._mono_origin = model.clock()
        start = self.settings.start_local_time or datetime.now(self.policy.tz)
        self._local_origin = start if start.tzinfo else start.replace(tzinfo=self.policy.tz)
        self.commands: dict[str, Command] = {}
        self.groups: dict[str, dict] = {}
        self.alerts: list[dict] = []
        self.events: list[dict] = []
        self._ids = {"cmd": itertools.count(1), "grp": itertools.count(1)}
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._reader: asyncio.Task | None = None

    # -- clock ---------------------------------------------------------------------------------------------


    def attach(self, instruments: dict[str, Any]) -> None:
        """Reach the positions' simulated meters where the twin has them: over DLMS and the radio link (meter_link
        dlms, DLMS meters), else through their disconnect control state machine."""
        for role, instrument in instruments.items():
            position = position_of_role(role)
            if position is None or not role.startswith("meter@"):
                continue
            if isinstance(self.link, DlmsMeterLink) and isinstance(instrument, DlmsMeterSim):
                self.link.add_meter(position, instrument)
            elif hasattr(instrument, "remote_disconnect"):
                self.model_link.meters[position] = instrument

    def local_now(self) -> datetime:
        """The HES clock: aware, in the policy's UTC offset."""
        elapsed = self.model.clock() - self._mono_origin + self.offset_s
        return (self._local_origin + timedelta(seconds=elapsed)).astimezone(self.policy.tz)

    def set_clock(self, local_time: datetime) -> None:
        if local_time.tzinfo is None:
            local_time = local_time.replace(tzinfo=self.policy.tz)
        self.offset_s += (local_time - self.local_now()).total_seconds()
        self._event("clock", offset_s=self.offset_s, local_time=self._iso(self.local_now()))
        self.evaluate_all()

    def _iso(self, moment: datetime | None) -> str | None:
        """ISO 8601 with the policy's offset (naive times are local)."""
        if moment is None:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=self.policy.tz)).isoformat(timespec="milliseconds")

    # -- records -------------------------------------------------------------------------------------------

    def _event(self, kind: str, truth_only: bool = False, **fields: Any) -> None:
        """A truth event 'hes.<kind>' and, unless truth_only (what a defect did), an entry of the HES's event log."""
        self.model.truth.event(f"hes.{kind}", role=self.role, hes_time=self._iso(self.local_now()), **fields)
        if not truth_only:
            self.events.append({"seq": next(self._seq), "local_time": self._iso(self.local_now()),
                                "type": kind, **fields})

    def account_json(self, account: Account) -> dict:
        state = account.state
        allowed, why = self.policy.disconnect_allowed(self.local_now(), state)
        return {"account": state.account_id, "meter": state.account_id, "position": account.position,
                "balance": state.balance, "currency": self.policy.currency, "last_recharge": state.last_recharge,
                "arrears": state.arrears, "alerts_sent": list(state.alerts_sent),
                "emergency_credit": {"state": state.emergency_credit, "taken": state.emergency_credit_taken},
                "grace_until": self._iso(state.grace_until),
                "supply": account.supply, "disconnected_by": account.disconnected_by,
                "exhausted": self.policy.credit_exhausted(state), "pending_command": account.in_flight,
                "disconnect_allowed": allowed, "disconnect_reason": why,
                "last_energy_wh": account.last_energy_wh}

    # -- prepaid engine ------------------------------------------------------------------------------------

    async def read_account(self, account: Account) -> None:
        """Read the meter's register and charge the energy since the last read; a read the meter does not answer
        is a 'read_failed' event and MeterReadFailed."""
        async with account.reading:
            try:
                energy_wh = await self.link.read_energy_wh(account.position)
            except Exception as exc:  # noqa: BLE001 - any link fault is recorded, the next read tries again
                cause = str(exc) or type(exc).__name__
                self._event("read_failed", account=account.state.account_id, error=cause)
                raise MeterReadFailed(cause) from None
            self._charge(account, energy_wh)

    def _charge(self, account: Account, energy_wh: float) -> None:
        state = account.state
        previous, account.last_energy_wh = account.last_energy_wh, energy_wh
        if previous is None:
            self._event("baseline", account=state.account_id, energy_wh=energy_wh)
            return
        if energy_wh < previous:
            self._event("register_back", account=state.account_id, previous_wh=previous, energy_wh=energy_wh)
            return
        if energy_wh == previous:
            return
        account.state, cost = self.policy.charge(account.state, (energy_wh - previous) / 1000.0)
        self._event("balance", account=state.account_id, energy_wh=energy_wh, delta_wh=energy_wh - previous,
                    charged=cost, balance=account.state.balance, arrears=account.state.arrears)
        if account.state.emergency_credit != state.emergency_credit:
            self._event("emergency_credit", account=state.account_id, state=account.state.emergency_credit,
                        taken=account.state.emergency_credit_taken)

    def blockers(self, account: Account, group: bool) -> list[Blocker]:
        """Reasons against disconnecting now, as this HES (with its defects) sees them."""
        blockers = self.policy.disconnect_blockers(self.local_now(), account.state)
        if self.defects.ignore_friendly_hours:
            blockers = [b for b in blockers if b.kind not in CALENDAR_BLOCKERS]
        if group and self.defects.disconnect_positive_balance:
            blockers = [b for b in blockers if b.kind != "balance"]
        if self.defects.ignore_emergency_credit:
            blockers = [b for b in blockers if b.kind != "emergency_credit"]
        return blockers

    def exhausted(self, state: AccountState) -> bool:
        """The credit is used up, as this HES sees it (ignore_emergency_credit: the balance alone counts)."""
        if self.defects.ignore_emergency_credit:
            return state.balance <= 0
        return self.policy.credit_exhausted(state)

    def evaluate(self, account: Account) -> None:
        """Send due alerts; send the disconnect or reconnect the balance calls for."""
        state = account.state
        account_id = state.account_id
        for threshold in self.policy.due_alerts(state):
            account.state = state = replace(state, alerts_sent=(*state.alerts_sent, threshold))
            if threshold in self.defects.skip_alerts:
                self._event("alert_suppressed", truth_only=True, account=account_id, threshold_pct=threshold,
                            defect="skip_alerts")
                continue
            alert = {"seq": len(self.alerts) + 1, "account": account_id, "threshold_pct": threshold,
                     "balance": state.balance, "local_time": self._iso(self.local_now())}
            self.alerts.append(alert)
            self._event("alert", account=account_id, threshold_pct=threshold, balance=state.balance)
        if not self.exhausted(state):
            account.exhausted_at = account.deferred = None
            if account.supply == "disconnected" and account.disconnected_by == "prepaid" and not account.in_flight:
                self.queue(account, "connect", "prepaid")
            return
        if account.exhausted_at is None:
            account.exhausted_at = self.model.clock()
            self._event("exhausted", account=account_id, balance=state.balance)
        if account.supply != "connected" or account.in_flight:
            return
        blockers = self.blockers(account, group=False)
        reason = "; ".join(b.reason for b in blockers)
        if not blockers and self.model.clock() < account.exhausted_at + self.defects.disconnect_delay_s:
            if account.deferred != "defect":
                account.deferred = "defect"
                self._event("disconnect_deferred", truth_only=True, account=account_id,
                            reason=f"defect disconnect_delay_s {self.defects.disconnect_delay_s:g} s")
            return
        if blockers:
            if account.deferred != reason:
                account.deferred = reason
                self._event("disconnect_deferred", account=account_id, reason=reason)
            return
        account.deferred = None
        if not self.policy.credit_exhausted(state):
            self._event("emergency_credit_ignored", truth_only=True, account=account_id, balance=state.balance,
                        emergency_credit_left=emergency_credit_left(state), defect="ignore_emergency_credit")
        self.queue(account, "disconnect", "prepaid")

    def evaluate_all(self) -> None:
        for account in self.accounts.values():
            self.evaluate(account)

    async def _read_loop(self) -> None:
        """One reader per account, so a meter out of reach (its reads queued on the link) delays no other."""
        await asyncio.gather(*(self._read_account_loop(account) for account in self.accounts.values()))

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
                self._event("error", truth_only=True, error=repr(exc))
            next_read = max(next_read + self.read_interval_s, loop.time())  # a slow link skips, never bunches
            await asyncio.sleep(next_read - loop.time())

    # -- commands ------------------------------------------------------------------------------------------

    def queue(self, account: Account, action: str, origin: str, group: str | None = None) -> Command:
        command = Command(f"cmd-{next(self._ids['cmd'])}", account.state.account_id, account.position, action,
                          origin, group)
        self.commands[command.id] = command
        account.in_flight = command.id
        self._set_status(command, "queued")
        self._spawn(self._execute(command, account))
        return command

    def _spawn(self, coroutine) -> asyncio.Task:
        """A task of this HES: cancelled when it stops."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set_status(self, command: Command, status: str, error: str | None = None, reason: str | None = None) -> None:
        command.status, command.error, command.reason = status, error, reason
        command.history.append({"status": status, "local_time": self._iso(self.local_now()),
                                **({"attempt": command.attempts, "error": error} if error else {}),
                                **({"reason": reason} if reason else {})})
        self._event("command", command=command.id, account=command.account, action=command.action,
                    origin=command.origin, group=command.group, status=status, error=error,
                    attempt=command.attempts, **({"reason": reason} if reason else {}))

    def _no_longer_due(self, command: Command, account: Account) -> str | None:
        """Why a disconnect must not be sent now, by the guard that let it be queued (as this HES, with its
        defects, applies it); None while it is still due, and for every reconnect."""
        if command.action != "disconnect":
            return None
        return "; ".join(b.reason for b in self.blockers(account, group=command.origin == "group")) or None

    def _cancel(self, command: Command, account: Account, reason: str) -> None:
        self._set_status(command, "cancelled", reason=reason)
        self._event("disconnect_cancelled", account=command.account, position=command.position, command=command.id,
                    origin=command.origin, group=command.group, balance=account.state.balance, reason=reason)

    async def _execute(self, command: Command, account: Account) -> None:
        """Send the command; one the meter does not answer is sent again after command_retry_s, at most
        command_attempts times in all ('retrying' in between, then 'failed'). A disconnect the account no longer
        calls for, judged before every attempt and again as the link carries it, is cancelled instead."""
        if self.settings.command_delay_s:
            await asyncio.sleep(self.settings.command_delay_s)
        settled = False  # executed or cancelled: the account's state is known again
        try:
            while True:
                reason = self._no_longer_due(command, account)
                if reason is not None:
                    self._cancel(command, account, reason)
                    settled = True
                    break
                command.attempts += 1

                def sent() -> None:  # the link carried it (after waiting out an outage, say): the last moment
                    withdrawn = self._no_longer_due(command, account)
                    if withdrawn is not None:
                        raise CommandWithdrawn(withdrawn)
                    self._set_status(command, "sent")
                    kind = "disconnect_sent" if command.action == "disconnect" else "reconnect_sent"
                    self._event(kind, account=command.account, position=command.position, command=command.id,
                                origin=command.origin, group=command.group, balance=account.state.balance,
                                attempt=command.attempts)
                try:
                    if command.action == "disconnect":
                        await self.link.disconnect(command.position, on_sent=sent)
                    else:
                        await self.link.reconnect(command.position, on_sent=sent)
                except CommandWithdrawn as exc:
                    self._cancel(command, account, str(exc))
                    settled = True
                    break
                except Exception as exc:  # noqa: BLE001 - a failed command is a status, not a crash
                    error = str(exc) or type(exc).__name__
                    if command.attempts >= self.settings.command_attempts:
                        self._set_status(command, "failed", error)
                        break
                    self._set_status(command, "retrying", error)
                    await asyncio.sleep(self.settings.command_retry_s)
                    continue
                account.supply = "disconnected" if command.action == "disconnect" else "connected"
                account.disconnected_by = command.origin if command.action == "disconnect" else None
                self._set_status(command, "executed")
                settled = True
                break
        finally:
            if account.in_flight == command.id:
                account.in_flight = None
        if settled:
            self.evaluate(account)  # after a failure the read loop evaluates again at its next read

    # -- HTTP ----------------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/version", self._version), web.get("/status", self._status),
                web.get("/clock", self._clock), web.put("/clock", self._put_clock),
                web.get("/tariff", self._tariff), web.put("/tariff", self._put_tariff),
                web.get("/accounts", self._accounts), web.get("/accounts/{account}", self._account),
                web.patch("/accounts/{account}", self._patch_account),
                web.post("/accounts/{account}/read", self._read),
                web.post("/accounts/{account}/recharge", self._recharge),
                web.post("/accounts/{account}/adjustment", self._adjustment),
                web.post("/accounts/{account}/emergency-credit", self._emergency_credit),
                web.post("/accounts/{account}/disconnect", self._disconnect),
                web.post("/accounts/{account}/connect", self._connect),
                web.post("/group-commands", self._group), web.get("/group-commands/{group}", self._get_group),
                web.get("/commands", self._commands), web.get("/commands/{command}", self._command),
                web.get("/alerts", self._alerts), web.get("/events", self._events)]

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if self.settings.latency_s:
            await asyncio.sleep(self.settings.latency_s)
        try:
            token = self.settings.token
            if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
                raise ApiError(401, "missing or wrong bearer token")
            response = await handler(request)
        except ApiError as exc:
            response = web.json_response({"error": str(exc), **exc.fields}, status=exc.status)
        except web.HTTPException as exc:
            response = web.json_response({"error": exc.reason}, status=exc.status)
        if self.settings.log_requests:
            self.model.truth.event("hes.request", role=self.role, method=request.method, path=request.path_qs,
                                   status=response.status)
        return response

    async def start(self, host: str, port: int) -> int:
        """Serve the API on host:port (0: a free port) and start the read loop; return the bound port."""
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(f"{self.role}: cannot serve HTTP on {host}:{port}: {exc.strerror}") from None
        bound = self._runner.addresses[0][1]
        reaches = getattr(self.link, "reaches", lambda _position: "model")
        self._event("start", truth_only=True, policy=self.policy.name, read_interval_s=self.read_interval_s,
                    tariff_per_kwh=self.tariff_per_kwh, defects=self.defects.model_dump(),
                    meter_link={a.position: reaches(a.position) for a in self.accounts.values()},
                    accounts={a.state.account_id: a.state.balance for a in self.accounts.values()})
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        return bound

    async def stop(self) -> None:
        tasks = [task for task in (self._reader, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reader = None
        if isinstance(self.link, DlmsMeterLink):
            await self.link.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _body(self, request: web.Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _account_of(self, request: web.Request) -> Account:
        account_id = request.match_info["account"]
        try:
            return self.accounts[account_id]
        except KeyError:
            raise ApiError(404, f"unknown account {account_id!r}") from None

    async def _version(self, _request: web.Request) -> web.Response:
        s = self.settings
        return web.json_response({"manufacturer": s.manufacturer, "product": s.product, "instance": s.instance,
                                  "version": s.version})

    async def _status(self, _request: web.Request) -> web.Response:
        return web.json_response({"local_time": self._iso(self.local_now()), "policy": self.policy.name,
                                  "accounts": len(self.accounts), "read_interval_s": self.read_interval_s,
                                  "commands_pending": sum(1 for a in self.accounts.values() if a.in_flight)})

    async def _clock(self, _request: web.Request) -> web.Response:
        return web.json_response({"local_time": self._iso(self.local_now()), "offset_s": self.offset_s,
                                  "utc_offset": self.policy.utc_offset})

    async def _put_clock(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if "local_time" in body:
            try:
                self.set_clock(datetime.fromisoformat(str(body["local_time"])))
            except ValueError:
                raise ApiError(400, f"'local_time' is not an ISO 8601 time: {body['local_time']!r}") from None
        elif "offset_s" in body:
            self.offset_s = _number(body, "offset_s")
            self._event("clock", offset_s=self.offset_s, local_time=self._iso(self.local_now()))
            self.evaluate_all()
        else:
            raise ApiError(400, "give 'local_time' or 'offset_s'")
        return await self._clock(request)

    async def _tariff(self, _request: web.Request) -> web.Response:
        return web.json_response({"per_kwh": self.tariff_per_kwh, "currency": self.policy.currency})

    async def _put_tariff(self, request: web.Request) -> web.Response:
        per_kwh = _number(await self._body(request), "per_kwh")
        if per_kwh <= 0:
            raise ApiError(422, f"a tariff must be positive, got {per_kwh:g}")
        self.tariff_per_kwh = per_kwh
        self.policy = self.policy.model_copy(update={"tariff_per_kwh": per_kwh})
        self._event("tariff", per_kwh=per_kwh)
        return await self._tariff(request)

    async def _accounts(self, _request: web.Request) -> web.Response:
        return web.json_response([self.account_json(a) for a in self.accounts.values()])

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response(self.account_json(self._account_of(request)))

    async def _patch_account(self, request: web.Request) -> web.Response:
        account = self._account_of(request)
        body = await self._body(request)
        if set(body) != {"converted_at"}:
            raise ApiError(400, "only 'converted_at' (ISO 8601 or null) may be changed")
        converted = body["converted_at"]
        try:
            when = datetime.fromisoformat(converted) if converted is not None else None
        except (TypeError, ValueError):
            raise ApiError(400, f"'converted_at' is not an ISO 8601 time: {converted!r}") from None
        account.state = replace(account.state, grace_until=self.policy.grace_until(when))
        self._event("grace", account=account.state.account_id, converted_at=converted,
                    grace_until=self._iso(account.state.grace_until))
        self.evaluate(account)
        return web.json_response(self.account_json(account))

    async def _read(self, request: web.Request) -> web.Response:
        """200 with the account charged by a fresh reading; 502 when the meter could not be read, 504 when no
        reading came within read_deadline_s (the read goes on and charges the account if it comes)."""
        account = self._account_of(request)
        account_id = account.state.account_id
        read = self._spawn(self.read_account(account))
        done, _ = await asyncio.wait({read}, timeout=self.settings.read_deadline_s)
        if not done:
            read.add_done_callback(_outcome_seen)
            cause = f"no reading within {self.settings.read_deadline_s:g} s"
            self._event("read_timeout", account=account_id, deadline_s=self.settings.read_deadline_s)
            raise ApiError(504, f"account {account_id}: the meter was not read: {cause}", account=account_id,
                           cause=cause)
        failure = read.exception()
        if isinstance(failure, MeterReadFailed):
            raise ApiError(502, f"account {account_id}: the meter was not read: {failure}", account=account_id,
                           cause=str(failure))
        if failure is not None:
            raise failure
        self.evaluate(account)
        return web.json_response(self.account_json(account))

    async def _recharge(self, request: web.Request) -> web.Response:
        account = self._account_of(request)
        body = await self._body(request)
        amount = _number(body, "amount")
        reference = body.get("reference")
        if amount <= 0:
            raise ApiError(422, f"account {account.state.account_id}: a recharge must be positive, got {amount:g}")
        if reference is not None and reference in account.recharge_refs:
            raise ApiError(409, f"account {account.state.account_id}: recharge {reference!r} was already credited")
        if reference is not None:
            account.recharge_refs.add(str(reference))
        account.state = self.policy.recharge(account.state, amount)
        self._event("recharge", account=account.state.account_id, amount=amount, reference=reference,
                    balance=account.state.balance, arrears=account.state.arrears)
        reconnect = None
        if account.state.balance > 0 and account.supply == "disconnected" and not account.in_flight:
            reconnect = self.queue(account, "connect", "recharge")
        self.evaluate(account)
        return web.json_response({"account": self.account_json(account),
                                  "reconnect": reconnect.as_json() if reconnect else None})

    async def _adjustment(self, request: web.Request) -> web.Response:
        account = self._account_of(request)
        body = await self._body(request)
        amount = _number(body, "amount")
        if amount == 0:
            raise ApiError(422, f"account {account.state.account_id}: an adjustment must not be zero")
        state = account.state
        account.state = self.policy.adjust(state, amount)
        self._event("adjustment", account=state.account_id, amount=amount, reason=body.get("reason"),
                    balance=account.state.balance, arrears=account.state.arrears)
        if account.state.emergency_credit != state.emergency_credit:
            self._event("emergency_credit", account=state.account_id, state=account.state.emergency_credit,
                        taken=account.state.emergency_credit_taken)
        self.evaluate(account)
        return web.json_response(self.account_json(account))

    async def _emergency_credit(self, request: web.Request) -> web.Response:
        account = self._account_of(request)
        try:
            account.state = self.policy.take_emergency_credit(account.state)
        except ValueError as exc:
            raise ApiError(409, f"account {account.state.account_id}: {exc}") from None
        self._event("emergency_credit", account=account.state.account_id, state="active",
                    taken=account.state.emergency_credit_taken, requested=True)
        reconnect = None
        if account.supply == "disconnected" and not account.in_flight:
            reconnect = self.queue(account, "connect", "emergency_credit")
        self.evaluate(account)
        return web.json_response({"account": self.account_json(account),
                                  "reconnect": reconnect.as_json() if reconnect else None})

    def _single(self, account: Account, action: str) -> Command:
        if account.in_flight:
            raise ApiError(409, f"account {account.state.account_id}: command {account.in_flight} is still pending")
        if action == "disconnect":
            blockers = self.blockers(account, group=False)
            if blockers:
                raise ApiError(409, f"account {account.state.account_id}: disconnect refused: "
                                    + "; ".join(b.reason for b in blockers))
        return self.queue(account, action, "operator")

    async def _disconnect(self, request: web.Request) -> web.Response:
        return web.json_response(self._single(self._account_of(request), "disconnect").as_json(), status=202)

    async def _connect(self, request: web.Request) -> web.Response:
        return web.json_response(self._single(self._account_of(request), "connect").as_json(), status=202)

    async def _group(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        action, ids = body.get("action"), body.get("accounts")
        if action not in ("disconnect", "connect"):
            raise ApiError(400, f"'action' must be 'disconnect' or 'connect', got {action!r}")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, "'accounts' must be a non-empty list of account ids")
        group_id = f"grp-{next(self._ids['grp'])}"
        accepted, refused = [], []
        for account_id in ids:
            account = self.accounts.get(account_id)
            if account is None:
                refused.append({"account": account_id, "reason": "unknown account"})
                continue
            if account.in_flight:
                refused.append({"account": account_id, "reason": f"command {account.in_flight} is still pending"})
                continue
            blockers = self.blockers(account, group=True) if action == "disconnect" else []
            if blockers:
                refused.append({"account": account_id, "reason": "; ".join(b.reason for b in blockers)})
                continue
            accepted.append(self.queue(account, action, "group", group_id).id)
        group = {"id": group_id, "action": action, "reason": body.get("reason"), "commands": accepted,
                 "refused": refused}
        self.groups[group_id] = group
        self._event("group_command", group=group_id, action=action, accounts=ids, commands=accepted,
                    refused=refused, reason=body.get("reason"))
        return web.json_response(self._group_json(group), status=202)

    def _group_json(self, group: dict) -> dict:
        return {**group, "commands": [self.commands[c].as_json() for c in group["commands"]]}

    async def _get_group(self, request: web.Request) -> web.Response:
        group = self.groups.get(request.match_info["group"])
        if group is None:
            raise ApiError(404, f"unknown group command {request.match_info['group']!r}")
        return web.json_response(self._group_json(group))

    async def _commands(self, request: web.Request) -> web.Response:
        account, group = request.query.get("account"), request.query.get("group")
        return web.json_response([c.as_json() for c in self.commands.values()
                                  if (account is None or c.account == account) and (group is None or c.group == group)])

    async def _command(self, request: web.Request) -> web.Response:
        command = self.commands.get(request.match_info["command"])
        if command is None:
            raise ApiError(404, f"unknown command {request.match_info['command']!r}")
        return web.json_response(command.as_json())

    async def _alerts(self, request: web.Request) -> web.Response:
        account = request.query.get("account")
        return web.json_response([a for a in self.alerts if account is None or a["account"] == account])

    async def _events(self, request: web.Request) -> web.Response:
        account = request.query.get("account")
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise ApiError(400, f"'since' must be an event number, got {request.query['since']!r}") from None
        return web.json_response([e for e in self.events if e["seq"] > since
                                  and (account is None or e.get("account") == account)])

