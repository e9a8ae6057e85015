"""The radio signal a meter reports of its own modem."""

from __future__ import annotations

from abc import ABC, abstractmethod


class SignalReport(ABC):
    @abstractmethod
    def read_signal_dbm(self) -> float:
        """The RSRP the meter reports (IS 15959 0.1.96.12.5.255), dBm."""
