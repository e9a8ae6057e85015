"""Reference standard meter on SCPI: simultaneous readings and gated energy integration."""

from __future__ import annotations

from drivers.scpi import ScpiDriver
from rig.errors import ConfigError
from rig.roles import ReferenceMeter

MEASURE_QUERY = "MEAS:VOLT?;CURR?;POW?;PFAC?"
MEASURE_KEYS = ("voltage_v", "current_a", "power_w", "power_factor")
SAMPLE_INSTANTS = ("send", "middle", "reply")


class ScpiReferenceMeter(ScpiDriver, ReferenceMeter):
    """Reference meter of class `accuracy_class_pct` (settings, default 0.02); it switches nothing.

    `sample_instant` (settings: "send", "middle" or "reply", default "middle") says where within a query's
    exchange the instrument takes its reading: "reply" for one that queues a query and answers as soon as it
    has read its registers.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accuracy_class_pct = float(self.config.settings.get("accuracy_class_pct", 0.02))
        self.sample_instant = str(self.config.settings.get("sample_instant", "middle"))
        if self.sample_instant not in SAMPLE_INSTANTS:
            raise ConfigError(f"roles.{self.role}.settings.sample_instant: {self.sample_instant!r} is not one of "
                              f"{', '.join(SAMPLE_INSTANTS)}")

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

    def start_integration(self) -> None:
        self.command("INT:STAR")

    def stop_integration(self) -> None:
        self.command("INT:STOP")

    def integration_running(self) -> bool:
        reply = self.query("INT:STAT?").strip().upper()
        if reply == "RUN":
            return True
        if reply == "STOP":
            return False
        raise self.unexpected_reply("INT:STAT?", "RUN/STOP", reply)

    def read_energy_wh(self) -> float:
        return self.query_float("FETC:ENER?")

    def integration_time_s(self) -> float:
        """Seconds integrated since the last start, as the instrument counted them."""
        return self.query_float("FETC:INT:TIME?")

    def make_safe(self) -> list[str]:
        return ["nothing to switch (measuring instrument)"]
