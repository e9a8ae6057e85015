"""The plans' supply helpers and the HES's on-demand read on the whole sim bench, served in this process: the HES
reaches each meter over DLMS through the position's radio link, as in a plan run; the twin's truth judges.

A link outage (the modem unregistered) holds a command at the head end for as long as the test needs, so a
recharge lands between the disconnect being queued and being sent without racing the clock.
"""

import time

import pytest
from twin_thread import OpenBenchOnTwin, twin_starter

from rig.errors import HeadEndError, InstrumentTimeout
from rig.plan import read_when_reachable, restore_supply, supply
from rig.plan.position import Position
from rig.roles import ControlState
from rig.sim.truth import read_truth

ACCOUNT = "SIM0001"
LOSS_DB = 60.0  # cell -70 dBm - 60 dB = -130 dBm: below the 4G loss threshold of -120 dBm



class SupplyTwin(OpenBenchOnTwin):
    """The sim bench in process with the rig's drivers opened on it."""

    def __init__(self, folder):
        folder.mkdir(parents=True)
        super().__init__(folder)
        self.hes = self.bench["hes"]
        self.meter = self.bench["meter@1"]
        self.source = self.bench["source"]

    def position(self) -> Position:
        return Position(self.bench.config.positions[0], self.bench)

    def power(self, on: bool) -> None:
        self.source.set_voltage(240.0)
        self.source.set_output(on)

    def attenuate(self, attenuation_db: float) -> None:
        self.call(lambda: self.model.radio(1).set_attenuation(attenuation_db, by="test"))

    def link_down(self) -> None:
        self.attenuate(LOSS_DB)
        self.wait_for(lambda e: e["event"] == "link.registration" and e["position"] == 1 and not e["registered"],
                      "position 1 unregistered")

    def disconnect_queued_in_an_outage(self) -> dict:
        """Position 1 powered and read, its link down, its credit used up: the HES's disconnect waits for the link."""
        self.power(True)
        read_when_reachable(self.hes, ACCOUNT, timeout_s=5)
        self.link_down()
        self.hes.adjust_balance(ACCOUNT, -self.hes.balance(ACCOUNT), "test: credit used up")
        (command,) = self.hes.commands(account=ACCOUNT)
        assert (command.action, command.status) == ("disconnect", "queued")
        return command

    def relay_events(self) -> list[dict]:
        return [e for e in read_truth(self.truth_path) if e["event"] == "relay" and e["position"] == 1]


@pytest.fixture
def twin(tmp_path):
    with twin_starter(SupplyTwin, tmp_path) as start:
        yield start()


def test_restore_supply_waits_for_the_pending_disconnect_which_the_hes_cancels_at_sending(twin):
    command = twin.disconnect_queued_in_an_outage()
    with pytest.raises(InstrumentTimeout) as info:
        restore_supply(twin.hes, ACCOUNT, twin.meter, 500.0, timeout_s=1.0)
    assert str(info.value) == (f"hes ({twin.hes.address}): account {ACCOUNT}: command {command.id} (disconnect, "
                               f"prepaid) still 'queued' 1 s after restoring the supply")
    assert twin.hes.balance(ACCOUNT) == 500.0  # the recharge was accepted

    twin.attenuate(0.0)
    restore_supply(twin.hes, ACCOUNT, twin.meter, 500.0, timeout_s=30.0)
    (settled,) = twin.hes.commands(account=ACCOUNT)
    assert (settled.id, settled.status, settled.reason) == (command.id, "cancelled", "balance 500.00 INR is positive")
    assert [h["status"] for h in settled.history] == ["queued", "cancelled"]
    assert twin.relay_events() == []
    assert [e for e in read_truth(twin.truth_path) if e["event"] == "disconnect_control" and e["position"] == 1] == []
    assert twin.meter.relay_state().control_state is ControlState.CONNECTED


def test_the_link_plans_supply_helper_waits_for_the_pending_command_too(twin):
    command = twin.disconnect_queued_in_an_outage()
    with pytest.raises(InstrumentTimeout, match=rf"account {ACCOUNT}: command {command.id} \(disconnect, "
                                                rf"prepaid\) still 'queued' 1 s after restoring the supply"):
        supply(twin.position(), twin.source, twin.hes, 5.0, recharge=500.0, timeout_s=1.0)
    twin.attenuate(0.0)
    supply(twin.position(), twin.source, twin.hes, 5.0, recharge=500.0, timeout_s=5.0)
    assert [c.status for c in twin.hes.commands(account=ACCOUNT)] == ["cancelled"]
    assert twin.relay_events() == []


def test_the_read_endpoint_answers_an_error_unless_it_has_a_fresh_reading(twin):
    with pytest.raises(HeadEndError) as info:
        twin.hes.read_now(ACCOUNT)  # the source is off: the meter's communication module is down
    assert info.value.status == 502
    assert f'"account": "{ACCOUNT}"' in info.value.body and "communication module is down" in info.value.body

    twin.power(True)
    powered = time.monotonic()
    account = read_when_reachable(twin.hes, ACCOUNT, timeout_s=5)
    assert account.id == ACCOUNT and account.last_energy_wh is not None
    booted = twin.wait_for(lambda e: e["event"] == "meter.power" and e["position"] == 1 and e["on"], "power-up")
    assert time.monotonic() - powered >= 0.5 and booted["answering_from_mono"] > booted["t_mono"]

    twin.link_down()
    asked = time.monotonic()
    with pytest.raises(HeadEndError) as info:
        twin.hes.read_now(ACCOUNT)
    assert info.value.status == 504 and time.monotonic() - asked < 3
    assert '"cause": "no reading within 1.5 s"' in info.value.body
    with pytest.raises(InstrumentTimeout, match=rf"account {ACCOUNT}: its meter was not read within 1 s: .*504"):
        read_when_reachable(twin.hes, ACCOUNT, timeout_s=1)
