"""Start and stop the twin as its own process, as the pytest plugin and `rig check` do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rig.errors import ConfigError

READY_TIMEOUT_S = 20.0


class TwinProcess:
    """A `rig sim` child in its own session (a Ctrl-C at the terminal does not reach it, as it would not
    reach real instruments); it exits by itself when its parent is gone."""

    def __init__(self, bench_path: Path, truth_path: Path, extra_args: list[str] | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="rig-twin-")
        ready = Path(self._tmp.name) / "ready.json"
        self.log_path = truth_path.with_name("twin.log")
        args = [sys.executable, "-m", "rig.cli", "sim", "--bench", str(bench_path), "--truth", str(truth_path),
                "--ephemeral-ports", "--ready-file", str(ready), "--parent-pid", str(os.getpid()),
                *(extra_args or [])]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if self.process.poll() is not None:
                self._log.close()
                self._tmp.cleanup()
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise ConfigError(f"twin for {bench_path} exited with code {self.process.returncode}: {tail[0]}")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"twin for {bench_path} not ready within {READY_TIMEOUT_S:g} s "
                                  f"(log: {self.log_path})")
            time.sleep(0.02)
        self.resources: dict[str, str] = json.loads(ready.read_text())["resources"]

    def stop(self, timeout_s: float = 5.0) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._tmp.cleanup()
        return self.process.returncode
