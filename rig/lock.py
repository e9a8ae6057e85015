"""Exclusive lock on a bench: one run at a time; the holder is named to whoever else tries."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rig.errors import BenchLocked


def default_lock_dir() -> Path:
    return Path(os.environ.get("RIG_LOCK_DIR", Path(tempfile.gettempdir()) / "rig-locks"))


class BenchLock:
    """flock on a file per bench; the kernel releases it when the holder dies, so no stale locks remain."""

    def __init__(self, bench_name: str, bench_path: Path, lock_dir: Path | None = None):
        key = hashlib.sha1(str(Path(bench_path).resolve()).encode()).hexdigest()[:12]
        self.path = (lock_dir or default_lock_dir()) / f"{bench_name}-{key}.lock"
        self.bench_name = bench_name
        self._handle = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            handle.close()
            raise BenchLocked(
                f"bench {self.bench_name!r} is in use by pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')} since {holder.get('since', '?')} (lock {self.path})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": datetime.now(UTC).isoformat(timespec="seconds")}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
