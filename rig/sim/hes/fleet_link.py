"""The twin HES's DLMS/COSEM link to fleet meters: each reached directly at its own TCP wrapper endpoint
(tcp://127.x.y.z:port), no radio model, as utility settings (client SAP 48, HLS-GMAC) with the meter's own keys,
which the head end derives from the fleet secret (rig/fleet/model.py meter_keys).

The exchange itself is the bench link's (rig/sim/hes/dlms_link.py `_Association`: dlms-cosem's sans-IO connection
on asyncio streams). One association per meter, kept between exchanges (closed when idle longer than the meter
keeps it, or after any failure); before the first association, and after a failure, the public client reads the
meter's invocation counter and the head end goes on above it. One exchange at a time per meter, and at most
`max_concurrent` exchanges across the fleet (a semaphore; `bounded` False lifts the bound). A simple WAN model:
`latency_s` added to every exchange, `loss_pct` of exchanges lost (seeded).

Metrics: exchanges done and failed, and the exchanges in flight now and at their peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from rig.sim.hes.dlms_link import (
    IDLE_RELEASE_S,
    MeterUnreachable,
    _Association,
    read_invocation_counter,
)

T = TypeVar("T")


@dataclass
class FleetEndpoint:
    """How the head end reaches one fleet meter, and what it knows of the meter's reachability."""

    serial: str
    host: str
    port: int
    keys: tuple[bytes, bytes] = field(repr=False)  # (global unicast encryption key, authentication key)
    association: _Association | None = field(default=None, repr=False)
    invocation_counter: int | None = None  # the last the head end used; None: read the meter's before associating
    reachable: bool = True  # as last seen: an exchange failed, or the meter pushed power down
    heard: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # set while reachable
    busy: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)  # one exchange at a time

    def __post_init__(self) -> None:
        self.heard.set()

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def mark(self, reachable: bool) -> None:
        self.reachable = reachable
        if reachable:
            self.heard.set()
        else:
            self.heard.clear()


class FleetDlmsLink:
    """MeterLink over DLMS/COSEM to fleet meters, addressed by serial (`add` first)."""

    def __init__(self, deadline_s: float = 5.0, max_concurrent: int = 100, latency_s: float = 0.0,
                 loss_pct: float = 0.0, seed: int = 1, bounded: Callable[[], bool] = lambda: True):
        self.deadline_s = deadline_s
        self.max_concurrent = max_concurrent
        self.latency_s = latency_s
        self.loss_pct = loss_pct
        self.bounded = bounded
        self.endpoints: dict[str, FleetEndpoint] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._rng = random.Random(f"{seed}-fleet-link")
        self.in_flight = 0
        self.peak_in_flight = 0
        self.exchanges_done = 0
        self.exchanges_failed = 0

    def add(self, endpoint: FleetEndpoint) -> None:
        self.endpoints[endpoint.serial] = endpoint

    def reaches(self, serial: str) -> str:
        return "fleet" if serial in self.endpoints else "none"

    async def read_energy_wh(self, serial: str) -> Decimal:
        return await self._exchange(serial, "read 1.0.1.8.0.255", None, lambda a: a.energy_wh())

    async def disconnect(self, serial: str, on_sent: Callable[[], None] | None = None) -> None:
        await self._exchange(serial, "remote_disconnect", on_sent, lambda a: a.action("remote_disconnect"))

    async def reconnect(self, serial: str, on_sent: Callable[[], None] | None = None) -> None:
        await self._exchange(serial, "remote_reconnect", on_sent, lambda a: a.action("remote_reconnect"))

    def reset_peak(self) -> None:
        self.peak_in_flight = self.in_flight

    async def _exchange(self, serial: str, what: str, on_sent: Callable[[], None] | None,
                        body: Callable[[_Association], Awaitable[T]]) -> T:
        endpoint = self.endpoints[serial]
        slot = self._slots if self.bounded() else contextlib.nullcontext()
        async with slot, endpoint.busy:
            if on_sent is not None:
                on_sent()  # may withdraw the command: nothing is sent then
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                result = await self._carry(endpoint, what, body)
            except MeterUnreachable:
                self.exchanges_failed += 1
                endpoint.mark(False)
                raise
            finally:
                self.in_flight -= 1
            self.exchanges_done += 1
            endpoint.mark(True)
            return result

    async def _carry(self, endpoint: FleetEndpoint, what: str, body: Callable[[_Association], Awaitable[T]]) -> T:
        where = f"fleet meter {endpoint.serial} over DLMS ({endpoint.address})"
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.loss_pct and self._rng.random() * 100 < self.loss_pct:
            self._drop(endpoint)
            raise MeterUnreachable(f"{where}: {what}: lost on the link (loss_pct {self.loss_pct:g})")
        try:
            return await asyncio.wait_for(self._on_association(endpoint, body), self.deadline_s)
        except Exception as exc:  # noqa: BLE001 - socket, protocol and library errors alike end the association
            self._drop(endpoint)
            endpoint.invocation_counter = None  # read the meter's again before the next association
            reason = "no answer within the deadline" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            raise MeterUnreachable(f"{where}: {what}: {reason}") from None

    def _drop(self, endpoint: FleetEndpoint) -> None:
        if endpoint.association is not None:
            self._keep_counter(endpoint)
            endpoint.association.close()
            endpoint.association = None

    async def _on_association(self, endpoint: FleetEndpoint, body: Callable[[_Association], Awaitable[T]]) -> T:
        association = endpoint.association
        if association is not None and time.monotonic() - association.last_used > IDLE_RELEASE_S:
            self._drop(endpoint)  # the meter closes a connection idle for its inactivity timeout (~120 s)
            association = None
        if association is None:
            if endpoint.invocation_counter is None:
                endpoint.invocation_counter = await self._read_invocation_counter(endpoint)
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            association = _Association(reader, writer, endpoint.keys, endpoint.invocation_counter + 1)
            endpoint.association = association
            await association.associate()
        try:
            return await body(association)
        finally:
            self._keep_counter(endpoint)

    @staticmethod
    def _keep_counter(endpoint: FleetEndpoint) -> None:
        if endpoint.association is not None:
            used = endpoint.association.connection.client_invocation_counter - 1
            endpoint.invocation_counter = max(endpoint.invocation_counter or 0, used)

    @staticmethod
    async def _read_invocation_counter(endpoint: FleetEndpoint) -> int:
        return await read_invocation_counter(endpoint.host, endpoint.port)

    async def close(self) -> None:
        for endpoint in self.endpoints.values():
            self._drop(endpoint)
