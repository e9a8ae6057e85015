"""The DLMS driver reads the twin meter's IS 15959 profiles and name plate over the TCP wrapper: whole, by date
range, by entries and in blocks when a reply outgrows the PDU the client accepts."""

import json
import time

import pytest
from plan_runner import SIM_BENCH
from twin_thread import OpenBenchOnTwin

from rig.config import RoleConfig
from rig.driver import SetpointLimits, driver_class
from rig.errors import InstrumentError
from rig.roles.profiles import Profile, ProfileColumn, ProfileReader

BLOCK_LOAD, INSTANTANEOUS = "1.0.99.1.0.255", "1.0.94.91.0.255"
CLOCK, VOLTAGE, AVERAGE_VOLTAGE = "0.0.1.0.0.255", "1.0.12.7.0.255", "1.0.12.27.0.255"
GET_BUFFER = "c001c100070100630100ff02"  # GET.request normal, invoke 1, class 7, 1.0.99.1.0.255, attribute 2


class ProfilesTwin(OpenBenchOnTwin):
    """The sim bench's source and position 1's DLMS meter (block load captured every second), served in process."""

    def __init__(self, folder):
        def meter_and_source_only(data):
            interface = {**data["positions"][0]["interface"], "resource": "tcp://127.0.0.1:0"}
            interface["settings"] = {**interface["settings"], "client": "reader"}  # plain APDUs: read as sent
            for position in data["positions"]:
                for part in ("interface", "load", "attenuator", "modem", "cover"):
                    position.pop(part, None)
            data["positions"][0]["interface"] = interface
            data["roles"] = {"source": data["roles"]["source"]}
            data["twin"]["instruments"]["meter@1"]["block_load_period_s"] = 1

        self.folder = folder
        super().__init__(folder, edit=meter_and_source_only)
        self.meter = self.bench["meter@1"]
        self.serial = self.bench_file.config.positions[0].serial
        self.extra = []

    def driver(self, **settings):
        """Another driver on the same meter (its own association), with these settings."""
        interface = self.bench_file.config.positions[0].interface
        config = RoleConfig(driver="dlms_meter", resource=self.resources["meter@1"],
                            settings={**interface.settings, **settings})
        secrets = {name: (SIM_BENCH.parent / ref.file).read_text().strip() for name, ref in interface.secrets.items()}
        driver = driver_class("dlms_meter")("meter@1", config, SetpointLimits(), self.transcript, secrets)
        self.extra.append(driver)
        return driver

    def sent(self) -> list[str]:
        self.transcript.flush()
        lines = (self.folder / "transcript.jsonl").read_text().splitlines()
        return [record["sent"] for record in map(json.loads, lines) if record.get("sent")]

    def block_load_rows(self, at_least: int, timeout_s: float = 20.0) -> Profile:
        deadline = time.monotonic() + timeout_s
        while True:
            profile = self.meter.read_profile("block_load")
            if len(profile.rows) >= at_least:
                return profile
            assert time.monotonic() < deadline, f"block load has {len(profile.rows)} rows after {timeout_s} s"
            time.sleep(0.5)

    def close(self):
        for driver in self.extra:
            driver.close()
        super().close()


@pytest.fixture
def twin(tmp_path):
    twin = ProfilesTwin(tmp_path)
    yield twin
    twin.close()


def test_the_name_plate_is_the_positions_meter(twin):
    assert isinstance(twin.meter, ProfileReader)  # what `pos.get(ProfileReader)` finds
    plate = twin.meter.name_plate()
    identity = twin.bench.identities["meter@1"]
    assert plate.serial == twin.serial == "SIM0001"
    assert (plate.manufacturer, plate.firmware) == (identity.manufacturer, identity.firmware)
    assert isinstance(plate.year, int) and 2000 <= plate.year <= 2099
    assert plate.meter_type is not None and plate.category and plate.current_rating


def test_the_instantaneous_profile_shows_the_sources_voltage(twin):
    source = twin.bench["source"]
    source.set_voltage(231.5)
    source.set_output(True)
    try:
        profile = twin.meter.read_profile("instantaneous")
    finally:
        source.set_output(False)
    voltage = profile.columns[profile.column(VOLTAGE)]
    assert (voltage.class_id, voltage.unit) == (3, "V")
    assert profile.values(VOLTAGE)[-1] == pytest.approx(source.voltage_setpoint(), abs=0.01) == 231.5
    assert profile.rows[-1].at is not None and profile.rows[-1].at.utcoffset().total_seconds() == 330 * 60


def test_the_rows_of_a_date_range_lie_inside_it(twin):
    whole = twin.block_load_rows(at_least=4)
    assert whole.columns[0] == ProfileColumn(8, CLOCK, 2)  # from the capture objects, not from a table
    since, until = whole.rows[1].at, whole.rows[2].at
    ranged = twin.meter.read_profile("block_load", since, until)
    assert ranged.rows and all(since <= row.at <= until for row in ranged.rows)
    assert ranged.rows == tuple(row for row in whole.rows if since <= row.at <= until)
    assert ranged.columns[ranged.column(AVERAGE_VOLTAGE)].unit == "V"
    ranged_requests = [sent for sent in twin.sent() if sent.startswith(GET_BUFFER + "0101")]
    assert ranged_requests, "no GET of the buffer with a range descriptor was sent: the meter did not select"


def test_entries_are_read_by_number(twin):
    whole = twin.block_load_rows(at_least=3)
    entries = twin.meter.read_profile_entries("block_load", 2, 3)
    assert entries.rows == whole.rows[1:3]
    assert any(sent.startswith(GET_BUFFER + "0102") for sent in twin.sent())


def test_a_long_buffer_comes_in_blocks_and_reads_the_same(twin):
    whole = twin.block_load_rows(at_least=6)
    small = twin.driver(max_pdu_size=64)
    ranged = small.read_profile("block_load", whole.rows[0].at, whole.rows[5].at)
    assert ranged.rows == whole.rows[:6]
    assert any(sent.startswith("c002c1") for sent in twin.sent()), "no GET.request next: no block transfer"


def test_event_logs_are_read_from_an_instant_on(twin):
    since = twin.meter.read_clock()
    assert twin.meter.events_since(since) == []
    tamper_log_from = "c001c100070000636205ff020101"  # GET 0.0.99.98.5.255 attribute 2 with a range descriptor
    assert any(sent.startswith(tamper_log_from) for sent in twin.sent())
    utility = twin.driver(client="utility")  # the reader may not switch the relay
    utility.remote_disconnect()
    try:
        control = twin.meter.read_profile("control_events", since=since)
    finally:
        utility.remote_reconnect()
    assert control.rows and all(row.at >= since for row in control.rows)
    assert control.column("0.0.96.11.6.255") == 1  # the event code, after the clock


def meter_closed_idle_connections(twin, count: int, timeout_s: float = 5.0) -> None:
    """Wait until the twin meter has closed `count` idle connections."""
    deadline = time.monotonic() + timeout_s
    while len([e for e in twin.truth("dlms.inactivity_timeout") if e.get("transport") == "tcp"]) < count:
        assert time.monotonic() < deadline, f"the meter closed fewer than {count} idle connections"
        time.sleep(0.02)


def test_an_association_idle_past_the_meters_timeout_is_made_again(twin):
    """Meters close a connection idle for their inactivity timeout: the driver releases an association idle for
    idle_release_s and makes a new one, so the next read after a long wait still answers."""
    meter_sim = twin.twin.instruments["meter@1"]
    twin.call(lambda: setattr(meter_sim, "inactivity_timeout_s", 0.3))
    careful, naive = twin.driver(idle_release_s=0.2), twin.driver(idle_release_s=3600)
    careful.read_clock(), naive.read_clock()
    meter_closed_idle_connections(twin, 2)
    assert careful.read_clock() is not None
    twin.transcript.flush()
    assert any("released, a new one made" in (record.get("note") or "") for record in map(
        json.loads, (twin.folder / "transcript.jsonl").read_text().splitlines()))
    with pytest.raises(InstrumentError):
        naive.read_clock()  # the meter has closed its connection: the call fails, the next one reconnects
    assert naive.read_clock() is not None
