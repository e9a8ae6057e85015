"""Tamper on a twin meter: opening its terminal cover (the model's cover switch of the position) is recorded in the
meter's non-rollover event log as COVER_OPEN_EVENT, stamped with the meter's clock. Closing it is not an event.

The tamper defects act through the meter's hooks: never logged (truth event meter.event_not_logged), or logged
`tamper_logged_late_s` late (meter.event_late), then stamped with the meter's time at that later instant.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from rig.sim.dlms.hooks import MeterHooks
from rig.sim.dlms.objects import COVER_OPEN_EVENT, NON_ROLLOVER_EVENT_CODE, NON_ROLLOVER_EVENT_LOG, EventLog
from rig.sim.model import PhysicalModel


class TamperLog:
    """The event log of one meter and the cover switch it watches."""

    def __init__(self, role: str, model: PhysicalModel, position: int, hooks: MeterHooks,
                 meter_time_s: Callable[[], float], profile_entries: int):
        self.role = role
        self.model = model
        self.position = position
        self.hooks = hooks
        self.meter_time_s = meter_time_s
        self.log = EventLog(NON_ROLLOVER_EVENT_LOG, NON_ROLLOVER_EVENT_CODE, profile_entries)
        self._due: list[tuple[float, int, str]] = []  # (monotonic instant, code, by) of events logged late
        model.watch_cover(position, self.cover_switched)

    def cover_switched(self, cover_open: bool, by: str) -> None:
        """The cover switch changed: an opening is logged (as late, or never, as the hooks say)."""
        if not cover_open:
            return
        delay_s = self.hooks.tamper_log_delay_s()
        if delay_s is None:
            self.model.truth.event("meter.event_not_logged", role=self.role, position=self.position,
                                   code=COVER_OPEN_EVENT, defect="tamper_not_logged", by=by)
            return
        if delay_s == 0:
            self._record(COVER_OPEN_EVENT, self.meter_time_s(), by)
            return
        self._due.append((self.model.clock() + delay_s, COVER_OPEN_EVENT, by))
        self.model.truth.event("meter.event_late", role=self.role, position=self.position, code=COVER_OPEN_EVENT,
                               delay_s=delay_s, defect="tamper_logged_late_s", by=by)
        with contextlib.suppress(RuntimeError):  # no event loop (a unit test): the next read of the log logs it
            asyncio.get_running_loop().call_later(delay_s, self.flush_due)

    def flush_due(self) -> None:
        """Log the late events that are due, each stamped with the meter's time at its due instant."""
        now = self.model.clock()
        for event in [event for event in self._due if event[0] <= now]:
            self._due.remove(event)
            due_at, code, by = event
            self._record(code, self.meter_time_s() - (now - due_at), by)

    def _record(self, code: int, meter_utc_s: float, by: str) -> None:
        logged = self.log.append(meter_utc_s, code)
        self.model.truth.event("meter.event_log", role=self.role, position=self.position, code=code,
                               meter_time=datetime.fromtimestamp(meter_utc_s, UTC).isoformat(), logged=logged,
                               entries_in_use=len(self.log.entries), by=by)
