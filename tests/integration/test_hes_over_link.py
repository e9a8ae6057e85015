"""The twin HES reaches the twin meters over DLMS/COSEM through each position's radio link.

The whole sim bench runs in this process on an event loop thread; the HES client drives the HES over HTTP, the
radio's attenuation is set on the model, and the truth file judges: DLMS associations from the HES, link
deliveries, relay switching.
"""

import time

import pytest
from plan_runner import write_bench
from twin_thread import TwinOnThread, starter_fixture

from drivers.hes import HesClient
from rig.config import RoleConfig, load_bench
from rig.driver import SetpointLimits, driver_class
from rig.sim.defects import Defects
from rig.sim.truth import read_truth
from rig.transcript import Transcript

LOSS_DB = 60.0  # cell -70 dBm - 60 dB = -130 dBm: below the 4G loss threshold of -120 dBm


class LinkTwin(TwinOnThread):
    """The sim bench's twin with the supply on, an HES client and a DLMS reader on position 1's meter."""

    def __init__(self, folder, defects: Defects | None = None, **hes_settings):
        folder.mkdir(parents=True, exist_ok=True)

        def edit(data):
            data["twin"]["autostart"] = False
            data["twin"]["instruments"]["hes"].update(hes_settings)

        self.bench_file = load_bench(write_bench(folder, edit=edit))
        self.truth_path = folder / "truth.jsonl"
        self.start_twin(self.bench_file, self.truth_path, defects)
        self.transcript = Transcript(folder / "transcript.jsonl")

        def supply():
            self.model.set_source_voltage(240.0, "test")
            self.model.set_source_output(True, "test")
        self.call(supply)
        time.sleep(0.6)  # the meters' communication modules boot 0.5 s after the supply returns
        hes_role = self.bench_file.config.roles["hes"]  # the bench's operator and tokens
        tokens = {name: ref.resolve(name, self.bench_file.path.parent) for name, ref in hes_role.secrets.items()}
        config = hes_role.model_copy(update={"resource": self.resources["hes"], "timeout_s": 5})
        self.hes = HesClient("hes", config, SetpointLimits(), self.transcript, tokens)
        self.hes.open()
        meter_config = RoleConfig(driver="dlms_meter", resource=self.resources["meter@1"],
                                  settings={"client": "reader", "deadline_s": 2})
        self.meter = driver_class("dlms_meter")("meter@1", meter_config, SetpointLimits(), self.transcript,
                                                {"lls_password": "12345678"})

    def attenuate(self, position: int, attenuation_db: float) -> None:
        self.call(lambda: self.model.radio(position).set_attenuation(attenuation_db, by="test"))

    def truth(self, name: str | None = None) -> list[dict]:
        return [e for e in read_truth(self.truth_path) if name is None or e["event"] == name]

    def wait_for_relay(self, position: int, closed: bool, after: float = 0.0, timeout_s: float = 5.0) -> dict:
        return self.wait_for(lambda e: e["event"] == "relay" and e["position"] == position
                             and e["closed"] == closed and e["t_mono"] > after,
                             f"relay {position} closed={closed}", timeout_s)

    def close(self) -> None:
        self.meter.close()
        self.hes.close()
        self.transcript.close()
        self.stop_twin()


start_twin = starter_fixture(LinkTwin)


def exhaust(twin: LinkTwin, account: str) -> None:
    twin.hes.adjust_balance(account, -twin.hes.balance(account), reason="test: credit used up")


def test_a_recharge_reconnects_over_dlms_through_the_radio(start_twin):
    twin = start_twin()
    start = twin.truth("hes.start")[0]
    assert start["meter_link"] == {"1": "dlms", "2": "dlms", "3": "dlms"}
    exhaust(twin, "SIM0001")
    opened = twin.wait_for_relay(1, False)
    assert opened["by"] == "meter@1 remote_disconnect"
    # the relay opens before the meter's answer reaches the HES: recharge once the HES has the disconnect executed
    deadline = time.monotonic() + 10
    while not twin.hes.account("SIM0001").disconnected:
        assert time.monotonic() < deadline, "the HES did not record the disconnect within 10 s"
        time.sleep(0.05)
    answer = twin.hes.recharge("SIM0001", 100.0, reference="test-over-dlms")
    closed = twin.wait_for_relay(1, True, after=opened["t_mono"])
    assert closed["by"] == "meter@1 remote_reconnect"
    command = twin.hes.wait_for_command(answer["reconnect"]["id"], timeout_s=5)
    assert [h["status"] for h in command["history"]] == ["queued", "sent", "executed"]
    hes_associations = [e for e in twin.truth("dlms.association") if e["role"] == "meter@1"]
    # utility settings (HLS-GMAC), each after the public client read the invocation counter
    assert hes_associations and all(e["result"] == "accepted" for e in hes_associations)
    assert {e["client_sap"] for e in hes_associations} == {16, 48}
    assert [e["result"] for e in twin.truth("dlms.hls") if e["role"] == "meter@1"][:1] == ["authenticated"]
    actions = [e for e in twin.truth("disconnect_control") if e["position"] == 1]
    assert [(e["trigger"], e["by"]) for e in actions] == [("remote_disconnect", "utility client 48"),
                                                         ("remote_reconnect", "utility client 48")]
    delivered = [e["what"] for e in twin.truth("link.delivered") if e["position"] == 1]
    assert "read 1.0.1.8.0.255" in delivered
    assert [w for w in delivered if w.startswith("remote_")] == ["remote_disconnect", "remote_reconnect"]
    assert twin.meter.relay_state().output_state is True


def test_a_command_queued_in_an_outage_executes_once_on_recovery_and_other_positions_keep_reading(start_twin):
    twin = start_twin()
    twin.attenuate(1, LOSS_DB)
    lost = twin.wait_for(lambda e: e["event"] == "link.registration" and not e["registered"], "registration lost")
    assert lost["position"] == 1 and lost["rsrp_dbm"] == -130.0
    exhaust(twin, "SIM0001")
    time.sleep(1.0)
    commands = twin.hes.commands(account="SIM0001")
    assert [(c["action"], c["status"]) for c in commands] == [("disconnect", "queued")]
    assert [e for e in twin.truth("relay") if e["position"] == 1] == []
    reads_during_outage = [e for e in twin.truth("link.delivered")
                           if e["position"] == 2 and e["t_mono"] > lost["t_mono"]]
    assert len(reads_during_outage) >= 2  # position 2 is read on while position 1 is out of reach

    restored_at = time.monotonic()
    twin.attenuate(1, 0.0)
    opened = twin.wait_for_relay(1, False, timeout_s=5)
    assert opened["t_mono"] - restored_at >= 1.0  # the modem re-attaches 1 s after the signal is back
    command = twin.hes.wait_for_command(commands[0]["id"], timeout_s=5)
    assert [h["status"] for h in command["history"]] == ["queued", "sent", "executed"]
    assert command["history"][0]["local_time"] < command["history"][1]["local_time"]
    delivery = next(e for e in twin.truth("link.delivered") if e["what"] == "remote_disconnect")
    assert delivery["waited_for_registration"] is True and delivery["queued_s"] >= 1.0
    time.sleep(1.0)
    assert [(e["position"], e["closed"]) for e in twin.truth("relay")] == [(1, False)]


def test_the_model_link_stays_selectable(start_twin):
    twin = start_twin(meter_link="model")
    assert twin.truth("hes.start")[0]["meter_link"] == {"1": "model", "2": "model", "3": "model"}
    exhaust(twin, "SIM0002")
    twin.wait_for_relay(2, False)
    assert [e for e in twin.truth("dlms.association")] == []
    assert [e for e in twin.truth("link.delivered")] == []


@pytest.mark.parametrize(("attenuation_db", "offset_db", "reported_dbm"), [(0.0, 0.0, -70.0), (37.25, 0.0, -107.0),
                                                                          (30.0, 8.0, -92.0)])
def test_the_meter_reports_the_rsrp_of_its_link(start_twin, attenuation_db, offset_db, reported_dbm):
    twin = start_twin(Defects.model_validate({"link": {"rsrp_report_offset_db": offset_db}}))
    twin.attenuate(1, attenuation_db)
    assert twin.meter.read_signal_dbm() == reported_dbm
