"""Helpers of the prepaid plans: supply through a position's relay, energy and current from the load's readings."""

from __future__ import annotations

import time

from rig.timing import CurrentWatcher, EventTimeout, Sample

RECHARGE = 500.0


def energy_crossing(samples: list[Sample], voltage_v: float, start_s: float, energy_j: float) -> tuple[float, float]:
    """Instant at which the energy integrated from start_s reaches energy_j, and the reading period there."""
    total = 0.0
    for before, after in zip(samples, samples[1:], strict=False):
        if after.t_mono <= start_s:
            continue
        begin = max(before.t_mono, start_s)
        step_j = voltage_v * before.value * (after.t_mono - begin)
        if total + step_j >= energy_j:
            fraction = (energy_j - total) / step_j if step_j else 0.0
            return begin + fraction * (after.t_mono - begin), after.t_mono - before.t_mono
        total += step_j
    raise AssertionError(f"the load drew only {total:.1f} J of the {energy_j:.1f} J the credit buys")


def wait_for_current(watcher: CurrentWatcher, threshold_a: float, timeout_s: float) -> None:
    """Until the latest reading is above threshold_a (current flows through the relay into the load)."""
    deadline = time.monotonic() + timeout_s
    while not (watcher.samples and watcher.samples[-1].value > threshold_a):
        if time.monotonic() > deadline:
            last = watcher.samples[-1].value if watcher.samples else None
            raise EventTimeout(f"{watcher.name}: no current above {threshold_a:g} A within {timeout_s:g} s "
                               f"(last reading {last} A)")
        time.sleep(watcher.poll_s)


def restore_supply(hes, account: str, meter) -> None:
    """A recharge, so the meter is connected before (and after) the test."""
    if hes.balance(account) <= 0 or not meter.relay_state()["output_state"]:
        hes.recharge(account, RECHARGE, reference=f"prepaid plan: restore supply {time.time_ns()}")
        deadline = time.monotonic() + 30
        while not meter.relay_state()["output_state"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{account}: relay still open 30 s after a recharge")
            time.sleep(0.1)


def supply_position(source, hes, account: str, meter, load, voltage_v: float, load_a: float) -> float:
    """Supply on, the meter connected (recharging if needed), the position's load drawing load_a through the
    relay; returns the measured supply voltage."""
    source.set_voltage(voltage_v)
    if not source.output_enabled():
        source.set_output(True)
    restore_supply(hes, account, meter)
    load.set_mode("CURR")
    load.set_level(load_a)
    load.set_input(True)
    return source.measure_voltage()
