"""The radio link between a meter's modem and the head end, as the twin models it.

Each position's modem sits behind its own RF attenuator. The signal at the modem follows one model:

    RSRP = cell RSRP - attenuation                      (dBm)
    SINR = min(sinr_max, RSRP - noise_floor)            (dB; falls 1 dB per dB of attenuation below the cap)
    RSSI = RSRP + 10 log10(12 x 50 resource blocks)     (dBm, 10 MHz carrier)
    RSRQ = -10.8 dB, worsening 0.6 dB per dB of SINR below 10 dB, down to -19.5 dB

Registration is lost the instant RSRP falls below the profile's `loss_threshold_dbm` and regained
`reattach_s` after it has risen to `loss_threshold_dbm + hysteresis_db` (the modem re-attaches).

Every exchange between the HES and the meter is a delivery (`RadioLink.deliver`, or `RadioLink.carry` to hold
the link while the exchange itself runs), one at a time in order per position. A delivery waits while the modem
is unregistered (the command stays queued at the head end), then, on a polling profile (2G: the meter polls the
head end every `poll_interval_s`), until the next poll, unless it was queued while the previous delivery ran (the
meter takes everything queued in one poll session); it then takes

    latency = base_latency_s x 2 ^ (max(0, knee_dbm - RSRP) / doubling_db)   (+ link.extra_latency_s defect)

and is lost with probability

    loss = max_loss x clamp((knee_dbm - RSRP) / (knee_dbm - loss_threshold_dbm), 0, 1) ^ 2   (+ link.drop_rate)

A lost delivery is retried after `retry_after_s` (no answer within the head end's timeout), on a polling profile
at the first poll after that (the command stays queued for the meter's next session); so is one whose
registration dropped while it was in flight. A delivery "waited out an outage" when registration was lost at
any moment between its queueing and its arrival. The default profiles are the field's timings scaled 1:60
(a 15-minute 2G poll is 15 s on the twin, a 3-minute reconnect SLA is 3 s), so a sweep runs in minutes; a
bench can set its own in `twin.link`. The 4G profile loses no exchange while registered (LTE retransmits below
the application layer; only latency grows), the 2G one loses up to a quarter of them at the edge of coverage
(a lost session costs a poll: a good 2G meter there misses the 2-hour rule, eight sessions lost in a row, about
once in 65,000 trials).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rig.sim.defects import LinkDefects
from rig.sim.truth import TruthLog

RESOURCE_BLOCKS_DB = 10 * math.log10(12 * 50)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinkProfile(Strict):
    """Timing and coverage of one radio access technology."""

    base_latency_s: Annotated[float, Field(ge=0)]  # one exchange at good signal
    knee_dbm: float = -100.0  # latency and loss start to grow below this RSRP
    doubling_db: Annotated[float, Field(gt=0)] = 5.0  # latency doubles every this many dB below the knee
    max_loss: Annotated[float, Field(ge=0, le=1)] = 0.5  # delivery loss probability at the loss threshold
    retry_after_s: Annotated[float, Field(gt=0)]  # the head end's retry after a delivery went unanswered
    poll_interval_s: Annotated[float, Field(gt=0)] | None = None  # polling profile: the meter calls in this often
    loss_threshold_dbm: float = -120.0
    hysteresis_db: Annotated[float, Field(ge=0)] = 3.0
    reattach_s: Annotated[float, Field(ge=0)] = 2.0


DEFAULT_PROFILES = {
    # field: ~0.5 s per exchange, 60 s re-attach, retries after 60 s; here 1:60, the exchange itself 1:5
    "4g": LinkProfile(base_latency_s=0.1, doubling_db=8.0, max_loss=0.0, retry_after_s=1.0, reattach_s=1.0),
    # field: a 15-minute poll, GPRS round trips of seconds, a head end timing a session out after 60 s,
    # coverage to about -110 dBm
    "2g": LinkProfile(base_latency_s=0.5, retry_after_s=1.0, poll_interval_s=15.0, knee_dbm=-95.0,
                      loss_threshold_dbm=-110.0, max_loss=0.25, reattach_s=2.0),
}


class LinkSettings(Strict):
    """`twin.link` of a bench: the cell and the profiles (the modem's technology picks one)."""

    cell_rsrp_dbm: float = -70.0  # at the attenuator's input
    noise_floor_dbm: float = -118.0
    sinr_max_db: float = 25.0
    technology: Literal["4g", "2g"] = "4g"  # at start; the modem can be switched (AT+QCFG="nwscanmode")
    profiles: dict[str, LinkProfile] = DEFAULT_PROFILES


@dataclass(frozen=True)
class Signal:
    """True radio conditions at the modem."""

    rsrp_dbm: float
    sinr_db: float
    rssi_dbm: float
    rsrq_db: float


@dataclass(frozen=True)
class Delivery:
    """One completed delivery: how long it waited and how often it was tried."""

    queued_s: float  # waiting for registration
    attempts: int
    waited_for_registration: bool


class RadioLink:
    """One position's radio path: attenuation, signal, registration and the deliveries over it."""

    def __init__(self, position: int, settings: LinkSettings, defects: LinkDefects, truth: TruthLog,
                 rng: random.Random, clock: Callable[[], float]):
        self.position = position
        self.settings = settings
        self.defects = defects
        self.truth = truth
        self.rng = rng
        self.clock = clock
        self.technology = settings.technology
        self.attenuation_db = 0.0
        self.registered = True
        self._reattach_at: float | None = None
        self._reattach_timer: asyncio.TimerHandle | None = None
        self._fifo = asyncio.Lock()
        self._poll_phase_s = rng.uniform(0, 1)  # where in its poll cycle this meter is
        self._listeners: list[Callable[[RadioLink], None]] = []
        self.outages = 0  # registration losses so far
        self.carrying: Delivery | None = None  # the delivery whose exchange is running now
        self._last_delivered_at: float | None = None

    @property
    def profile(self) -> LinkProfile:
        return self.settings.profiles[self.technology]

    # -- signal --------------------------------------------------------------------------------------------

    def signal(self) -> Signal:
        rsrp = self.settings.cell_rsrp_dbm - self.attenuation_db
        sinr = min(self.settings.sinr_max_db, rsrp - self.settings.noise_floor_dbm)
        rsrq = max(-19.5, -10.8 - 0.6 * max(0.0, 10.0 - sinr))
        return Signal(rsrp, sinr, rsrp + RESOURCE_BLOCKS_DB, rsrq)

    def reported_signal(self) -> Signal:
        """What the meter and its modem report: the truth, offset by the `link.rsrp_report_offset_db` defect."""
        true = self.signal()
        offset = self.defects.rsrp_report_offset_db
        return Signal(true.rsrp_dbm + offset, true.sinr_db, true.rssi_dbm + offset, true.rsrq_db)

    # -- attenuation and registration -----------------------------------------------------------------------

    def add_listener(self, callback: Callable[[RadioLink], None]) -> None:
        """callback(link) after every change of registration (a modem's unsolicited +CEREG)."""
        self._listeners.append(callback)

    def set_attenuation(self, attenuation_db: float, by: str) -> None:
        self.update()
        self.attenuation_db = attenuation_db
        self.truth.event("link.attenuation", position=self.position, attenuation_db=attenuation_db,
                         rsrp_dbm=self.signal().rsrp_dbm, by=by)
        self._evaluate_registration()

    def set_technology(self, technology: str, by: str) -> None:
        if technology not in self.settings.profiles:
            raise ValueError(f"no link profile {technology!r} (profiles: {', '.join(self.settings.profiles)})")
        self.update()
        if technology != self.technology:
            self.technology = technology
            self.truth.event("link.technology", position=self.position, technology=technology, by=by)
            self._evaluate_registration()

    def update(self) -> bool:
        """Bring registration up to date (a pending re-attach completes on time); True while registered."""
        if self._reattach_at is not None and self.clock() >= self._reattach_at:
            self._reattach_at = None
            self._set_registered(True)
        return self.registered

    def _evaluate_registration(self) -> None:
        profile = self.profile
        rsrp = self.signal().rsrp_dbm
        if self.registered and rsrp < profile.loss_threshold_dbm:
            self._cancel_reattach()
            self._set_registered(False)
        elif not self.registered and rsrp >= profile.loss_threshold_dbm + profile.hysteresis_db:
            if self._reattach_at is None:
                self._reattach_at = self.clock() + profile.reattach_s
                self._schedule_reattach(profile.reattach_s)
        elif not self.registered:
            self._cancel_reattach()

    def _schedule_reattach(self, delay_s: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test): update() completes the re-attach lazily
        self._reattach_timer = loop.call_later(delay_s, self.update)

    def _cancel_reattach(self) -> None:
        self._reattach_at = None
        if self._reattach_timer is not None:
            self._reattach_timer.cancel()
            self._reattach_timer = None

    def _set_registered(self, registered: bool) -> None:
        self.registered = registered
        if not registered:
            self.outages += 1
        self.truth.event("link.registration", position=self.position, registered=registered,
                         technology=self.technology, rsrp_dbm=self.signal().rsrp_dbm)
        for callback in self._listeners:
            callback(self)

    # -- deliveries ----------------------------------------------------------------------------------------

    def latency_s(self) -> float:
        profile = self.profile
        below_knee_db = max(0.0, profile.knee_dbm - self.signal().rsrp_dbm)
        return profile.base_latency_s * 2 ** (below_knee_db / profile.doubling_db) + self.defects.extra_latency_s

    def loss_probability(self) -> float:
        profile = self.profile
        span = profile.knee_dbm - profile.loss_threshold_dbm
        depth = min(max((profile.knee_dbm - self.signal().rsrp_dbm) / span, 0.0), 1.0) if span > 0 else 0.0
        return min(1.0, profile.max_loss * depth ** 2 + self.defects.drop_rate)

    async def _until_registered(self) -> None:
        while not self.update():
            await asyncio.sleep(0.02)

    async def _until_next_poll(self) -> None:
        interval = self.profile.poll_interval_s
        if interval is None:
            return
        now = self.clock()
        phase = self._poll_phase_s * interval
        next_poll = math.floor((now - phase) / interval + 1) * interval + phase
        await asyncio.sleep(max(0.0, next_poll - now))

    async def deliver(self, what: str) -> Delivery:
        """Carry one exchange (`what` names it in the truth) to the meter: in order, waiting out outages and
        polls, retrying lost attempts. Returns when the meter has it."""
        async with self.carry(what) as delivery:
            return delivery

    @contextlib.asynccontextmanager
    async def carry(self, what: str) -> AsyncIterator[Delivery]:
        """As `deliver`, then hold the link (later deliveries wait) while the caller runs the exchange itself;
        `carrying` is the delivery meanwhile, so the meter can tell what reached it over the air."""
        queued_from = self.clock()
        outages_before = self.outages if self.update() else self.outages - 1
        async with self._fifo:
            in_session = self._last_delivered_at is not None and queued_from <= self._last_delivered_at
            attempts = 0
            while True:
                await self._until_registered()
                if not in_session:
                    await self._until_next_poll()
                in_session = False
                attempts += 1
                latency = self.latency_s()
                lost = self.rng.random() < self.loss_probability()
                await asyncio.sleep(latency)
                if lost or not self.update():
                    self.truth.event("link.lost", position=self.position, what=what, attempt=attempts,
                                     registered=self.registered)
                    await asyncio.sleep(self.profile.retry_after_s)
                    continue
                break
            queued_s = self.clock() - queued_from
            waited = self.outages != outages_before
            self.truth.event("link.delivered", position=self.position, what=what, attempts=attempts,
                             queued_s=round(queued_s, 4), waited_for_registration=waited)
            delivery = Delivery(queued_s, attempts, waited)
            self.carrying = delivery
            try:
                yield delivery
            finally:
                self.carrying = None
                self._last_delivered_at = self.clock()
