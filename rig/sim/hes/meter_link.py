"""How the HES twin reaches a position's meter (`MeterLink`), and the link that reaches it inside the model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from rig.sim.model import PhysicalModel


class MeterLink(Protocol):
    """How the HES reaches a position's meter: energy register reads and the remote disconnect/reconnect.
    A command calls `on_sent()` when it leaves the head end (the link carried it), then returns once the meter
    has executed it; it raises when the meter does not answer or refuses. `on_sent()` may raise to withdraw the
    command at that moment: the exception leaves the link call and nothing reaches the meter."""

    async def read_energy_wh(self, position: int) -> Decimal:
        """The energy register exactly as the meter counts it (value times 10**scaler Wh)."""

    async def disconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None: ...

    async def reconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None: ...


class ModelMeterLink:
    """Reaches the meters inside the twin, after `latency_s`: through a position's simulated meter (its disconnect
    control state machine) where the bench has one, else on the model directly; no radio link, no protocol
    (HES setting `meter_link: model`, and the stand-in for positions without a twin DLMS meter)."""

    def __init__(self, model: PhysicalModel, by: str = "hes", latency_s: float = 0.0):
        self.model = model
        self.by = by
        self.latency_s = latency_s
        self.meters: dict[int, Any] = {}  # position -> simulated meter with remote_disconnect/remote_reconnect

    async def _exchange(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    async def read_energy_wh(self, position: int) -> Decimal:
        """The model's register in whole mWh (a register of scaler -3)."""
        await self._exchange()
        self.model.now()
        return Decimal(round(self.model.meter(position).register_energy_wh * 1000)).scaleb(-3)

    async def disconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None:
        if on_sent is not None:
            on_sent()
        await self._exchange()
        if position in self.meters:
            self.meters[position].remote_disconnect(by=f"{self.by} remote disconnect")
        else:
            self.model.set_relay(position, False, by=f"{self.by} remote disconnect")

    async def reconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None:
        if on_sent is not None:
            on_sent()
        await self._exchange()
        if position in self.meters:
            self.meters[position].remote_reconnect(by=f"{self.by} remote reconnect")
        else:
            self.model.set_relay(position, True, by=f"{self.by} remote reconnect")
