"""The AT modem driver against the twin's modem on a pty, behind the twin's attenuator: the reported signal follows
the attenuation within the formulas' quantisation; registration is lost and regained with +CEREG URCs; the port
errors name port and role."""

import math
import subprocess
import sys
import time

import pytest
from twin_thread import OpenBenchOnTwin

from drivers.modem import ModemSignal
from rig.bench import Bench
from rig.errors import InstrumentError
from rig.transcript import Transcript

CELL_RSRP_DBM = -70.0
NOISE_FLOOR_DBM = -118.0


def with_modem(data):
    position = data["positions"][0]
    position["attenuator"] = {"driver": "rcdat", "resource": "http://127.0.0.1:0", "safe": {"attenuation_db": 0}}
    position["modem"] = {"driver": "at_modem", "resource": "/dev/ttyTWIN-MODEM-1"}


class ModemTwin(OpenBenchOnTwin):
    def __init__(self, folder):
        super().__init__(folder, only_roles=("source",), edit=with_modem)



@pytest.fixture
def twin(tmp_path):
    twin = ModemTwin(tmp_path)
    yield twin
    twin.close()


def wait_for_events(modem, count, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while len(modem.registration_events()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return modem.registration_events()


def test_the_twin_advertises_its_pty_and_the_modem_identifies(twin):
    assert twin.resources["modem@1"].startswith("/dev/pts/")
    assert twin.bench.role_config("modem@1").resource == twin.resources["modem@1"]
    identity = twin.bench.identities["modem@1"]
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == (
        "Quectel", "EC25", "866758040000016", "EC25EFAR06A03M4G")  # a Luhn-valid IMEI


@pytest.mark.parametrize("attenuation_db", [0.0, 12.5, 30.0, 44.75])
def test_reported_signal_follows_the_attenuation_within_the_formulas(twin, attenuation_db):
    twin.bench["attenuator@1"].set_attenuation(attenuation_db)
    signal = twin.bench["modem@1"].signal()
    rsrp = CELL_RSRP_DBM - attenuation_db
    sinr = min(25.0, rsrp - NOISE_FLOOR_DBM)
    assert signal.mode == "LTE"
    assert abs(signal.rsrp_dbm - rsrp) <= 0.5  # QCSQ in whole dBm
    assert abs(signal.sinr_db - sinr) <= 0.1  # QCSQ in 1/5 dB
    rssi = rsrp + 10 * math.log10(12 * 50)  # 50 resource blocks of 12 subcarriers (10 MHz)
    assert abs(signal.rssi_dbm - rssi) <= 0.5
    cesq_rsrp, cesq_rsrq = twin.bench["modem@1"].cesq()
    assert rsrp - 1 < cesq_rsrp <= rsrp  # CESQ: 1 dB steps, rounded down
    assert -19.5 <= cesq_rsrq <= -3.0
    csq_rssi = twin.bench["modem@1"].csq()
    assert abs(csq_rssi - min(-51.0, rssi)) <= 1.0  # CSQ: 2 dB steps, capped at -51 dBm


def test_registration_is_lost_beyond_the_threshold_and_regained_with_urcs(twin):
    modem, attenuator = twin.bench["modem@1"], twin.bench["attenuator@1"]
    assert modem.registration().registered is True
    modem.enable_registration_urcs()
    assert modem.registration().act == 7
    t_lost = time.monotonic()
    attenuator.set_attenuation(55)  # -125 dBm: below the -120 dBm loss threshold
    [lost] = wait_for_events(modem, 1)
    assert (lost.stat, lost.registered, lost.line) == (2, False, "+CEREG: 2")
    assert lost.t_mono >= t_lost
    assert modem.registration().stat == 2
    assert modem.signal() == ModemSignal(None, None, None, None, "NOSERVICE")
    t_back = time.monotonic()
    attenuator.set_attenuation(40)  # -110 dBm: above threshold + hysteresis; re-attaches after reattach_s (1 s)
    lost_again, regained = wait_for_events(modem, 2)
    assert lost_again == lost
    assert (regained.stat, regained.registered, regained.act) == (1, True, 7)
    assert regained.line == '+CEREG: 1,"1A2B","01A2B301",7'
    assert 0.9 <= regained.t_mono - t_back <= 1.5
    truth = [(e["registered"], e["t_mono"]) for e in twin.truth("link.registration")]
    assert [registered for registered, _ in truth] == [False, True]
    assert abs(truth[1][1] - regained.t_mono) < 0.1  # the URC is stamped when the twin re-registered


def test_without_urcs_enabled_no_events_arrive(twin):
    modem = twin.bench["modem@1"]
    twin.bench["attenuator@1"].set_attenuation(60)
    time.sleep(0.2)
    assert modem.registration().registered is False
    assert modem.registration_events() == []


def test_scan_mode_switches_the_links_technology(twin):
    modem = twin.bench["modem@1"]
    assert modem.technology() == "4g"
    modem.set_technology("2g")
    assert modem.technology() == "2g"
    assert [e["technology"] for e in twin.truth("link.technology")] == ["2g"]
    assert modem.signal().mode == "GSM"
    assert modem.cesq() == (None, None)
    modem.set_technology("4g")
    assert modem.signal().mode == "LTE"


def test_a_missing_port_names_port_and_role(twin, tmp_path):
    bench = Bench(twin.bench_file, Transcript(None), {**twin.resources, "modem@1": "/dev/ttyTWIN-MODEM-1"})
    with pytest.raises(InstrumentError, match=r"^modem@1 \(/dev/ttyTWIN-MODEM-1\): no serial port "
                                              r"/dev/ttyTWIN-MODEM-1"):
        bench.open_role("modem@1")


def test_a_port_held_by_another_process_names_port_and_role(twin):
    path = twin.resources["modem@1"]
    twin.bench.drivers["modem@1"].close()  # the rig's own session lets go of the port
    holder = subprocess.Popen([sys.executable, "-c", "import serial, time\n"
                               f"port = serial.Serial({path!r}, exclusive=True)\n"
                               "print('held', flush=True)\ntime.sleep(30)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        bench = Bench(twin.bench_file, Transcript(None), twin.resources)
        with pytest.raises(InstrumentError, match=rf"^modem@1 \({path}\): serial port {path} is held by another "
                                                  rf"process"):
            bench.open_role("modem@1")
    finally:
        holder.kill()
        holder.wait()
