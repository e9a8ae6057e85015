"""Simulated DLMS/COSEM smart meter (IS 15959-2 / IS 16444) of one position, answering live from the model.

One logical device (server SAP 1) with the IS 15959-2 associations: public client (SAP 16, no security),
meter reader (SAP 32, LLS password) and utility settings (SAP 48, HLS-GMAC with ciphered APDUs; push has its
security setup and counter too), served over the IEC 62056-47 TCP wrapper on a loopback port and, with
`hdlc: true`, also over IEC 62056-46 HDLC on a pty whose path is `pty_path` (rig/sim/dlms/server.py). LN
referencing; GET normal with selective access and block transfer, SET/ACTION normal. Its object model is IS 15959-2's:
association LN objects with their object lists (rig/sim/dlms/object_list.py), name plate, profiles and event logs
(rig/sim/dlms/is15959.py). Relay switching enters the control event log, clock setting the transaction event log,
power loss and return (with `powered_by_source`) the power event log.

Disconnect control follows the Blue Book state machine of class 70 for the configured control mode (default 5,
see DEFAULT_CONTROL_MODE); the limiter (class 71) monitors the position's active power and opens the relay
through the local disconnection when it stays above threshold_active for min_over_threshold_duration.

With `powered_by_source` the meter lives on the source's voltage. Without it, and for `boot_s` after it
returns, its communication module is dead: the head end's commands get no answer (NoAnswer) and the limiter does
not run. Its own data port keeps answering from the meter's battery as if powered (the power-off reading Indian
smart meters offer; (unverified) as a requirement of IS 16444), unless `battery_reading: false`: then the port is
silent too, and a connection opened before a power loss is closed at its first request after it. The relay and
the control state are kept in non-volatile memory across a power loss (unless the relay_state_volatile defect
says otherwise).

Opening the meter's cover (the model's cover switch of the position, e.g. through the `cover@N` simulator) is a
tamper the meter records in its event log (rig/sim/dlms/tamper.py). Defects act through the meter's hooks
(rig/sim/dlms/hooks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from rig.errors import ConfigError
from rig.sim.dlms.codec import (
    ARRAY,
    DATE_TIME,
    ENUM,
    INTEGER_FORMATS,
    OCTET_STRING,
    STRUCTURE,
    DataError,
    decode_date_time,
)
from rig.sim.dlms.hooks import meter_hooks
from rig.sim.dlms.is15959 import (
    CONTROL_EVENTS,
    LOAD_SWITCH_CONNECTED,
    LOAD_SWITCH_DISCONNECTED,
    POWER_EVENTS,
    POWER_FAIL_OCCURRENCE,
    POWER_FAIL_RESTORATION,
    RTC_CHANGED,
    TRANSACTION_EVENTS,
    MeterProfiles,
)
from rig.sim.dlms.object_list import association_objects
from rig.sim.dlms.objects import OTHER_REASON, READ_WRITE_DENIED, SUCCESS, TYPE_UNMATCHED, meter_objects
from rig.sim.dlms.security import (
    EXAMPLE_AUTHENTICATION_KEY,
    EXAMPLE_ENCRYPTION_KEY,
    EXAMPLE_MASTER_KEY,
    KEY_IDS,
    CounterStore,
    ServerSecurity,
    parse_key,
)
from rig.sim.dlms.server import DEFAULT_INACTIVITY_TIMEOUT_S, DlmsServer
from rig.sim.dlms.tamper import TamperLog
from rig.sim.model import PhysicalModel

# Control mode 5: disconnection remote (b, c), manual (f), local (g); reconnection remote straight to connected
# (d), manual (e), local (h). A prepaid meter closes its relay on the head end's reconnect after a recharge with
# no button pressed by the consumer (d, not a), and its load-limit trips are local disconnections (g) that the
# meter itself restores (h): mode 5 is the only one with d, g and h. This twin performs a, b, c, d and g only.
DEFAULT_CONTROL_MODE = 5
DISCONNECTED, CONNECTED, READY_FOR_RECONNECTION = 0, 1, 2
STATE_NAMES = {DISCONNECTED: "disconnected", CONNECTED: "connected", READY_FOR_RECONNECTION: "ready_for_reconnection"}
DIRECT_RECONNECT_MODES = (1, 3, 5)

LIMITER_PERIOD_S = 0.05
DUPLICATE_AFTER_S = 0.5  # duplicate_execution: a repeated command runs this long after the next one
IST_OFFSET_MIN = 330
SINGLE_PHASE_TWO_WIRE = 5  # IS 15959-2 meter type (unverified code)
EVENT_LOG_ENTRIES = 10
LIMITER_ATTRIBUTES = {3: "threshold_active", 4: "threshold_normal", 5: "threshold_emergency",
                      6: "min_over_threshold_duration", 7: "min_under_threshold_duration"}


class NoAnswer(ConnectionError):
    """The meter did not answer (no supply voltage, still booting, or a dead data interface)."""


class DlmsMeterSim(DlmsServer):
    """The DLMS/COSEM server of a position's meter (role 'meter@<position>').

    Settings: `lls_password` (default "12345678"); the utility settings association's global keys
    `encryption_key` and `authentication_key` and the `master_key` (key encryption key of key_transfer), each 32
    hex digits, normally the bench's secret files of the meter's interface (default: the Green Book's example
    keys), which push uses too; `system_title` (16 hex digits, default "RIG" and the serial's digits);
    `state_dir` (where the invocation counters are kept across restarts, default a folder twin-state beside the
    truth file; none without one); `control_mode` (0..6, default 5),
    `utc_offset_min` (the meter's time zone, default 330: IST), `logical_device_name`, `manufacturer`,
    `firmware`, `limiter_threshold_w` (default 100000), `limiter_duration_s` (default 30), `hdlc` (also serve
    HDLC on a pty), `latency_s` (added before every answer), `boot_s` (silent after power returns, default 0.5),
    `powered_by_source` (the meter is down without the source's voltage, default false: always up),
    `battery_reading` (the data port answers without supply voltage, default true), `event_log_entries` (profile
    entries of each event log, default 10), `inactivity_timeout_s` (the TCP wrapper closes a connection idle this
    long, default 120 as field meters; 0: never), the name plate's `meter_type` (default 5),
    `meter_category` (default "C1"), `current_rating` (default "<Ib>-<6 Ib>A") and `year_of_manufacture`
    (default this year), and the profiles' capture periods and sizes (rig/sim/dlms/is15959.py:
    `block_load_period_s`, `daily_load_period_s`, `billing_period_s`, `*_entries`).

    Access per association (rig/sim/dlms/objects.py; each client's object list at 0.0.40.0.0.255 says the same):
    the public client reads the identity (logical device name, serial number, manufacturer, firmware version), the
    clock, the invocation counters and its association objects; the meter reader reads what a reader needs
    (instantaneous values, profiles, name plate, event logs, billing, the relay and limiter state) and sets and
    invokes nothing (unless the reader_can_disconnect defect opens the disconnect control to it); utility settings
    reads, sets and invokes everything: the clock, the limiter, the MD reset, the disconnect control, key transfer.
    Anything else is answered with read-write-denied; unknown objects and attributes with object-undefined, a
    wrong class with object-class-inconsistent. Truth events: dlms.association, dlms.release, clock.set, limiter.set,
    limiter.trip, limiter.ignored, disconnect_control, meter.power, dlms.unanswered, meter.event_log,
    meter.billing, dlms.inactivity_timeout, and the
    model's relay switching; with the command defects relay.closing, dlms.command_dropped, dlms.command_repeated;
    with the tamper defects meter.event_not_logged and meter.event_late.

    With the interface_dead defect the data port (TCP wrapper and HDLC) accepts connections and never answers, and
    a head end reaching the meter inside the model gets NoAnswer.

    The signal strength object 0.1.96.12.5.255 (class 3, integer, scaler 0, dBm) reports the RSRP the modem
    measures on the position's radio link (rig/sim/link.py), rounded to whole dBm.
    """

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        position = model.position_of(role, "meter", "the DLMS meter twin")
        super().__init__(role, model, str(settings.get("lls_password", "12345678")).encode(),
                         hdlc=bool(settings.get("hdlc", False)), latency_s=float(settings.get("latency_s", 0.0)))
        self.meter = model.meter(position)
        self.position = position
        self.hooks = meter_hooks(self.meter.defects)
        self.security = meter_security(role, model, settings, self.meter.serial, self.hooks)
        self.control_mode = int(settings.get("control_mode", DEFAULT_CONTROL_MODE))
        if not 0 <= self.control_mode <= 6:
            raise ConfigError(f"{role}: control_mode {self.control_mode} is outside 0..6")
        self.energy_scaler = int(settings.get("energy_scaler", 0))  # 1.0.1.8.0.255 in 10**scaler Wh
        self.utc_offset_min = int(settings.get("utc_offset_min", IST_OFFSET_MIN))
        self.logical_device_name = str(settings.get("logical_device_name", f"RIG{self.meter.serial}"))
        self.manufacturer = str(settings.get("manufacturer", "Rig Twin"))
        self.firmware = str(settings.get("firmware", "1.0.0"))
        self.boot_s = float(settings.get("boot_s", 0.5))
        self.battery_reading = bool(settings.get("battery_reading", True))
        self.powered_by_source = bool(settings.get("powered_by_source", False))
        self.clock_offset_s = 0.0
        self.control_state = CONNECTED if self.meter.relay_commanded or self.control_mode == 0 else DISCONNECTED
        self.powered = model.supply_voltage_v() > 0
        self.up_at = model.clock()  # answers from this instant on while powered
        self.trip_ignored = False
        self.threshold_normal = int(settings.get("limiter_threshold_w", 100_000))
        self.threshold_active = self.threshold_normal
        self.threshold_emergency = self.threshold_normal
        self.min_over_s = int(settings.get("limiter_duration_s", 30))
        self.min_under_s = 0
        self.over_since: float | None = None
        self.tamper = TamperLog(role, model, position, self.hooks, self.meter_time_s,
                                int(settings.get("event_log_entries", EVENT_LOG_ENTRIES)))
        self.meter_type = int(settings.get("meter_type", SINGLE_PHASE_TWO_WIRE))
        self.meter_category = str(settings.get("meter_category", "C1"))
        self.current_rating = str(settings.get("current_rating", f"{self.meter.base_current_a:g}-"
                                                                  f"{6 * self.meter.base_current_a:g}A"))
        self.year_of_manufacture = int(settings.get("year_of_manufacture", datetime.now(UTC).year))
        self.inactivity_timeout_s = float(settings.get("inactivity_timeout_s", DEFAULT_INACTIVITY_TIMEOUT_S))
        self.profiles = MeterProfiles(self, settings)
        objects = [*meter_objects(self), *self.profiles.objects()]
        objects += association_objects(lambda: list(self.objects.values()), lambda: self.serving)
        self.objects = {obj.logical_name: obj for obj in objects}
        self._limiter_task: asyncio.Task | None = None
        self._profiles_task: asyncio.Task | None = None
        self._relay_closing: asyncio.TimerHandle | None = None  # a reconnect under reconnect_extra_delay_s
        self._replay: str | None = None  # a command to execute once more after the next (duplicate_execution)

    async def start(self, host: str, port: int) -> int:
        port = await super().start(host, port)
        self._limiter_task = asyncio.create_task(self._watch_limiter())
        self._profiles_task = asyncio.create_task(self.profiles.run())
        return port

    async def stop(self) -> None:
        for task in (self._limiter_task, self._profiles_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._limiter_task = self._profiles_task = None
        await super().stop()

    # -- live values ------------------------------------------------------------------------------------------

    def meter_time_s(self) -> float:
        """The meter's clock, in UTC seconds."""
        return time.time() + self.clock_offset_s

    def energy_wh(self) -> float:
        """The register as the meter shows it: whole units of 10**energy_scaler Wh (completed, not rounded)."""
        self.model.now()
        unit = 10.0 ** self.energy_scaler
        return math.floor(self.meter.register_energy_wh / unit + 1e-9) * unit

    def signal_dbm(self) -> float:
        """RSRP as the modem reports it to the meter (whole dBm: the register's scaler is 0)."""
        return self.model.radio(self.position).reported_signal().rsrp_dbm

    def power_factor(self) -> float:
        apparent = self.model.supply_voltage_v() * self.model.position_current_a(self.position)
        return self.model.position_power_w(self.position) / apparent if apparent > 0 else 1.0

    def frequency_hz(self) -> float:
        source = self.model.source
        return source.frequency_setpoint_hz if source.output_on else 0.0

    def reported_output_state(self) -> bool:
        """Attribute 2: the relay as the meter reports it (the relay_state_inverted defect reports the opposite)."""
        return self.hooks.output_state(self.meter.relay_closed)

    # -- settings written by clients --------------------------------------------------------------------------

    def set_time(self, data: tuple[int, object], by: str) -> int:
        tag, raw = data
        if tag not in (OCTET_STRING, DATE_TIME) or not isinstance(raw, bytes) or len(raw) != 12:
            return TYPE_UNMATCHED
        try:
            utc_s = decode_date_time(raw, self.utc_offset_min)
        except DataError:
            return OTHER_REASON
        self.clock_offset_s = utc_s - time.time()
        self.profiles.log_event(TRANSACTION_EVENTS, RTC_CHANGED)
        self.model.truth.event("clock.set", role=self.role, position=self.position,
                               meter_time=datetime.fromtimestamp(utc_s, UTC).isoformat(),
                               offset_s=self.clock_offset_s, by=by)
        return SUCCESS

    def set_limiter(self, index: int, data: tuple[int, object], by: str) -> int:
        tag, value = data
        if tag not in INTEGER_FORMATS or tag == ENUM:
            return TYPE_UNMATCHED
        if not 0 <= value < 2**32:
            return OTHER_REASON
        if index == 3:
            self.threshold_active = value
        elif index == 4:
            self.threshold_normal = self.threshold_active = value  # no emergency profile is ever active
        elif index == 5:
            self.threshold_emergency = value
        elif index == 6:
            self.min_over_s = value
        else:
            self.min_under_s = value
        self.over_since = None
        self.model.truth.event("limiter.set", role=self.role, position=self.position,
                               attribute=LIMITER_ATTRIBUTES[index], value=value, by=by)
        return SUCCESS

    def key_transfer(self, role: str, data: tuple[int, object] | None, by: str) -> int:
        """Security Setup method 2: an array of {key_id, wrapped key}; the keys take effect after the answer."""
        keys = []
        if data is None or data[0] != ARRAY or not data[1]:
            return TYPE_UNMATCHED
        for item in data[1]:
            fields = item[1] if item[0] == STRUCTURE else None
            if not fields or len(fields) != 2 or fields[0][0] != ENUM or fields[1][0] != OCTET_STRING:
                return TYPE_UNMATCHED
            keys.append((fields[0][1], fields[1][1]))
        refusal = self.security.transfer_keys(role, keys)
        self.model.truth.event("dlms.key_transfer", role=self.role, position=self.position, association=role,
                               keys=[KEY_IDS.get(key_id, str(key_id)) for key_id, _ in keys],
                               result="refused" if refusal else "accepted", reason=refusal, by=by)
        return OTHER_REASON if refusal else SUCCESS

    # -- power ------------------------------------------------------------------------------------------------

    def answering(self) -> bool:
        """Follow the supply voltage: True while the meter is powered and booted and so answers at all."""
        if not self.powered_by_source:
            return True
        now = self.model.clock()
        powered = self.model.supply_voltage_v() > 0
        if powered != self.powered:
            self.powered = powered
            if powered:
                self._power_up(now)
            else:
                self._power_down()
        return powered and now >= self.up_at

    def _power_up(self, now: float) -> None:
        self.up_at = now + self.boot_s
        self.profiles.log_event(POWER_EVENTS, POWER_FAIL_RESTORATION)
        self.model.truth.event("meter.power", role=self.role, position=self.position, on=True,
                               answering_from_mono=self.up_at, control_state=STATE_NAMES[self.control_state])
        if self.hooks.forgets_state_at_power_loss() and self.control_state != CONNECTED:
            self._change_state("power_up", ("volatile", CONNECTED),
                               by=f"{self.role} power-up (defect relay_state_volatile)")

    def _power_down(self) -> None:
        self.power_epoch += 1
        self.profiles.log_event(POWER_EVENTS, POWER_FAIL_OCCURRENCE)
        self.over_since = None
        if self._hdlc_link is not None and not self.battery_reading:
            self._hdlc_link.reset(connected=False)
        self.model.truth.event("meter.power", role=self.role, position=self.position, on=False,
                               control_state=STATE_NAMES[self.control_state], relay_closed=self.meter.relay_closed)

    def port_answering(self) -> bool:
        """The meter's data port answers: while the meter is up, or always with battery reading; never while the
        interface is dead (defect interface_dead)."""
        if self.hooks.interface_dead():
            return False
        return self.answering() or self.battery_reading

    # -- disconnect control -----------------------------------------------------------------------------------

    def _remote(self, data: tuple[int, object] | None, by: str, method: str) -> int:
        if data is not None and data[0] not in INTEGER_FORMATS:
            return TYPE_UNMATCHED
        if self.control_mode == 0:
            return READ_WRITE_DENIED  # mode 0: always connected, no remote switching
        state = self.control_state
        if method == "remote_disconnect":
            transition = {CONNECTED: ("c", DISCONNECTED), READY_FOR_RECONNECTION: ("b", DISCONNECTED)}.get(state)
        elif state == DISCONNECTED:
            transition = ("d", CONNECTED) if self.control_mode in DIRECT_RECONNECT_MODES else \
                ("a", READY_FOR_RECONNECTION)
        else:
            transition = None
        self._change_state(method, transition, by)
        return SUCCESS

    def _change_state(self, trigger: str, transition: tuple[str, int] | None, by: str) -> None:
        before = self.control_state
        if transition is not None:
            self.control_state = transition[1]
        self.model.truth.event("disconnect_control", role=self.role, position=self.position, trigger=trigger,
                               transition=transition[0] if transition else None,
                               control_state=STATE_NAMES[self.control_state], previous=STATE_NAMES[before],
                               control_mode=self.control_mode, by=by)
        if transition is not None:
            if (before == CONNECTED) != (self.control_state == CONNECTED):
                self.profiles.log_event(CONTROL_EVENTS, LOAD_SWITCH_CONNECTED if self.control_state == CONNECTED
                                        else LOAD_SWITCH_DISCONNECTED)
            self._switch_relay(self.control_state == CONNECTED, trigger)

    def _switch_relay(self, closed: bool, trigger: str) -> None:
        """Drive the relay as the control state says; with reconnect_extra_delay_s a remote reconnect closes it
        that much later (a later change of state cancels the closing)."""
        if self._relay_closing is not None:
            self._relay_closing.cancel()
            self._relay_closing = None
        delay_s = self.hooks.reconnect_delay_s()
        by = f"{self.role} {trigger}"
        if closed and trigger == "remote_reconnect" and delay_s > 0 and self._loop is not None:
            self.model.truth.event("relay.closing", role=self.role, position=self.position, delay_s=delay_s,
                                   defect="reconnect_extra_delay_s", by=by)

            def close() -> None:
                self._relay_closing = None
                self.model.set_relay(self.position, True, by=f"{by} (defect reconnect_extra_delay_s)")

            self._relay_closing = self._loop.call_later(delay_s, close)
            return
        self.model.set_relay(self.position, closed, by=by)

    def remote_command(self, data: tuple[int, object] | None, by: str, method: str) -> int:
        """A client's remote disconnect or reconnect. The command-execution defects act on commands that reached
        the meter over the radio after waiting out an outage (the link's delivery in progress says so):
        loses_queued_commands acknowledges and drops them, duplicate_execution executes them once more after
        the next command."""
        delivery = self.model.radio(self.position).carrying
        fate = self.hooks.after_outage() if delivery is not None and delivery.waited_for_registration else None
        if fate == "drop":
            self.model.truth.event("dlms.command_dropped", role=self.role, position=self.position, method=method,
                                   defect="loses_queued_commands", by=by)
            return SUCCESS
        result = self._remote(data, by, method)
        if self._replay is not None and self._loop is not None:
            replay, self._replay = self._replay, None
            self._loop.call_later(DUPLICATE_AFTER_S, self._execute_again, replay, by)
        if fate == "repeat" and result == SUCCESS:
            self._replay = method
        return result

    def _execute_again(self, method: str, by: str) -> None:
        self.model.truth.event("dlms.command_repeated", role=self.role, position=self.position, method=method,
                               defect="duplicate_execution", by=by)
        self._remote(None, f"{by} (executed again: defect duplicate_execution)", method)

    def remote_disconnect(self, by: str) -> int:
        """Method 1 of the disconnect control, as a client invoking it would; NoAnswer while the meter is down."""
        self._require_answering("remote_disconnect", by)
        return self._remote(None, by, "remote_disconnect")

    def remote_reconnect(self, by: str) -> int:
        """Method 2 of the disconnect control, as a client invoking it would; NoAnswer while the meter is down."""
        self._require_answering("remote_reconnect", by)
        return self._remote(None, by, "remote_reconnect")

    def _require_answering(self, method: str, by: str) -> None:
        why = None
        if self.hooks.interface_dead():
            why = "has a dead data interface (defect interface_dead)"
        elif not self.answering():
            why = "has no supply voltage" if not self.powered else "is still booting"
        if why is not None:
            self.model.truth.event("dlms.unanswered", role=self.role, position=self.position, method=method,
                                   reason=why, by=by)
            raise NoAnswer(f"{self.role}: no answer to {method}: the meter {why}")

    # -- limiter ----------------------------------------------------------------------------------------------

    def check_limiter(self, now: float | None = None) -> None:
        """Trip (local disconnection, transition g) once power has stayed above threshold_active long enough."""
        now = time.monotonic() if now is None else now
        power_w = self.model.position_power_w(self.position)
        if self.control_state != CONNECTED or not self.meter.relay_closed or power_w <= self.threshold_active:
            self.over_since = None
            return
        if self.over_since is None:
            self.over_since = now
            self.trip_ignored = False
        if now - self.over_since < self.min_over_s:
            return
        if not self.hooks.limiter_trips():
            if not self.trip_ignored:
                self.trip_ignored = True
                self.model.truth.event("limiter.ignored", role=self.role, position=self.position, power_w=power_w,
                                       threshold_w=self.threshold_active, over_s=now - self.over_since,
                                       defect="load_limit_ignored")
            return
        self.model.truth.event("limiter.trip", role=self.role, position=self.position, power_w=power_w,
                               threshold_w=self.threshold_active, over_s=now - self.over_since,
                               min_over_threshold_duration_s=self.min_over_s)
        self.over_since = None
        if self.control_mode != 0:
            self._change_state("limiter", ("g", READY_FOR_RECONNECTION), by=f"{self.role} limiter")

    async def _watch_limiter(self) -> None:
        while True:
            await asyncio.sleep(LIMITER_PERIOD_S)
            self.profiles.sample()
            if self.answering():
                self.check_limiter()


def meter_security(role: str, model: PhysicalModel, settings: dict, serial: str, hooks) -> ServerSecurity:
    """The meter's security setups (utility settings and push, with the same global keys) from its settings;
    keys never leave this object."""
    where = f"{role}: setting"
    keys = (parse_key(settings.get("encryption_key"), f"{where} encryption_key", EXAMPLE_ENCRYPTION_KEY),
            parse_key(settings.get("authentication_key"), f"{where} authentication_key", EXAMPLE_AUTHENTICATION_KEY))
    master_key = parse_key(settings.get("master_key"), f"{where} master_key", EXAMPLE_MASTER_KEY)
    title = settings.get("system_title")
    if title is not None:
        try:
            system_title = bytes.fromhex(str(title))
        except ValueError:
            raise ConfigError(f"{role}: system_title {title!r} is not hex digits") from None
    else:
        digits = re.sub(r"\D", "", serial) or "0"
        system_title = b"RIG" + (int(digits) % 2**40).to_bytes(5, "big")
    state_dir = settings.get("state_dir")
    if state_dir is None and model.truth.path is not None:
        state_dir = Path(model.truth.path).parent / "twin-state"
    counter_file = Path(state_dir) / f"{role.replace('@', '-')}-invocation-counters.json" if state_dir else None
    return ServerSecurity(system_title, {"utility": keys, "push": keys}, master_key, CounterStore(counter_file),
                          checks_tag=lambda: not hooks.ignores_hls_tag(),
                          checks_counter=lambda: not hooks.accepts_replay())
