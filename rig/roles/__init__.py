"""What a test may ask of each role, whatever instrument fills it."""

from rig.roles.cover import Cover
from rig.roles.eventlog import EventLog, MeterEvent
from rig.roles.fleet import Fleet, FleetMeter, FleetMeterState
from rig.roles.headend import (
    SETTLED,
    Account,
    Alert,
    AuditEntry,
    Command,
    Credited,
    EmergencyCredit,
    GroupCommand,
    HeadEnd,
)
from rig.roles.instruments import (
    AcLoad,
    AcSource,
    Attenuator,
    CurrentSource,
    MeterReadout,
    Modem,
    PulseCounter,
    ReferenceMeter,
)
from rig.roles.limiter import LimiterSettings, LoadLimiter
from rig.roles.profiles import IS15959_PROFILES, NamePlate, Profile, ProfileColumn, ProfileReader, ProfileRow
from rig.roles.relay import ControlState, DisconnectControl, RelayState
from rig.roles.security import MeterSecurity, SecurityProbe
from rig.roles.signal import SignalReport

__all__ = ["IS15959_PROFILES", "SETTLED", "AcLoad", "AcSource", "Account", "Alert", "Attenuator", "AuditEntry",
           "Command",
           "ControlState", "Cover", "Credited", "CurrentSource", "DisconnectControl", "EmergencyCredit", "EventLog",
           "Fleet", "FleetMeter", "FleetMeterState",
           "GroupCommand", "HeadEnd", "LimiterSettings", "LoadLimiter", "MeterEvent", "MeterReadout", "Modem",
           "MeterSecurity",
           "NamePlate", "Profile", "ProfileColumn", "ProfileReader", "ProfileRow", "PulseCounter", "ReferenceMeter",
           "RelayState", "SecurityProbe", "SignalReport"]
