"""The twin HES's fleet: meters registered over the API (POST /fleet/meters, rig/sim/hes/api_fleet.py) beside the
bench's positions, each with a prepaid account like a position's (recharges, commands, group commands, the
policy's windows and the approval rule apply alike).

A fleet meter is reached directly at its endpoint over DLMS/COSEM (rig/sim/hes/fleet_link.py) with keys the head
end derives from the fleet secret (HES secret `fleet_secret`, the hex digits of the bench's secret file;
rig/fleet/model.py meter_keys: HMAC-SHA256(secret, "<serial>:<purpose>")[:16]). The read scheduler
(rig/sim/hes/fleet_schedule.py) reads each meter once per read interval, spread evenly; commands wait for their
meter while it is out of reach (rig/sim/hes/commands.py).

Push listener (settings `push_port`, 0: a free port, announced in GET /status): meters dial it over TCP and send
IEC 62056-47 wrapper frames with IS 15959 DataNotifications, ciphered under the meter's keys
(rig/fleet/push.py). Each is recorded as a 'push' event of the meter's account; a push from an unknown system
title, that does not decipher, or whose invocation counter is not above the meter's last is refused
('push_refused'). Power down marks the meter out of reach (its commands wait); power up marks it reachable
(its waiting commands go, each once) and re-reads it; a relay push records the relay state the meter reports.

Metrics (GET /fleet/metrics): reads done and failed, read and command latencies (p50, p95, p99, max),
commands settled by status, pushes by event, DLMS exchanges in flight now and at their peak.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rig import money
from rig.errors import ConfigError
from rig.fleet.model import meter_keys, serial_of_system_title
from rig.fleet.push import PushError, PushListener, Received
from rig.sim.hes.engine import Account, MeterReadFailed
from rig.sim.hes.fleet_link import FleetDlmsLink, FleetEndpoint
from rig.sim.hes.fleet_schedule import ReadScheduler

if TYPE_CHECKING:
    from rig.sim.hes.commands import Command
    from rig.sim.hes.engine import HesSettings, PrepaidEngine

MIN_SECRET_OCTETS = 16
LATENCY_SAMPLES = 100_000  # the most recent latencies kept per kind


@dataclass
class FleetMeter:
    """A fleet meter's registration and what the head end last heard from it."""

    serial: str
    endpoint: FleetEndpoint
    group: str | None = None
    feeder: str | None = None
    mains: str = "unknown"  # on, off: as its last power push said
    meter_relay: str | None = None  # connected, disconnected: as its last push said
    last_push: dict | None = None
    last_push_counter: int | None = None  # invocation counter of its last accepted push
    last_read_at: str | None = None  # HES time of its last answered read

    def as_json(self) -> dict:
        return {"endpoint": self.endpoint.address, "group": self.group, "feeder": self.feeder,
                "reachable": self.endpoint.reachable, "mains": self.mains, "meter_relay": self.meter_relay,
                "last_read": self.last_read_at, "last_push": self.last_push}


class Latencies:
    """Recent durations (s) of one kind, and their percentiles."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.count = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.samples.append(seconds)
        if len(self.samples) > LATENCY_SAMPLES:
            del self.samples[: len(self.samples) - LATENCY_SAMPLES]

    def as_json(self) -> dict:
        ordered = sorted(self.samples)

        def rank(pct: float) -> float | None:  # nearest-rank percentile
            return round(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)], 6) if ordered else None
        return {"count": self.count, "p50_s": rank(50), "p95_s": rank(95), "p99_s": rank(99),
                "max_s": round(ordered[-1], 6) if ordered else None}


class FleetMetrics:
    """Counts and latencies of the fleet's reads, commands and pushes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.reads_done = 0
        self.reads_failed = 0
        self.read_latency = Latencies()
        self.command_latency = Latencies()  # queued -> executed
        self.commands: Counter[str] = Counter()  # settled, by status
        self.pushes: Counter[str] = Counter()  # accepted, by event
        self.pushes_refused = 0

    def command_settled(self, command: Command, now: float) -> None:
        self.commands[command.status] += 1
        if command.status == "executed":
            self.command_latency.add(now - command.queued_at)


class Fleet:
    """The fleet meters of one HES: registry, link, read scheduler, push listener and metrics."""

    def __init__(self, engine: PrepaidEngine, settings: HesSettings):
        self.engine = engine
        self.settings = settings
        self.meters: dict[str, FleetMeter] = {}
        self.order: list[str] = []  # registration order: the read scheduler's round
        self.link = FleetDlmsLink(settings.dlms_deadline_s, settings.max_concurrent_exchanges,
                                  settings.fleet_link_latency_s, settings.fleet_link_loss_pct,
                                  bounded=engine.hooks.bounds_concurrency)
        self.scheduler = ReadScheduler(self.order, engine.read_interval_s, self._start_read)
        self.metrics = FleetMetrics()
        self.listener = PushListener(self._keys_of, self._on_push)
        self.push_port: int | None = None
        self._secret: bytes | None = None
        self._reading: set[str] = set()

    # -- registry ------------------------------------------------------------------------------------------

    def secret(self) -> bytes:
        """The fleet secret's octets; ConfigError (never its content) when the HES holds none or it is not hex."""
        if self._secret is None:
            held = self.settings.fleet_secret
            if held is None:
                raise ConfigError(f"{self.engine.role}: no fleet secret: give the hes role the secret fleet_secret "
                                  f"(e.g. secrets: {{fleet_secret: {{file: sim-fleet-secret}}}})")
            try:
                secret = bytes.fromhex(held.get_secret_value().strip())
            except ValueError:
                raise ConfigError(f"{self.engine.role}: secret fleet_secret is not hex digits") from None
            if len(secret) < MIN_SECRET_OCTETS:
                raise ConfigError(f"{self.engine.role}: secret fleet_secret is {len(secret)} octets, at least "
                                  f"{MIN_SECRET_OCTETS} are needed")
            self._secret = secret
        return self._secret

    def register(self, serial: str, host: str, port: int, state, group: str | None, feeder: str | None) -> Account:
        """A new fleet meter with its account (the caller has checked the serial is new)."""
        endpoint = FleetEndpoint(serial, host, port, meter_keys(self.secret(), serial))
        meter = FleetMeter(serial, endpoint, group, feeder)
        account = Account(state, None, fleet=meter)
        self.meters[serial] = meter
        self.engine.accounts[serial] = account
        self.link.add(endpoint)
        self.order.append(serial)
        self.scheduler.registered()
        return account

    # -- running -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the push listener (when push_port is set) and start the read scheduler."""
        if self.settings.push_port is not None:
            host, port = self.settings.push_host, self.settings.push_port
            try:
                self.push_port = await self.listener.start(host, port)
            except OSError as exc:
                raise ConfigError(f"{self.engine.role}: cannot listen for pushes on {host}:{port}: "
                                  f"{exc.strerror}") from None
        self.engine.spawn(self.scheduler.run())

    async def stop(self) -> None:
        await self.listener.stop()
        await self.link.close()

    def _start_read(self, serial: str) -> bool:
        if serial in self._reading:
            return False
        self._reading.add(serial)
        self.engine.spawn(self.read(serial))
        return True

    async def read(self, serial: str) -> None:
        """Read the meter (bounded by the link), charge its account and judge it as the policy asks."""
        account = self.engine.accounts[serial]
        clock = self.engine.model.clock
        started = clock()
        try:
            await self.engine.read_account(account)
        except MeterReadFailed:
            self.metrics.reads_failed += 1
        else:
            self.metrics.reads_done += 1
            self.metrics.read_latency.add(clock() - started)
            account.fleet.last_read_at = self.engine.iso(self.engine.local_now())
        finally:
            self._reading.discard(serial)
        try:
            self.engine.evaluate(account)
        except Exception as exc:  # noqa: BLE001 - the scheduler keeps running; the truth says what broke
            self.engine.record("error", truth_only=True, error=repr(exc))

    # -- pushes --------------------------------------------------------------------------------------------

    def _keys_of(self, system_title: bytes) -> tuple[bytes, bytes] | None:
        serial = serial_of_system_title(system_title)
        meter = self.meters.get(serial) if serial is not None else None
        return meter.endpoint.keys if meter is not None else None

    def _on_push(self, item: Received | PushError) -> None:
        if isinstance(item, PushError):
            self._refuse(str(item))
            return
        notification = item.notification
        meter = self.meters.get(notification.serial)
        if meter is None or (item.system_title is not None
                             and serial_of_system_title(item.system_title) != notification.serial):
            self._refuse(f"push names meter {notification.serial!r}, which is not a registered fleet meter of its "
                         f"system title")
            return
        if item.invocation_counter is None:
            self._refuse(f"push from {notification.serial} is not ciphered", notification.serial)
            return
        if meter.last_push_counter is not None and item.invocation_counter <= meter.last_push_counter:
            self._refuse(f"push from {notification.serial}: invocation counter {item.invocation_counter} is not "
                         f"above its last {meter.last_push_counter} (a replay)", notification.serial)
            return
        meter.last_push_counter = item.invocation_counter
        self._accept(meter, item)

    def _refuse(self, reason: str, serial: str | None = None) -> None:
        self.metrics.pushes_refused += 1
        self.engine.record("push_refused", account=serial, reason=reason)

    def _accept(self, meter: FleetMeter, item: Received) -> None:
        notification = item.notification
        event = notification.event
        self.metrics.pushes[event] += 1
        meter.last_push = {"event": event, "event_time": _utc_iso(notification.event_time_s),
                           "sequence": notification.sequence}
        self.engine.record("push", account=meter.serial, event=event, event_code=notification.event_code,
                           event_time=meter.last_push["event_time"], sequence=notification.sequence,
                           control_state=notification.control_state, energy_wh=Decimal(notification.energy_wh))
        if event == "power_down":
            meter.mains = "off"
            meter.endpoint.mark(False)  # its commands wait for it
        elif event == "power_up":
            meter.mains = "on"
            meter.endpoint.mark(True)  # its waiting commands go, each once
            self._start_read(meter.serial)
        elif event in ("relay_connected", "relay_disconnected"):
            meter.meter_relay = event.removeprefix("relay_")

    # -- answers -------------------------------------------------------------------------------------------

    def metrics_json(self) -> dict[str, Any]:
        m, link = self.metrics, self.link
        return {"meters": len(self.meters), "read_interval_s": self.engine.read_interval_s,
                "reads": {"done": m.reads_done, "failed": m.reads_failed, "started": self.scheduler.reads_started,
                          "skipped": self.scheduler.reads_skipped, "latency": m.read_latency.as_json()},
                "commands": {"pending": self.engine.executor.pending, "settled": dict(m.commands),
                             "latency": m.command_latency.as_json()},
                "pushes": {"accepted": dict(m.pushes), "refused": m.pushes_refused},
                "exchanges": {"max_concurrent": link.max_concurrent, "bounded": link.bounded(),
                              "in_flight": link.in_flight, "peak_in_flight": link.peak_in_flight,
                              "done": link.exchanges_done, "failed": link.exchanges_failed},
                "unreachable": sum(1 for meter in self.meters.values() if not meter.endpoint.reachable),
                "balance_total": money.text(sum((self.engine.accounts[s].state.balance for s in self.order),
                                                money.ZERO))}

    def reset_metrics(self) -> None:
        self.metrics.reset()
        self.link.reset_peak()


def _utc_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
