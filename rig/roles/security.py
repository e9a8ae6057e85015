"""The meter's data-port security as a plan probes it: attempts a sound meter refuses (IS 15959-2 access rights,
DLMS HLS-GMAC, invocation counters)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class SecurityProbe:
    """One attempt and what the meter did with it: `refused` and its answer as the protocol names it."""

    attempt: str
    refused: bool
    answer: str

    def as_record(self) -> dict:
        return {"attempt": self.attempt, "refused": self.refused, "answer": self.answer}


class MeterSecurity(ABC):
    """A meter whose security a plan can probe. Each probe makes its own association and leaves none open."""

    @abstractmethod
    def disconnect_as_reader(self) -> SecurityProbe:
        """Invoke remote_disconnect over the meter reader's association (LLS), which may only read."""

    @abstractmethod
    def associate_with_wrong_key(self) -> SecurityProbe:
        """Associate as utility settings (HLS-GMAC) with a wrong authentication key."""

    @abstractmethod
    def replay_ciphered_frame(self) -> SecurityProbe:
        """Send a ciphered request the meter has already answered once more, as captured."""

    @abstractmethod
    def send_stale_invocation_counter(self) -> SecurityProbe:
        """Send a freshly ciphered request whose invocation counter is not above the last one used."""
