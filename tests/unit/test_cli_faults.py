"""`rig sim` and `rig history` on what they cannot use: one line naming it, a non-zero exit, no traceback."""

import socket
import subprocess
import sys

import pytest
from plan_runner import ROOT, free_port, write_bench

from rig.cli import main


def rig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rig.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def busy_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_port()))
        holder.listen()
        yield holder.getsockname()[1]


def test_sim_on_a_busy_port_names_the_role_and_address(tmp_path, busy_port):
    bench = write_bench(tmp_path, autostart=False, port=busy_port)
    done = rig("sim", "--bench", str(bench), "--truth", str(tmp_path / "truth.jsonl"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f"rig: error: twin: source (TCPIP0::127.0.0.1::{busy_port}::SOCKET): cannot serve on "
                           f"127.0.0.1:{busy_port}: Address already in use (is another twin serving this bench? "
                           f"--ephemeral-ports picks free ports)\n")


def test_sim_refuses_defects_for_a_position_the_bench_lacks(tmp_path):
    defects = tmp_path / "defects.yaml"
    defects.write_text("positions:\n  9: {relay_stuck: open}\n")
    done = rig("sim", "--bench", str(write_bench(tmp_path, autostart=False)), "--ephemeral-ports",
               "--truth", str(tmp_path / "truth.jsonl"), "--defects", str(defects))
    assert done.returncode == 2
    assert done.stderr == (f"rig: error: {defects}:2: positions.9: bench 'sim' (bench.yaml) has no position 9 "
                           f"(positions: 1, 2, 3)\n")


@pytest.mark.parametrize("content", [b"not a database\n" * 100, b""], ids=["junk", "empty"])
def test_history_of_a_file_that_is_not_a_database_names_it(tmp_path, capsys, content):
    database = tmp_path / "history.sqlite"
    database.write_bytes(content)
    if not content:  # an empty file is a new database to SQLite: the history is empty
        assert main(["history", "--db", str(database)]) == 0
        return
    assert main(["history", "--db", str(database)]) == 2
    assert main(["history", "--db", str(database), "--meter", "SIM0001"]) == 2
    err = capsys.readouterr().err
    assert err == f"rig: error: {database}: not a usable history database (file is not a database)\n" * 2


def test_history_of_a_folder_names_it(tmp_path, capsys):
    assert main(["history", "--db", str(tmp_path), "--plan", "accuracy"]) == 2
    assert capsys.readouterr().err == (f"rig: error: {tmp_path}: not a usable history database (unable to open "
                                       f"database file)\n")
