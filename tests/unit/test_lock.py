"""Bench lock: one run at a time, the holder named, no stale lock after the holder dies."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rig.errors import BenchLocked, ConfigError
from rig.lock import BenchLock, instrument_key

BENCH_PATH = Path("/benches/sim.yaml")

CHILD = """
import sys, time
from pathlib import Path
from rig.lock import BenchLock, instrument_key
lock = BenchLock("sim", Path(sys.argv[1]), lock_dir=Path(sys.argv[2]))
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def lock(tmp_path):
    lock = BenchLock("sim", BENCH_PATH, lock_dir=tmp_path)
    lock.acquire()
    yield lock
    lock.release()


def test_second_lock_names_holder_pid_host_and_since(lock, tmp_path):
    with pytest.raises(BenchLocked) as info:
        BenchLock("sim", BENCH_PATH, lock_dir=tmp_path).acquire()
    message = str(info.value)
    assert f"bench 'sim' is in use by pid {os.getpid()} on host {socket.gethostname()} since " in message
    assert str(lock.path) in message


def test_lock_file_lives_in_lock_dir(lock, tmp_path):
    assert lock.path.parent == tmp_path
    assert lock.path.name.startswith("sim-") and lock.path.suffix == ".lock"


def test_other_bench_is_not_blocked(lock, tmp_path):
    other = BenchLock("sim", Path("/benches/other.yaml"), lock_dir=tmp_path)
    other.acquire()
    other.release()


def test_release_lets_a_new_lock_succeed(tmp_path):
    first = BenchLock("sim", BENCH_PATH, lock_dir=tmp_path)
    first.acquire()
    first.release()
    second = BenchLock("sim", BENCH_PATH, lock_dir=tmp_path)
    second.acquire()
    second.release()


def test_release_twice_is_harmless(tmp_path):
    lock = BenchLock("sim", BENCH_PATH, lock_dir=tmp_path)
    lock.acquire()
    lock.release()
    lock.release()


def test_lock_held_by_killed_child_is_not_stale(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(BENCH_PATH), str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(BenchLocked, match=rf"in use by pid {child.pid} on host "):
            BenchLock("sim", BENCH_PATH, lock_dir=tmp_path).acquire()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        after = BenchLock("sim", BENCH_PATH, lock_dir=tmp_path)
        after.acquire()
        after.release()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        child.stdout.close()


def test_a_killed_holders_lock_is_taken_over_and_said(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(BENCH_PATH), str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    with child:
        assert child.stdout.readline().strip() == "locked"
        child.kill()
        child.wait(timeout=10)
    after = BenchLock("sim", BENCH_PATH, lock_dir=tmp_path)
    after.acquire()
    after.release()
    assert len(after.taken_over) == 1
    assert after.taken_over[0].startswith(f"stale lock of pid {child.pid} on host {socket.gethostname()} since ")
    assert f"taken over (bench 'sim', {after.path})" in after.taken_over[0]


def test_released_locks_leave_no_files_and_a_clean_release_is_not_stale(tmp_path):
    for _ in range(3):
        lock = BenchLock("sim", BENCH_PATH, lock_dir=tmp_path, instruments={"tcpip::127.0.0.1::5025::socket": "source"})
        lock.acquire()
        assert len(list(tmp_path.iterdir())) == 2
        lock.release()
        assert lock.taken_over == []
    assert list(tmp_path.iterdir()) == []


def test_an_instrument_held_by_another_bench_is_refused_naming_it_and_nothing_stays_held(tmp_path):
    source = {instrument_key("TCPIP0::localhost::5025::SOCKET"): "source (TCPIP0::localhost::5025::SOCKET)"}
    holder = BenchLock("lab-a", Path("/benches/a.yaml"), lock_dir=tmp_path, instruments=source)
    holder.acquire()
    try:
        other = BenchLock("lab-b", Path("/benches/b.yaml"), lock_dir=tmp_path,
                          instruments={instrument_key("TCPIP::127.0.0.1::5025::SOCKET"): "source (TCPIP::...)"})
        with pytest.raises(BenchLocked, match=r"instrument source \(TCPIP::\.\.\.\) of bench 'lab-b' is in use by "
                                              rf"bench 'lab-a' \(/benches/a.yaml\), pid {os.getpid()} on host "):
            other.acquire()
        assert len(list(tmp_path.iterdir())) == 2  # lab-b's own bench lock was given back
    finally:
        holder.release()


def test_instrument_keys_spell_one_address_one_way(tmp_path):
    assert instrument_key("TCPIP0::LocalHost::5025::SOCKET") == instrument_key("tcpip::127.0.0.1::5025::socket")
    assert instrument_key("http://127.0.0.1:8080/") == instrument_key("HTTP://localhost:8080")
    device = tmp_path / "ttyUSB0"
    device.write_text("")
    (tmp_path / "modem").symlink_to(device)
    assert instrument_key(str(tmp_path / "modem")) == instrument_key(f"ASRL{device}::INSTR")


def test_an_unusable_lock_folder_is_one_clear_error(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(ConfigError, match=r"lock folder .*not-a-folder/locks cannot be used: Not a directory "
                                          r"\(set lock_dir in the bench file or RIG_LOCK_DIR\)"):
        BenchLock("sim", BENCH_PATH, lock_dir=tmp_path / "not-a-folder" / "locks").acquire()
