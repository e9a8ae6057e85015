"""Cover drivers: the cover switch against the twin's, judged by the twin's truth; the operator prompt on a pty."""

import os
import socket
import threading
import time
import tty

import pytest
from twin_thread import OpenBenchOnTwin

from drivers.cover import OperatorPrompt
from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout
from rig.transcript import Transcript


@pytest.fixture
def twin(tmp_path):
    twin = OpenBenchOnTwin(tmp_path, edit=lambda data: data["roles"].pop("hes"))
    yield twin
    twin.close()


def test_the_cover_switch_opens_and_closes_the_meter_cover_and_its_safe_state_closes_it(twin):
    cover = twin.bench["cover@2"]
    assert twin.bench.identities["cover@2"].serial == "SIM0002"
    cover.open_cover()
    assert cover.cover_open() is True
    opened = twin.truth("cover")[-1]
    assert (opened["position"], opened["open"], opened["by"]) == (2, True, "cover@2")
    assert cover.make_safe() == ["cover closed (confirmed by STATE?)"]
    assert twin.truth("cover")[-1]["open"] is False
    with pytest.raises(InstrumentError, match=r"cover@2 \(tcp://127\.0\.0\.1:\d+\): sent 'JAM', expected OK, "
                                              r"got \"ERR unknown command 'JAM'\""):
        cover._switch("JAM")


def test_a_command_fragment_left_by_a_closing_client_is_not_executed(twin):
    host, port = twin.resources["cover@2"].removeprefix("tcp://").split(":")
    with socket.create_connection((host, int(port)), timeout=3) as dying:
        dying.sendall(b"OPEN")  # no LF: the client died while writing
        dying.shutdown(socket.SHUT_WR)
        assert dying.recv(64) == b""  # the twin read to the end and closed its side
    assert twin.bench["cover@2"].cover_open() is False
    assert twin.truth("cover") == []


@pytest.fixture
def terminal(tmp_path):
    """An operator prompt on a pty: (driver, write) where write(text) types at the operator's end."""
    operator_end, rig_end = os.openpty()
    tty.setraw(operator_end)
    config = RoleConfig(driver="operator_prompt", resource=os.ttyname(rig_end), settings={"answer_timeout_s": 1})
    driver = OperatorPrompt("cover@1", config, SetpointLimits(), Transcript(tmp_path / "transcript.jsonl"))
    driver.open()
    yield driver, lambda text: os.write(operator_end, text.encode()), operator_end
    driver.close()
    os.close(operator_end)
    os.close(rig_end)


def _answer_when_asked(operator_end: int, answer: str) -> threading.Thread:
    def operator() -> None:
        asked = b""
        while b"press Enter" not in asked:
            asked += os.read(operator_end, 1024)
        os.write(operator_end, answer.encode())

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    return thread


def test_the_operator_confirms_with_enter(terminal):
    driver, _write, operator_end = terminal
    operator = _answer_when_asked(operator_end, "\n")
    driver.open_cover()
    operator.join(5)
    assert driver.cover_open() is True
    assert driver.make_safe() == ["operator: nothing to switch"]


def test_an_operator_who_cannot_is_an_error_and_one_who_does_not_answer_times_out(terminal):
    driver, _write, operator_end = terminal
    _answer_when_asked(operator_end, "n\n").join(0)
    with pytest.raises(InstrumentError, match=r"cover@1 \(/dev/pts/\d+\): the operator could not open the meter's "
                                              r"terminal cover"):
        driver.open_cover()
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=r"the operator did not confirm 'close the meter's terminal cover' "
                                                r"within 1 s"):
        driver.close_cover()
    assert 1.0 <= time.monotonic() - start < 2.0


def test_an_operator_prompt_needs_a_terminal_device():
    with pytest.raises(ConfigError, match=r"roles.cover@1.resource: an operator prompt's resource is the terminal"):
        OperatorPrompt("cover@1", RoleConfig(driver="operator_prompt", resource="tcp://127.0.0.1:1"),
                       SetpointLimits(), Transcript(None))
