"""Twin defect positions.N.interface_dead: that meter's data port accepts connections and never answers, over the
TCP wrapper and over HDLC on its pty, while the other positions' meters answer. The client is dlms-cosem's."""

import os
import select
import time

import pytest
from dlms_cosem import cosem, enumerations
from dlms_cosem.clients.dlms_client import DlmsClient
from dlms_cosem.exceptions import CommunicationError
from dlms_cosem.hdlc import address, frames
from plan_runner import write_bench
from twin_thread import TwinOnThread

from rig.config import load_bench
from rig.sim.defects import Defects
from rig.sim.truth import read_truth

SERIAL = cosem.CosemAttribute(enumerations.CosemInterface.DATA, cosem.Obis(0, 0, 96, 1, 0, 255), 2)
SNRM = frames.SetNormalResponseModeFrame(destination_address=address.HdlcAddress(1, None, "server"),
                                         source_address=address.HdlcAddress(16, None, "client")).to_bytes()


def three_meters(data):
    data["twin"]["autostart"] = False
    for position in data["positions"]:
        n = position["position"]
        position["interface"] = {"driver": "dlms_meter", "resource": "tcp://127.0.0.1:0"}
        data["twin"]["instruments"][f"meter@{n}"] = {"hdlc": True}


@pytest.fixture
def twin(tmp_path):
    twin = TwinOnThread()
    twin.truth_path = tmp_path / "truth.jsonl"
    bench = load_bench(write_bench(tmp_path, only_roles=("source",), edit=three_meters))
    twin.start_twin(bench, twin.truth_path, Defects.model_validate({"positions": {2: {"interface_dead": True}}}))
    yield twin
    twin.stop_twin()


def read_serial(port: int, timeout_s: float) -> bytes:
    """The meter serial number as the public client reads it over the TCP wrapper."""
    client = DlmsClient.with_tcp_transport("127.0.0.1", port, client_logical_address=16, server_logical_address=1,
                                           timeout=timeout_s)
    with client.session():
        return client.get(SERIAL)


def hdlc_answer(pty_path: str, wait_s: float) -> bytes:
    """What the meter's HDLC port answers to an SNRM within wait_s."""
    fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, SNRM)
        answer, deadline = b"", time.monotonic() + wait_s
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if readable:
                answer += os.read(fd, 256)
        return answer
    finally:
        os.close(fd)


def test_a_meter_with_a_dead_interface_times_out_while_the_others_answer(twin):
    meters = twin.twin.instruments
    for position in (1, 3):
        assert read_serial(meters[f"meter@{position}"].port, timeout_s=2) == b"\x0a\x07" + f"SIM000{position}".encode()
    start = time.monotonic()
    with pytest.raises(CommunicationError, match="Could not receive data"):  # connected, then no answer
        read_serial(meters["meter@2"].port, timeout_s=0.5)
    assert 0.5 <= time.monotonic() - start < 1.5
    assert frames.UnNumberedAcknowledgmentFrame.from_bytes(hdlc_answer(meters["meter@1"].pty_path, 0.5))
    assert hdlc_answer(meters["meter@2"].pty_path, 0.5) == b""
    associations = [e for e in read_truth(twin.truth_path) if e["event"] == "dlms.association"]
    assert sorted(e["role"] for e in associations) == ["meter@1", "meter@3"]  # meter@2 never saw the AARQ
