"""Run history in SQLite: runs appended, trends filtered by meter, plan, point and PF, plotted; a failing database
never costs the run record."""

import json
import sqlite3

from plan_runner import write_bench

from fixtures.session import RigSession
from rig import history
from rig.cli import main
from rig.measure import Limits, Measurement

ROOT_TEST = "accuracy/test_accuracy.py::test_error_at_load_point[class1-{}]"


def write_run(folder, start, firmware, errors):
    """A run folder with meter SIM0001 at `firmware`; errors: {(point, pf): value}."""
    folder.mkdir(parents=True)
    run = {"bench": {"name": "sim"}, "host": "h", "git_revision": "rev-" + firmware, "start": start,
           "end": start.replace(":00+", ":30+"), "outcomes": {"passed": len(errors), "failed": 0, "error": 0,
                                                              "skipped": 0},
           "exit_status": 0, "bench_broken": None, "instruments": {},
           "meters": [{"position": 1, "serial": "SIM0001", "accuracy_class": "1", "firmware": firmware,
                       "manufacturer": "Rig Twin", "model": "RIGSIM0001"}]}
    (folder / "run.json").write_text(json.dumps(run))
    lines = []
    for (point, pf), value in errors.items():
        limits = Limits(-1.0, 1.0)
        lines.append(Measurement(ROOT_TEST.format(point), "error", value, "%", -1.0, 1.0, limits.verdict(value),
                                 0.03, 1, "SIM0001", details={"load_point": point, "pf": pf}).as_record())
    lines.append(Measurement("prepaid/test_cutoff.py::test_cut[1]", "cutoff_delay", 4.2, "s", None, 60.0, "pass",
                             position=1, meter="SIM0001").as_record())
    (folder / "measurements.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def two_runs(tmp_path):
    first = write_run(tmp_path / "results" / "r1", "2026-03-01T10:00:00+00:00", "4.1",
                      {("Ib", "1"): 0.12, ("0.5 Ib", "1"): 0.2})
    second = write_run(tmp_path / "results" / "r2", "2026-03-08T10:00:00+00:00", "4.2",
                       {("Ib", "1"): 1.4, ("Ib", "0.5L"): 0.3})
    database = tmp_path / "results" / "history.sqlite"
    return database, [history.append_run_folder(folder)[1] for folder in (first, second)]


def test_runs_meters_and_measurements_are_appended(tmp_path):
    database, ids = two_runs(tmp_path)
    assert ids == [1, 2]
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT id, bench, git_revision, passed FROM runs ORDER BY id").fetchall() == [
            (1, "sim", "rev-4.1", 2), (2, "sim", "rev-4.2", 2)]
        assert connection.execute("SELECT run_id, serial, firmware FROM meters ORDER BY run_id").fetchall() == [
            (1, "SIM0001", "4.1"), (2, "SIM0001", "4.2")]
        assert connection.execute("SELECT plan, count(*) FROM measurements GROUP BY plan").fetchall() == [
            ("accuracy", 4), ("prepaid", 2)]
        details = connection.execute("SELECT details FROM measurements WHERE load_point = '0.5 Ib'").fetchone()[0]
        assert json.loads(details) == {"load_point": "0.5 Ib", "pf": "1"}


def test_appending_a_folder_again_replaces_it(tmp_path):
    database, _ = two_runs(tmp_path)
    history.append_run_folder(tmp_path / "results" / "r1")
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
        assert connection.execute("SELECT count(*) FROM measurements").fetchone()[0] == 6


def test_trend_at_one_point_across_firmware_versions(tmp_path):
    database, _ = two_runs(tmp_path)
    rows = history.trends(database, meter="SIM0001", name="error", point="Ib", pf="1")
    assert [(r.run_id, r.firmware, r.value, r.verdict) for r in rows] == [(1, "4.1", 0.12, "pass"),
                                                                         (2, "4.2", 1.4, "fail")]
    assert [r.value for r in history.trends(database, plan="accuracy", point="0.5Ib")] == [0.2]
    assert [r.name for r in history.trends(database, plan="prepaid")] == ["cutoff_delay", "cutoff_delay"]


def test_cli_lists_trends_and_draws_them(tmp_path, capsys):
    database, _ = two_runs(tmp_path)
    plot = tmp_path / "trend.png"
    assert main(["history", "--db", str(database), "--meter", "SIM0001", "--measurement", "error",
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    assert blocks[0].splitlines()[0] == "error at Ib PF 1 [%] meter SIM0001"
    ib_rows = blocks[0].splitlines()[2:]
    assert [row.split()[:4] for row in ib_rows] == [["1", "2026-03-01", "10:00:00", "4.1"],
                                                   ["2", "2026-03-08", "10:00:00", "4.2"]]
    assert ib_rows[0].endswith("PASS") and ib_rows[1].endswith("FAIL") and "+1.4" in ib_rows[1]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert main(["history", "--db", str(database)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing[2:]] == ["1", "2"] and "SIM0001 4.2" in listing[3]
    assert main(["history", "--db", str(database), "--meter", "NOPE"]) == 1
    assert "no measurements for meter 'NOPE'" in capsys.readouterr().err


def test_missing_database_is_named(tmp_path, capsys):
    assert main(["history", "--db", str(tmp_path / "none.sqlite"), "--plan", "accuracy"]) == 2
    assert "none.sqlite: no history database" in capsys.readouterr().err


def test_a_failing_database_keeps_the_run_record_and_says_so(tmp_path):
    bench = write_bench(tmp_path, only_roles=("source",))
    results = tmp_path / "results"
    (results / "history.sqlite").mkdir(parents=True)  # sqlite cannot open a folder
    session = RigSession.start(bench, results / "r1", tmp_path, source_root=tmp_path)
    session.record.add_measurement(Measurement("test_x.py::test_y", "voltage", 230.0, "V", 220, 240, "pass"))
    session.finish(0)
    run = json.loads((results / "r1" / "run.json").read_text())
    assert run["end"] is not None and run["exit_status"] == 0
    expected = f"history: {results / 'history.sqlite'} not updated: "
    assert len(run["report_errors"]) == 1 and run["report_errors"][0].startswith(expected)
    assert any(line.startswith(expected) and "rig history --add" in line for line in session.summary_lines())
    assert len((results / "r1" / "measurements.jsonl").read_text().splitlines()) == 1
