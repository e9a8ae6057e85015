"""What the DLMS driver sends to read a profile, octet by octet, against a scripted meter on the TCP wrapper.

The expected requests are written out here from the Blue Book (DLMS UA 1000-1, profile generic attribute 2
selective access) and the Green Book (DLMS UA 1000-2, GET service, A-XDR encoding, block transfer), not produced
by the driver's or the library's encoders.
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from rig.config import RoleConfig
from rig.driver import SetpointLimits, driver_class
from rig.errors import InstrumentError
from rig.roles.profiles import NamePlate, ProfileColumn
from rig.transcript import Transcript

H = bytes.fromhex
IST = timezone(timedelta(minutes=330))
CLIENT_SAP, SERVER_SAP = 16, 1


def aare(conformance: str) -> bytes:
    """AARE accepting the public client (no authentication) with the given negotiated conformance (3 octets)."""
    initiate_response = H("08 00 06" "5f1f 04 00" + conformance + "0400 0007")  # DLMS 6, max PDU 1024, LN
    user_information = H("be10 040e") + initiate_response
    body = (H("a109 0607 60857405080101")      # application-context-name: LN, no ciphering
            + H("a203 0201 00")                 # result: accepted
            + H("a305 a103 0201 00")            # result-source-diagnostic: acse-service-user null
            + user_information)
    return bytes([0x61, len(body)]) + body


# negotiated conformance, a BIT STRING (24) counted from its most significant bit (Green Book, Conformance):
# 0x10 in the second octet is block-transfer-with-get-or-read (bit 11); the third octet 0x1d is get (19), set (20),
# selective-access (21) and action (23); 0x19 the same without selective access
WITH_SELECTIVE_ACCESS = aare("00101d")
WITHOUT_SELECTIVE_ACCESS = aare("001019")
RLRE = H("63 03 80 01 00")

BLOCK_LOAD = H("0100630100ff")  # 1.0.99.1.0.255
BLOCK_LOAD_SCALER = H("01005e5b04ff")  # 1.0.94.91.4.255


def capture(class_id: int, logical_name: str, attribute: int) -> str:
    """capture_object_definition: structure {class_id long-unsigned, logical_name octet-string(6),
    attribute_index integer, data_index long-unsigned 0}."""
    return f"0204 12{class_id:04x} 0906{logical_name} 0f{attribute:02x} 120000"


CAPTURES = ("0103" + capture(8, "0000010000ff", 2) + capture(3, "01000c1b00ff", 2)  # clock, average voltage
            + capture(3, "0100011d00ff", 2))                                       # block energy import
SCALER_CAPTURES = ("0103" + capture(8, "0000010000ff", 2) + capture(3, "01000c1b00ff", 3)
                   + capture(3, "0100011d00ff", 3))
SCALER_ENTRY = "0101 0203 090c 07ea030aff 00000000 8000 00 0202 0ffe 1623 0202 0f00 161e"  # V 10^-2, Wh 10^0


def get_response(data_hex: str) -> bytes:
    return H("c4 01 c1 00") + H(data_hex)  # GET.response normal, invoke 1, Data


def date_time(text: str) -> str:
    return text.replace(" ", "")


class WrapperMeter:
    """A meter on the IEC 62056-47 TCP wrapper that answers the AARQ and RLRQ itself and otherwise expects the
    scripted requests in order, answering each with its scripted reply; records every APDU it receives."""

    def __init__(self, aare_reply: bytes, script: list[tuple[bytes, bytes]]):
        self.aare = aare_reply
        self.script = list(script)
        self.received: list[bytes] = []
        self.mismatches: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.resource = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            while (apdu := self._read(conn)) is not None:
                self.received.append(apdu)
                reply = self._answer(apdu)
                if reply is None:
                    return
                conn.sendall(H("0001") + SERVER_SAP.to_bytes(2, "big") + CLIENT_SAP.to_bytes(2, "big")
                             + len(reply).to_bytes(2, "big") + reply)

    @staticmethod
    def _read(conn: socket.socket) -> bytes | None:
        data = b""
        while len(data) < 8 or len(data) < 8 + int.from_bytes(data[6:8], "big"):
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
        return data[8:]

    def _answer(self, apdu: bytes) -> bytes | None:
        if apdu[0] == 0x60:
            return self.aare
        if apdu[0] == 0x62:
            return RLRE
        if not self.script:
            self.mismatches.append(f"unexpected {apdu.hex()}")
            return None
        expected, reply = self.script.pop(0)
        if apdu != expected:
            self.mismatches.append(f"expected {expected.hex()}, got {apdu.hex()}")
            return None
        return reply

    def close(self) -> None:
        self.server.close()

    def assert_complete(self) -> None:
        assert self.mismatches == []
        assert self.script == [], "scripted requests never came"


@pytest.fixture
def meter_with():
    meters, drivers = [], []

    def start(aare_reply: bytes, script: list[tuple[bytes, bytes]]):
        meter = WrapperMeter(aare_reply, script)
        config = RoleConfig(driver="dlms_meter", resource=meter.resource,
                            settings={"client": "public", "deadline_s": 2})
        driver = driver_class("dlms_meter")("meter@1", config, SetpointLimits(), Transcript(None))
        meters.append(meter)
        drivers.append(driver)
        return meter, driver

    yield start
    for driver in drivers:
        driver.close()
    for meter in meters:
        meter.close()


GET_CAPTURES = H("c0 01 c1 0007") + BLOCK_LOAD + H("03 00")  # GET.request normal, class 7, attribute 3, no access
GET_SCALER_CAPTURES = H("c0 01 c1 0007") + BLOCK_LOAD_SCALER + H("03 00")
GET_SCALER_BUFFER = H("c0 01 c1 0007") + BLOCK_LOAD_SCALER + H("02 00")
ROW_1 = "0203 090c 07ea030aff 0c0f0000 feb6 00 12 5dc0 06 00000064"  # 12:15 IST, 240.00 V, 100 Wh
ROW_2 = "0203 090c 07ea030aff 0c1e0000 feb6 00 12 5e24 06 000000c8"  # 12:30 IST, 241.00 V, 200 Wh


def test_a_date_range_is_a_range_descriptor_on_the_clock_column(meter_with):
    get_range = H(
        "c0 01 c1"                        # GET.request normal, invoke-id 1, confirmed, high priority
        "0007 0100630100ff 02"            # class 7, 1.0.99.1.0.255, attribute 2 (buffer)
        "01"                              # access-selection present
        "01"                              # access-selector 1: range_descriptor
        "0204"                            # structure of 4
        + capture(8, "0000010000ff", 2)   # restricting_object: the clock's time, data index 0
        + "090c" + date_time("07ea 03 0a ff 0c 00 00 00 feb6 00")  # from 2026-03-10 12:00:00.00 IST (weekday
        #                                                            unspecified, deviation -330, status 0)
        + "090c" + date_time("07ea 03 0a ff 0c 1e 00 00 feb6 00")  # to 12:30:00.00 IST
        + "0100")                         # selected_values: empty array = all columns
    meter, driver = meter_with(WITH_SELECTIVE_ACCESS, [
        (GET_CAPTURES, get_response(CAPTURES)),
        (get_range, get_response("0102" + ROW_1 + ROW_2)),
        (GET_SCALER_CAPTURES, get_response(SCALER_CAPTURES)),
        (GET_SCALER_BUFFER, get_response(SCALER_ENTRY)),
    ])
    since = datetime(2026, 3, 10, 6, 30, tzinfo=UTC)  # 12:00 IST, given in UTC
    profile = driver.read_profile("block_load", since, since + timedelta(minutes=30))
    meter.assert_complete()
    assert profile.columns == (ProfileColumn(8, "0.0.1.0.0.255", 2),
                               ProfileColumn(3, "1.0.12.27.0.255", 2, 0, -2, "V"),
                               ProfileColumn(3, "1.0.1.29.0.255", 2, 0, 0, "Wh"))
    assert [row.at for row in profile.rows] == [datetime(2026, 3, 10, 12, 15, tzinfo=IST),
                                                datetime(2026, 3, 10, 12, 30, tzinfo=IST)]
    assert profile.rows[0].at.utcoffset() == timedelta(minutes=330)
    assert profile.values("1.0.12.27.0.255") == [240.0, 241.0]
    assert profile.values("1.0.1.29.0.255") == [100.0, 200.0]


def test_an_entry_span_is_an_entry_descriptor(meter_with):
    get_entries = H(
        "c0 01 c1 0007 0100630100ff 02"
        "01"                              # access-selection present
        "02"                              # access-selector 2: entry_descriptor
        "0204"                            # structure of 4
        "06 00000002"                     # from_entry double-long-unsigned 2
        "06 00000000"                     # to_entry 0: up to the last entry
        "12 0001"                         # from_selected_value long-unsigned 1: the first column
        "12 0000")                        # to_selected_value 0: up to the last column
    meter, driver = meter_with(WITH_SELECTIVE_ACCESS, [
        (GET_CAPTURES, get_response(CAPTURES)),
        (get_entries, get_response("0101" + ROW_2)),
        (GET_SCALER_CAPTURES, get_response(SCALER_CAPTURES)),
        (GET_SCALER_BUFFER, get_response(SCALER_ENTRY)),
    ])
    profile = driver.read_profile_entries("1.0.99.1.0.255", first=2)
    meter.assert_complete()
    assert [row.values[1:] for row in profile.rows] == [(241.0, 200.0)]


def test_without_negotiated_selective_access_the_whole_buffer_is_read_and_the_range_picked_here(meter_with):
    get_all = H("c0 01 c1 0007 0100630100ff 02 00")  # no access-selection
    meter, driver = meter_with(WITHOUT_SELECTIVE_ACCESS, [
        (GET_CAPTURES, get_response(CAPTURES)),
        (get_all, get_response("0102" + ROW_1 + ROW_2)),
        (GET_SCALER_CAPTURES, get_response(SCALER_CAPTURES)),
        (GET_SCALER_BUFFER, get_response(SCALER_ENTRY)),
    ])
    since = datetime(2026, 3, 10, 12, 20, tzinfo=IST)
    profile = driver.read_profile("block_load", since=since)
    meter.assert_complete()
    assert [row.at for row in profile.rows] == [datetime(2026, 3, 10, 12, 30, tzinfo=IST)]


def block(number: int, last: bool, raw: bytes) -> bytes:
    """GET.response with-datablock: invoke 1, last-block, block-number, raw-data octet string."""
    return H("c4 02 c1") + bytes([last]) + number.to_bytes(4, "big") + H("00") + bytes([len(raw)]) + raw


def get_next(number: int) -> bytes:
    """GET.request next: acknowledges block `number`."""
    return H("c0 02 c1") + number.to_bytes(4, "big")


def test_a_reply_in_blocks_is_acknowledged_block_by_block_and_reassembled(meter_with):
    data = H("0102" + ROW_1 + ROW_2)
    chunks = [data[:10], data[10:30], data[30:]]
    get_all = H("c0 01 c1 0007 0100630100ff 02 00")
    meter, driver = meter_with(WITH_SELECTIVE_ACCESS, [
        (GET_CAPTURES, get_response(CAPTURES)),
        (get_all, block(1, False, chunks[0])),
        (get_next(1), block(2, False, chunks[1])),
        (get_next(2), block(3, True, chunks[2])),
        (GET_SCALER_CAPTURES, get_response(SCALER_CAPTURES)),
        (GET_SCALER_BUFFER, get_response(SCALER_ENTRY)),
    ])
    profile = driver.read_profile("block_load")
    meter.assert_complete()
    assert profile.values("1.0.1.29.0.255") == [100.0, 200.0]


def test_a_block_out_of_sequence_is_an_error(meter_with):
    get_all = H("c0 01 c1 0007 0100630100ff 02 00")
    meter, driver = meter_with(WITH_SELECTIVE_ACCESS, [
        (GET_CAPTURES, get_response(CAPTURES)),
        (get_all, block(2, False, H("0102"))),
    ])
    with pytest.raises(InstrumentError, match=r"GET 1\.0\.99\.1\.0\.255 class 7 attribute 2: block 2 came where "
                                              r"block 1 was due"):
        driver.read_profile("block_load")


def test_the_name_plate_reads_the_is_15959_objects(meter_with):
    def get_data(logical_name: str) -> bytes:
        return H("c0 01 c1 0001") + H(logical_name) + H("02 00")

    meter, driver = meter_with(WITH_SELECTIVE_ACCESS, [
        (get_data("0000600100ff"), get_response("0a07 53494d30303031")),     # serial "SIM0001"
        (get_data("0000600101ff"), get_response("0a08 526967205477696e")),   # manufacturer "Rig Twin"
        (get_data("0100000200ff"), get_response("0a05 312e302e30")),         # firmware "1.0.0"
        (get_data("00005e5b09ff"), get_response("11 05")),                   # meter type unsigned 5
        (get_data("00005e5b0bff"), get_response("0a02 4331")),               # category "C1"
        (get_data("00005e5b0cff"), H("c4 01 c1 01 04")),                     # current rating: object-undefined
        (get_data("0000600104ff"), get_response("12 07ea")),                 # year long-unsigned 2026
    ])
    assert driver.name_plate() == NamePlate("SIM0001", "Rig Twin", "1.0.0", 5, "C1", None, 2026)
    meter.assert_complete()


def test_billing_rows_are_selected_on_their_billing_date(meter_with):
    billing, billing_scaler = H("0100620100ff"), H("01005e5b06ff")  # 1.0.98.1.0.255, 1.0.94.91.6.255
    captures = "0102" + capture(1, "0000000102ff", 2) + capture(3, "0100010800ff", 2)  # billing date, energy
    get_range = H(
        "c0 01 c1 0007 0100620100ff 02 01 01 0204"
        + capture(1, "0000000102ff", 2)   # restricting_object: the billing date (Data 0.0.0.1.2.255, value)
        + "090c" + date_time("07ea 03 01 ff 00 00 00 00 feb6 00")  # from 2026-03-01 00:00 IST
        + "090c" + date_time("07ea 04 01 ff 00 00 00 00 feb6 00")  # to 2026-04-01 00:00 IST
        + "0100")
    meter, driver = meter_with(WITH_SELECTIVE_ACCESS, [
        (H("c0 01 c1 0007") + billing + H("03 00"), get_response(captures)),
        (get_range, get_response("0101 0202 090c 07ea0401ff 00000000 feb6 00 06 00003039")),  # 12345 Wh
        (H("c0 01 c1 0007") + billing_scaler + H("03 00"), get_response("0101" + capture(3, "0100010800ff", 3))),
        (H("c0 01 c1 0007") + billing_scaler + H("02 00"), get_response("0101 0201 0202 0f00 161e")),
    ])
    profile = driver.read_profile("billing", datetime(2026, 3, 1, tzinfo=IST), datetime(2026, 4, 1, tzinfo=IST))
    meter.assert_complete()
    assert [(row.at, row.values[1]) for row in profile.rows] == [(datetime(2026, 4, 1, tzinfo=IST), 12345.0)]
