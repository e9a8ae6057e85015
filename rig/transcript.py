"""Per-run record of every instrument exchange, with secrets redacted."""

from __future__ import annotations

import threading
import time
from json.encoder import encode_basestring_ascii as json_string
from pathlib import Path

FLUSH_INTERVAL_S = 0.2


class Transcript:
    """Appends one JSON line per exchange: monotonic time, role, sent, received (and an optional note).

    Lines are buffered and flushed at least every FLUSH_INTERVAL_S, on every note and on close, so the
    exchange path stays cheap and a killed run loses at most the last fraction of a second. A write that fails
    (a full disk) ends the transcript and is kept in `write_error`; it never reaches the caller, so recording an
    exchange can never stop one, least of all a safe state.
    """

    def __init__(self, path: Path | None = None):
        self._file = open(path, "a") if path else None
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.write_error: str | None = None

    def add_secret(self, value: str) -> None:
        if value and value not in self._secrets:
            self._secrets.append(value)
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _field(self, text: str | None) -> str:
        if text is None:
            return "null"
        return json_string(self.redact(text) if self._secrets else text)

    def record(self, role: str, sent: str | None, received: str | None, t_mono: float | None = None,
               note: str | None = None) -> None:
        if self._file is None:
            return
        now = time.monotonic()
        line = (f'{{"t_mono": {now if t_mono is None else t_mono!r}, "role": {self._field(role)}, '
                f'"sent": {self._field(sent)}, "received": {self._field(received)}')
        line += f', "note": {self._field(note)}}}\n' if note else "}\n"
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line)
                if note or now - self._last_flush >= FLUSH_INTERVAL_S:
                    self._file.flush()
                    self._last_flush = now
            except OSError as exc:
                self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        """Stop writing after a failed write; the lines flushed before it stay."""
        self.write_error = f"transcript not written from t_mono {time.monotonic():.3f} on: {exc.strerror or exc}"
        self._close_file()

    def _close_file(self) -> None:
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as exc:
            self.write_error = self.write_error or f"transcript not completed: {exc.strerror or exc}"

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.flush()
                except OSError as exc:
                    self._give_up(exc)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._close_file()
