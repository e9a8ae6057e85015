"""The HES client against the twin's head-end system; the twin's truth ("relay" events) as the judge.

The twin runs in this process on an event loop in a background thread, so a test sets the meters' energy
registers directly and reads the truth at once. The HES clock starts on a Tuesday at 12:00 (no window).
"""

import asyncio
import json
import time
from datetime import datetime
from decimal import Decimal

import pytest
import yaml
from plan_runner import free_port, write_bench
from twin_thread import TwinOnThread, starter_fixture

from drivers.hes import HesClient, HesHttpError
from rig import money
from rig.config import RoleConfig, load_bench
from rig.driver import Identity, SetpointLimits
from rig.errors import ConfigError, InstrumentError, SetpointRefused
from rig.prepaid import POLICY_DIR
from rig.sim.defects import Defects, load_defects
from rig.sim.truth import read_truth
from rig.transcript import Transcript

TARIFF = Decimal("10.00")  # INR/kWh: 1 kWh is 10 INR of the opening 100 INR
START = "2026-03-10T12:00:00+05:30"  # a Tuesday, no holiday
ACCOUNTS = ["SIM0001", "SIM0002", "SIM0003"]


def policy_data(**changes) -> dict:
    data = yaml.safe_load((POLICY_DIR / "uppcl.yaml").read_text())
    data["tariff_per_kwh"] = float(TARIFF)
    return {**data, **changes}


class HesTwin(TwinOnThread):
    """The twin (source and HES roles) on its own event loop thread, and an HesClient opened against it."""

    def __init__(self, folder, hes_defects=None, token="tok-twin-hes-0001", **settings):
        folder.mkdir(parents=True, exist_ok=True)
        hes_settings = {"policy": policy_data(), "read_interval_s": 0.05, "opening_balance": 100.0,
                        "start_local_time": START, "log_requests": True, **settings}
        if token is not None:
            hes_settings["token"] = token

        def edit(data):
            data["twin"]["autostart"] = False
            data["roles"]["hes"] = {"driver": "hes_http", "resource": "http://127.0.0.1:0", "timeout_s": 2}
            data["twin"]["instruments"]["hes"] = hes_settings

        path = write_bench(folder, only_roles=("source",), edit=edit)
        self.truth_path = folder / "truth.jsonl"
        self.transcript_path = folder / "transcript.jsonl"
        self.start_twin(load_bench(path), self.truth_path, Defects(hes=hes_defects or {}))
        self.hes = self.twin.instruments["hes"]
        self.transcript = Transcript(self.transcript_path)
        self.client = self.make_client(secrets={"token": token} if token else None)

    def make_client(self, secrets=None, resource=None, timeout_s=2.0) -> HesClient:
        config = RoleConfig(driver="hes_http", resource=resource or self.resources["hes"], timeout_s=timeout_s)
        client = HesClient("hes", config, SetpointLimits(), self.transcript, secrets)
        client.open()
        return client

    def set_energy_wh(self, position, energy_wh):
        def write():
            self.model.now()
            self.model.meter(position).register_energy_wh = energy_wh
        self.call(write)

    def truth(self, name=None) -> list[dict]:
        return [e for e in read_truth(self.truth_path) if name is None or e["event"] == name]

    def relay_events(self) -> list[tuple[int, bool]]:
        return [(e["position"], e["closed"]) for e in self.truth("relay")]

    def wait_for(self, predicate, what, timeout_s=3.0):
        return super().wait_for(predicate, what, timeout_s)

    def wait_for_relay(self, position, closed, timeout_s=3.0, after=0.0):
        return self.wait_for(lambda e: e["event"] == "relay" and e["position"] == position and e["closed"] == closed
                             and e["t_mono"] > after, f"relay position {position} closed={closed}", timeout_s)

    def exchanges(self) -> list[tuple[str, str]]:
        self.transcript.flush()
        lines = [json.loads(line) for line in self.transcript_path.read_text().splitlines()]
        return [(line["sent"], line["received"]) for line in lines if line["role"] == "hes" and line["sent"]]

    def close(self):
        self.client.close()
        self.transcript.close()
        self.stop_twin()


start_hes = starter_fixture(HesTwin)


@pytest.fixture
def hes(start_hes):
    return start_hes()


def exhaust(twin, position=1, energy_wh=10_000.0):
    """Spend the opening 100 INR on one position (10 kWh at 10 INR/kWh) and wait for the HES to see it."""
    twin.set_energy_wh(position, energy_wh)
    account = ACCOUNTS[position - 1]
    return twin.wait_for(lambda e: e["event"] == "hes.exhausted" and e["account"] == account, f"{account} exhausted")


# -- accounts and balance -----------------------------------------------------------------------------------


def test_identity_accounts_and_clock(hes):
    client = hes.client
    assert client.identify() == Identity("Rig twin", "HES-SIM", "SIM-HES-0001", "1.0", raw=(
        '{"instance": "SIM-HES-0001", "manufacturer": "Rig twin", "product": "HES-SIM", "version": "1.0"}'))
    accounts = client.accounts()
    assert [(a["account"], a["position"], a["balance"], a["supply"]) for a in accounts] == \
           [(serial, position, "100.00", "connected") for position, serial in enumerate(ACCOUNTS, start=1)]
    assert client.tariff() == TARIFF
    clock = client.clock()
    assert datetime.fromisoformat(START) <= clock < datetime.fromisoformat("2026-03-10T12:00:05+05:30")
    assert client.make_safe() == ["hes: nothing physical to switch"]
    assert hes.exchanges()[0] == ("GET /version", '200 {"manufacturer": "Rig twin", "product": "HES-SIM", '
                                  '"instance": "SIM-HES-0001", "version": "1.0"}')


def test_balance_falls_with_energy_times_tariff_at_the_read_interval(hes):
    def energize():
        hes.model.set_source_voltage(240.0, "test")
        hes.model.set_source_output(True, "test")
        hes.model.set_current(10.0, 0.0, "test")
        hes.model.set_current_output(True, "test")
    hes.call(energize)
    time.sleep(1.0)
    hes.call(lambda: hes.model.set_current_output(False, "test"))
    time.sleep(0.3)  # the current decays (tau 0.03 s)
    charges = [e for e in hes.truth("hes.balance") if e["account"] == "SIM0001"]
    gaps = [b["t_mono"] - a["t_mono"] for a, b in zip(charges, charges[1:], strict=False)]
    assert len(charges) >= 12
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(0.05, abs=0.015)
    account = hes.client.read_now("SIM0001")
    register_wh = hes.call(lambda: hes.model.meter(1).register_energy_wh)
    assert account["last_energy_wh"] == pytest.approx(register_wh, abs=0.001)  # the register in whole mWh
    assert 0.4 < register_wh < 0.8  # about 1 s at 2.4 kW
    # no rounding drift: what the reads charged (each a few mWh, a fraction of a paisa) adds up to the energy
    # since the baseline times the tariff, rounded to the paisa once
    baseline = Decimal(str(next(e for e in hes.truth("hes.baseline") if e["account"] == "SIM0001")["energy_wh"]))
    due = money.paise((Decimal(str(account["last_energy_wh"])) - baseline) * TARIFF / 1000)
    charged = sum((Decimal(e["charged"]) for e in hes.truth("hes.balance") if e["account"] == "SIM0001"),
                  Decimal("0.00"))
    assert charged == due and Decimal(account["balance"]) == Decimal("100.00") - due

    hes.set_energy_wh(2, 1234.5)
    assert hes.client.read_now("SIM0002")["balance"] == "87.65"  # 12.345 INR, rounded half up to 12.35


def test_alerts_at_30_10_0_in_order_and_the_disconnect_at_exhaustion_opens_the_relay(hes):
    for energy_wh, threshold in ((7000.0, 30.0), (9000.0, 10.0)):
        hes.set_energy_wh(1, energy_wh)
        hes.wait_for(lambda e, t=threshold: e["event"] == "hes.alert" and e["threshold_pct"] == t, f"alert {threshold}")
    assert hes.relay_events() == []
    exhausted = exhaust(hes)
    relay = hes.wait_for_relay(1, False)
    assert relay["by"] == "hes remote disconnect"
    assert relay["t_mono"] - exhausted["t_mono"] < 0.5
    assert [(a["account"], a["threshold_pct"], a["balance"]) for a in hes.client.alerts()] == \
           [("SIM0001", 30.0, "30.00"), ("SIM0001", 10.0, "10.00"), ("SIM0001", 0.0, "0.00")]
    assert [e["threshold_pct"] for e in hes.truth("hes.alert")] == [30.0, 10.0, 0.0]
    commands = hes.client.commands(account="SIM0001")
    assert [(c["action"], c["origin"], c["status"]) for c in commands] == [("disconnect", "prepaid", "executed")]
    assert [h["status"] for h in commands[0]["history"]] == ["queued", "sent", "executed"]
    account = hes.client.account("SIM0001")
    assert (account["supply"], account["disconnected_by"], account["exhausted"]) == ("disconnected", "prepaid", True)
    assert hes.relay_events() == [(1, False)]
    types = [e["type"] for e in hes.client.events(account="SIM0001")]
    assert types == ["baseline", "balance", "alert", "balance", "alert", "balance", "alert", "exhausted",
                     "command", "command", "disconnect_sent", "command"]


def test_exhaustion_at_19_00_is_not_cut_until_08_00(hes):
    hes.client.set_clock(datetime(2026, 3, 10, 19, 0))
    exhaust(hes)
    time.sleep(0.5)
    assert hes.relay_events() == []
    account = hes.client.account("SIM0001")
    assert (account["exhausted"], account["disconnect_allowed"], account["disconnect_reason"]) == \
           (True, False, "no-disconnection hours 18:00-08:00")
    deferred = [e for e in hes.client.events(account="SIM0001") if e["type"] == "disconnect_deferred"]
    assert [e["reason"] for e in deferred] == ["no-disconnection hours 18:00-08:00"]

    set_at = time.monotonic()
    hes.client.set_clock(datetime(2026, 3, 11, 7, 59, 59))
    relay = hes.wait_for_relay(1, False, timeout_s=5)
    assert relay["t_mono"] - set_at > 0.9
    sent = hes.truth("hes.disconnect_sent")
    assert len(sent) == 1 and sent[0]["hes_time"] >= "2026-03-11T08:00:00.000+05:30"


def test_a_recharge_reconnects(hes):
    exhaust(hes)
    hes.wait_for_relay(1, False)
    answer = hes.client.recharge("SIM0001", 50.0, reference="upi-0001")
    assert answer["account"]["balance"] == "50.00" and answer["account"]["last_recharge"] == "50.00"
    assert (answer["reconnect"]["action"], answer["reconnect"]["origin"]) == ("connect", "recharge")
    hes.wait_for_relay(1, True)
    assert hes.client.wait_for_command(answer["reconnect"]["id"], timeout_s=2)["status"] == "executed"
    assert hes.relay_events() == [(1, False), (1, True)]
    account = hes.client.account("SIM0001")
    assert (account["supply"], account["alerts_sent"]) == ("connected", [])
    with pytest.raises(HesHttpError) as info:
        hes.client.recharge("SIM0001", 50.0, reference="upi-0001")
    assert info.value.status == 409
    assert hes.client.balance("SIM0001") == Decimal("50.00")


def test_balance_adjustments_exhaust_and_restore_the_credit(hes):
    account = hes.client.adjust_balance("SIM0002", -100.0, reason="test: start from zero")
    assert (account["balance"], account["alerts_sent"], account["exhausted"]) == ("0.00", [30.0, 10.0, 0.0], True)
    hes.wait_for_relay(2, False)
    assert hes.client.adjust_balance("SIM0002", 20.0, reason="test: credit back").balance == Decimal("20.00")
    hes.wait_for_relay(2, True)
    assert [(c["action"], c["origin"]) for c in hes.client.commands(account="SIM0002")] == \
           [("disconnect", "prepaid"), ("connect", "prepaid")]
    sent_before = len(hes.exchanges())
    with pytest.raises(SetpointRefused, match="adjustment of account SIM0002: 0 refused"):
        hes.client.adjust_balance("SIM0002", 0, reason="nothing")
    assert len(hes.exchanges()) == sent_before


def test_grace_and_emergency_credit_hold_off_the_disconnect(hes):
    account = hes.client.set_conversion_date("SIM0001", datetime(2026, 3, 1, 9, 0))
    assert account["grace_until"] == "2026-03-31T09:00:00.000+05:30"
    exhaust(hes)
    time.sleep(0.3)
    assert hes.relay_events() == []
    assert hes.client.account("SIM0001")["disconnect_reason"] == "grace period until 2026-03-31 09:00"
    hes.client.set_conversion_date("SIM0001", None)
    hes.wait_for_relay(1, False)

    answer = hes.client.request_emergency_credit("SIM0001")
    assert answer["account"]["emergency_credit"] == {"state": "active", "taken": "50.00"}
    assert answer.account.credit_left == Decimal("50.00")
    assert answer["reconnect"]["origin"] == "emergency_credit"
    reconnected = hes.wait_for_relay(1, True)
    hes.set_energy_wh(1, 14_000.0)  # 40 of the 50 INR lent
    time.sleep(0.3)
    assert hes.client.account("SIM0001")["disconnect_reason"] == "emergency credit in use (10.00 INR left)"
    hes.set_energy_wh(1, 15_000.0)
    hes.wait_for_relay(1, False, after=reconnected["t_mono"])
    assert hes.relay_events() == [(1, False), (1, True), (1, False)]
    with pytest.raises(HesHttpError, match=r"409: .*emergency credit was already used since the last recharge"):
        hes.client.request_emergency_credit("SIM0001")


def test_a_group_disconnect_aimed_at_positive_balances_cuts_nobody_and_says_why(hes):
    hes.client.set_clock(datetime(2026, 3, 10, 19, 0))
    exhaust(hes, position=3)
    answer = hes.client.group_command("disconnect", ["SIM0001", "SIM0002", "SIM0003", "NOPE"], reason="arrears")
    assert answer["commands"] == []
    assert answer["refused"] == [
        {"account": "SIM0001", "reason": "balance 100.00 INR is positive; no-disconnection hours 18:00-08:00"},
        {"account": "SIM0002", "reason": "balance 100.00 INR is positive; no-disconnection hours 18:00-08:00"},
        {"account": "SIM0003", "reason": "no-disconnection hours 18:00-08:00"},
        {"account": "NOPE", "reason": "unknown account"}]
    hes.client.set_clock(datetime(2026, 3, 11, 12, 0))
    hes.wait_for_relay(3, False)  # the prepaid engine, not the group command, cuts the exhausted account
    answer = hes.client.group_command("disconnect", ["SIM0001", "SIM0002"])
    assert [r["reason"] for r in answer["refused"]] == ["balance 100.00 INR is positive"] * 2
    time.sleep(0.3)
    assert hes.relay_events() == [(3, False)]
    assert hes.client.group(answer["id"])["refused"] == answer["refused"]
    with pytest.raises(HesHttpError, match=r"409: .*disconnect refused: balance 100\.00 INR is positive"):
        hes.client.disconnect("SIM0001")


def test_a_group_connect_is_executed_and_its_status_followed(hes):
    exhaust(hes, position=2)
    hes.wait_for_relay(2, False)
    hes.client.recharge("SIM0002", 5.0)
    hes.wait_for_relay(2, True)
    answer = hes.client.group_command("connect", ["SIM0001"])
    command = hes.client.wait_for_command(answer["commands"][0]["id"], timeout_s=2)
    assert (command["status"], command["group"]) == ("executed", answer["id"])


class SilentMeterLink:
    """A meter link whose meter reads 10 kWh and never answers a relay command."""

    async def read_energy_wh(self, position):
        return 10_000.0

    async def disconnect(self, position, on_sent=None):
        raise TimeoutError("no answer from the meter")

    async def reconnect(self, position, on_sent=None):
        raise TimeoutError("no answer from the meter")


def test_a_failing_meter_link_fails_the_command_after_its_retries(start_hes):
    hes = start_hes(command_attempts=3, command_retry_s=0.2)

    hes.call(lambda: setattr(hes.hes, "link", SilentMeterLink()))
    failed = hes.wait_for(lambda e: e["event"] == "hes.command" and e["status"] == "failed", "a failed command")
    assert failed["error"] == "no answer from the meter" and failed["action"] == "disconnect"
    statuses = [e["status"] for e in hes.truth("hes.command") if e["command"] == failed["command"]]
    assert statuses == ["queued", "retrying", "retrying", "failed"]  # the dead link never carries it ("sent")
    assert hes.relay_events() == []


# -- defects ------------------------------------------------------------------------------------------------


def test_defect_disconnect_delay(start_hes):
    hes = start_hes(hes_defects={"disconnect_delay_s": 1.0})
    exhausted = exhaust(hes)
    relay = hes.wait_for_relay(1, False)
    assert 1.0 <= relay["t_mono"] - exhausted["t_mono"] < 1.5
    deferred = hes.truth("hes.disconnect_deferred")
    assert [e["reason"] for e in deferred] == ["defect disconnect_delay_s 1 s"]
    assert "disconnect_deferred" not in [e["type"] for e in hes.client.events()]  # the HES does not tell


def test_defect_ignore_friendly_hours(start_hes):
    hes = start_hes(hes_defects={"ignore_friendly_hours": True})
    hes.client.set_clock(datetime(2026, 3, 15, 19, 0))  # a Sunday evening
    exhausted = exhaust(hes)
    relay = hes.wait_for_relay(1, False)
    assert relay["t_mono"] - exhausted["t_mono"] < 0.5
    assert hes.truth("hes.disconnect_sent")[0]["hes_time"].startswith("2026-03-15T19:00:")


def test_defect_skip_alerts(start_hes):
    hes = start_hes(hes_defects={"skip_alerts": [10]})
    for energy_wh in (7000.0, 9000.0):
        hes.set_energy_wh(1, energy_wh)
        time.sleep(0.15)
    exhaust(hes)
    hes.wait_for_relay(1, False)
    assert [a["threshold_pct"] for a in hes.client.alerts()] == [30.0, 0.0]
    assert [e["threshold_pct"] for e in hes.truth("hes.alert_suppressed")] == [10.0]


def test_defect_disconnect_positive_balance(start_hes):
    hes = start_hes(hes_defects={"disconnect_positive_balance": True})
    answer = hes.client.group_command("disconnect", ["SIM0001", "SIM0002"])
    assert answer["refused"] == [] and len(answer["commands"]) == 2
    hes.wait_for_relay(1, False)
    hes.wait_for_relay(2, False)
    assert sorted(hes.relay_events()) == [(1, False), (2, False)]
    assert [a.balance for a in hes.client.accounts()[:2]] == [Decimal("100.00")] * 2
    with pytest.raises(HesHttpError, match="balance 100.00 INR is positive"):
        hes.client.disconnect("SIM0003")  # the guard of a single command still holds


def test_unknown_hes_defect_is_refused(tmp_path):
    path = tmp_path / "defects.yaml"
    path.write_text("hes:\n  disconnect_delay: 5\n")
    with pytest.raises(ConfigError, match=r"defects.yaml:2: hes\.disconnect_delay: unknown field"):
        load_defects(path)


# -- client ------------------------------------------------------------------------------------------------


def test_errors_carry_status_and_body(hes):
    with pytest.raises(HesHttpError) as info:
        hes.client.recharge("NOPE", 10.0)
    error = info.value
    assert isinstance(error, InstrumentError)
    assert (error.status, error.body) == (404, '{"error": "unknown account \'NOPE\'"}')
    assert str(error) == (f"hes ({hes.resources['hes']}): 'POST /accounts/NOPE/recharge {{\"amount\":\"10.00\"}}' "
                          f"answered 404: {error.body}")
    assert hes.exchanges()[-1] == ('POST /accounts/NOPE/recharge {"amount":"10.00"}', f"404 {error.body}")
    with pytest.raises(HesHttpError, match=r"GET /commands/cmd-99' answered 404"):
        hes.client.command("cmd-99")


@pytest.mark.parametrize("amount", [0, -25.0, float("nan"), 0.001, 1e300, "abc"])
def test_a_recharge_that_is_not_positive_is_refused_before_sending(hes, amount):
    requests_before = len(hes.truth("hes.request"))
    sent_before = len(hes.exchanges())
    with pytest.raises(SetpointRefused) as info:
        hes.client.recharge("SIM0001", amount)
    assert isinstance(info.value, ConfigError)
    assert "recharge of account SIM0001:" in str(info.value) and "nothing was sent" in str(info.value)
    assert len(hes.exchanges()) == sent_before
    assert len(hes.truth("hes.request")) == requests_before
    assert hes.client.balance("SIM0001") == Decimal("100.00")


def test_the_token_is_sent_as_bearer_and_never_transcripted(start_hes):
    hes = start_hes(token="tok-123456")
    assert hes.client.balance("SIM0001") == Decimal("100.00")
    anonymous = hes.make_client()
    with pytest.raises(HesHttpError) as info:
        anonymous.accounts()
    anonymous.close()
    assert (info.value.status, info.value.body) == (401, '{"error": "missing or wrong bearer token"}')
    hes.transcript.flush()
    text = hes.transcript_path.read_text()
    assert "tok-123456" not in text and "Bearer" not in text


def test_unreachable_hes_is_an_instrument_error_naming_the_request(hes):
    resource = f"http://127.0.0.1:{free_port()}"
    client = hes.make_client(resource=resource)
    with pytest.raises(InstrumentError, match=rf"hes \({resource}\): 'GET /version' failed"):
        client.identify()
    client.close()


def test_a_resource_that_is_not_a_url_is_refused(hes):
    with pytest.raises(ConfigError, match=r"roles\.hes\.resource: an HES resource is 'http://host:port"):
        hes.make_client(resource="TCPIP0::127.0.0.1::80::SOCKET")


def test_clock_offset_setting_and_tariff(start_hes):
    hes = start_hes(clock_offset_s=7 * 3600)  # 19:00
    assert hes.client.clock().hour == 19
    hes.client.set_tariff(20.0)
    assert hes.client.tariff() == Decimal("20.00")
    hes.set_energy_wh(1, 1000.0)
    assert hes.client.read_now("SIM0001")["balance"] == "80.00"
    with pytest.raises(SetpointRefused, match=r"tariff per kWh 1e-05 refused: must have at most 4 decimals"):
        hes.client.set_tariff(0.00001)
    with pytest.raises(SetpointRefused, match="tariff per kWh -1 refused"):
        hes.client.set_tariff(-1)
    assert hes.client.set_clock_offset(0).hour == 12


# -- a disconnect re-judged before it is sent; on-demand reads that fail -----------------------------------


def command_event(twin, status):
    return twin.wait_for(lambda e: e["event"] == "hes.command" and e["status"] == status, f"a command {status}")


def test_a_credit_disconnect_queued_before_a_recharge_is_cancelled_and_never_sent(start_hes):
    hes = start_hes(command_delay_s=0.5)  # queued -> sent
    exhaust(hes)
    queued = command_event(hes, "queued")
    answer = hes.client.recharge("SIM0001", 50.0, reference="upi-before-the-cut")
    assert answer["reconnect"] is None  # the supply was never cut
    cancelled = command_event(hes, "cancelled")
    assert (cancelled["command"], cancelled["action"], cancelled["reason"]) == (
        queued["command"], "disconnect", "balance 50.00 INR is positive")
    (command,) = hes.client.commands(account="SIM0001")
    assert (command["status"], command["reason"], command["attempts"]) == (
        "cancelled", "balance 50.00 INR is positive", 0)
    assert [h["status"] for h in command["history"]] == ["queued", "cancelled"]
    account = hes.client.account("SIM0001")
    assert (account["pending_command"], account["supply"], account["balance"]) == (None, "connected", "50.00")
    logged = [e for e in hes.client.events(account="SIM0001") if e["type"] == "disconnect_cancelled"]
    assert [(e["command"], e["origin"], e["balance"], e["reason"]) for e in logged] == [
        (queued["command"], "prepaid", "50.00", "balance 50.00 INR is positive")]
    assert hes.truth("hes.disconnect_sent") == [] and hes.relay_events() == []


def test_a_queued_disconnect_is_cancelled_when_a_grace_period_starts_before_it_is_sent(start_hes):
    hes = start_hes(command_delay_s=0.5)
    exhaust(hes)
    command_event(hes, "queued")
    hes.client.set_conversion_date("SIM0001", datetime(2026, 3, 1, 9, 0))
    assert command_event(hes, "cancelled")["reason"] == "grace period until 2026-03-31 09:00"
    account = hes.client.account("SIM0001")
    assert (account["exhausted"], account["pending_command"], account["disconnect_reason"]) == (
        True, None, "grace period until 2026-03-31 09:00")
    hes.client.set_conversion_date("SIM0001", None)  # the credit is still exhausted: now it is cut
    hes.wait_for_relay(1, False)
    assert [(c["status"], c["reason"]) for c in hes.client.commands(account="SIM0001")] == [
        ("cancelled", "grace period until 2026-03-31 09:00"), ("executed", None)]


def test_a_retrying_disconnect_is_cancelled_at_its_next_attempt_once_credit_is_back(start_hes):
    hes = start_hes(command_retry_s=0.3)

    hes.call(lambda: setattr(hes.hes, "link", SilentMeterLink()))
    command_event(hes, "retrying")
    hes.client.recharge("SIM0001", 20.0)
    cancelled = command_event(hes, "cancelled")
    assert cancelled["reason"] == "balance 20.00 INR is positive"
    statuses = [e["status"] for e in hes.truth("hes.command") if e["command"] == cancelled["command"]]
    assert statuses[0] == "queued" and statuses[-1] == "cancelled" and set(statuses[1:-1]) == {"retrying"}


def test_the_positive_balance_defect_still_sends_group_disconnects(start_hes):
    hes = start_hes(command_delay_s=0.3, hes_defects={"disconnect_positive_balance": True})
    answer = hes.client.group_command("disconnect", ["SIM0001"])
    command = hes.client.wait_for_command(answer["commands"][0]["id"], timeout_s=3)
    assert (command["status"], command["reason"]) == ("executed", None)  # re-judged by the same faulty guard
    assert hes.relay_events() == [(1, False)]


def test_a_read_the_meter_does_not_answer_is_a_502_naming_account_and_cause(hes):
    class FailingLink:
        async def read_energy_wh(self, position):
            raise ConnectionError("meter@1 over DLMS: no answer to read 1.0.1.8.0.255")

    hes.call(lambda: setattr(hes.hes, "link", FailingLink()))
    with pytest.raises(HesHttpError) as info:
        hes.client.read_now("SIM0001")
    assert info.value.status == 502
    assert json.loads(info.value.body) == {
        "error": "account SIM0001: the meter was not read: meter@1 over DLMS: no answer to read 1.0.1.8.0.255",
        "account": "SIM0001", "cause": "meter@1 over DLMS: no answer to read 1.0.1.8.0.255"}
    failed = [e for e in hes.client.events(account="SIM0001") if e["type"] == "read_failed"]
    assert failed and failed[-1]["error"] == "meter@1 over DLMS: no answer to read 1.0.1.8.0.255"


def test_a_read_that_gets_no_reading_within_the_deadline_is_a_504(start_hes):
    hes = start_hes(read_deadline_s=0.4)
    hes.set_energy_wh(1, 1000.0)
    hes.wait_for(lambda e: e["event"] == "hes.balance" and e["account"] == "SIM0001", "a charge for 1 kWh")

    class StalledLink:
        async def read_energy_wh(self, position):
            await asyncio.sleep(3600)

    hes.call(lambda: setattr(hes.hes, "link", StalledLink()))
    asked = time.monotonic()
    with pytest.raises(HesHttpError) as info:
        hes.client.read_now("SIM0001")
    assert 0.4 <= time.monotonic() - asked < 1.5
    body = json.loads(info.value.body)
    assert (info.value.status, body["account"], body["cause"]) == (504, "SIM0001", "no reading within 0.4 s")
    assert hes.client.balance("SIM0001") == Decimal("90.00")  # nothing charged without a reading
