"""The lab's history database on a PostgreSQL server, fed from the run folders.

A run is written to disk first (run.json, measurements.jsonl) and uploaded after: the upload is marked pending in
the run folder (history-pending.json) before it is tried, a few times, and the mark is removed once the run's
transaction is committed. A server that is down loses nothing: the next run that names the same database, or
`rig history upload`, uploads every pending run beside its own, oldest first. Uploading a run again replaces its
rows (runs.uid), so a run lands exactly once whatever fails in between.

Passwords come from a bench's `history.secrets.password` ({env} or {file}) or from libpq's own sources
(PGPASSWORD, ~/.pgpass); never from the address, and never into a message, a marker or a record.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from rig.certificate import read_run
from rig.config import BenchFile, HistoryConfig, database_url_problem
from rig.errors import ConfigError, RigError
from rig.history import POSTGRESQL, SCHEMA_VERSION, Store, run_uid, write_run

PENDING_FILE = "history-pending.json"
HISTORY_ENV = "RIG_HISTORY"  # `rig run --history URL` hands its database to the run through this variable
SCHEMA_LOCK = 0x7269_6768  # advisory lock taken while the schema is made, so two first runs do not race
RETRY_PAUSE_S = 1.0


class HistoryUnavailable(RigError):
    """The history database could not be reached or written; the message names it without its password."""


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL history database: its address (no password), the password kept apart, retry settings."""

    url: str
    password: str | None = field(default=None, repr=False)
    connect_timeout_s: int = 5
    attempts: int = 3

    @property
    def label(self) -> str:
        """The address as shown to people: scheme, user, host, port and database, no query, no secret."""
        parts = urlsplit(self.url)
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{user}{parts.hostname}{port}{parts.path}"

    def _said(self, exc: BaseException) -> str:
        """An error of the driver in one line, with the password (should the driver ever echo it) blanked."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        return text.replace(self.password, "***") if self.password else text

    @contextmanager
    def open_store(self) -> Iterator[Store]:
        """The database open (its schema made if new); HistoryUnavailable naming it when that fails."""
        import psycopg

        options = {"connect_timeout": max(2, int(self.connect_timeout_s)), "autocommit": True,
                   "application_name": "meter-hil-rig"}
        if self.password is not None:
            options["password"] = self.password
        try:
            connection = psycopg.connect(self.url, **options)
        except psycopg.Error as exc:
            raise HistoryUnavailable(f"{self.label}: cannot connect: {self._said(exc)}") from None
        try:
            with connection:
                store = Store(connection, POSTGRESQL)
                _ensure_schema(store, self.label)
                yield store
        except psycopg.Error as exc:
            raise HistoryUnavailable(f"{self.label}: {self._said(exc)}") from None


def _ensure_schema(store: Store, label: str) -> None:
    """Tables made once, under an advisory lock; a database of another schema version is refused."""
    if store.rows("SELECT to_regclass('rig_history_schema') AS found")[0]["found"] is None:
        with store.transaction():
            store.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            for statement in POSTGRESQL.schema():
                store.execute(statement)
            store.execute("CREATE TABLE IF NOT EXISTS rig_history_schema (version INTEGER NOT NULL)")
            if not store.rows("SELECT version FROM rig_history_schema"):
                store.execute("INSERT INTO rig_history_schema (version) VALUES (?)", (SCHEMA_VERSION,))
    versions = {row["version"] for row in store.rows("SELECT version FROM rig_history_schema")}
    if versions != {SCHEMA_VERSION}:
        raise ConfigError(f"{label}: history schema version {sorted(versions)}, this rig reads version "
                          f"{SCHEMA_VERSION}")


def target_from_url(url: str, *, password: str | None = None, connect_timeout_s: int = 5,
                    attempts: int = 3) -> PostgresTarget:
    """A target from an address given on the command line; ConfigError saying what is wrong with it."""
    problem = database_url_problem(url)
    if problem is not None:
        hint = ": give it in PGPASSWORD or ~/.pgpass, or in the bench's history.secrets" \
            if problem.startswith("a password") else ""
        raise ConfigError(f"history database: {problem}{hint}")
    return PostgresTarget(url, password, connect_timeout_s, attempts)


def is_database_url(text: str) -> bool:
    return "://" in text


def bench_target(config: HistoryConfig, base_dir: Path) -> PostgresTarget:
    """The bench's history database with its password resolved (ConfigError naming the secret's field)."""
    ref = config.secrets.get("password")
    password = ref.resolve("history.secrets.password", base_dir) if ref is not None else None
    return PostgresTarget(config.url, password, config.connect_timeout_s, config.attempts)


def run_target(bench_file: BenchFile) -> tuple[str, HistoryConfig | None] | None:
    """The database a run uploads to, unresolved: `rig run --history` (RIG_HISTORY) before the bench's own; None
    when neither names one. Returns (address, the bench's settings if it is the bench's address)."""
    url = os.environ.get(HISTORY_ENV)
    if url:
        return url, None
    config = bench_file.config.history
    return (config.url, config) if config is not None else None


# -- pending uploads ------------------------------------------------------------------------------------


def mark_pending(folder: Path, label: str, reason: str, *, attempted: bool = False) -> None:
    """The run is to be uploaded to `label` (one database per run folder): written before the first attempt,
    updated (attempts counted) after each failed one."""
    path = Path(folder) / PENDING_FILE
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        marker = {"database": label, "since": datetime.now(UTC).isoformat(), "attempts": 0}
    marker.update(database=label, last_error=reason, updated=datetime.now(UTC).isoformat(),
                  attempts=marker.get("attempts", 0) + attempted)
    tmp = path.with_name(f".{PENDING_FILE}.tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    tmp.replace(path)


def pending_folders(results: Path, label: str | None = None) -> list[Path]:
    """Run folders under `results` waiting to be uploaded (to `label`, or to any database), oldest first."""
    found = []
    for marker in Path(results).glob(f"*/{PENDING_FILE}"):
        try:
            pending = json.loads(marker.read_text())
        except (OSError, ValueError):
            pending = {}
        if label is None or pending.get("database") == label:
            found.append((str(pending.get("since", "")), marker.parent.name, marker.parent.resolve()))
    return [folder for _since, _name, folder in sorted(found)]


@dataclass
class UploadResult:
    uploaded: list[tuple[Path, int]] = field(default_factory=list)  # (folder, run id in the database)
    unreadable: list[str] = field(default_factory=list)  # folders whose records cannot be read: left pending
    failure: str | None = None  # why the database could not take the rest (they stay pending)


def upload_folders(target: PostgresTarget, folders: list[Path]) -> UploadResult:
    """Upload each pending folder in a transaction of its own, marker removed once committed; up to
    `target.attempts` tries while the database cannot be reached."""
    result, waiting = UploadResult(), list(folders)
    for attempt in range(1, target.attempts + 1):
        try:
            with target.open_store() as store:
                while waiting:
                    _upload_one(store, waiting[0], result)
                    waiting.pop(0)
            result.failure = None
            return result
        except HistoryUnavailable as exc:
            result.failure = f"{exc} (attempt {attempt} of {target.attempts})"
            for folder in waiting:
                with contextlib.suppress(OSError):  # a marker that cannot be updated still marks the run
                    mark_pending(folder, target.label, str(exc), attempted=True)
            if attempt < target.attempts:
                time.sleep(RETRY_PAUSE_S * attempt)
    return result


def _upload_one(store: Store, folder: Path, result: UploadResult) -> None:
    try:
        data = read_run(folder)
    except ConfigError as exc:
        result.unreadable.append(str(exc))
        return
    with store.transaction():
        store.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (run_uid(data),))
        run_id = write_run(store, data)
    (Path(folder) / PENDING_FILE).unlink(missing_ok=True)
    result.uploaded.append((Path(folder), run_id))


def upload_pending(target: PostgresTarget, results: Path) -> UploadResult:
    return upload_folders(target, pending_folders(results, target.label))


class HistoryUpload:
    """Publisher: the run uploaded to the lab's database (bench `history:` or `rig run --history`), with every run
    still pending for it; a database that cannot take it is reported and the runs stay pending."""

    name = "history upload"
    needs_whole_record = True

    def __init__(self, bench_file: BenchFile):
        self.bench_file = bench_file

    def publish(self, folder: Path, record: dict) -> str | None:
        named = run_target(self.bench_file)
        if named is None:
            return None
        url, config = named
        folder = Path(folder).resolve()
        target = target_from_url(url) if config is None else None
        label = (target or PostgresTarget(url)).label
        later = (f"`rig history upload --db {label}`" if config is None else
                 f"`rig history upload --bench {self.bench_file.path}`")
        mark_pending(folder, label, "not uploaded yet")
        if target is None:
            try:
                target = bench_target(config, self.bench_file.path.parent)
            except ConfigError as exc:
                raise HistoryUnavailable(f"{label}: {exc}; the run stays pending ({folder / PENDING_FILE}), "
                                         f"upload it with {later}") from None
        result = upload_folders(target, pending_folders(folder.parent, label))
        ours = next((run_id for done, run_id in result.uploaded if done == folder), None)
        earlier = len(result.uploaded) - (ours is not None)
        problems = result.unreadable + ([result.failure] if result.failure else [])
        if problems:
            raise HistoryUnavailable(
                f"{'; '.join(problems)}; {len(pending_folders(folder.parent, label))} run(s) pending in "
                f"{folder.parent} ({PENDING_FILE} in each), uploaded by the next run or {later}"
                + (f"; this run uploaded as run {ours}" if ours is not None else "")
                + (f"; {earlier} earlier pending run(s) uploaded" if earlier else ""))
        also = f", and {earlier} earlier pending run(s)" if earlier else ""
        return f"history: {label} (run {ours}{also})"
