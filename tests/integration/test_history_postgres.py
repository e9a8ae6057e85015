"""Runs uploaded to a real PostgreSQL server that the tests start (initdb, pg_ctl on a free port of 127.0.0.1): read
back as the SQLite history reads; a server that is down costs the run nothing, the run stays pending and the next
run uploads both, exactly once; the password never reaches a run folder or an output."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import psycopg
import pytest
from plan_runner import PlanRun, free_port, write_bench

from rig.history_db import PENDING_FILE

pytestmark = pytest.mark.xdist_group("postgres")  # one server serves them all

PLAN = """
    import pytest
    from rig.plan import Limits

    @pytest.mark.parametrize("position", [1, 2, 3])
    def test_voltage(measure, position):
        measure("voltage", 229.5 + position, "V", Limits(220.0, 240.0), position=position, uncertainty=0.05)
        measure("error", 0.1 * position, "%", Limits(-1.0, 1.0), position=position, details={"load_point": "Ib"})
"""
USER = "rig"


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: from PATH (Debian's /usr/local/bin links), else Debian's versioned folders."""
    found = shutil.which("pg_ctl")
    candidates = ([Path(found).resolve().parent] if found else []) + [
        Path(p) for p in sorted(glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)]
    return next((folder for folder in candidates if (folder / "initdb").exists() and (folder / "pg_ctl").exists()),
                None)


def server_user() -> str | None:
    """initdb refuses to run as root: as root, the server runs as `postgres` (made by Debian's package), else as a
    system user made for it; as anyone else, as that user (None)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "rig-postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "rig-postgres"],
                   check=True, capture_output=True)
    return "rig-postgres"


@dataclass
class PostgresServer:
    bin: Path
    data: Path
    user: str | None
    port: int
    password: str

    def _run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            log = self.data.parent / "server.log"
            raise RuntimeError(f"{' '.join(args[:1])} failed ({done.returncode}): {done.stderr.strip()}\n"
                               f"{log.read_text() if log.exists() else ''}")
        return done

    def start(self) -> None:
        # TCP on 127.0.0.1 only; the Unix socket in the server's own folder; no fsync (a test server)
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data.parent / "server.log"), "-w", "-t", "30",
                  "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(database), password=self.password, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of its own (password authentication), stopped and removed at the end of the session."""
    folder = postgres_bin()
    if folder is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    user = server_user()
    base = Path(tempfile.mkdtemp(prefix="rig-postgres-"))
    password = secrets.token_hex(16)
    (base / "password").write_text(password + "\n")
    if user is not None:
        shutil.chown(base, user)
        shutil.chown(base / "password", user)
    server = PostgresServer(folder, base / "data", user, free_port(), password)
    server._run("initdb", "-D", str(server.data), "-U", USER, "--auth=scram-sha-256",
                f"--pwfile={base / 'password'}", "-E", "UTF8", "--no-locale", "--no-sync")
    (base / "password").unlink()
    for attempt in range(3):  # the free port may be taken between probing and listening
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
            server.port = free_port()
    yield server
    try:
        server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database(postgres, request):
    """A new, empty database on the server for one test; its name."""
    name = "h_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    with postgres.connect() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def bench_with_history(tmp_path: Path, url: str, password: str) -> Path:
    secret = tmp_path / "secrets" / "history-password"
    secret.parent.mkdir()
    secret.write_text(password + "\n")

    def history(data: dict) -> None:
        data["history"] = {"url": url, "secrets": {"password": {"file": str(secret)}}, "attempts": 2,
                           "connect_timeout_s": 2}

    return write_bench(tmp_path, only_roles=("source",), edit=history)


def rig(*args: str, cwd: Path, password: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "RIG_HISTORY")}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "rig.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env)


def plan_run(tmp_path: Path, bench: Path, results: Path) -> PlanRun:
    run = PlanRun(tmp_path / results.name, PLAN, bench, results=results)
    assert run.wait(timeout_s=60) == 0, run.output
    return run


def assert_no_password(password: str, folder: Path, *outputs: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    for output in outputs:
        assert password not in output


def test_a_run_uploaded_reads_back_as_the_sqlite_history_does(postgres, database, tmp_path):
    url = postgres.url(database)
    bench = bench_with_history(tmp_path, url, postgres.password)
    results = tmp_path / "results"
    run = plan_run(tmp_path, bench, results / "r1")
    assert f"history: {url} (run 1)" in run.output
    assert not (results / "r1" / PENDING_FILE).exists()

    for args in ((), ("--meter", "SIM0002", "--measurement", "voltage")):
        local = rig("history", "--db", str(results / "history.sqlite"), *args, cwd=tmp_path)
        remote = rig("history", "--db", url, *args, cwd=tmp_path, password=postgres.password)
        assert local.returncode == 0 and remote.returncode == 0, remote.stderr
        assert remote.stdout == local.stdout
        by_bench = rig("history", "--bench", str(bench), *args, cwd=tmp_path)  # the bench's password secret
        assert by_bench.returncode == 0 and by_bench.stdout == local.stdout, by_bench.stderr
    listing = rig("history", "--db", url, cwd=tmp_path, password=postgres.password).stdout
    assert "SIM0001 -, SIM0002 -, SIM0003 -" in listing.splitlines()[2]
    trend = rig("history", "--db", url, "--meter", "SIM0002", "--measurement", "voltage", cwd=tmp_path,
                password=postgres.password).stdout.splitlines()
    assert trend[0] == "voltage [V] meter SIM0002" and trend[2].split()[-6:] == ["231.5", "0.05", "220", "..", "240",
                                                                                "PASS"]
    with postgres.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM measurements").fetchone()[0] == 6
        uid = connection.execute("SELECT uid FROM runs").fetchone()[0]
    assert uid.endswith(f":{(results / 'r1').resolve()}@{run.run_json()['start']}")
    assert_no_password(postgres.password, results, run.output, remote.stdout, remote.stderr)


def test_a_database_down_keeps_the_run_pending_and_the_next_run_uploads_both_once(postgres, database, tmp_path):
    url = postgres.url(database)
    bench = bench_with_history(tmp_path, url, postgres.password)
    results = tmp_path / "results"
    postgres.stop()
    try:
        first = plan_run(tmp_path, bench, results / "r1")  # passes: the database is no part of the verdict
    finally:
        postgres.start()
    assert f"history: {results / 'history.sqlite'} (run 1)" in first.output
    marker = json.loads((results / "r1" / PENDING_FILE).read_text())
    assert marker["database"] == url and marker["attempts"] == 2
    assert "127.0.0.1" in marker["last_error"] and str(postgres.port) in marker["last_error"]
    report = first.run_json()["report_errors"]
    assert len(report) == 1 and report[0].startswith(f"history upload: {url}: cannot connect: ")
    assert "(attempt 2 of 2); 1 run(s) pending in" in report[0] and "rig history upload --bench" in report[0]
    assert len(first.measurements()) == 6

    # the next run names the same database on the command line (the password from PGPASSWORD)
    second = rig("run", "--bench", str(bench), "--results", str(results / "r2"), "--plans",
                 str(first.folder / "test_plan.py"), "--history", url, "--", "-q", "-p", "no:cacheprovider",
                 cwd=tmp_path, password=postgres.password)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"history: {url} (run 2, and 1 earlier pending run(s))" in second.stdout
    assert not list(results.glob(f"*/{PENDING_FILE}"))
    again = rig("history", "upload", "--db", url, "--results", str(results), cwd=tmp_path, password=postgres.password)
    assert again.returncode == 0 and again.stdout.strip() == f"history: {url}: nothing pending in {results}"
    added = rig("history", "--add", str(results / "r1"), "--db", url, cwd=tmp_path, password=postgres.password)
    assert added.returncode == 0, added.stderr  # the same run again replaces its rows
    with postgres.connect(database) as connection:
        rows = connection.execute("SELECT folder, passed, (SELECT count(*) FROM measurements m WHERE m.run_id = r.id)"
                                  " FROM runs r ORDER BY folder").fetchall()
    assert rows == [(str((results / "r1").resolve()), 3, 6), (str((results / "r2").resolve()), 3, 6)]
    assert_no_password(postgres.password, results, first.output, second.stdout, second.stderr)


def test_rig_history_upload_sends_what_is_pending(postgres, database, tmp_path):
    url = postgres.url(database)
    bench = write_bench(tmp_path, only_roles=("source",))  # no history section: the command line names it
    results = tmp_path / "results"
    plan = tmp_path / "plan" / "test_plan.py"
    plan.parent.mkdir()
    plan.write_text(textwrap.dedent(PLAN))
    postgres.stop()
    try:
        run = rig("run", "--bench", str(bench), "--results", str(results / "r1"), "--plans", str(plan), "--history",
                  url, "--", "-q", "-p", "no:cacheprovider", cwd=tmp_path, password=postgres.password)
    finally:
        postgres.start()
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"rig: history upload: {url}: cannot connect: " in run.stderr
    assert f"uploaded by the next run or `rig history upload --db {url}`" in run.stderr
    up = rig("history", "upload", "--db", url, "--results", str(results), cwd=tmp_path, password=postgres.password)
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"history: {url}: run 1 from {(results / 'r1').resolve()}"
    assert not (results / "r1" / PENDING_FILE).exists()
    again = rig("history", "upload", "--db", url, "--results", str(results), cwd=tmp_path, password=postgres.password)
    assert again.stdout.strip() == f"history: {url}: nothing pending in {results}"
    assert_no_password(postgres.password, results, run.stdout, run.stderr, up.stdout, up.stderr)


def test_a_wrong_password_is_reported_without_the_password(postgres, database, tmp_path):
    url = postgres.url(database)
    shown = rig("history", "--db", url, cwd=tmp_path, password="not-" + postgres.password)
    assert shown.returncode == 2
    assert shown.stderr.strip() == (f"rig: error: {url}: cannot connect: connection failed: connection to server at "
                                    f"\"127.0.0.1\", port {postgres.port} failed: FATAL: password authentication "
                                    f"failed for user \"{USER}\"")
    assert postgres.password not in shown.stderr
