"""Bench lock: one run at a time, the holder named, no stale lock after the holder dies."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rig.errors import BenchLocked
from rig.lock import BenchLock

BENCH_PATH = Path("/benches/sim.yaml")

CHILD = """
import sys, time
from pathlib import Path
from rig.lock import BenchLock
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
