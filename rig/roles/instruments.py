"""Roles of the bench's instruments: what a test may ask of each, whatever instrument fills it."""

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


class CurrentSource(ABC):
    """Phantom-load current amplifier: drives a current at a phase angle through the meters' current circuits.

    Phase is the angle by which the current lags the voltage, in degrees: +60 is PF 0.5 inductive (0.5L),
    -36.87 is PF 0.8 capacitive (0.8C).
    """

    @abstractmethod
    def set_current(self, current_a: float) -> None: ...

    @abstractmethod
    def set_phase(self, phase_deg: float) -> None: ...

    @abstractmethod
    def set_output(self, enabled: bool) -> None: ...

    @abstractmethod
    def output_enabled(self) -> bool: ...

    @abstractmethod
    def measure_current(self) -> float: ...


class ReferenceMeter(ABC):
    """Reference standard meter: instantaneous readings and energy integration."""

    accuracy_class_pct: float
    sample_instant: str = "middle"  # where in a query's exchange the reading is taken: send, middle or reply

    @abstractmethod
    def measure(self) -> dict[str, float]:
        """One simultaneous reading: {'voltage_v', 'current_a', 'power_w', 'power_factor'}."""

    @abstractmethod
    def start_integration(self) -> None: ...

    @abstractmethod
    def stop_integration(self) -> None: ...

    @abstractmethod
    def integration_running(self) -> bool: ...

    @abstractmethod
    def read_energy_wh(self) -> float:
        """Active energy integrated since the last start (keeps counting while running)."""


class PulseCounter(ABC):
    """Counter module fed by the scanning heads: one channel per meter position."""

    @abstractmethod
    def read_counts(self) -> dict[int, int]:
        """Every position's count, read in one exchange (one instant for all): {position: count}."""

    @abstractmethod
    def reset(self, positions: list[int] | None = None) -> None: ...


class MeterReadout(ABC):
    """The meter's own data port (Modbus register map, DLMS/COSEM)."""

    @abstractmethod
    def read_energy_import_kwh(self) -> float: ...

    @abstractmethod
    def read_instantaneous(self) -> dict[str, float]:
        """{'voltage_v', 'current_a', 'power_w', 'power_factor'} as the meter measures them."""


class AcLoad(ABC):
    """AC electronic load on one position's own load path, through that meter's relay.

    With a sine current it runs at PF 1 only. Levels are in the unit of the mode: A (CURR), W (POW), ohm (RES).
    """

    current_sample_latency_s: float = 0.0  # typical time from a current query to the instant it samples

    @abstractmethod
    def set_mode(self, mode: str) -> None:
        """'CURR', 'POW' or 'RES'."""

    @abstractmethod
    def set_level(self, value: float) -> None:
        """Setpoint of the present mode: A, W or ohm."""

    @abstractmethod
    def set_input(self, enabled: bool) -> None: ...

    @abstractmethod
    def input_enabled(self) -> bool: ...

    @abstractmethod
    def measure_current(self) -> float: ...

    @abstractmethod
    def measure_power(self) -> float: ...


class Attenuator(ABC):
    """Programmable RF attenuator in front of a position's modem (role 'attenuator@<n>')."""

    @abstractmethod
    def set_attenuation(self, attenuation_db: float) -> None:
        """Set and confirm by read-back; refused before sending beyond the model's range, the role's limits
        or off the instrument's step."""

    @abstractmethod
    def attenuation(self) -> float:
        """The attenuation the instrument holds, dB."""


class Modem(ABC):
    """The AT port of a meter's cellular modem (role 'modem@<n>')."""

    @abstractmethod
    def signal(self):
        """Radio conditions as the modem reports them (dBm, dB; None where it reports unknown)."""

    @abstractmethod
    def registration(self):
        """Network registration as the modem reports it (AT+CEREG?)."""

    @abstractmethod
    def enable_registration_urcs(self) -> None:
        """Ask for unsolicited registration reports; collected by `registration_events()`."""

    @abstractmethod
    def registration_events(self) -> list:
        """Unsolicited registration reports received so far, stamped on the rig's monotonic clock."""

    @abstractmethod
    def technology(self) -> str:
        """'4g', '2g' or 'auto'."""

    @abstractmethod
    def set_technology(self, technology: str) -> None: ...
