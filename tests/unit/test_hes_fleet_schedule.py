"""The fleet's read scheduler on a real event loop, and the storm defect's choice of commands to drop."""

import asyncio
import time

import pytest

from rig.sim.defects import HesDefects
from rig.sim.hes.fleet_schedule import ReadScheduler
from rig.sim.hes.hooks import STORM_PENDING_COMMANDS, DefectiveHes, EngineHooks


def run_scheduler(order: list[str], interval_s: float, run_s: float, busy: set[str] = frozenset(),
                  register_later: list[str] = ()) -> tuple[dict[str, list[float]], ReadScheduler]:
    """Serials -> their read start times (s since start) over run_s; `busy` serials still reading."""
    starts: dict[str, list[float]] = {}

    async def main():
        t0 = time.monotonic()

        def start_read(serial: str) -> bool:
            if serial in busy:
                return False
            starts.setdefault(serial, []).append(time.monotonic() - t0)
            return True
        scheduler = ReadScheduler(order, interval_s, start_read)
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(run_s / 2)
        order.extend(register_later)
        scheduler.registered()
        await asyncio.sleep(run_s / 2)
        task.cancel()
        return scheduler

    return starts, asyncio.run(main())


def test_each_meter_is_read_once_per_interval_at_its_own_phase():
    order = [f"M{i}" for i in range(20)]
    starts, scheduler = run_scheduler(order, 1.0, 2.5)
    first_round = sorted(times[0] for times in starts.values())
    slots = [later - earlier for earlier, later in zip(first_round, first_round[1:], strict=False)]
    assert all(0.02 < slot < 0.08 for slot in slots)  # 1 s / 20 meters apart, not all at once
    gaps = [b - a for times in starts.values() for a, b in zip(times, times[1:], strict=False)]
    assert all(0.9 < gap < 1.1 for gap in gaps)
    assert {len(times) for times in starts.values()} <= {2, 3}  # 2.5 intervals
    assert scheduler.reads_skipped == 0


def test_a_meter_still_reading_is_skipped_and_a_scheduler_without_meters_waits_for_them():
    order: list[str] = []
    starts, scheduler = run_scheduler(order, 0.4, 1.0, busy={"B"}, register_later=["A", "B"])
    assert "B" not in starts and scheduler.reads_skipped >= 1
    assert starts["A"][0] == pytest.approx(0.5, abs=0.05)  # read as soon as it registered


def test_the_storm_defect_drops_its_share_of_the_commands_queued_under_load_and_no_others():
    hooks = DefectiveHes(HesDefects(storm_drops_commands_pct=25))
    calm = [hooks.drops_command(pending) for pending in range(STORM_PENDING_COMMANDS + 1)]
    stormy = [hooks.drops_command(STORM_PENDING_COMMANDS + 5) for _ in range(40)]
    assert calm == [None] * (STORM_PENDING_COMMANDS + 1)
    assert sum(reason is not None for reason in stormy) == 10
    assert [i for i, reason in enumerate(stormy) if reason][:3] == [3, 7, 11]  # spread evenly, same every run
    assert EngineHooks().drops_command(10_000) is None
