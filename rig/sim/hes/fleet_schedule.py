"""The fleet's read scheduler: every fleet meter read once per read interval, the reads spread evenly over it.

The meters are read round-robin in the order they were registered, one every read interval / N seconds (N: the
meters registered now), so each meter's read keeps its phase in the interval and N meters make N evenly spaced
reads per interval, not N reads at once. A meter registered later joins the round at its end. A read that is
still running when the meter's turn comes again is skipped (counted), and a scheduler that fell more than an
interval behind (an overloaded loop) starts again from now rather than firing the missed reads at once. How many
reads run at the same time is bounded by the link (rig/sim/hes/fleet_link.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MIN_SLEEP_S = 0.002  # due reads closer together than this start in one wake-up


class ReadScheduler:
    """Calls `start_read(serial)` for each serial of `order` in turn, N per `interval_s`."""

    def __init__(self, order: list[str], interval_s: float, start_read: Callable[[str], bool]):
        self.order = order  # the registry's list, appended to as meters register
        self.interval_s = interval_s
        self.start_read = start_read  # False: the meter's previous read still runs (skipped)
        self.reads_started = 0
        self.reads_skipped = 0
        self._registered = asyncio.Event()

    def registered(self) -> None:
        """Meters were added to `order`: wake a scheduler waiting for its first."""
        self._registered.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        turn = 0
        due = loop.time()
        while True:
            if not self.order:
                self._registered.clear()
                await self._registered.wait()
                due = loop.time()
                continue
            slot_s = self.interval_s / len(self.order)
            now = loop.time()
            if due - now > MIN_SLEEP_S:
                await asyncio.sleep(due - now)
                continue
            if now - due > self.interval_s:
                due = now  # fell behind by a whole interval: never bunch the missed reads
            turn %= len(self.order)
            if self.start_read(self.order[turn]):
                self.reads_started += 1
            else:
                self.reads_skipped += 1
            turn += 1
            due += slot_s
