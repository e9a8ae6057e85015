"""The DLMS/COSEM meter driver against the twin's DLMS meter, over the TCP wrapper and over HDLC on a pty.

The twin runs in this process on an event loop thread, so a test can drive the model and read its registers
at the instant it reads the meter; relay switching is judged from the truth file's "relay" events.
"""

import json
import math
import os
import socket
import time
import tty
from datetime import UTC, datetime, timedelta

import pytest
from plan_runner import write_bench
from twin_thread import TwinOnThread, starter_fixture
from wrapper_frames import read_wrapper_frame

from drivers.dlms_meter import date_time_from_bytes
from rig.bench import Bench
from rig.config import RoleConfig, load_bench
from rig.driver import SetpointLimits, driver_class
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout
from rig.roles import ControlState, LimiterSettings, RelayState
from rig.sim.launcher import TwinProcess
from rig.sim.truth import read_truth
from rig.transcript import Transcript

PASSWORD = "12345678"
KEYS = {"encryption_key": "000102030405060708090A0B0C0D0E0F",  # the Green Book's example keys
        "authentication_key": "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"}


class DlmsTwin(TwinOnThread):
    """A twin whose position 1 has a DLMS meter (TCP and HDLC), with the bench opened against it."""

    def __init__(self, folder, **meter_settings):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        secret = folder / "lls_password.txt"
        secret.write_text(PASSWORD + "\n")
        key_files = {}
        for name, value in KEYS.items():
            key_files[name] = {"file": str(folder / f"{name}.txt")}
            (folder / f"{name}.txt").write_text(value + "\n")

        def edit(data):
            data["twin"]["autostart"] = False
            data["positions"][0]["interface"] = {
                "driver": "dlms_meter", "resource": "tcp://127.0.0.1:0",
                "settings": {"client": "utility", "deadline_s": 2},
                "secrets": {"lls_password": {"file": str(secret)}, **key_files}}
            data["twin"]["instruments"]["meter@1"] = {"lls_password": PASSWORD, "hdlc": True, **meter_settings}

        self.bench_file = load_bench(write_bench(folder, only_roles=("source",), edit=edit))
        self.truth_path = folder / "truth.jsonl"
        self.transcript_path = folder / "transcript.jsonl"
        self.start_twin(self.bench_file, self.truth_path)
        self.meter = self.twin.instruments["meter@1"]
        self.transcript = Transcript(self.transcript_path)
        self.bench = Bench(self.bench_file, self.transcript, self.resources)
        self.bench.open()
        self.drivers = []

    def resource(self, transport: str) -> str:
        return f"tcp://127.0.0.1:{self.meter.port}" if transport == "tcp" else self.meter.pty_path

    def driver(self, transport: str, client: str = "reader", password: str | None = PASSWORD, **settings):
        config = RoleConfig(driver="dlms_meter", resource=self.resource(transport),
                            settings={"client": client, "deadline_s": 2, **settings})
        secrets = {"lls_password": password} if password is not None else {}
        if client == "utility":
            secrets.update(KEYS)
        driver = driver_class("dlms_meter")("meter@1", config, SetpointLimits(), self.transcript, secrets)
        self.drivers.append(driver)
        return driver

    def energize(self, voltage_v=240.0, current_a=10.0):
        def switch_on():
            self.model.set_source_voltage(voltage_v, "test")
            self.model.set_source_output(True, "test")
            self.model.set_current(current_a, 0.0, "test")
            self.model.set_current_output(True, "test")
        self.call(switch_on)

    def register_wh(self) -> float:
        def now():
            self.model.now()
            return self.model.meter(1).register_energy_wh
        return self.call(now)

    def events(self, name: str) -> list[dict]:
        return [event for event in read_truth(self.truth_path) if event["event"] == name]

    def relay_events(self) -> list[tuple[bool, str]]:
        return [(event["closed"], event["by"]) for event in self.events("relay") if event["position"] == 1]

    def wait_for(self, name: str, timeout_s: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            events = self.events(name)
            if events:
                return events[0]
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} truth event within {timeout_s} s")

    def close(self):
        for driver in self.drivers:
            driver.close()
        self.bench.close()
        self.transcript.close()
        self.stop_twin()


start_twin = starter_fixture(DlmsTwin)


@pytest.fixture(params=["tcp", "hdlc"])
def transport(request):
    return request.param


def test_the_bench_opens_the_meter_and_reads_its_identity(twin):
    assert twin.resources["meter@1"] == f"tcp://127.0.0.1:{twin.meter.port}"
    assert twin.meter.pty_path.startswith("/dev/pts/")
    identity = twin.bench.identities["meter@1"]
    assert (identity.manufacturer, identity.model, identity.serial, identity.firmware) == \
           ("Rig Twin", "RIGSIM0001", "SIM0001", "1.0.0")
    hdlc = twin.driver("hdlc")
    hdlc.open()
    assert hdlc.identify() == identity
    # the bench's utility settings association (after the public client read its invocation counter), the reader's
    assert [(e["transport"], e["client_sap"]) for e in twin.events("dlms.association")] == \
        [("tcp", 16), ("tcp", 48), ("hdlc", 32)]


def test_the_twin_process_serves_the_meter_as_a_run_uses_it(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(PASSWORD)

    def edit(data):
        data["positions"][0]["interface"] = {"driver": "dlms_meter", "resource": "tcp://127.0.0.1:0",
                                             "settings": {"client": "reader"},
                                             "secrets": {"lls_password": {"file": str(secret)}}}
        data["twin"]["instruments"]["meter@1"] = {"lls_password": PASSWORD}

    bench_file = load_bench(write_bench(tmp_path, only_roles=("source",), edit=edit))
    process = TwinProcess(bench_file.path, tmp_path / "truth.jsonl")
    transcript = Transcript(tmp_path / "transcript.jsonl")
    bench = Bench(bench_file, transcript, process.resources)
    try:
        bench.open()
        assert bench.identities["meter@1"].serial == "SIM0001"
        assert bench["meter@1"].read_energy_import_kwh() == 0.0
        assert bench["meter@1"].relay_state().output_state is True
    finally:
        bench.close()
        transcript.close()
        process.stop()
    associations = [e for e in read_truth(tmp_path / "truth.jsonl") if e["event"] == "dlms.association"]
    assert [(e["client_sap"], e["result"]) for e in associations] == [(32, "accepted")]


def test_clock_is_read_and_set(twin, transport):
    reader = twin.driver(transport)
    now = datetime.now(UTC)
    clock = reader.read_clock()
    assert abs(clock - now) < timedelta(seconds=2)
    assert clock.utcoffset() == timedelta(hours=5, minutes=30)  # the meter keeps IST
    reader.close()  # an HDLC line carries one client at a time
    target = now + timedelta(days=3, hours=1)
    utility = twin.driver(transport, client="utility")
    utility.set_clock(target)
    utility.close()
    assert abs(reader.read_clock() - target) < timedelta(seconds=2)
    (event,) = twin.events("clock.set")
    assert event["offset_s"] == pytest.approx(target.timestamp() - now.timestamp(), abs=2)
    assert event["by"] == "utility client 48"


def test_energy_and_instantaneous_values_follow_the_model(twin, transport):
    meter = twin.driver(transport)
    assert meter.read_energy_import_kwh() == 0.0
    twin.energize(240.0, 50.0)  # 12 kW: 3.3 Wh/s
    time.sleep(1.0)
    before = twin.register_wh()
    energy = meter.read_energy_import_kwh()
    after = twin.register_wh()
    assert math.floor(before) / 1000 <= energy <= after / 1000
    assert energy > 0.002
    values = meter.read_instantaneous()
    assert values["voltage_v"] == 240.0
    assert values["current_a"] == pytest.approx(50.0, abs=0.001)
    assert values["power_w"] == pytest.approx(12000.0, abs=1)
    assert values["power_factor"] == 1.0
    assert meter.read_signal_dbm() == -70.0  # the RSRP of its radio link: the twin cell at 0 dB attenuation


def test_remote_disconnect_opens_the_relay_and_reconnect_closes_it(twin, transport):
    meter = twin.driver(transport, client="utility")
    assert meter.relay_state() == RelayState(True, ControlState(1), 5)
    meter.remote_disconnect()
    assert twin.relay_events() == [(False, "meter@1 remote_disconnect")]
    assert meter.relay_state() == RelayState(False, ControlState(0), 5)
    meter.remote_reconnect()  # mode 5: straight back to connected (transition d)
    assert twin.relay_events() == [(False, "meter@1 remote_disconnect"), (True, "meter@1 remote_reconnect")]
    assert meter.relay_state() == RelayState(True, ControlState(1), 5)


def test_in_control_mode_4_a_remote_reconnect_only_arms_the_relay(start_twin):
    twin = start_twin(control_mode=4)
    meter = twin.bench["meter@1"]
    meter.remote_disconnect()
    meter.remote_reconnect()  # transition a: ready_for_reconnection, the customer's button closes the relay
    assert twin.relay_events() == [(False, "meter@1 remote_disconnect")]
    assert meter.relay_state() == RelayState(False, ControlState(2), 4)


def test_limiter_opens_the_relay_when_power_stays_above_the_threshold(twin, transport):
    meter = twin.driver(transport, client="utility")
    meter.set_limiter(3000.0, 1)
    assert meter.read_limiter() == LimiterSettings(
        threshold_active_w=3000.0, threshold_normal_w=3000.0,
        min_over_threshold_duration_s=1.0, min_under_threshold_duration_s=0.0)
    twin.energize(240.0, 10.0)  # 2.4 kW: below the threshold
    time.sleep(1.3)
    assert twin.events("limiter.trip") == [] and twin.relay_events() == []
    start = time.monotonic()
    twin.call(twin.model.set_current, 20.0, 0.0, "test")  # 4.8 kW
    trip = twin.wait_for("limiter.trip")
    assert time.monotonic() - start >= 1.0
    assert trip["over_s"] >= 1.0 and trip["power_w"] == pytest.approx(4800, rel=0.01)
    assert twin.relay_events() == [(False, "meter@1 limiter")]
    assert meter.relay_state() == RelayState(False, ControlState(2), 5)


def test_the_public_client_reads_identity_and_clock_only(twin, transport):
    meter = twin.driver(transport, client="public", password=None)
    identity = meter.identify()
    assert (identity.serial, identity.model, identity.firmware) == ("SIM0001", "RIGSIM0001", "1.0.0")
    assert abs(meter.read_clock() - datetime.now(UTC)) < timedelta(seconds=2)
    assert meter.read("0.0.43.1.3.255", 2, class_id=1) > 0  # utility settings' counter: the bench associated
    where = rf"meter@1 \({meter.address}\)"
    with pytest.raises(InstrumentError, match=where + r": refused GET 1\.0\.1\.8\.0\.255 class 3 attribute 3: "
                                                      r"read-write-denied"):
        meter.read_energy_import_kwh()
    with pytest.raises(InstrumentError, match=where + r": refused GET 0\.0\.96\.3\.10\.255 class 70 attribute 2: "
                                                      r"read-write-denied"):
        meter.relay_state()
    plate = meter.name_plate()  # its identity part only: meter type, category, rating and year are the reader's
    assert (plate.serial, plate.manufacturer, plate.firmware) == ("SIM0001", "Rig Twin", "1.0.0")
    assert (plate.meter_type, plate.category, plate.current_rating, plate.year) == (None, None, None, None)
    with pytest.raises(ConfigError, match=where + r": the public client association \(SAP 16, none\) may not "
                                                  r"operate the disconnect control: configure roles\.meter@1\.settings "
                                                  r"client: utility with its keys"):
        meter.remote_disconnect()
    assert abs(meter.read_clock() - datetime.now(UTC)) < timedelta(seconds=2)  # refusals leave it usable
    assert twin.relay_events() == []
    # the bench's utility settings association (the public client reading its invocation counter first), this one
    assert [e["client_sap"] for e in twin.events("dlms.association")] == [16, 48, 16]


def test_the_reader_reads_what_a_reader_needs_and_is_told_to_use_utility_settings_to_act(twin, transport):
    meter = twin.driver(transport)
    assert meter.read_energy_import_kwh() == 0.0
    assert meter.relay_state() == RelayState(True, ControlState(1), 5)
    assert meter.read_limiter().threshold_normal_w == 100000.0
    assert meter.name_plate().serial == "SIM0001"
    where = rf"meter@1 \({meter.address}\): the meter reader association \(SAP 32, lls\) may not "
    advice = r": configure roles\.meter@1\.settings client: utility with its keys \(secrets encryption_key and "
    for action, what in ((meter.remote_disconnect, "operate the disconnect control"),
                         (meter.remote_reconnect, "operate the disconnect control"),
                         (lambda: meter.set_clock(datetime.now(UTC)), "set the clock"),
                         (lambda: meter.set_limiter(3000.0, 1), "set the load limiter")):
        with pytest.raises(ConfigError, match=where + what + advice):
            action()
    sent = [json.loads(line) for line in twin.transcript_path.read_text().splitlines()]
    assert not [entry for entry in sent if (entry.get("sent") or "").startswith(("c1", "c3"))]  # nothing sent
    assert twin.relay_events() == [] and twin.events("clock.set") == [] and twin.events("limiter.set") == []


def test_a_wrong_password_is_refused(twin, transport):
    meter = twin.driver(transport, password="87654321")
    with pytest.raises(InstrumentError, match=rf"meter@1 \({meter.address}\): authentication failed: the meter "
                                              r"refused the LLS password of client 32 \(association "
                                              r"rejected-permanent, authentication-failure\)"):
        meter.open()
    rejected = twin.events("dlms.association")[-1]
    assert (rejected["result"], rejected["diagnostic"]) == ("rejected-permanent", "authentication-failure")
    twin.transcript.flush()
    transcript = twin.transcript_path.read_text()
    assert "87654321" not in transcript and b"87654321".hex() not in transcript
    assert "8008***" in transcript  # the AARQ is recorded, its calling-authentication-value redacted


def test_a_silent_meter_is_a_timeout_within_the_deadline(twin, transport):
    if transport == "tcp":
        listener = socket.create_server(("127.0.0.1", 0))
        resource = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        expected = r"AARQ \(client 32, lls\)"
    else:
        master, slave = os.openpty()
        tty.setraw(slave)
        resource = os.ttyname(slave)
        expected = "HDLC SNRM"
    try:
        config = RoleConfig(driver="dlms_meter", resource=resource, settings={"client": "reader", "deadline_s": 0.5})
        meter = driver_class("dlms_meter")("meter@1", config, SetpointLimits(), twin.transcript,
                                           {"lls_password": PASSWORD})
        start = time.monotonic()
        with pytest.raises(InstrumentTimeout, match=rf"meter@1 \({resource}\): no answer within 0\.5 s to "
                                                    rf"{expected} \(open\)"):
            meter.open()
        assert time.monotonic() - start < 0.8
        start = time.monotonic()
        with pytest.raises(InstrumentTimeout, match=rf"no answer within 0\.5 s to {expected} \(read_energy"):
            meter.read_energy_import_kwh()
        assert time.monotonic() - start < 0.8
        meter.close()
    finally:
        if transport == "tcp":
            listener.close()
        else:
            os.close(master)
            os.close(slave)


def test_a_meter_slower_than_the_deadline_times_out_and_the_next_call_reconnects(twin, transport):
    meter = twin.driver(transport, deadline_s=0.3)
    meter.open()
    twin.meter.latency_s = 0.6
    with pytest.raises(InstrumentTimeout, match=r"no answer within 0\.3 s to GET 1\.0\.1\.8\.0\.255 class 3 "
                                                r"attribute 3 \(read_energy_import_kwh\)"):
        meter.read_energy_import_kwh()
    twin.meter.latency_s = 0.0
    time.sleep(0.5)  # the late answer arrives on the abandoned connection
    assert meter.read_energy_import_kwh() == 0.0
    # the bench's (with the public client's before it), this driver's first and its second
    assert len(twin.events("dlms.association")) == 4


def test_an_independent_client_reads_the_energy_register(twin, transport):
    """Interoperability: Gurux's DLMS client (GPLv2, a test peer only) reads 1.0.1.8.0.255 from the twin."""
    gurux = pytest.importorskip("gurux_dlms")
    from gurux_dlms.enums import Authentication, InterfaceType
    from gurux_dlms.objects import GXDLMSRegister

    twin.energize(240.0, 50.0)
    time.sleep(0.5)
    client = gurux.GXDLMSClient(True, 32, 1, Authentication.LOW, PASSWORD,
                                InterfaceType.WRAPPER if transport == "tcp" else InterfaceType.HDLC)
    with GuruxLink(transport, twin.resource(transport)) as link:
        if transport == "hdlc":
            client.parseUAResponse(link.exchange(client, [client.snrmRequest()]).data)
        client.parseAareResponse(link.exchange(client, client.aarqRequest()).data)
        register = GXDLMSRegister("1.0.1.8.0.255")
        for attribute in (3, 2):
            client.updateValue(register, attribute, link.exchange(client, client.read(register, attribute)).value)
        before = twin.register_wh()
        client.updateValue(register, 2, link.exchange(client, client.read(register, 2)).value)
        after = twin.register_wh()
        link.exchange(client, client.releaseRequest())
        if transport == "hdlc":
            link.exchange(client, [client.disconnectRequest()])
    assert (register.scaler, int(register.unit)) == (1.0, 30)  # 10^0, Wh
    assert math.floor(before) <= register.value <= after


class GuruxLink:
    """Carries Gurux's frames over a socket (wrapper) or a serial line (HDLC) and feeds the replies back."""

    def __init__(self, transport: str, resource: str):
        self.transport = transport
        self.resource = resource

    def __enter__(self):
        if self.transport == "tcp":
            host, port = self.resource.removeprefix("tcp://").split(":")
            self.sock = socket.create_connection((host, int(port)), timeout=2)
        else:
            import serial
            self.port = serial.Serial(self.resource, timeout=0.05)
        return self

    def __exit__(self, *exc):
        if self.transport == "tcp":
            self.sock.close()
        else:
            self.port.close()

    def _read_tcp(self) -> bytes:
        return read_wrapper_frame(self.sock)

    def _read_hdlc(self) -> bytes:
        data, deadline = b"", time.monotonic() + 2
        while time.monotonic() < deadline:
            data += self.port.read(256)
            if len(data) >= 3 and len(data) >= ((data[1] & 0x07) << 8 | data[2]) + 2:
                return data
        raise AssertionError(f"no HDLC frame within 2 s (got {data.hex()})")

    def _send(self, request) -> None:
        if self.transport == "tcp":
            self.sock.sendall(bytes(request))
        else:
            self.port.write(bytes(request))

    def _receive(self) -> bytes:
        return self._read_tcp() if self.transport == "tcp" else self._read_hdlc()

    def exchange(self, client, requests):
        from gurux_dlms import GXByteBuffer, GXReplyData

        reply = GXReplyData()
        for request in requests:
            reply = GXReplyData()
            self._send(request)
            client.getData(GXByteBuffer(self._receive()), reply)
            while reply.isMoreData():  # HDLC segments (RR) and GET blocks (GET-Request-Next)
                self._send(client.receiverReady(reply))
                client.getData(GXByteBuffer(self._receive()), reply)
        assert reply.error == 0, f"the meter answered error {reply.error}"
        return reply


def test_any_attribute_is_read_by_obis_from_the_object_map_or_with_its_class(twin, transport):
    meter = twin.driver(transport)
    assert meter.read("0.0.96.1.0.255", 2) == "SIM0001"  # meter serial number, class from the object map
    assert meter.read("1.0.1.8.0.255", 1) == bytes([1, 0, 1, 8, 0, 255])  # a register's logical name
    assert meter.read("0.0.99.98.5.255", 7) == 0  # the event log's entries in use
    with pytest.raises(ConfigError, match=r"0\.0\.96\.11\.5\.255 is not in the driver's object map: give its "
                                          r"class_id"):
        meter.read("0.0.96.11.5.255", 2)
    assert meter.read("0.0.96.11.5.255", 1, class_id=1) == bytes([0, 0, 96, 11, 5, 255])


def gurux_client(transport: str, max_pdu: int | None = None):
    gurux = pytest.importorskip("gurux_dlms")
    from gurux_dlms.enums import Authentication, InterfaceType

    client = gurux.GXDLMSClient(True, 32, 1, Authentication.LOW, PASSWORD,
                                InterfaceType.WRAPPER if transport == "tcp" else InterfaceType.HDLC)
    if max_pdu is not None:
        client.maxReceivePDUSize = max_pdu
    return client


def test_an_independent_client_reads_the_object_list_and_profiles_in_blocks(twin, transport):
    """Gurux with a 128-octet PDU over either transport: the object list and the block load profile come as GET
    blocks, over HDLC also in segmented I-frames, and read the same as with the meter's full PDU."""
    from gurux_dlms.objects import GXDLMSProfileGeneric

    wait_until = time.monotonic() + 10
    while twin.call(lambda: len(twin.meter.profiles.profiles["1.0.99.1.0.255"].rows)) < 6:
        assert time.monotonic() < wait_until, "no block load entries"
        time.sleep(0.2)
    lists, buffers = [], []
    for max_pdu in (None, 128):
        client = gurux_client(transport, max_pdu)
        with GuruxLink(transport, twin.resource(transport)) as link:
            if transport == "hdlc":
                client.parseUAResponse(link.exchange(client, [client.snrmRequest()]).data)
            client.parseAareResponse(link.exchange(client, client.aarqRequest()).data)
            objects = client.parseObjects(link.exchange(client, [client.getObjectsRequest()]).data, False)
            lists.append([(int(obj.objectType), obj.logicalName) for obj in objects])
            profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
            client.updateValue(profile, 3, link.exchange(client, client.read(profile, 3)).value)
            rows = link.exchange(client, client.readRowsByEntry(profile, 1, 6)).value
            buffers.append([[getattr(value, "value", value) for value in row]
                            for row in client.updateValue(profile, 2, rows)])
            link.exchange(client, client.releaseRequest())
            if transport == "hdlc":
                link.exchange(client, [client.disconnectRequest()])
    assert lists[0] == lists[1] and (15, "0.0.40.0.0.255") in lists[0]
    assert len(buffers[1]) == 6 and buffers[0] == buffers[1]


def test_profiles_capture_the_meters_live_values(start_twin):
    """Block load (1 s blocks here): average voltage and block energy of the last block; the instantaneous
    profile: the values of the meter's registers now."""
    twin = start_twin(block_load_period_s=1)
    twin.energize(240.0, 10.0)
    profiles = twin.meter.profiles
    start = twin.call(lambda: len(profiles.profiles["1.0.99.1.0.255"].rows))
    deadline = time.monotonic() + 10
    while twin.call(lambda: len(profiles.profiles["1.0.99.1.0.255"].rows)) < start + 3:
        assert time.monotonic() < deadline, "no block load entries"
        time.sleep(0.2)
    meter = twin.driver("tcp")
    rows = meter.read("1.0.99.1.0.255", 2, class_id=7)
    *_, (stamp, average_voltage, block_energy) = rows
    assert average_voltage == 24000  # 240.00 V, scaler -2
    power_w = twin.call(lambda: twin.model.position_power_w(1))
    assert block_energy == pytest.approx(power_w / 3600 * 10, rel=0.3)  # about one second of it, in 0.1 Wh
    assert date_time_from_bytes(stamp, 330).microsecond == 0  # stamped at the end of a whole second
    (row,) = meter.read("1.0.94.91.0.255", 2, class_id=7)
    clock, voltage, current = row[:3]
    assert (voltage, current) == (24000, 10000)  # 240.00 V, 10.000 A
    assert abs(date_time_from_bytes(clock, 330) - datetime.now(UTC)) < timedelta(seconds=2)


def test_an_idle_hdlc_link_is_disconnected_after_the_inactivity_timeout(twin):
    """IEC 62056-46 inactivity time-out: the meter returns an idle link to the disconnected mode, so the next
    I-frame gets DM (0x1F: DM with the final bit) until the client sends SNRM again."""
    twin.meter.inactivity_timeout_s = 0.5
    client = gurux_client("hdlc")
    with GuruxLink("hdlc", twin.resource("hdlc")) as link:
        client.parseUAResponse(link.exchange(client, [client.snrmRequest()]).data)
        timed_out = twin.wait_for("dlms.inactivity_timeout", timeout_s=3)
        assert (timed_out["transport"], timed_out["idle_s"]) == ("hdlc", 0.5)
        (aarq,) = client.aarqRequest()
        link.port.write(bytes(aarq))
        dm = link._read_hdlc()
        assert dm[0] == dm[-1] == 0x7E and dm[-4] == 0x1F
        again = gurux_client("hdlc")  # a new client: its frame counters start again
        again.parseUAResponse(link.exchange(again, [again.snrmRequest()]).data)
        again.parseAareResponse(link.exchange(again, again.aarqRequest()).data)
        link.exchange(again, again.releaseRequest())
        link.exchange(again, [again.disconnectRequest()])
