"""Chroma 63800 programmable AC electronic load (SCPI)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from drivers.scpi import SafeState, ScpiDriver, ScpiSettings, Setting, Switch, flag, number, switch
from rig.errors import SetpointRefused
from rig.roles import AcLoad

# mode -> (quantity, unit, level header, level format)
MODES = {
    "CURR": ("current", "A", "CURR:STAT:L1", "{:.4f}"),
    "POW": ("power", "W", "POW:STAT:L1", "{:.3f}"),
    "RES": ("resistance", "ohm", "RES:STAT:L1", "{:.4f}"),
}
QUANTITY_MODES = {quantity: mode for mode, (quantity, _unit, _header, _number) in MODES.items()}
MODE_REPLIES = {"CURR": "CURR", "CURRENT": "CURR", "CC": "CURR", "POW": "POW", "POWER": "POW", "CP": "POW",
                "RES": "RES", "RESISTANCE": "RES", "CR": "RES"}


class LoadSettings(ScpiSettings):
    """`current_sample_latency_s`: the typical time from a current query to the instant the load samples it."""

    current_sample_latency_s: Annotated[float, Field(ge=0)] = 0.002


class Chroma63800Load(ScpiDriver, AcLoad):
    """AC load of the 63800 series, rated as a 63803: 0-36 A, 0-3600 W, up to 350 V; input OFF is its safe state.

    Every level is checked before it is sent, in the mode the instrument reports: a current against the
    rating, the role's limits and every meter's Imax; a power against the rating and the role's power limit;
    a resistance by the current it would draw at the highest voltage the load may see (its 350 V rating or
    the role's voltage limit). Every message, raw ones too, is guarded (drivers.scpi): a level in it is checked
    so for the mode its header names; switching the input on first reads back and checks the level held for
    the present mode; shorting the input is refused.
    `current_sample_latency_s` (settings, default 0.002) is the typical time from a current query to the
    instant the load samples it.
    """

    RATINGS = {"current": (0.0, 36.0), "power": (0.0, 3600.0), "voltage": (0.0, 350.0)}
    METER_RATINGS = {"current": "imax_a"}
    SETTINGS_MODEL = LoadSettings
    SAFE = (SafeState("LOAD OFF", off="input", confirm="LOAD?"),)
    GUARDS = (Setting("CURRent[:STATic][:L1]", "current", "A"),  # L2 too: numeric suffixes are not told apart
              Setting("POWer[:STATic][:L1]", "power", "W"),
              Setting("RESistance[:STATic][:L1]", "resistance", "ohm"),
              Switch("LOAD:SHORt[:STATe]", refused="a shorted input draws a current no level bounds"),
              Switch("[LOAD:]SCIRcuit", refused="a shorted input draws a current no level bounds"))  # the 63800's

    set_input = switch("LOAD", header="LOAD[:STATe]")
    input_enabled = flag("LOAD?")
    measure_current = number("MEAS:CURR?")
    measure_power = number("MEAS:POW?")
    measure_voltage = number("MEAS:VOLT?")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.current_sample_latency_s = self.settings.current_sample_latency_s

    def set_mode(self, mode: str) -> None:
        key = mode.strip().upper()
        if key not in MODES:
            raise SetpointRefused(f"{self.role} ({self.address}): mode {mode!r} refused: this driver drives "
                                  f"{', '.join(MODES)}")
        self.command(f"MODE {key}")

    def mode(self) -> str:
        reply = self.query("MODE?").strip().upper()
        if reply not in MODE_REPLIES:
            raise self.unexpected_reply("MODE?", f"one of {', '.join(MODES)}", reply)
        return MODE_REPLIES[reply]

    def level(self, mode: str | None = None) -> float:
        """The level the instrument holds for a mode (default: its present one)."""
        return self.query_float(f"{MODES[mode or self.mode()][2]}?")

    def set_level(self, value: float) -> None:
        mode = self.mode()
        self._check_level(mode, value)
        _quantity, _unit, header, level_format = MODES[mode]
        self.command(f"{header} {level_format.format(value)}")

    def _check_level(self, mode: str, value: float) -> None:
        quantity, unit, _header, _format = MODES[mode]
        if mode != "RES":
            self.check_setpoint(quantity, value, unit)
            return
        if not value > 0:
            raise SetpointRefused(f"{self.role} ({self.address}): resistance {value:g} ohm refused: not above 0 ohm")
        voltage_v = self.limits.high("voltage") or self.RATINGS["voltage"][1]
        try:
            self.check_setpoint("current", voltage_v / value, "A")
        except SetpointRefused as refused:
            reason = str(refused).partition("refused: ")[2]
            raise SetpointRefused(f"{self.role} ({self.address}): resistance {value:g} ohm refused: it draws "
                                  f"{voltage_v / value:.3g} A at {voltage_v:g} V, {reason}") from None

    def check_setting(self, quantity: str, value: float, unit: str) -> None:
        self._check_level(QUANTITY_MODES[quantity], value)

    def check_held_setpoints(self) -> None:
        mode = self.mode()
        self._check_level(mode, self.level(mode))
