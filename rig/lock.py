"""Exclusive locks on a bench's instruments: one run at a time per instrument, the holder named to whoever else tries.

A run locks its bench file and every instrument address it drives, so a copy of the bench file (or another
bench sharing an instrument) cannot drive the same instruments at once. A twin the rig starts itself serves
private ports: only its bench file is locked. Locks are `flock`s, released by the kernel when the holder dies;
a lock file left behind by a killed run is taken over and said so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from rig.config import BenchFile, bench_roles
from rig.errors import BenchLocked, ConfigError


def default_lock_dir() -> Path:
    return Path(os.environ.get("RIG_LOCK_DIR", Path(tempfile.gettempdir()) / "rig-locks"))


def instrument_key(resource: str) -> str:
    """One spelling per instrument address: 'TCPIP0::LocalHost::5025::SOCKET' and 'tcpip::127.0.0.1::5025::socket'
    are the same instrument; a serial device is named by the device a symlink points at."""
    device = re.match(r"(?i)^(?:asrl)?(/[^:]+)(?:::instr)?$", resource.strip())
    if device:
        return "serial::" + os.path.realpath(device.group(1))
    key = resource.strip().lower().replace("localhost", "127.0.0.1").rstrip("/")
    return re.sub(r"^(tcpip|asrl|gpib|usb)0::", r"\1::", key)


def instruments_of(bench_file: BenchFile) -> dict[str, str]:
    """Instrument key -> 'role resource' for every role of a bench served outside the rig (nothing for a twin
    the rig starts on its own ports)."""
    twin = bench_file.config.twin
    if twin is not None and twin.autostart:
        return {}
    return {instrument_key(config.resource): f"{role} ({config.resource})"
            for role, config in bench_roles(bench_file.config).items()}


class BenchLock:
    """flocks on a bench file and on instrument addresses, all or none."""

    def __init__(self, bench_name: str, bench_path: Path | None, lock_dir: Path | None = None,
                 instruments: dict[str, str] | None = None):
        self.bench_name = bench_name
        self.bench_path = bench_path
        self.lock_dir = lock_dir or default_lock_dir()
        self.keys: dict[str, str] = {}  # key -> what it locks, in words
        if bench_path is not None:
            self.keys[f"bench::{Path(bench_path).resolve()}"] = f"bench {bench_name!r}"
        self.keys.update(instruments or {})
        self.taken_over: list[str] = []  # stale locks of killed runs, said in words
        self._held: list[tuple[Path, IO[str]]] = []

    @classmethod
    def for_bench(cls, bench_file: BenchFile, with_bench_file: bool = True) -> BenchLock:
        return cls(bench_file.name, bench_file.path if with_bench_file else None, bench_file.config.lock_dir,
                   instruments_of(bench_file))

    @property
    def path(self) -> Path:
        """The bench file's lock (or the first instrument's)."""
        return self._path(next(iter(self.keys)))

    def _path(self, key: str) -> Path:
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        prefix = self.bench_name if key.startswith("bench::") else "instrument"
        return self.lock_dir / f"{prefix}-{digest}.lock"

    def acquire(self) -> None:
        """Take every lock, or none: raise BenchLocked naming the holder of the first one held elsewhere."""
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            for key in sorted(self.keys, key=lambda k: (not k.startswith("bench::"), k)):
                self._held.append(self._take(key))
        except BaseException:
            self.release()
            raise

    def _unusable(self, exc: OSError) -> ConfigError:
        return ConfigError(f"lock folder {self.lock_dir} cannot be used: {exc.strerror or exc} "
                           f"(set lock_dir in the bench file or RIG_LOCK_DIR)")

    def _take(self, key: str) -> tuple[Path, IO[str]]:
        path = self._path(key)
        while True:
            try:
                handle = open(path, "a+")
            except OSError as exc:
                raise self._unusable(exc) from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(handle)
                handle.close()
                raise BenchLocked(self._held_message(key, path, holder)) from None
            if _still_linked(handle, path):  # else its holder removed it between our open and our flock
                break
            handle.close()
        stale = _holder(handle)
        if stale:
            self.taken_over.append(f"stale lock of pid {stale.get('pid', '?')} on host {stale.get('host', '?')} "
                                   f"since {stale.get('since', '?')} taken over ({self.keys[key]}, {path})")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": datetime.now(UTC).isoformat(timespec="seconds"),
                                 "bench": self.bench_name, "file": str(self.bench_path or ""),
                                 "holds": self.keys[key]}))
        handle.flush()
        return path, handle

    def _held_message(self, key: str, path: Path, holder: dict) -> str:
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
               f"since {holder.get('since', '?')} (lock {path})")
        if key.startswith("bench::"):
            return f"bench {self.bench_name!r} is in use by {who}"
        other = f"bench {holder.get('bench', '?')!r} ({holder.get('file') or '?'})"
        return f"instrument {self.keys[key]} of bench {self.bench_name!r} is in use by {other}, {who}"

    def release(self) -> None:
        """Remove and unlock every lock held; harmless when none is."""
        while self._held:
            path, handle = self._held.pop()
            with contextlib.suppress(OSError):
                if _still_linked(handle, path):
                    path.unlink()
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                handle.close()


def _holder(handle: IO[str]) -> dict:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return {"pid": "?"}
    return holder if isinstance(holder, dict) else {"pid": "?"}


def _still_linked(handle: IO[str], path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except OSError:
        return False
