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


class HeadEndError(InstrumentError):
    """The head end answered a request with an error (HTTP 4xx or 5xx); carries the status and the body."""

    def __init__(self, message: str, status: int, body: str):
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def refused(self) -> bool:
        """The head end refused the request (4xx), as against failing to carry it out (5xx)."""
        return 400 <= self.status < 500


class PositionBroken(RigError):
    """The meter at one position stopped answering; later tests of that position may not use it."""


class NotObserved(MeasurementFailure):
    """The system under test did not do what a plan waited for within its trial timeout (FAIL)."""
