"""The meter's supply relay as a plan sees it: disconnect control (DLMS class 70)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum


class ControlState(IntEnum):
    """control_state of the disconnect control (class 70, attribute 3)."""

    DISCONNECTED = 0
    CONNECTED = 1
    READY_FOR_RECONNECTION = 2


@dataclass(frozen=True)
class RelayState:
    """What the meter reports of its relay: the output (closed or open), the control state and control mode."""

    output_state: bool  # True: the relay is closed, the supply reaches the consumer
    control_state: ControlState
    control_mode: int

    @property
    def connected(self) -> bool:
        return self.control_state is ControlState.CONNECTED

    def as_record(self) -> dict:
        return {"output_state": self.output_state, "control_state": int(self.control_state),
                "control_mode": self.control_mode}


class DisconnectControl(ABC):
    """A meter whose relay a plan can read and switch remotely."""

    @abstractmethod
    def relay_state(self) -> RelayState: ...

    @abstractmethod
    def remote_disconnect(self) -> None: ...

    @abstractmethod
    def remote_reconnect(self) -> None: ...
