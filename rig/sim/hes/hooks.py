"""Where a twin head end departs from its prepaid policy: the engine asks its hooks at each point a defect can act.

`EngineHooks` is the sound HES (every hook leaves the policy's answer as it is); `DefectiveHes` answers from the
`hes:` section of the defects file (rig/sim/defects.py HesDefects). `hes_hooks` picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rig.prepaid import CALENDAR_BLOCKERS, AccountState, Blocker, PrepaidPolicy
from rig.sim.defects import HesDefects

if TYPE_CHECKING:
    from rig.sim.hes.engine import Account

STORM_PENDING_COMMANDS = 10  # "under load" for storm_drops_commands_pct: more commands pending than this


class EngineHooks:
    """A sound head end."""

    def blockers(self, blockers: list[Blocker], group: bool) -> list[Blocker]:
        """The reasons against a disconnect that this HES heeds, of those the policy gives."""
        return blockers

    def exhausted(self, policy: PrepaidPolicy, state: AccountState) -> bool:
        """The credit is used up, as this HES sees it."""
        return policy.credit_exhausted(state)

    def alert_suppressed(self, threshold_pct: float) -> str | None:
        """Why the alert at this threshold is never sent (None: it is sent)."""
        return None

    def before_disconnect(self, account: Account, now: float) -> str | None:
        """Why a due, unblocked disconnect is held back at this instant (None: it goes ahead)."""
        return None

    def checks_operators(self) -> bool:
        """Requests need a valid bearer token and a role with the right."""
        return True

    def needs_approval(self, meters: int, approval_above_meters: int) -> bool:
        """A group disconnect of this many meters waits for a second operator's approval."""
        return meters > approval_above_meters

    def audits(self) -> bool:
        """Commands and refused attempts enter the audit log."""
        return True

    def bounds_concurrency(self) -> bool:
        """DLMS exchanges with fleet meters are bounded in number (reads and commands after an outage spread)."""
        return True

    def drops_command(self, pending: int) -> str | None:
        """Why a new command is acknowledged and never sent, with `pending` commands already pending (None: it is
        sent)."""
        return None


class DefectiveHes(EngineHooks):
    """A head end with the defects of the `hes:` section."""

    def __init__(self, defects: HesDefects):
        self.defects = defects
        self._storm_commands = 0  # commands queued under load, of which storm_drops_commands_pct are dropped

    def blockers(self, blockers: list[Blocker], group: bool) -> list[Blocker]:
        if group and self.defects.batch_without_balance_check:
            return []
        ignored = set()
        if self.defects.ignore_friendly_hours:
            ignored |= CALENDAR_BLOCKERS
        if group and self.defects.disconnect_positive_balance:
            ignored.add("balance")
        if self.defects.ignore_emergency_credit:
            ignored.add("emergency_credit")
        return [blocker for blocker in blockers if blocker.kind not in ignored]

    def exhausted(self, policy: PrepaidPolicy, state: AccountState) -> bool:
        if self.defects.ignore_emergency_credit:
            return state.balance <= 0  # the balance alone counts
        return policy.credit_exhausted(state)

    def alert_suppressed(self, threshold_pct: float) -> str | None:
        return "skip_alerts" if threshold_pct in self.defects.skip_alerts else None

    def before_disconnect(self, account: Account, now: float) -> str | None:
        delay_s = self.defects.disconnect_delay_s
        if account.exhausted_at is not None and now < account.exhausted_at + delay_s:
            return f"defect disconnect_delay_s {delay_s:g} s"
        return None

    def checks_operators(self) -> bool:
        return not self.defects.no_auth

    def needs_approval(self, meters: int, approval_above_meters: int) -> bool:
        return not self.defects.skip_approval and meters > approval_above_meters

    def audits(self) -> bool:
        return not self.defects.no_audit

    def bounds_concurrency(self) -> bool:
        return not self.defects.reconnect_all_at_once

    def drops_command(self, pending: int) -> str | None:
        """Every command under load counts; a share storm_drops_commands_pct of them (spread evenly, the same
        ones on every run) is dropped."""
        pct = self.defects.storm_drops_commands_pct
        if not pct or pending <= STORM_PENDING_COMMANDS:
            return None
        before = self._storm_commands * pct // 100
        self._storm_commands += 1
        if self._storm_commands * pct // 100 > before:
            return f"storm_drops_commands_pct {pct:g} with {pending} commands pending"
        return None


def hes_hooks(defects: HesDefects) -> EngineHooks:
    """The hooks of a head end with these defects (the sound one's when it has none)."""
    return DefectiveHes(defects) if defects.model_fields_set else EngineHooks()
