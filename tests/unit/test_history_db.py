"""The lab's history database without a server: addresses with passwords refused unechoed, pending uploads marked and
kept when nothing listens, SQLite files of schema 1 carried over to schema 2."""

import json
import sqlite3

import pytest
from plan_runner import free_port, write_bench
from test_history import two_runs, write_run

from rig import history, history_db
from rig.cli import main
from rig.config import load_bench
from rig.errors import ConfigError
from rig.history_db import PENDING_FILE, PostgresTarget, mark_pending, pending_folders, target_from_url, upload_folders

SCHEMA_V1_RUNS = """CREATE TABLE runs_v1 (id INTEGER PRIMARY KEY, folder TEXT NOT NULL UNIQUE, started TEXT,
    finished TEXT, bench TEXT, host TEXT, git_revision TEXT, passed INTEGER, failed INTEGER, error INTEGER,
    skipped INTEGER, exit_status INTEGER, bench_broken TEXT)"""


def test_a_password_in_the_bench_address_is_refused_without_echoing_it(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d.update(history={"url": "postgresql://lab:hunter2@db:5432/results"}))
    with pytest.raises(ConfigError) as info:
        load_bench(path)
    line = next(i for i, row in enumerate(path.read_text().splitlines(), 1) if "hunter2" in row)
    assert str(info.value) == (f"{path}:{line}: history.url: a password in the address "
                               f"(postgresql://lab:***@db:5432/results) is not allowed: give it under 'secrets: "
                               f"{{password: ...}}' as {{env: NAME}} or {{file: PATH}}")
    path = write_bench(tmp_path, edit=lambda d: d.update(history={"url": "mysql://db/results"}))
    with pytest.raises(ConfigError, match="history.url: not a PostgreSQL address"):
        load_bench(path)


def test_a_bench_history_section_with_its_password_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("RIG_TEST_DB_PASSWORD", "s3cret-value")
    path = write_bench(tmp_path, edit=lambda d: d.update(history={
        "url": "postgresql://lab@db.example:5433/results?sslmode=require",
        "secrets": {"password": {"env": "RIG_TEST_DB_PASSWORD"}}, "attempts": 5}))
    config = load_bench(path).config.history
    target = history_db.bench_target(config, path.parent)
    assert (target.password, target.attempts, target.connect_timeout_s) == ("s3cret-value", 5, 5)
    assert target.label == "postgresql://lab@db.example:5433/results" and "s3cret" not in repr(target)


def test_rig_run_refuses_a_password_on_the_command_line_before_any_run(tmp_path, capsys):
    bench = write_bench(tmp_path, only_roles=("source",))
    code = main(["run", "--bench", str(bench), "--results", str(tmp_path / "results" / "r1"),
                 "--history", "postgresql://lab:hunter2@db/results"])
    err = capsys.readouterr().err
    assert code == 2 and err == ("rig: error: history database: a password in the address (postgresql://lab:***@db"
                                 "/results) is not allowed: give it in PGPASSWORD or ~/.pgpass, or in the bench's "
                                 "history.secrets\n")
    assert not (tmp_path / "results").exists()


def test_nothing_listening_keeps_the_runs_pending_and_counts_the_attempts(tmp_path, monkeypatch):
    monkeypatch.setattr(history_db, "RETRY_PAUSE_S", 0.01)
    results = tmp_path / "results"
    first = write_run(results / "r1", "2026-03-01T10:00:00+00:00", "4.1", {("Ib", "1"): 0.1})
    second = write_run(results / "r2", "2026-03-02T10:00:00+00:00", "4.1", {("Ib", "1"): 0.2})
    port = free_port()
    target = PostgresTarget(f"postgresql://lab@127.0.0.1:{port}/results", password="pw-never-shown", attempts=2,
                            connect_timeout_s=2)
    mark_pending(second, target.label, "not uploaded yet")
    mark_pending(first, target.label, "not uploaded yet")
    mark_pending(first, "postgresql://lab@elsewhere/results", "not uploaded yet")  # marked again: now for that one
    assert pending_folders(results) == [second.resolve(), first.resolve()]  # oldest mark first
    assert pending_folders(results, target.label) == [second.resolve()]
    result = upload_folders(target, [second])
    assert result.uploaded == [] and result.failure.startswith(
        f"postgresql://lab@127.0.0.1:{port}/results: cannot connect: connection failed: connection to server at "
        f"\"127.0.0.1\", port {port} failed: Connection refused")
    assert result.failure.endswith("(attempt 2 of 2)") and "pw-never-shown" not in result.failure
    marker = json.loads((second / PENDING_FILE).read_text())
    assert marker["attempts"] == 2 and marker["database"] == target.label and "Connection refused" in marker[
        "last_error"]


def test_the_command_line_names_what_is_wrong_with_an_address(tmp_path, capsys):
    assert main(["history", "--db", "postgresql://lab@db.example/"]) == 2
    assert capsys.readouterr().err == ("rig: error: history database: no database in the address "
                                       "(postgresql://USER@HOST:PORT/DATABASE)\n")
    with pytest.raises(ConfigError, match="port is not a number"):
        target_from_url("postgresql://lab@db:port/results")
    assert main(["history", "upload", "--results", str(tmp_path)]) == 2
    assert "name the database with --db postgresql://... or --bench BENCH" in capsys.readouterr().err


def test_a_schema_1_file_is_carried_over_with_its_runs(tmp_path):
    database, _ = two_runs(tmp_path)
    with sqlite3.connect(database) as connection:  # rebuilt as schema 1 had it: runs unique by folder
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute(SCHEMA_V1_RUNS)
        connection.execute("INSERT INTO runs_v1 SELECT id, folder, started, finished, bench, host, git_revision, "
                           "passed, failed, error, skipped, exit_status, bench_broken FROM runs")
        connection.execute("DROP TABLE runs")
        connection.execute("ALTER TABLE runs_v1 RENAME TO runs")
        connection.execute("PRAGMA user_version = 1")
    connection.close()
    rows = history.trends(database, meter="SIM0001", name="error", point="Ib", pf="1")
    assert [(r.run_id, r.firmware, r.value) for r in rows] == [(1, "4.1", 0.12), (2, "4.2", 1.4)]
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        uids = [row[0] for row in connection.execute("SELECT uid FROM runs ORDER BY id")]
        assert connection.execute("SELECT count(*) FROM measurements").fetchone()[0] == 6
    connection.close()
    assert uids == [f"h:{(tmp_path / 'results' / name).resolve()}@2026-03-0{day}T10:00:00+00:00"
                    for name, day in (("r1", 1), ("r2", 8))]
    history.append_run_folder(tmp_path / "results" / "r1")  # the same run again: replaced, not doubled
    assert [r["id"] for r in history.runs(database)] == [3, 2]  # oldest run first
    with sqlite3.connect(database) as connection:  # its old rows went with it (the references survived the move)
        assert connection.execute("SELECT run_id, count(*) FROM measurements GROUP BY run_id").fetchall() == [
            (2, 3), (3, 3)]
    connection.close()
