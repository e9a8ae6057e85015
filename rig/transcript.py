"""Per-run record of every instrument exchange, with secrets redacted."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TextIO


class Transcript:
    """Appends one JSON line per exchange: monotonic time, role, sent, received."""

    def __init__(self, path: Path | None = None):
        self._file: TextIO | None = open(path, "a", buffering=1) if path else None
        self._secrets: list[str] = []
        self._lock = threading.Lock()

    def add_secret(self, value: str) -> None:
        if value and value not in self._secrets:
            self._secrets.append(value)
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def record(self, role: str, sent: str | None, received: str | None, t_mono: float | None = None,
               note: str | None = None) -> None:
        if self._file is None:
            return
        entry = {"t_mono": time.monotonic() if t_mono is None else t_mono, "role": role,
                 "sent": sent, "received": received}
        if note:
            entry["note"] = note
        line = json.dumps(entry)
        if self._secrets:
            line = self.redact(line)
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
