"""Helpers of the prepaid plans: supply through a position's relay, energy and current from the load's readings."""

from __future__ import annotations

import time

from drivers.hes import HesHttpError
from rig.errors import InstrumentTimeout
from rig.timing import CurrentWatcher, EventTimeout, Sample

RECHARGE = 500.0
DISCONNECTED, CONNECTED, READY_FOR_RECONNECTION = 0, 1, 2  # disconnect control_state (class 70, attribute 3)
SETTLED = ("executed", "failed", "cancelled")  # HES command statuses; any other is still pending
METER_NOT_READ = (502, 504)  # the HES's answer to an on-demand read it could not make
SETTLE_S = 30.0  # restoring the supply: the meter connected, the HES's commands settled and a reading made
READ_RETRY_S = 0.2


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


def read_when_reachable(hes, account: str, timeout_s: float = SETTLE_S) -> dict:
    """An on-demand read the HES answers with a fresh reading; the account as charged after it. After power
    returns the meter's communication module boots and its modem registers first, so a read the HES could not
    make (502, 504) is asked again until timeout_s; then InstrumentTimeout naming the account and the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return hes.read_now(account)
        except HesHttpError as exc:
            if exc.status not in METER_NOT_READ:
                raise
            if time.monotonic() > deadline:
                raise InstrumentTimeout(f"{hes.role} ({hes.address}): account {account}: its meter was not read "
                                        f"within {timeout_s:g} s: {exc}") from None
        time.sleep(READ_RETRY_S)


def pending_command(hes, account: str) -> dict | None:
    """The account's command the HES has not settled (executed, failed or cancelled), if any."""
    return next((c for c in hes.commands(account=account) if c["status"] not in SETTLED), None)


def restore_supply(hes, account: str, meter, timeout_s: float = SETTLE_S) -> None:
    """A recharge, so the meter's disconnect control is connected before (and after) the test; after a local
    disconnection (a limiter trip leaves it ready for reconnection) a remote disconnect and reconnect (transitions
    b and d). Judged by the control state: the physics is each plan's to judge, and a meter misreporting its
    relay's output state must not stall the bench. Returns once the HES has no command pending for the account
    (none sent later can switch the supply under the next step) and has read the meter, each within timeout_s."""
    if meter.relay_state()["control_state"] == READY_FOR_RECONNECTION:
        meter.remote_disconnect()
        meter.remote_reconnect()
    recharged = False
    if hes.balance(account) <= 0 or meter.relay_state()["control_state"] != CONNECTED:
        hes.recharge(account, RECHARGE, reference=f"prepaid plan: restore supply {time.time_ns()}")
        recharged = True
    deadline = time.monotonic() + timeout_s
    while True:
        pending = pending_command(hes, account)
        connected = meter.relay_state()["control_state"] == CONNECTED
        if pending is None and connected:
            break
        if time.monotonic() > deadline:
            if pending is not None:
                raise InstrumentTimeout(f"{hes.role} ({hes.address}): account {account}: command {pending['id']} "
                                        f"({pending['action']}, {pending['origin']}) still {pending['status']!r} "
                                        f"{timeout_s:g} s after restoring the supply")
            raise AssertionError(f"{account}: meter still not connected {timeout_s:g} s after "
                                 + ("a recharge" if recharged else "restoring the supply"))
        time.sleep(0.1)
    read_when_reachable(hes, account, max(0.0, deadline - time.monotonic()))


def current_flows(watcher: CurrentWatcher, measure, position: int, load_a: float, meter,
                  timeout_s: float = 5.0) -> bool:
    """Measure that current reaches half of load_a within timeout_s while the meter is connected (source on,
    credit left): a relay that does not deliver the supply is the meter's failure. True when it flows."""
    try:
        wait_for_current(watcher, load_a / 2, timeout_s)
    except EventTimeout:
        pass
    value = watcher.samples[-1].value if watcher.samples else 0.0
    return measure("current_with_meter_connected", value, "A", low=load_a / 2, position=position,
                   details=meter.relay_state()).verdict != "fail"


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
