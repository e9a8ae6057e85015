"""A fleet shard on plain asyncio: 1,000 meters each on its own loopback endpoint answering associations and GETs
(read by dlms-cosem, a client independent of the shard), HLS-GMAC with keys derived from the fleet secret, mains
off and on with their pushes, and a remote disconnect's push."""

import hashlib
import hmac
import socket
import time

import pytest
from dlms_cosem.exceptions import DlmsClientException
from fleet_shard import (
    CONTROL_STATE,
    ENERGY,
    REMOTE_DISCONNECT,
    SERIAL,
    endpoint,
    read_energy_wh,
    reader_client,
    utility_client,
)

from rig.fleet.model import read_fleet_secret, system_title_of

METERS = 1000


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "fleet-secret"
    path.write_text("00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef\n")
    return path


def expected_keys(secret: bytes, serial: str) -> tuple[bytes, bytes]:
    """The key diversification written out from its definition: HMAC-SHA256(secret, "<serial>:<purpose>")[:16]."""
    return tuple(hmac.new(secret, f"{serial}:{purpose}".encode(), hashlib.sha256).digest()[:16]
                 for purpose in ("encryption", "authentication"))


def test_a_thousand_meters_each_answer_on_their_own_endpoint(shard_on_thread, secret_file):
    served = shard_on_thread(shard_index=3, shard_count=5, meters_per_shard=METERS, secret_file=str(secret_file))
    meters = served.run(served.shard.meters())
    assert len(meters) == METERS
    assert meters[0]["serial"] == "F00300000" and meters[-1]["serial"] == "F00300999"
    hosts = {endpoint(meter)[0] for meter in meters}
    assert len(hosts) == METERS and all(host.startswith("127.") and host != "127.0.0.1" for host in hosts)
    assert endpoint(meters[0])[0] == "127.10.12.1"  # fleet meter 3000: 127.10.(3000 // 250).(3000 % 250 + 1)

    for meter in meters:  # every endpoint: a reader association (LLS) and an energy GET
        with reader_client(meter).session() as client:
            serial = client.get(SERIAL)
            energy = client.get(ENERGY)
        assert serial == b"\x0a\x09" + meter["serial"].encode()
        assert energy[0] == 0x06 and 200_000 <= int.from_bytes(energy[1:], "big") <= 20_100_000

    secret = read_fleet_secret(secret_file)
    for meter in meters[::10]:  # 100 meters: utility settings over HLS-GMAC with the keys derived independently
        with utility_client(meter, expected_keys(secret, meter["serial"])).session() as client:
            assert client.dlms_connection.meter_system_title == system_title_of(meter["serial"])
            energy = client.get(ENERGY)
            assert client.get(CONTROL_STATE) == b"\x16\x01"
        assert energy[0] == 0x06

    metrics = served.run(served.shard.metrics())
    assert metrics["meters"] == METERS
    assert metrics["associations_accepted"] == METERS + 100
    assert metrics["gets"] == 2 * METERS + 200
    assert metrics["get_p99_ms"] < 50
    assert metrics["relay_connected"] == METERS


def test_hls_with_a_wrong_key_is_refused(shard_on_thread, secret_file):
    served = shard_on_thread(meters_per_shard=4, secret_file=str(secret_file))
    meters = served.run(served.shard.meters())
    secret = read_fleet_secret(secret_file)
    others = expected_keys(secret, meters[1]["serial"])  # the neighbour's keys
    with pytest.raises(DlmsClientException, match="REJECTED_PERMANENT"):
        with utility_client(meters[0], others).session():
            pass
    wrong_authentication = (expected_keys(secret, meters[0]["serial"])[0], bytes(16))
    with pytest.raises(DlmsClientException, match="REJECTED_PERMANENT"):
        with utility_client(meters[0], wrong_authentication).session():
            pass
    with utility_client(meters[0], expected_keys(secret, meters[0]["serial"]), counter=10).session() as client:
        assert client.get(ENERGY)[0] == 0x06
    metrics = served.run(served.shard.metrics())
    assert metrics["associations_rejected"] == 2 and metrics["associations_accepted"] == 1


def wait_for(predicate, what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def test_mains_off_stops_the_energy_and_pushes_power_down_and_up(shard_on_thread, secret_file):
    # fleet time at 3600x: a meter of 400 W mean uses about 400 Wh per wall-clock second
    served = shard_on_thread(with_listener=True, meters_per_shard=20, secret_file=str(secret_file),
                             time_scale=3600.0)
    shard, listener = served.shard, served.listener
    meters = served.run(shard.meters())
    first = read_energy_wh(meters[0])
    time.sleep(0.3)
    assert read_energy_wh(meters[0]) > first

    result = served.run(shard.mains_off(fraction=1.0, jitter_s=0.2))
    assert result["switched"] == 20
    downs = [item.notification for item in listener.received if item.notification.event == "power_down"]
    assert sorted(note.serial for note in downs) == sorted(meter["serial"] for meter in meters)
    assert {item.system_title for item in listener.received} == {system_title_of(m["serial"]) for m in meters}
    at_outage = {state["serial"]: state["energy_wh"] for state in served.run(shard.states())}
    assert all(note.energy_wh == at_outage[note.serial] and note.control_state == 1 for note in downs)
    with pytest.raises(OSError), socket.create_connection(endpoint(meters[0]), timeout=2):
        pass  # the meter's communication module is dead: nothing listens
    time.sleep(0.5)  # half a fleet hour without supply
    assert {state["serial"]: state["energy_wh"] for state in served.run(shard.states())} == at_outage

    assert served.run(shard.mains_on(jitter_s=0.2)) == {"switched": 20}
    wait_for(lambda: len(listener.received) == 40, "20 power_up pushes")
    ups = [item.notification for item in listener.received[20:]]
    assert {note.event for note in ups} == {"power_up"} and len({note.serial for note in ups}) == 20
    assert not listener.errors
    after = read_energy_wh(meters[0])
    assert at_outage[meters[0]["serial"]] <= after < at_outage[meters[0]["serial"]] + 400  # only since mains on
    metrics = served.run(shard.metrics())
    assert metrics["pushes_sent"] == 40 and metrics["push_failures"] == 0 and metrics["mains_on"] == 20


def test_remote_disconnect_opens_the_relay_and_pushes_it(shard_on_thread, secret_file):
    served = shard_on_thread(with_listener=True, meters_per_shard=3, secret_file=str(secret_file),
                             time_scale=3600.0)
    shard, listener = served.shard, served.listener
    meters = served.run(shard.meters())
    keys = expected_keys(read_fleet_secret(secret_file), meters[2]["serial"])
    with utility_client(meters[2], keys).session() as client:
        client.action(REMOTE_DISCONNECT, b"\x0f\x00")
        assert client.get(CONTROL_STATE) == b"\x16\x00"
    wait_for(lambda: listener.received, "a relay push")
    note = listener.received[0].notification
    assert (note.serial, note.event, note.control_state) == (meters[2]["serial"], "relay_disconnected", 0)
    with reader_client(meters[2]).session() as client:  # the reader may not switch the relay
        with pytest.raises(Exception, match="READ_WRITE_DENIED"):
            client.action(REMOTE_DISCONNECT, b"\x0f\x00")
    still = read_energy_wh(meters[2])
    time.sleep(0.3)
    assert read_energy_wh(meters[2]) == still
    assert served.run(shard.metrics())["relay_connected"] == 2
