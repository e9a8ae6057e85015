"""Where a twin meter departs from a sound one: the meter asks its hooks at each point a defect can act.

`MeterHooks` is the sound meter (every hook leaves the behaviour as it is); `DefectiveMeter` answers from the
position's `MeterDefects` (rig/sim/defects.py). `meter_hooks` picks one for a position.
"""

from __future__ import annotations

from typing import Literal

from rig.sim.defects import MeterDefects

AfterOutage = Literal["drop", "repeat"] | None


class MeterHooks:
    """A sound meter."""

    def output_state(self, relay_closed: bool) -> bool:
        """Disconnect control attribute 2 as reported for the relay's real state."""
        return relay_closed

    def forgets_state_at_power_loss(self) -> bool:
        """The relay and control state come back 'connected' at power-up instead of as they were."""
        return False

    def reconnect_delay_s(self) -> float:
        """How much later than decided the relay closes on a remote reconnect."""
        return 0.0

    def after_outage(self) -> AfterOutage:
        """What happens to a command that waited out a link outage: dropped, repeated after the next, or run."""
        return None

    def limiter_trips(self) -> bool:
        """The limiter opens the relay when power stays above its threshold."""
        return True

    def interface_dead(self) -> bool:
        """The data port (TCP wrapper, HDLC) accepts connections and never answers."""
        return False

    def tamper_log_delay_s(self) -> float | None:
        """How late a tamper event enters the event log (None: it never does)."""
        return 0.0

    def reader_may_disconnect(self) -> bool:
        """The meter reader association may invoke the disconnect control's methods."""
        return False

    def accepts_replay(self) -> bool:
        """A ciphered frame whose invocation counter is not above the last one is accepted."""
        return False

    def ignores_hls_tag(self) -> bool:
        """GCM tags and the HLS-GMAC answer f(StoC) are not verified."""
        return False


class DefectiveMeter(MeterHooks):
    """A meter with the defects of its position."""

    def __init__(self, defects: MeterDefects):
        self.defects = defects

    def output_state(self, relay_closed: bool) -> bool:
        return relay_closed != self.defects.relay_state_inverted

    def forgets_state_at_power_loss(self) -> bool:
        return self.defects.relay_state_volatile

    def reconnect_delay_s(self) -> float:
        return self.defects.reconnect_extra_delay_s

    def after_outage(self) -> AfterOutage:
        if self.defects.loses_queued_commands:
            return "drop"
        return "repeat" if self.defects.duplicate_execution else None

    def limiter_trips(self) -> bool:
        return not self.defects.load_limit_ignored

    def interface_dead(self) -> bool:
        return self.defects.interface_dead

    def tamper_log_delay_s(self) -> float | None:
        return None if self.defects.tamper_not_logged else self.defects.tamper_logged_late_s

    def reader_may_disconnect(self) -> bool:
        return self.defects.reader_can_disconnect

    def accepts_replay(self) -> bool:
        return self.defects.accepts_replay

    def ignores_hls_tag(self) -> bool:
        return self.defects.ignores_hls_tag


def meter_hooks(defects: MeterDefects) -> MeterHooks:
    """The hooks of a meter with these defects (the sound meter's when it has none)."""
    return DefectiveMeter(defects) if defects.model_fields_set else MeterHooks()
