"""Conformance of the DLMS/COSEM meter (role meter@1) as Gurux's DLMS client (GPLv2, a test peer only) sees it over
the IEC 62056-47 TCP wrapper, written from the Blue Book (IEC 62056-6-2: association LN class 15, profile generic
class 7 with selective access), the Green Book (IEC 62056-5-3: GET with block transfer) and IS 15959-2 (its
object list: name plate, instantaneous, block load, daily load and billing profiles, event logs).

A reader's first step: associate as the meter reader (client SAP 32, LLS), read the current association's object
list (0.0.40.0.0.255 attribute 2), then read every object in it. The LLS password is the lab's: environment
variable RIG_DLMS_PASSWORD, else the sim bench's secret file; so are the utility settings keys (HLS-GMAC):
RIG_DLMS_ENCRYPTION_KEY and RIG_DLMS_AUTHENTICATION_KEY, else the sim bench's key files.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from wrapper_frames import read_wrapper_frame

gurux = pytest.importorskip("gurux_dlms")
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData  # noqa: E402
from gurux_dlms.enums import AccessMode, Authentication, DataType, InterfaceType, ObjectType  # noqa: E402
from gurux_dlms.objects import GXDLMSData, GXDLMSProfileGeneric  # noqa: E402

pytestmark = pytest.mark.role("meter@1")

READER_SAP, PUBLIC_SAP, UTILITY_SAP, SERVER_SAP = 32, 16, 48, 1
UTILITY_COUNTER = "0.0.43.1.3.255"
# what the public client may read (IS 15959-2 / DLMS UA practice): the current association and its own, the identity
# (logical device name, serial number, manufacturer, firmware version), the clock, the invocation counters
PUBLIC_OBJECTS = {"0.0.40.0.0.255", "0.0.40.0.1.255", "0.0.42.0.0.255", "0.0.96.1.0.255", "0.0.96.1.1.255",
                  "1.0.0.2.0.255", "0.0.1.0.0.255", "0.0.43.1.3.255", "0.0.43.1.4.255"}
DISCONNECT_CONTROL, LIMITER, MD_RESET = "0.0.96.3.10.255", "0.0.17.0.0.255", "0.0.10.0.1.255"
SIM_PASSWORD_FILE = Path(__file__).resolve().parents[2] / "benches" / "sim-lls-password"
CLOCK = "0.0.1.0.0.255"
NAME_PLATE = ["0.0.96.1.0.255", "0.0.96.1.1.255", "1.0.0.2.0.255", "0.0.94.91.9.255", "0.0.94.91.11.255",
              "0.0.94.91.12.255", "0.0.96.1.4.255"]
NAME_PLATE_PROFILE = "0.0.94.91.10.255"
INSTANTANEOUS, BLOCK_LOAD, DAILY_LOAD, BILLING = "1.0.94.91.0.255", "1.0.99.1.0.255", "1.0.99.2.0.255", "1.0.98.1.0.255"
SCALER_PROFILES = {INSTANTANEOUS: "1.0.94.91.3.255", BLOCK_LOAD: "1.0.94.91.4.255", DAILY_LOAD: "1.0.94.91.5.255",
                   BILLING: "1.0.94.91.6.255"}
EVENT_LOGS = [f"0.0.99.98.{n}.255" for n in range(7)]
PROFILES = [NAME_PLATE_PROFILE, INSTANTANEOUS, BLOCK_LOAD, DAILY_LOAD, BILLING, *SCALER_PROFILES.values(), *EVENT_LOGS]
READABLE = (AccessMode.READ, AccessMode.READ_WRITE, AccessMode.AUTHENTICATED_READ,
            AccessMode.AUTHENTICATED_READ_WRITE)


def lls_password() -> str:
    return os.environ.get("RIG_DLMS_PASSWORD") or SIM_PASSWORD_FILE.read_text().strip()


def utility_key(name: str) -> str:
    """The utility settings key `name` (encryption_key, authentication_key) in hex."""
    return (os.environ.get(f"RIG_DLMS_{name.upper()}")
            or (SIM_PASSWORD_FILE.parent / f"sim-{name.replace('_', '-')}").read_text().strip())


class GuruxMeter:
    """One association of Gurux's client with the meter over the TCP wrapper; GET answers in blocks are followed
    with GET-Request-Next as Gurux's client asks for them."""

    def __init__(self, device, client_sap: int = READER_SAP, max_pdu: int | None = None):
        authentication = Authentication.LOW if client_sap == READER_SAP else Authentication.NONE
        password = lls_password() if client_sap == READER_SAP else None
        self.client = GXDLMSClient(True, client_sap, SERVER_SAP, authentication, password, InterfaceType.WRAPPER)
        if max_pdu is not None:
            self.client.maxReceivePDUSize = max_pdu
        self.device = device
        self.blocks = 0  # GET-Response-With-Datablock APDUs received

    def __enter__(self) -> GuruxMeter:
        self.sock = socket.create_connection((self.device.host, self.device.port), timeout=5)
        self.client.parseAareResponse(self.exchange(self.client.aarqRequest()).data)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.exchange(self.client.releaseRequest())
        finally:
            self.sock.close()

    def receive(self) -> bytes:
        return read_wrapper_frame(self.sock)

    def raw(self, apdu: bytes) -> bytes:
        """One APDU in a wrapper frame from the client's SAP; the meter's APDU back."""
        self.sock.sendall(b"\x00\x01" + self.client.clientAddress.to_bytes(2, "big") + b"\x00\x01"
                          + len(apdu).to_bytes(2, "big") + apdu)
        frame = self.receive()
        assert frame[:6] == b"\x00\x01\x00\x01" + self.client.clientAddress.to_bytes(2, "big")
        return frame[8:]

    def exchange(self, requests) -> GXReplyData:
        reply = GXReplyData()
        for request in requests:
            reply = GXReplyData()
            self.sock.sendall(bytes(request))
            self.client.getData(GXByteBuffer(self.receive()), reply)
            while reply.isMoreData():
                self.blocks += 1
                self.sock.sendall(bytes(self.client.receiverReady(reply)))
                self.client.getData(GXByteBuffer(self.receive()), reply)
        assert reply.error == 0, f"the meter answered error {reply.error}"
        return reply

    def read(self, obj, attribute: int):
        return self.client.updateValue(obj, attribute, self.exchange(self.client.read(obj, attribute)).value)

    def objects(self):
        return self.client.parseObjects(self.exchange([self.client.getObjectsRequest()]).data, False)

    def profile(self, logical_name: str) -> GXDLMSProfileGeneric:
        """A profile with its capture objects (3), entries in use (7), profile entries (8) and buffer (2) read."""
        profile = GXDLMSProfileGeneric(logical_name)
        for attribute in (3, 4, 7, 8, 2):
            self.read(profile, attribute)
        return profile

    def rows_by_range(self, profile, start: datetime, end: datetime, columns=None) -> list:
        reply = self.exchange(self.client.readRowsByRange(profile, start, end, columns))
        return self.client.updateValue(profile, 2, reply.value, columns)

    def rows_by_entry(self, profile, index: int, count: int) -> list:
        return self.client.updateValue(profile, 2, self.exchange(self.client.readRowsByEntry(profile, index,
                                                                                             count)).value)


class UtilityMeter(GuruxMeter):
    """Gurux's secure client as utility settings (client SAP 48, HLS-GMAC, security suite 0, authenticated and
    encrypted APDUs): the public client reads the association's invocation counter 0.0.43.1.3.255 first; entering
    makes the association and its four HLS passes."""

    def __init__(self, device):
        from gurux_dlms.enums import Security
        from gurux_dlms.secure import GXDLMSSecureClient

        with GuruxMeter(device, PUBLIC_SAP) as public:
            self.counter_before = public.read(GXDLMSData(UTILITY_COUNTER), 2)
        super().__init__(device, PUBLIC_SAP)
        self.client = GXDLMSSecureClient(True, UTILITY_SAP, SERVER_SAP, Authentication.HIGH_GMAC, None,
                                         InterfaceType.WRAPPER)
        ciphering = self.client.ciphering
        ciphering.security = Security.AUTHENTICATION_ENCRYPTION
        ciphering.systemTitle = b"GRXTEST1"
        ciphering.blockCipherKey = GXByteBuffer.hexToBytes(utility_key("encryption_key"))
        ciphering.authenticationKey = GXByteBuffer.hexToBytes(utility_key("authentication_key"))
        ciphering.invocationCounter = self.counter_before + 1

    def __enter__(self) -> UtilityMeter:
        super().__enter__()
        assert self.client.isAuthenticationRequired  # pass 2: accepted pending HLS
        self.client.parseApplicationAssociationResponse(
            self.exchange(self.client.getApplicationAssociationRequest()).data)  # passes 3 and 4: f(CtoS) checked
        return self


def columns_of(profile) -> list[tuple[int, str, int]]:
    return [(int(obj.objectType), obj.logicalName, definition.attributeIndex)
            for obj, definition in profile.captureObjects]


def moment(value) -> datetime:
    """A date-time of a buffer row (Gurux's, or its 12 octets when the column is a Data object) in UTC."""
    if isinstance(value, bytes | bytearray):
        value = GXDLMSClient.changeType(value, DataType.DATETIME)
    return getattr(value, "value", value).astimezone(UTC)


def test_the_reader_reads_the_object_list_of_its_association(device):
    with GuruxMeter(device) as meter:
        objects = meter.objects()
    names = {(int(obj.objectType), obj.logicalName) for obj in objects}
    assert (int(ObjectType.ASSOCIATION_LOGICAL_NAME), "0.0.40.0.0.255") in names
    assert (int(ObjectType.CLOCK), CLOCK) in names
    assert {(int(ObjectType.PROFILE_GENERIC), name) for name in PROFILES} <= names
    assert {name for name in NAME_PLATE} <= {logical_name for _, logical_name in names}
    buffer_access = {obj.logicalName: obj.getAccess(2) for obj in objects if obj.logicalName in PROFILES}
    assert set(buffer_access.values()) <= set(READABLE)


def may_write_or_invoke(obj) -> list[str]:
    """The attributes the object list lets its client write and the methods it lets it invoke."""
    from gurux_dlms.enums import MethodAccessMode

    writable = [f"attribute {index}" for index in range(2, obj.getAttributeCount() + 1)
                if obj.getAccess(index) not in (AccessMode.NO_ACCESS, AccessMode.READ)]
    return writable + [f"method {index}" for index in range(1, obj.getMethodCount() + 1)
                       if obj.getMethodAccess(index) != MethodAccessMode.NO_ACCESS]


def test_the_public_client_sees_its_identity_clock_and_counters_only(device):
    with GuruxMeter(device, PUBLIC_SAP) as public:
        public_objects = public.objects()
    assert {obj.logicalName for obj in public_objects} == PUBLIC_OBJECTS
    assert {obj.logicalName: may_write_or_invoke(obj) for obj in public_objects} == dict.fromkeys(PUBLIC_OBJECTS, [])


def test_the_reader_reads_and_may_neither_set_nor_invoke(device):
    with GuruxMeter(device) as reader:
        objects = {obj.logicalName: obj for obj in reader.objects()}
        clock_set = reader.raw(bytes.fromhex("c1 01 c1 0008 0000010000ff 02 00 090c 07ea0302 01 0c000000 feb6 00"))
    assert {DISCONNECT_CONTROL, LIMITER, MD_RESET, NAME_PLATE_PROFILE, *EVENT_LOGS} <= set(objects)
    assert {name: may_write_or_invoke(obj) for name, obj in objects.items()} == dict.fromkeys(objects, [])
    assert clock_set == bytes.fromhex("c5 01 c1 03")  # read-write-denied, as the list says


def test_utility_settings_may_set_and_invoke(device):
    from gurux_dlms.enums import MethodAccessMode

    with UtilityMeter(device) as utility:
        objects = {obj.logicalName: obj for obj in utility.objects()}
    with GuruxMeter(device) as reader:
        reader_names = {obj.logicalName for obj in reader.objects()}
    assert PUBLIC_OBJECTS | reader_names <= set(objects)
    assert objects[CLOCK].getAccess(2) == AccessMode.READ_WRITE
    assert [objects[LIMITER].getAccess(index) for index in (3, 4, 5, 6, 7)] == [AccessMode.READ_WRITE] * 5
    assert [objects[DISCONNECT_CONTROL].getMethodAccess(index) for index in (1, 2)] == [MethodAccessMode.ACCESS] * 2
    assert objects[MD_RESET].getMethodAccess(1) == MethodAccessMode.ACCESS


def test_every_listed_attribute_the_reader_may_read_is_read_without_error(device):
    with GuruxMeter(device) as meter:
        objects = meter.objects()
        read = 0
        for obj in objects:
            indexes = [index for index in range(1, obj.getAttributeCount() + 1) if obj.getAccess(index) in READABLE]
            if obj.objectType == ObjectType.PROFILE_GENERIC and 3 in indexes:
                indexes.remove(3)
                indexes.insert(0, 3)  # capture objects first: they say how to read the buffer's columns
            for index in indexes:
                meter.read(obj, index)  # an error answer fails here
                read += 1
    assert read >= 3 * len(objects)


def test_the_current_association_describes_itself(device):
    from gurux_dlms.objects import GXDLMSAssociationLogicalName

    with GuruxMeter(device) as meter:
        association = GXDLMSAssociationLogicalName("0.0.40.0.0.255")
        for attribute in (3, 4, 5, 6, 8):
            meter.read(association, attribute)
    assert (association.clientSAP, association.serverSAP) == (READER_SAP, SERVER_SAP)
    assert association.applicationContextName.contextId == 1  # LN referencing, no ciphering
    assert association.authenticationMechanismName.mechanismId == Authentication.LOW
    assert int(association.associationStatus) == 2  # associated
    assert association.xDLMSContextInfo.dlmsVersionNumber == 6


def test_the_name_plate_profile_holds_the_name_plate_objects(device):
    with GuruxMeter(device) as meter:
        plate = meter.profile(NAME_PLATE_PROFILE)
        values = {}
        for name in NAME_PLATE:
            values[name] = meter.read(GXDLMSData(name), 2)
    assert [name for _, name, _ in columns_of(plate)] == NAME_PLATE
    assert (plate.entriesInUse, plate.profileEntries, len(plate.buffer)) == (1, 1, 1)
    assert list(plate.buffer[0]) == [values[name] for name in NAME_PLATE]


@pytest.mark.twin_only
def test_the_name_plate_shows_the_bench_position(device):
    with GuruxMeter(device) as meter:
        plate = meter.profile(NAME_PLATE_PROFILE)
    serial, manufacturer, firmware, meter_type, category, rating, year = plate.buffer[0]
    assert (serial, manufacturer, firmware, meter_type, category, rating) == \
           ("SIM0001", "Rig Twin", "1.0.0", 5, "C1", "10-60A")
    assert year == datetime.now(UTC).year


@pytest.mark.parametrize("logical_name", PROFILES)
def test_each_profile_has_capture_objects_and_a_buffer_of_them(device, logical_name):
    with GuruxMeter(device) as meter:
        profile = meter.profile(logical_name)
    columns = columns_of(profile)
    assert columns, f"{logical_name} captures nothing"
    assert len(profile.buffer) == profile.entriesInUse <= profile.profileEntries
    assert all(len(row) == len(columns) for row in profile.buffer)
    if logical_name.startswith("0.0.99.98.") or logical_name in (INSTANTANEOUS, BLOCK_LOAD, DAILY_LOAD):
        assert columns[0] == (int(ObjectType.CLOCK), CLOCK, 2)
    if logical_name.startswith("0.0.99.98."):
        assert columns[1][:2] == (int(ObjectType.DATA), "0.0.96.11." + logical_name.split(".")[4] + ".255")


@pytest.mark.parametrize("logical_name", list(SCALER_PROFILES))
def test_scaler_profiles_give_the_scaler_and_unit_of_each_register_column(device, logical_name):
    with GuruxMeter(device) as meter:
        values = meter.profile(logical_name)
        scalers = meter.profile(SCALER_PROFILES[logical_name])
    registers = [name for class_id, name, _ in columns_of(values) if class_id == int(ObjectType.REGISTER)]
    assert [(name, attribute) for _, name, attribute in columns_of(scalers)] == [(name, 3) for name in registers]
    assert len(scalers.buffer) == 1
    assert all(len(scaler_unit) == 2 for scaler_unit in scalers.buffer[0])


def wait_for_block_load_entries(meter: GuruxMeter, count: int, timeout_s: float) -> GXDLMSProfileGeneric:
    deadline = time.monotonic() + timeout_s
    while True:
        profile = meter.profile(BLOCK_LOAD)
        if profile.entriesInUse >= count or time.monotonic() > deadline:
            assert profile.entriesInUse >= count, f"block load has {profile.entriesInUse} entries after {timeout_s} s"
            return profile
        time.sleep(min(profile.capturePeriod or 1, 1))


def test_the_block_load_profile_is_read_by_date_range(device):
    with GuruxMeter(device) as meter:
        profile = wait_for_block_load_entries(meter, 5, timeout_s=10)
        stamps = [moment(row[0]) for row in profile.buffer]
        start, end = stamps[1], stamps[-2]
        rows = meter.rows_by_range(profile, start, end)
        clock, energy = profile.captureObjects[0], profile.captureObjects[-1]
        two_columns = meter.rows_by_range(profile, start, end, [clock, energy])
    assert stamps == sorted(stamps)
    selected = [moment(row[0]) for row in rows]
    assert selected and all(start <= stamp <= end for stamp in selected)
    assert selected == [stamp for stamp in stamps if start <= stamp <= end]
    assert [len(row) for row in two_columns] == [2] * len(rows)
    assert [moment(row[0]) for row in two_columns] == selected


def test_a_range_before_any_entry_selects_nothing(device):
    with GuruxMeter(device) as meter:
        profile = meter.profile(BLOCK_LOAD)
        long_ago = datetime(2001, 1, 1, tzinfo=UTC)
        assert meter.rows_by_range(profile, long_ago, long_ago + timedelta(hours=1)) == []


def test_the_block_load_profile_is_read_by_entry(device):
    with GuruxMeter(device) as meter:
        profile = wait_for_block_load_entries(meter, 3, timeout_s=10)
        first_two = meter.rows_by_entry(profile, 1, 2)
        oldest = [moment(row[0]) for row in profile.buffer[:2]]
    assert [moment(row[0]) for row in first_two] == oldest


def test_long_answers_come_in_blocks_within_a_small_pdu(device):
    with GuruxMeter(device) as meter:
        objects = [(int(obj.objectType), obj.logicalName) for obj in meter.objects()]
        events = meter.profile("0.0.99.98.5.255")
    with GuruxMeter(device, max_pdu=128) as small:
        assert [(int(obj.objectType), obj.logicalName) for obj in small.objects()] == objects
        assert small.blocks > 0
        blocks_before = small.blocks
        small_events = small.profile("0.0.99.98.5.255")
        profile = wait_for_block_load_entries(small, 8, timeout_s=15)  # 8 rows of 3 columns: over 128 octets
    assert small_events.captureObjects and len(small_events.buffer) == len(events.buffer)
    assert len(profile.buffer) == profile.entriesInUse
    assert small.blocks > blocks_before


def test_block_transfer_exchanges_as_the_standard_shows(device):
    """GET-Response-With-Datablock: C4 02 invoke, last-block, block-number (4 octets), raw-data [0]; the next
    block on GET-Request-Next acknowledging the last; a wrong block number ends the transfer with
    data-block-number-invalid (19), a next request with none in progress gives no-long-get-in-progress (16)."""
    with GuruxMeter(device, max_pdu=128) as meter:
        get_object_list = bytes.fromhex("c0 01 c1 000f 0000280000ff 02 00")
        first = meter.raw(get_object_list)
        assert first[:9] == bytes.fromhex("c4 02 c1 00 00000001 00")
        assert len(first) <= 128
        second = meter.raw(bytes.fromhex("c0 02 c1 00000001"))
        assert second[:8] == bytes.fromhex("c4 02 c1") + bytes([second[3]]) + bytes.fromhex("00000002")
        assert meter.raw(bytes.fromhex("c0 02 c1 00000007")) == bytes.fromhex("c4 02 c1 01 00000007 01 13")
        assert meter.raw(bytes.fromhex("c0 02 c1 00000002")) == bytes.fromhex("c4 02 c1 01 00000002 01 10")


@pytest.mark.changes_outputs
def test_an_md_reset_closes_a_billing_period(device):
    from gurux_dlms.objects import GXDLMSScriptTable

    with UtilityMeter(device) as meter:
        before = meter.profile(BILLING)
        count = GXDLMSData("0.0.0.1.0.255")
        counted = meter.read(count, 2)
        started = datetime.now(UTC) - timedelta(seconds=2)
        meter.exchange(meter.client.method(GXDLMSScriptTable("0.0.10.0.1.255"), 1, 1, DataType.UINT16))
        after = meter.profile(BILLING)
        assert meter.read(count, 2) == counted + 1
    assert after.entriesInUse == min(before.entriesInUse + 1, after.profileEntries)
    assert moment(after.buffer[-1][0]) >= started


@pytest.mark.twin_only
def test_an_idle_connection_is_closed_after_the_inactivity_timeout(device, twin_model):
    meter_sim = twin_model.twin.instruments["meter@1"]
    default_s, meter_sim.inactivity_timeout_s = meter_sim.inactivity_timeout_s, 0.5
    try:
        with socket.create_connection((device.host, device.port), timeout=5) as idle:
            started = time.monotonic()
            assert idle.recv(1) == b""  # closed by the meter, nothing sent
            assert 0.4 < time.monotonic() - started < 3
        with GuruxMeter(device) as meter:  # a connection in use is kept
            for _ in range(3):
                time.sleep(0.3)
                meter.read(GXDLMSData("0.0.96.1.0.255"), 2)
    finally:
        meter_sim.inactivity_timeout_s = default_s


def test_utility_settings_associate_with_hls_gmac_and_read_ciphered(device):
    """Gurux's secure client as utility settings (client SAP 48, HLS-GMAC, security suite 0, authenticated and
    encrypted): the public client reads the association's invocation counter 0.0.43.1.3.255 first, then the four
    passes of HLS-GMAC and a ciphered GET of the serial number."""
    meter = UtilityMeter(device)
    counter = meter.counter_before
    assert isinstance(counter, int) and counter >= 0
    with meter:
        serial = meter.read(GXDLMSData("0.0.96.1.0.255"), 2)
    assert serial
    with GuruxMeter(device, PUBLIC_SAP) as public:
        assert public.read(GXDLMSData("0.0.43.1.3.255"), 2) > counter  # the meter counted the client's frames
