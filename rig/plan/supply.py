"""Supply through a position's relay: source on, account in credit, meter connected, load drawing its current."""

from __future__ import annotations

import time

from rig.errors import HeadEndError, InstrumentTimeout
from rig.measure import Limits
from rig.plan.load import LoadWatch
from rig.plan.measurements import Measurements
from rig.plan.position import Position
from rig.plan.shared import check_stopping, once
from rig.roles import Account, AcSource, ControlState, DisconnectControl, HeadEnd

METER_NOT_READ = (502, 504)  # the head end's answer to an on-demand read it could not make
READ_RETRY_S = 0.2


def read_when_reachable(hes: HeadEnd, account: str, timeout_s: float) -> Account:
    """An on-demand read the head end answers with a fresh reading; the account as charged after it. After power
    returns the meter's communication module boots and its modem registers first, so a read the head end could not
    make (502, 504) is asked again until timeout_s; then InstrumentTimeout naming the account and the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return hes.read_now(account)
        except HeadEndError as exc:
            if exc.status not in METER_NOT_READ:
                raise
            if time.monotonic() > deadline:
                raise InstrumentTimeout(f"{hes.role} ({hes.address}): account {account}: its meter was not read "
                                        f"within {timeout_s:g} s: {exc}") from None
        check_stopping(f"reading account {account}")
        time.sleep(READ_RETRY_S)


def restore_supply(hes: HeadEnd, account: str, meter: DisconnectControl, recharge: float, timeout_s: float,
                   read_meter: bool = True) -> None:
    """The meter's disconnect control connected, with credit: after a local disconnection (a limiter trip leaves it
    ready for reconnection) a remote disconnect and reconnect; a recharge when the balance is used up or the meter
    not connected. Judged by the control state: the physics is each plan's to judge, and a meter misreporting its
    relay's output state must not stall the bench. Returns once the head end has no command pending for the
    account (none sent later can switch the supply under the next step) and, with read_meter, has read the meter
    (a link plan whose defect delays every delivery beyond the head end's read deadline leaves it out), within
    timeout_s."""
    if meter.relay_state().control_state is ControlState.READY_FOR_RECONNECTION:
        meter.remote_disconnect()
        meter.remote_reconnect()
    recharged = hes.balance(account) <= 0 or not meter.relay_state().connected
    if recharged:
        hes.recharge(account, recharge, reference=f"plan: restore supply {time.time_ns()}")
    deadline = time.monotonic() + timeout_s
    while (pending := hes.pending_command(account)) is not None or not meter.relay_state().connected:
        if time.monotonic() > deadline:
            if pending is not None:
                raise InstrumentTimeout(f"{hes.role} ({hes.address}): account {account}: command {pending.id} "
                                        f"({pending.action}, {pending.origin}) still {pending.status!r} "
                                        f"{timeout_s:g} s after restoring the supply")
            raise AssertionError(f"{account}: meter still not connected {timeout_s:g} s after "
                                 + ("a recharge" if recharged else "restoring the supply"))
        check_stopping(f"restoring the supply of account {account}")
        time.sleep(0.1)
    if read_meter:
        read_when_reachable(hes, account, max(0.0, deadline - time.monotonic()))


def supply_on(source: AcSource, voltage_v: float) -> None:
    """The source on at voltage_v; once for positions running together."""
    def switch_on() -> None:
        source.set_voltage(voltage_v)
        if not source.output_enabled():
            source.set_output(True)

    once(f"supply on at {voltage_v:g} V", switch_on)


def supply(pos: Position, source: AcSource, hes: HeadEnd, load_a: float, *, recharge: float, timeout_s: float,
           read_meter: bool = True) -> float:
    """Supply on at the meter's Un, the meter connected with credit, the position's load drawing load_a through
    the relay; returns the measured supply voltage."""
    supply_on(source, pos.un_v)
    restore_supply(hes, pos.serial, pos.get(DisconnectControl), recharge, timeout_s, read_meter)
    pos.load.set_mode("CURR")
    pos.load.set_level(load_a)
    pos.load.set_input(True)
    return source.measure_voltage()


def current_flows(watch: LoadWatch, measure: Measurements, meter: DisconnectControl, timeout_s: float = 5.0) -> bool:
    """Measure that current reaches half the load current within timeout_s while the meter is connected (source on,
    credit left): a relay that does not deliver the supply is the meter's failure. True when it flows."""
    watch.flowing(timeout_s)
    return measure("current_with_meter_connected", watch.latest(), "A", Limits(low=watch.threshold_a),
                   details=meter.relay_state().as_record()).verdict != "fail"
