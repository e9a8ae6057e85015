"""What a test may ask of each role, whatever instrument fills it."""

from __future__ import annotations

from abc import ABC, abstractmethod


class AcSource(ABC):
    """AC voltage source feeding the meters' voltage circuits."""

    @abstractmethod
    def set_voltage(self, voltage_v: float) -> None: ...

    @abstractmethod
    def set_frequency(self, frequency_hz: float) -> None: ...

    @abstractmethod
    def set_output(self, enabled: bool) -> None: ...

    @abstractmethod
    def output_enabled(self) -> bool: ...

    @abstractmethod
    def voltage_setpoint(self) -> float: ...

    @abstractmethod
    def measure_voltage(self) -> float: ...

    @abstractmethod
    def measure_frequency(self) -> float: ...

    @abstractmethod
    def measure_current(self) -> float: ...

    @abstractmethod
    def measure_power(self) -> float: ...

    @abstractmethod
    def voltage_readback_tolerance(self, voltage_v: float) -> float:
        """Permitted |measured - set| voltage at this setpoint, from the instrument's specification."""
