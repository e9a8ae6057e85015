"""The meter's terminal cover: opening it is a tamper the meter must log (IS 15959 event logs)."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Cover(ABC):
    """Opens and closes one position's meter cover (an actuator, or an operator asked on a terminal)."""

    @abstractmethod
    def open_cover(self) -> None: ...

    @abstractmethod
    def close_cover(self) -> None: ...

    @abstractmethod
    def cover_open(self) -> bool | None:
        """The cover as the instrument knows it; None where nothing senses it."""
