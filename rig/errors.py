"""One exception hierarchy for everything the rig reports.

`MeasurementFailure` is an AssertionError: the unit under test is out of limits (FAIL).
Every other `RigError` means the rig, its configuration or an instrument failed (ERROR).
"""


class RigError(Exception):
    """Base of every error the rig raises on purpose."""


class ConfigError(RigError):
    """A bench description, data file or option is invalid."""


class SetpointRefused(RigError):
    """A setpoint lies beyond a role's limit or a meter's rating; nothing was sent."""


class InstrumentError(RigError):
    """An instrument answered wrongly, refused a command or could not be reached."""


class InstrumentTimeout(InstrumentError):
    """An instrument did not answer in time."""


class BenchBroken(RigError):
    """An earlier driver fault latched the bench; no further test may use it."""


class BenchLocked(RigError):
    """Another run holds the bench."""


class MeasurementFailure(AssertionError):
    """One or more measurements of the unit under test are outside their limits."""
