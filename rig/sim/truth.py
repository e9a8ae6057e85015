"""The twin's ground truth: what the model did and when, one JSON line per event."""

from __future__ import annotations

import json
import time
from pathlib import Path


class TruthLog:
    def __init__(self, path: Path | None):
        self.path = path
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1)

    def event(self, name: str, **fields) -> None:
        if self._file is None:
            return
        entry = {"t_mono": time.monotonic(), "t_wall": time.time(), "event": name, **fields}
        self._file.write(json.dumps(entry) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_truth(path: Path) -> list[dict]:
    """All events of a truth file (for tests and benchmarks)."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
