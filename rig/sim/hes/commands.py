"""The HES twin's command queue and executor: disconnects and reconnects sent to the meters over its MeterLink.

A command stays 'queued' while the link cannot carry it, is 'sent' when it does and 'executed' when the meter
has answered; one the meter does not answer is 'retrying', then 'failed'. A disconnect is judged again at the
last moment before it is sent (and before every retry) by the same guard that let it be queued: one the account
no longer calls for (a recharge, a grace period or a window since) is 'cancelled', with the reason, and never
reaches the meter.

A fleet meter's command (rig/sim/hes/fleet.py) waits while its meter is out of reach (an exchange failed, or it
pushed power down) and is tried when the meter is heard from again (a read answered, or it pushed power up), so
an outage costs it no attempts; it fails when still waiting `fleet_command_expiry_s` after it was queued.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rig.sim.hes.engine import Account, PrepaidEngine


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
    requested_by: str | None = None  # the operator who asked for it; None: the HES's own (prepaid, recharge)
    status: str = "queued"  # queued, sent, retrying, then executed, failed or cancelled
    error: str | None = None
    reason: str | None = None  # why it was cancelled
    attempts: int = 0
    history: list[dict] = field(default_factory=list)
    queued_at: float = 0.0  # monotonic
    dropped: str | None = None  # why this HES acknowledges it and never sends it (a defect; not in its answer)

    def as_json(self) -> dict:
        return {"id": self.id, "account": self.account, "action": self.action, "origin": self.origin,
                "group": self.group, "requested_by": self.requested_by, "status": self.status, "error": self.error,
                "reason": self.reason, "attempts": self.attempts, "history": self.history}


class CommandExecutor:
    """Queues the engine's commands (one in flight per account) and sends each on its own task."""

    def __init__(self, engine: PrepaidEngine):
        self.engine = engine
        self.settings = engine.settings
        self.commands: dict[str, Command] = {}
        self.pending = 0  # commands queued and not yet settled
        self._ids = itertools.count(1)

    def queue(self, account: Account, action: str, origin: str, group: str | None = None,
              by: str | None = None) -> Command:
        command = Command(f"cmd-{next(self._ids)}", account.state.account_id, account.position, action, origin, group,
                          by, queued_at=self.engine.model.clock())
        command.dropped = self.engine.hooks.drops_command(self.pending)
        self.commands[command.id] = command
        self.pending += 1
        account.in_flight = command.id
        self._set_status(command, "queued")
        self.engine.spawn(self._execute(command, account))
        return command

    def _set_status(self, command: Command, status: str, error: str | None = None, reason: str | None = None) -> None:
        command.status, command.error, command.reason = status, error, reason
        command.history.append({"status": status, "local_time": self.engine.iso(self.engine.local_now()),
                                **({"attempt": command.attempts, "error": error} if error else {}),
                                **({"reason": reason} if reason else {})})
        self.engine.record("command", command=command.id, account=command.account, action=command.action,
                           origin=command.origin, group=command.group, status=status, error=error,
                           attempt=command.attempts, **({"reason": reason} if reason else {}))

    def _no_longer_due(self, command: Command, account: Account) -> str | None:
        """Why a disconnect must not be sent now, by the guard that let it be queued (as this HES, with its
        hooks, applies it); None while it is still due, and for every reconnect."""
        if command.action != "disconnect":
            return None
        return "; ".join(b.reason for b in self.engine.blockers(account, group=command.origin == "group")) or None

    def _cancel(self, command: Command, account: Account, reason: str) -> None:
        self._set_status(command, "cancelled", reason=reason)
        self.engine.record("disconnect_cancelled", account=command.account, position=command.position,
                           command=command.id, origin=command.origin, group=command.group,
                           balance=account.state.balance, reason=reason)

    def _sent(self, command: Command, account: Account) -> None:
        """The link carried the command (after waiting out an outage, say): the last moment to withdraw it."""
        withdrawn = self._no_longer_due(command, account)
        if withdrawn is not None:
            raise CommandWithdrawn(withdrawn)
        self._set_status(command, "sent")
        kind = "disconnect_sent" if command.action == "disconnect" else "reconnect_sent"
        self.engine.record(kind, account=command.account, position=command.position, command=command.id,
                           origin=command.origin, group=command.group, balance=account.state.balance,
                           attempt=command.attempts)

    async def _execute(self, command: Command, account: Account) -> None:
        """Send the command; one the meter does not answer is sent again after command_retry_s, at most
        command_attempts times in all ('retrying' in between, then 'failed'). A disconnect the account no longer
        calls for, judged before every attempt and again as the link carries it, is cancelled instead."""
        if self.settings.command_delay_s:
            await asyncio.sleep(self.settings.command_delay_s)
        try:
            settled = await self._attempts(command, account)  # executed or cancelled: the account's state is known
        finally:
            self.pending -= 1
            if account.in_flight == command.id:
                account.in_flight = None
            if account.fleet is not None and self.engine.fleet is not None:
                self.engine.fleet.metrics.command_settled(command, self.engine.model.clock())
        if settled:
            self.engine.evaluate(account)  # after a failure the read loop evaluates again at its next read

    async def _attempts(self, command: Command, account: Account) -> bool:
        """Try the command until it is executed or cancelled (True) or has failed (False)."""
        while True:
            reason = self._no_longer_due(command, account)
            if reason is not None:
                self._cancel(command, account, reason)
                return True
            if command.dropped:
                self._pretend(command, account)
                return True
            if account.fleet is not None and not await self._meter_heard(command, account):
                self._set_status(command, "failed", f"the meter was not heard from within "
                                                    f"{self.settings.fleet_command_expiry_s:g} s of the command")
                return False
            command.attempts += 1
            try:
                link, address = self.engine.link_for(account)  # at every attempt: the link may be replaced meanwhile
                send = link.disconnect if command.action == "disconnect" else link.reconnect
                await send(address, on_sent=lambda: self._sent(command, account))
            except CommandWithdrawn as exc:
                self._cancel(command, account, str(exc))
                return True
            except Exception as exc:  # noqa: BLE001 - a failed command is a status, not a crash
                error = str(exc) or type(exc).__name__
                if command.attempts >= self.settings.command_attempts:
                    self._set_status(command, "failed", error)
                    return False
                self._set_status(command, "retrying", error)
                if account.fleet is None:  # a fleet meter's command waits for the meter instead
                    await asyncio.sleep(self.settings.command_retry_s)
                continue
            account.supply = "disconnected" if command.action == "disconnect" else "connected"
            account.disconnected_by = command.origin if command.action == "disconnect" else None
            self._set_status(command, "executed")
            return True

    async def _meter_heard(self, command: Command, account: Account) -> bool:
        """Wait while the fleet meter is out of reach; False when it stays so past the command's expiry."""
        heard = account.fleet.endpoint.heard
        if heard.is_set():
            return True
        left_s = command.queued_at + self.settings.fleet_command_expiry_s - self.engine.model.clock()
        try:
            await asyncio.wait_for(heard.wait(), max(left_s, 0.0))
        except TimeoutError:
            return False
        return True

    def _pretend(self, command: Command, account: Account) -> None:
        """What a head end that drops commands under load records: sent and executed; nothing reaches the meter."""
        self._set_status(command, "sent")
        account.supply = "disconnected" if command.action == "disconnect" else "connected"
        account.disconnected_by = command.origin if command.action == "disconnect" else None
        self._set_status(command, "executed")
        self.engine.record("command_dropped", truth_only=True, command=command.id, account=command.account,
                           action=command.action, reason=command.dropped, defect="storm_drops_commands_pct")
