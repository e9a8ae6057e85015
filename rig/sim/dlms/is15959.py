"""The IS 15959-2 object set of a twin meter beyond its basic registers: the name plate, the instantaneous, block
load, daily load and billing profiles with their scaler profiles, the event logs and the MD reset script, all as
profile generic (class 7) objects whose columns are read live from the meter's objects.

OBIS codes and columns as IS 15959-2 readers use them (sources in DOMAIN.md, "IS 15959-2 object set"). Capture
periods are twin settings: `block_load_period_s` (default 1; 900 or 1800 in the field), `daily_load_period_s`
(default 60; 86400 in the field), `billing_period_s` (default 3600; a month in the field; 0: only on an MD reset),
each a ring of `*_entries` rows. Captures are aligned to whole periods of the meter's clock, stamped with the
period's end, and go on while the meter has no supply (zero voltage, no energy).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from rig.sim.dlms.association import READING_CLIENTS, UTILITY
from rig.sim.dlms.codec import (
    DOUBLE_LONG_UNSIGNED,
    ENUM,
    INTEGER,
    INTEGER_FORMATS,
    LONG,
    LONG_UNSIGNED,
    UNSIGNED,
    UNSPECIFIED_DATE_TIME,
    encode_array,
    encode_date_time,
    encode_int,
    encode_octets,
    encode_structure,
    encode_visible,
)
from rig.sim.dlms.objects import OTHER_REASON, SUCCESS, TYPE_UNMATCHED, CosemObject, register
from rig.sim.dlms.profiles import CLOCK_TIME, Capture, Profile, obis

if TYPE_CHECKING:
    from rig.sim.dlms.meter import DlmsMeterSim

NAME_PLATE_PROFILE = "0.0.94.91.10.255"
INSTANTANEOUS_PROFILE, INSTANTANEOUS_SCALERS = "1.0.94.91.0.255", "1.0.94.91.3.255"
BLOCK_LOAD_PROFILE, BLOCK_LOAD_SCALERS = "1.0.99.1.0.255", "1.0.94.91.4.255"
DAILY_LOAD_PROFILE, DAILY_LOAD_SCALERS = "1.0.99.2.0.255", "1.0.94.91.5.255"
BILLING_PROFILE, BILLING_SCALERS = "1.0.98.1.0.255", "1.0.94.91.6.255"
EVENT_SCALERS = "1.0.94.91.7.255"
MD_RESET_SCRIPT = "0.0.10.0.1.255"
BILLING_DATE, BILLING_COUNT, TAMPER_COUNT = "0.0.0.1.2.255", "0.0.0.1.0.255", "0.0.94.91.0.255"

# event logs 0.0.99.98.n.255 with their event code objects 0.0.96.11.n.255 (n = 5, the non-rollover log, is the
# tamper log of rig/sim/dlms/tamper.py)
VOLTAGE_EVENTS, CURRENT_EVENTS, POWER_EVENTS, TRANSACTION_EVENTS, OTHER_EVENTS, CONTROL_EVENTS = 0, 1, 2, 3, 4, 6
EVENT_LOG_NAMES = {VOLTAGE_EVENTS: "voltage", CURRENT_EVENTS: "current", POWER_EVENTS: "power",
                   TRANSACTION_EVENTS: "transaction", OTHER_EVENTS: "other", CONTROL_EVENTS: "control"}
POWER_FAIL_OCCURRENCE, POWER_FAIL_RESTORATION, RTC_CHANGED = 101, 102, 151
LOAD_SWITCH_DISCONNECTED, LOAD_SWITCH_CONNECTED = 301, 302

VOLTAGE, CURRENT, POWER_FACTOR, FREQUENCY = "1.0.12.7.0.255", "1.0.11.7.0.255", "1.0.13.7.0.255", "1.0.14.7.0.255"
APPARENT_POWER, ACTIVE_POWER, ENERGY_IMPORT = "1.0.9.7.0.255", "1.0.1.7.0.255", "1.0.1.8.0.255"
AVERAGE_VOLTAGE, BLOCK_ENERGY, AVERAGE_POWER_FACTOR = "1.0.12.27.0.255", "1.0.1.29.0.255", "1.0.13.0.0.255"
NAME_PLATE = {"serial": "0.0.96.1.0.255", "manufacturer": "0.0.96.1.1.255", "firmware": "1.0.0.2.0.255",
              "meter_type": "0.0.94.91.9.255", "category": "0.0.94.91.11.255", "current_rating": "0.0.94.91.12.255",
              "year_of_manufacture": "0.0.96.1.4.255"}
SNAPSHOT = [Capture(3, CURRENT), Capture(3, VOLTAGE), Capture(3, POWER_FACTOR), Capture(3, ENERGY_IMPORT),
            Capture(1, TAMPER_COUNT)]
COLUMNS = {
    INSTANTANEOUS_PROFILE: [CLOCK_TIME, Capture(3, VOLTAGE), Capture(3, CURRENT), Capture(3, POWER_FACTOR),
                            Capture(3, FREQUENCY), Capture(3, APPARENT_POWER), Capture(3, ACTIVE_POWER),
                            Capture(3, ENERGY_IMPORT), Capture(1, TAMPER_COUNT), Capture(1, BILLING_COUNT)],
    BLOCK_LOAD_PROFILE: [CLOCK_TIME, Capture(3, AVERAGE_VOLTAGE), Capture(3, BLOCK_ENERGY)],
    DAILY_LOAD_PROFILE: [CLOCK_TIME, Capture(3, ENERGY_IMPORT)],
    BILLING_PROFILE: [Capture(1, BILLING_DATE, is_time=True), Capture(3, AVERAGE_POWER_FACTOR),
                      Capture(3, ENERGY_IMPORT)],
    NAME_PLATE_PROFILE: [Capture(1, name) for name in NAME_PLATE.values()],
}
SCALER_PROFILES = {INSTANTANEOUS_SCALERS: INSTANTANEOUS_PROFILE, BLOCK_LOAD_SCALERS: BLOCK_LOAD_PROFILE,
                   DAILY_LOAD_SCALERS: DAILY_LOAD_PROFILE, BILLING_SCALERS: BILLING_PROFILE}


def event_log_name(index: int) -> str:
    return f"0.0.99.98.{index}.255"


def event_code_name(index: int) -> str:
    return f"0.0.96.11.{index}.255"


def event_columns(index: int) -> list[Capture]:
    """Clock and event code; the voltage, current and other (tamper) logs add the snapshot of the meter."""
    snapshot = SNAPSHOT if index in (VOLTAGE_EVENTS, CURRENT_EVENTS, OTHER_EVENTS) else []
    return [CLOCK_TIME, Capture(1, event_code_name(index)), *snapshot]


class Averages:
    """Running means sampled while the meter runs: voltage over the current block, power factor over the
    current billing period."""

    def __init__(self):
        self.voltage_sum = self.voltage_count = 0.0
        self.pf_sum = self.pf_count = 0.0
        self.block_voltage_v = 0.0
        self.billing_pf = 1.0

    def sample(self, voltage_v: float, power_factor: float) -> None:
        self.voltage_sum += voltage_v
        self.voltage_count += 1
        self.pf_sum += power_factor
        self.pf_count += 1

    def close_block(self, voltage_now_v: float) -> None:
        self.block_voltage_v = self.voltage_sum / self.voltage_count if self.voltage_count else voltage_now_v
        self.voltage_sum = self.voltage_count = 0.0

    def close_billing(self, pf_now: float) -> None:
        self.billing_pf = self.pf_sum / self.pf_count if self.pf_count else pf_now
        self.pf_sum = self.pf_count = 0.0


class MeterProfiles:
    """The IS 15959-2 profiles, event logs and name plate of one meter."""

    def __init__(self, meter: DlmsMeterSim, settings: dict):
        self.meter = meter
        self.averages = Averages()
        self.block_start_wh = 0.0
        self.block_energy_wh = 0.0
        self.billing_count = 0
        self.billing_at: float | None = None

        def offset() -> int:
            return meter.utc_offset_min
        periods = {BLOCK_LOAD_PROFILE: int(settings.get("block_load_period_s", 1)),
                   DAILY_LOAD_PROFILE: int(settings.get("daily_load_period_s", 60)),
                   BILLING_PROFILE: int(settings.get("billing_period_s", 3600))}
        entries = {BLOCK_LOAD_PROFILE: int(settings.get("block_load_entries", 240)),
                   DAILY_LOAD_PROFILE: int(settings.get("daily_load_entries", 35)),
                   BILLING_PROFILE: int(settings.get("billing_entries", 13))}
        self.profiles: dict[str, Profile] = {}
        for name, columns in COLUMNS.items():
            self.profiles[name] = Profile(name, columns, self.value_of, offset, periods.get(name, 0),
                                          entries.get(name, 1), capture_on_read=name not in periods)
        for name, of in SCALER_PROFILES.items():
            scaled = [Capture(3, column.name, 3) for column in COLUMNS[of] if column.class_id == 3]
            self.profiles[name] = Profile(name, scaled, self.value_of, offset, capture_on_read=True)
        snapshot_scalers = [Capture(3, column.name, 3) for column in SNAPSHOT if column.class_id == 3]
        self.profiles[EVENT_SCALERS] = Profile(EVENT_SCALERS, snapshot_scalers, self.value_of, offset,
                                               capture_on_read=True)
        event_entries = int(settings.get("event_log_entries", 10))
        self.event_logs = {index: Profile(event_log_name(index), event_columns(index), self.value_of, offset,
                                          profile_entries=event_entries) for index in EVENT_LOG_NAMES}
        self.last_codes = dict.fromkeys(EVENT_LOG_NAMES, 0)

    def value_of(self, column: Capture) -> bytes:
        return self.meter.objects[obis(column.name)].getters[column.attribute]()

    # -- events and captures ----------------------------------------------------------------------------------

    def log_event(self, index: int, code: int) -> None:
        """Record an event in log 0.0.99.98.<index>.255 with the meter's time and its snapshot."""
        self.last_codes[index] = code
        self.event_logs[index].capture(self.meter.meter_time_s())

    def sample(self) -> None:
        self.averages.sample(self.meter.model.supply_voltage_v(), self.meter.power_factor())

    def capture(self, name: str, utc_s: float) -> None:
        """Close the period of a periodic profile and capture its row stamped utc_s."""
        if name == BLOCK_LOAD_PROFILE:
            self.meter.model.now()
            energy_wh = self.meter.meter.register_energy_wh
            self.block_energy_wh, self.block_start_wh = max(0.0, energy_wh - self.block_start_wh), energy_wh
            self.averages.close_block(self.meter.model.supply_voltage_v())
        elif name == BILLING_PROFILE:
            self.averages.close_billing(self.meter.power_factor())
            self.billing_count += 1
            self.billing_at = utc_s
        self.profiles[name].capture(utc_s)

    def md_reset(self, data: tuple[int, object] | None, by: str) -> int:
        """Method 1 (execute) of the MD reset script table: script 1 closes the billing period now."""
        if data is None or data[0] not in INTEGER_FORMATS:
            return TYPE_UNMATCHED
        if data[1] != 1:
            return OTHER_REASON
        self.capture(BILLING_PROFILE, self.meter.meter_time_s())
        self.meter.model.truth.event("meter.billing", role=self.meter.role, position=self.meter.position,
                                     billing_count=self.billing_count, by=by)
        return SUCCESS

    async def run(self) -> None:
        """Capture the periodic profiles at the end of each of their periods on the meter's clock."""
        periodic = [name for name in (BLOCK_LOAD_PROFILE, DAILY_LOAD_PROFILE, BILLING_PROFILE)
                    if self.profiles[name].capture_period_s > 0]
        self.meter.model.now()
        self.block_start_wh = self.meter.meter.register_energy_wh
        await asyncio.gather(*(self._run_periodic(name) for name in periodic))

    async def _run_periodic(self, name: str) -> None:
        period = self.profiles[name].capture_period_s
        while True:
            now = self.meter.meter_time_s()
            boundary = (math.floor(now / period) + 1) * period
            await asyncio.sleep(boundary - now)
            self.capture(name, boundary)

    # -- objects ----------------------------------------------------------------------------------------------

    def objects(self) -> list[CosemObject]:
        meter = self.meter
        return [
            *self._name_plate(),
            register(APPARENT_POWER, DOUBLE_LONG_UNSIGNED,
                     lambda: meter.model.supply_voltage_v() * meter.model.position_current_a(meter.position), 0, "VA"),
            register(AVERAGE_VOLTAGE, LONG_UNSIGNED, lambda: self.averages.block_voltage_v, -2, "V"),
            register(BLOCK_ENERGY, DOUBLE_LONG_UNSIGNED, lambda: self.block_energy_wh, -1, "Wh"),
            register(AVERAGE_POWER_FACTOR, LONG, lambda: self.averages.billing_pf, -3, "none"),
            data(TAMPER_COUNT, lambda: encode_int(LONG_UNSIGNED, len(meter.tamper.log.entries))),
            data(BILLING_COUNT, lambda: encode_int(LONG_UNSIGNED, self.billing_count)),
            data(BILLING_DATE, lambda: encode_octets(UNSPECIFIED_DATE_TIME if self.billing_at is None else
                                                     encode_date_time(self.billing_at, meter.utc_offset_min))),
            *(data(event_code_name(index), lambda index=index: encode_int(LONG_UNSIGNED, self.last_codes[index]))
              for index in EVENT_LOG_NAMES),
            *(self._profile_object(profile) for profile in [*self.profiles.values(), *self.event_logs.values()]),
            self._md_reset_script(),
        ]

    def _name_plate(self) -> list[CosemObject]:
        meter = self.meter
        values = {"meter_type": encode_int(UNSIGNED, meter.meter_type),
                  "category": encode_visible(meter.meter_category),
                  "current_rating": encode_visible(meter.current_rating),
                  "year_of_manufacture": encode_int(LONG_UNSIGNED, meter.year_of_manufacture)}
        return [data(NAME_PLATE[key], lambda value=value: value) for key, value in values.items()]

    def _profile_object(self, profile: Profile) -> CosemObject:
        """A profile, read by the meter reader and utility settings."""
        now_s = self.meter.meter_time_s

        def selected(selector: int, parameters: tuple[int, object]) -> bytes | int:
            return profile.buffer(now_s, selector, parameters)
        return CosemObject(7, obis(profile.name), profile.getters(now_s), readers=READING_CLIENTS,
                           selective={2: selected})

    def _md_reset_script(self) -> CosemObject:
        """Script table (class 9): script 1 executes method 2 (capture) of the billing profile; the reader reads it,
        utility settings executes it."""
        action = encode_structure(encode_int(ENUM, 2), encode_int(LONG_UNSIGNED, 7),
                                  encode_octets(obis(BILLING_PROFILE)), encode_int(INTEGER, 2),
                                  encode_int(INTEGER, 0))
        scripts = encode_array([encode_structure(encode_int(LONG_UNSIGNED, 1), encode_array([action]))])
        return CosemObject(9, obis(MD_RESET_SCRIPT), {2: lambda: scripts}, methods={1: self.md_reset},
                           readers=READING_CLIENTS, writers=UTILITY)


def data(name: str, value: Callable[[], bytes]) -> CosemObject:
    """A Data object (class 1) whose value is the encoded Data value(), read by the meter reader and utility
    settings."""
    return CosemObject(1, obis(name), {2: value}, readers=READING_CLIENTS)
