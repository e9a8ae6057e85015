"""Tamper on the twin: the cover switch simulator (role cover@N) opens the meter's cover; the meter logs the
cover-open event in its non-rollover event log (profile generic 0.0.99.98.5.255), which Gurux's DLMS client
(GPLv2, a test peer only) reads over the TCP wrapper. The tamper defects: never logged, logged late."""

import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from plan_runner import write_bench
from twin_thread import TwinOnThread, starter_fixture

from rig.config import load_bench
from rig.sim.defects import Defects
from rig.sim.truth import read_truth

PASSWORD = "12345678"
COVER_OPEN = 251


class TamperTwin(TwinOnThread):
    """Position 1's DLMS meter and cover switch (driver cover_switch) served by the twin; a raw socket on the
    switch's line protocol."""

    def __init__(self, folder, defects=None):
        folder.mkdir(parents=True, exist_ok=True)

        def edit(data):
            data["twin"]["autostart"] = False
            data["positions"][0]["interface"] = {"driver": "dlms_meter", "resource": "tcp://127.0.0.1:0"}
            data["positions"][0]["cover"] = {"driver": "cover_switch", "resource": "tcp://127.0.0.1:0"}
            data["twin"]["instruments"]["meter@1"] = {"lls_password": PASSWORD}

        self.truth_path = folder / "truth.jsonl"
        self.start_twin(load_bench(write_bench(folder, only_roles=("source",), edit=edit)), self.truth_path,
                        Defects.model_validate({"positions": {1: defects or {}}}))
        self.meter = self.twin.instruments["meter@1"]
        host, port = self.resources["cover@1"].removeprefix("tcp://").split(":")
        self.switch = socket.create_connection((host, int(port)), timeout=2)
        self.replies = self.switch.makefile("r", encoding="ascii", newline="\n")

    def send(self, line: str) -> str:
        self.switch.sendall(line.encode("ascii") + b"\n")
        return self.replies.readline().rstrip("\n")

    def truth(self, name: str) -> list[dict]:
        return [event for event in read_truth(self.truth_path) if event["event"] == name]

    def close(self):
        self.replies.close()
        self.switch.close()
        self.stop_twin()


start_twin = starter_fixture(TamperTwin)


def read_event_log(port: int) -> tuple[list, int, int, list]:
    """(capture objects as (class, logical name, attribute), entries in use, profile entries, buffer rows) of
    the event log, as Gurux's client reads and decodes them over the TCP wrapper (reader, LLS)."""
    gurux = pytest.importorskip("gurux_dlms")
    from gurux_dlms import GXByteBuffer, GXReplyData
    from gurux_dlms.enums import Authentication, InterfaceType
    from gurux_dlms.objects import GXDLMSProfileGeneric

    client = gurux.GXDLMSClient(True, 32, 1, Authentication.LOW, PASSWORD, InterfaceType.WRAPPER)
    log = GXDLMSProfileGeneric("0.0.99.98.5.255")
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        def exchange(requests):
            reply = GXReplyData()
            for request in requests:
                reply = GXReplyData()
                sock.sendall(bytes(request))
                data = b""
                while len(data) < 8 or len(data) < 8 + int.from_bytes(data[6:8], "big"):
                    chunk = sock.recv(4096)
                    assert chunk, "the meter closed the connection"
                    data += chunk
                client.getData(GXByteBuffer(data), reply)
            assert reply.error == 0, f"the meter answered error {reply.error}"
            return reply

        client.parseAareResponse(exchange(client.aarqRequest()).data)
        for attribute in (3, 7, 8, 2):
            client.updateValue(log, attribute, exchange(client.read(log, attribute)).value)
        exchange(client.releaseRequest())
    captured = [(obj.objectType.value, obj.logicalName, definition.attributeIndex)
                for obj, definition in log.captureObjects]
    return captured, log.entriesInUse, log.profileEntries, log.buffer


def as_utc(value) -> datetime:
    """A Gurux GXDateTime (or datetime) of a buffer row as an aware UTC datetime."""
    moment = getattr(value, "value", value)
    return moment.astimezone(UTC)


def test_the_cover_switch_protocol(start_twin):
    twin = start_twin()
    assert twin.send("*IDN?") == "Rig Twin,COVER-SWITCH,SIM0001,1.0"
    assert twin.send("STATE?") == "CLOSED"
    assert twin.send("open") == "OK"
    assert twin.send("STATE?") == "OPEN"
    assert twin.send("OPEN") == "OK"  # already open: no second event
    assert twin.send("CLOSE\r") == "OK"
    assert twin.send("STATE?") == "CLOSED"
    assert twin.send("LIFT") == "ERR unknown command 'LIFT'"
    assert [(e["position"], e["open"], e["by"]) for e in twin.truth("cover")] == [(1, True, "cover@1"),
                                                                                  (1, False, "cover@1")]


def test_a_cover_opening_is_logged_with_the_meters_clock(start_twin):
    twin = start_twin()
    captured, in_use, entries, rows = read_event_log(twin.meter.port)
    assert captured == [(8, "0.0.1.0.0.255", 2), (1, "0.0.96.11.5.255", 2)]
    assert (in_use, entries, rows) == (0, 10, [])
    twin.meter.clock_offset_s = 86400.0  # the meter's clock runs a day ahead
    opened = datetime.now(UTC)
    assert twin.send("OPEN") == "OK"
    twin.send("CLOSE")
    twin.send("OPEN")  # a second opening is a second event
    _, in_use, _, rows = read_event_log(twin.meter.port)
    assert in_use == 2 and [row[1] for row in rows] == [COVER_OPEN, COVER_OPEN]
    assert abs(as_utc(rows[0][0]) - (opened + timedelta(days=1))) < timedelta(seconds=2)
    logged = twin.truth("meter.event_log")
    assert [(e["position"], e["code"], e["entries_in_use"], e["by"]) for e in logged] == \
           [(1, COVER_OPEN, 1, "cover@1"), (1, COVER_OPEN, 2, "cover@1")]


def test_defect_tamper_not_logged(start_twin):
    twin = start_twin({"tamper_not_logged": True})
    twin.send("OPEN")
    time.sleep(0.2)
    _, in_use, _, rows = read_event_log(twin.meter.port)
    assert (in_use, rows) == (0, [])
    (skipped,) = twin.truth("meter.event_not_logged")
    assert (skipped["code"], skipped["defect"]) == (COVER_OPEN, "tamper_not_logged")
    assert twin.truth("meter.event_log") == []


def test_defect_tamper_logged_late(start_twin):
    twin = start_twin({"tamper_logged_late_s": 1.0})
    opened = datetime.now(UTC)
    twin.send("OPEN")
    _, in_use, _, rows = read_event_log(twin.meter.port)
    assert (in_use, rows) == (0, [])  # not yet
    time.sleep(1.2)
    _, in_use, _, rows = read_event_log(twin.meter.port)
    assert in_use == 1 and rows[0][1] == COVER_OPEN
    late = as_utc(rows[0][0]) - opened
    assert timedelta(seconds=0.9) < late < timedelta(seconds=1.5)  # stamped when it appeared
    (announced,) = twin.truth("meter.event_late")
    assert (announced["delay_s"], announced["defect"]) == (1.0, "tamper_logged_late_s")
