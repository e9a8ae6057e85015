"""Push notifications of fleet meters (rig/fleet/push.py): the DataNotification layout octet by octet, its
general-glo-ciphering under a meter's derived keys, refusal of a wrong key, and dlms-cosem reading the same APDU."""

import asyncio
import struct

import pytest
from dlms_cosem.protocol.xdlms import DataNotification

from rig.fleet import push
from rig.fleet.model import keys_of_system_title, meter_keys, serial_of_system_title, system_title_of
from rig.sim.dlms.codec import encode_date_time

SECRET = bytes(range(32))
EVENT_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOTE = push.Notification(serial="F00200042", event_code=101, event_time_s=EVENT_S, control_state=1,
                         energy_wh=1_234_567, sequence=7, sent_time_s=EVENT_S + 2)


def test_data_notification_layout():
    apdu = push.encode_notification(NOTE)
    assert apdu[:5] == bytes.fromhex("0F80000007")
    assert apdu[5] == 12 and apdu[6:18] == encode_date_time(EVENT_S + 2, 330)
    body = apdu[18:]
    assert body[:2] == b"\x02\x05"
    assert body[2:4] == b"\x0a\x09" and body[4:13] == b"F00200042"
    assert body[13:15] == b"\x09\x0c" and body[15:27] == encode_date_time(EVENT_S, 330)
    assert body[27:] == bytes([0x12, 0, 101, 0x16, 1, 0x06]) + struct.pack(">I", 1_234_567)
    assert push.decode_notification(apdu) == NOTE
    assert NOTE.event == "power_down"


def test_dlms_cosem_parses_the_notification():
    parsed = DataNotification.from_bytes(push.encode_notification(NOTE))
    assert parsed.long_invoke_id_and_priority.long_invoke_id == 7
    assert parsed.long_invoke_id_and_priority.prioritized is True
    assert parsed.long_invoke_id_and_priority.confirmed is False
    assert parsed.body[:2] == b"\x02\x05"


def test_ciphered_frame_round_trip_with_derived_keys():
    title = system_title_of(NOTE.serial)
    assert title == b"RIG" + (200042).to_bytes(5, "big")
    assert serial_of_system_title(title) == "F00200042"
    keys = meter_keys(SECRET, NOTE.serial)
    frame = push.encode_frame(NOTE, title, keys, invocation_counter=1000)
    assert frame[:6] == bytes.fromhex("000100010066")
    assert struct.unpack(">H", frame[6:8])[0] == len(frame) - 8
    assert frame[8] == 0xDB and frame[9] == 8 and frame[10:18] == title
    assert frame[19] == 0x30 and frame[20:24] == (1000).to_bytes(4, "big")
    assert push.encode_notification(NOTE) not in frame  # ciphered, not only wrapped
    received = push.decode_frame(frame, lambda t: keys_of_system_title(SECRET, t))
    assert received.system_title == title and received.invocation_counter == 1000
    assert received.notification == NOTE


def test_wrong_key_and_unknown_title_are_refused():
    title = system_title_of(NOTE.serial)
    frame = push.encode_frame(NOTE, title, meter_keys(SECRET, NOTE.serial), invocation_counter=5)
    with pytest.raises(push.PushError, match="tag does not verify"):
        push.decode_frame(frame, lambda t: meter_keys(b"another secret!!", NOTE.serial))
    with pytest.raises(push.PushError, match="unknown system title"):
        push.decode_frame(frame, lambda t: None)
    tampered = frame[:-1] + bytes([frame[-1] ^ 1])
    with pytest.raises(push.PushError, match="tag does not verify"):
        push.decode_frame(tampered, lambda t: keys_of_system_title(SECRET, t))


def test_listener_receives_frames_over_tcp():
    async def scenario():
        listener = push.PushListener(lambda t: keys_of_system_title(SECRET, t))
        port = await listener.start()
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        title = system_title_of(NOTE.serial)
        writer.write(push.encode_frame(NOTE, title, meter_keys(SECRET, NOTE.serial), 1))
        writer.write(push.encode_frame(NOTE, title, meter_keys(SECRET, "F00200043"), 2))  # another meter's key
        await writer.drain()
        writer.close()
        for _ in range(100):
            if len(listener.received) + len(listener.errors) == 2:
                break
            await asyncio.sleep(0.01)
        await listener.stop()
        return listener

    listener = asyncio.run(scenario())
    assert [item.notification for item in listener.received] == [NOTE]
    assert len(listener.errors) == 1 and "tag does not verify" in str(listener.errors[0])
