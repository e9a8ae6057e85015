"""Reference standard meter on SCPI: simultaneous readings and gated energy integration."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from drivers.scpi import ScpiDriver, ScpiSettings, action, flag, number
from rig.roles import ReferenceMeter

MEASURE_QUERY = "MEAS:VOLT?;CURR?;POW?;PFAC?"
MEASURE_KEYS = ("voltage_v", "current_a", "power_w", "power_factor")


class ReferenceSettings(ScpiSettings):
    """The reference's class, and where within a query's exchange it takes its reading."""

    accuracy_class_pct: Annotated[float, Field(gt=0)] = 0.02
    sample_instant: Literal["send", "middle", "reply"] = "middle"


class ScpiReferenceMeter(ScpiDriver, ReferenceMeter):
    """Reference meter of class `accuracy_class_pct` (settings, default 0.02); it switches nothing.

    `sample_instant` (settings: "send", "middle" or "reply", default "middle") says where within a query's
    exchange the instrument takes its reading: "reply" for one that queues a query and answers as soon as it
    has read its registers.
    """

    SETTINGS_MODEL = ReferenceSettings

    start_integration = action("INT:STAR")
    stop_integration = action("INT:STOP")
    integration_running = flag("INT:STAT?", on=("RUN",), off=("STOP",))
    read_energy_wh = number("FETC:ENER?")
    integration_time_s = number("FETC:INT:TIME?")  # seconds integrated since the last start, as it counted them

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accuracy_class_pct = self.settings.accuracy_class_pct
        self.sample_instant = self.settings.sample_instant

    def measure(self) -> dict[str, float]:
        reply = self.query(MEASURE_QUERY)
        fields = reply.split(";")
        try:
            if len(fields) != len(MEASURE_KEYS):
                raise ValueError
            values = [float(field) for field in fields]
        except ValueError:
            raise self.unexpected_reply(MEASURE_QUERY, "'voltage;current;power;power factor'", reply) from None
        return dict(zip(MEASURE_KEYS, values, strict=True))
