"""Run history: every run appended to one SQLite database (results/history.sqlite), queried for trends.

Tables: runs (one row per run folder), meters (serial, firmware ... per run), measurements (every measurement
with its limits, verdict, plan, load point and details as JSON). Appending a folder again replaces its rows.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from rig.certificate import RunData, plan_of, read_run
from rig.errors import ConfigError

HISTORY_FILE = "history.sqlite"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    folder TEXT NOT NULL UNIQUE,
    started TEXT,
    finished TEXT,
    bench TEXT,
    host TEXT,
    git_revision TEXT,
    passed INTEGER, failed INTEGER, error INTEGER, skipped INTEGER,
    exit_status INTEGER,
    bench_broken TEXT
);
CREATE TABLE IF NOT EXISTS meters (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position INTEGER,
    serial TEXT NOT NULL,
    accuracy_class TEXT,
    manufacturer TEXT,
    model TEXT,
    firmware TEXT,
    PRIMARY KEY (run_id, serial)
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    plan TEXT,
    test TEXT,
    name TEXT NOT NULL,
    value REAL,
    unit TEXT,
    low REAL,
    high REAL,
    uncertainty REAL,
    verdict TEXT,
    position INTEGER,
    serial TEXT,
    load_point TEXT,
    pf TEXT,
    details TEXT,
    t_wall REAL
);
CREATE INDEX IF NOT EXISTS measurements_by_serial ON measurements (serial, name);
CREATE INDEX IF NOT EXISTS measurements_by_plan ON measurements (plan, name);
"""


def history_path(run_folder: Path) -> Path:
    """The database beside the run folders: results/<run> -> results/history.sqlite."""
    return Path(run_folder).resolve().parent / HISTORY_FILE


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError:
        connection.close()
        raise
    if version not in (0, SCHEMA_VERSION):
        connection.close()
        raise ConfigError(f"{path}: history schema version {version}, this rig reads version {SCHEMA_VERSION}")
    connection.executescript(SCHEMA)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return connection


@contextmanager
def history_database(path: Path) -> Iterator[sqlite3.Connection]:
    """An open history database, closed afterwards; a file SQLite cannot use is a ConfigError naming it."""
    try:
        with closing(connect(path)) as connection:
            yield connection
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path}: not a usable history database ({exc})") from None


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def append_run(database: Path, data: RunData) -> int:
    """Add a run (replacing an earlier copy of the same folder); returns its id."""
    run = data.run
    outcomes = run.get("outcomes") or {}
    instruments = run.get("instruments") or {}
    with history_database(database) as connection, connection:
        folder = str(Path(data.folder).resolve())
        connection.execute("DELETE FROM runs WHERE folder = ?", (folder,))
        run_id = connection.execute(
            "INSERT INTO runs (folder, started, finished, bench, host, git_revision, passed, failed, error, skipped,"
            " exit_status, bench_broken) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (folder, run.get("start"), run.get("end"), (run.get("bench") or {}).get("name"), run.get("host"),
             run.get("git_revision"), outcomes.get("passed"), outcomes.get("failed"), outcomes.get("error"),
             outcomes.get("skipped"), run.get("exit_status"), run.get("bench_broken"))).lastrowid
        for meter in run.get("meters", []):
            identity = instruments.get(f"meter@{meter.get('position')}", {})
            connection.execute(
                "INSERT INTO meters (run_id, position, serial, accuracy_class, manufacturer, model, firmware)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, meter.get("position"), meter["serial"], meter.get("accuracy_class"),
                 meter.get("manufacturer") or identity.get("manufacturer"), meter.get("model") or identity.get("model"),
                 meter.get("firmware") or identity.get("firmware")))
        connection.executemany(
            "INSERT INTO measurements (run_id, plan, test, name, value, unit, low, high, uncertainty, verdict,"
            " position, serial, load_point, pf, details, t_wall) VALUES (" + ", ".join("?" * 16) + ")",
            [(run_id, plan_of(m.get("test", "")), m.get("test"), m["name"], _number(m.get("value")), m.get("unit"),
              m.get("low"), m.get("high"), _number(m.get("uncertainty")), m.get("verdict"), m.get("position"),
              m.get("meter"), (m.get("details") or {}).get("load_point"),
              None if (m.get("details") or {}).get("pf") is None else str(m["details"]["pf"]),
              json.dumps(m.get("details"), default=str) if m.get("details") is not None else None, m.get("t_wall"))
             for m in data.measurements])
    return run_id


def append_run_folder(folder: Path, database: Path | None = None) -> tuple[Path, int]:
    database = database or history_path(folder)
    return database, append_run(database, read_run(folder))


# -- queries ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrendRow:
    run_id: int
    started: str
    bench: str | None
    git_revision: str | None
    serial: str | None
    firmware: str | None
    plan: str
    name: str
    load_point: str | None
    pf: str | None
    value: float | None
    unit: str | None
    low: float | None
    high: float | None
    uncertainty: float | None
    verdict: str | None

    @property
    def series(self) -> tuple:
        """What stays the same from run to run: measurement, point, power factor, unit, meter."""
        return (self.name, self.load_point or "", self.pf or "", self.unit or "", self.serial or "")

    @property
    def point_text(self) -> str:
        parts = [self.load_point or "", f"PF {self.pf}" if self.pf else ""]
        return " ".join(p for p in parts if p)


def _squeezed(text: str) -> str:
    return text.replace(" ", "").lower()


def trends(database: Path, *, meter: str | None = None, plan: str | None = None, name: str | None = None,
           point: str | None = None, pf: str | None = None) -> list[TrendRow]:
    """Measurements across runs, oldest run first, filtered by meter serial, plan, measurement name, load point
    (spaces ignored: 'Ib', '0.5Ib') and power factor."""
    if not Path(database).exists():
        raise ConfigError(f"{database}: no history database (a run writes it beside its run folder)")
    clauses, values = [], []
    for column, value in (("m.serial", meter), ("m.plan", plan), ("m.name", name), ("m.pf", pf)):
        if value is not None:
            clauses.append(f"{column} = ?")
            values.append(value)
    if point is not None:
        clauses.append("lower(replace(m.load_point, ' ', '')) = ?")
        values.append(_squeezed(point))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with history_database(database) as connection:
        rows = connection.execute(
            "SELECT r.id AS run_id, r.started, r.bench, r.git_revision, m.serial, mt.firmware, m.plan, m.name,"
            " m.load_point, m.pf, m.value, m.unit, m.low, m.high, m.uncertainty, m.verdict"
            " FROM measurements m JOIN runs r ON r.id = m.run_id"
            " LEFT JOIN meters mt ON mt.run_id = m.run_id AND mt.serial = m.serial"
            f" {where} ORDER BY r.started, r.id, m.id", values).fetchall()
    return [TrendRow(**dict(row)) for row in rows]


def runs(database: Path) -> list[sqlite3.Row]:
    if not Path(database).exists():
        raise ConfigError(f"{database}: no history database (a run writes it beside its run folder)")
    with history_database(database) as connection:
        return connection.execute(
            "SELECT r.*, group_concat(mt.serial || ' ' || coalesce(mt.firmware, '-'), ', ') AS meters"
            " FROM runs r LEFT JOIN meters mt ON mt.run_id = r.id GROUP BY r.id ORDER BY r.started, r.id").fetchall()


def series_of(rows: list[TrendRow]) -> dict[tuple, list[TrendRow]]:
    grouped: dict[tuple, list[TrendRow]] = {}
    for row in rows:
        grouped.setdefault(row.series, []).append(row)
    return grouped


def format_trends(rows: list[TrendRow]) -> list[str]:
    """One block per series (measurement, point, PF, meter), one line per run."""
    lines = []
    for (name, _point, _pf, unit, serial), members in series_of(rows).items():
        first = members[0]
        title = " ".join(p for p in (name, "at " + first.point_text if first.point_text else "", f"[{unit}]",
                                     f"meter {serial}" if serial else "") if p)
        lines.append(title)
        lines.append(f"  {'run':>4}  {'started':<20} {'firmware':<10} {'revision':<20} {'value':>10} "
                     f"{'U (k=2)':>9} {'limits':<16} verdict")
        for row in members:
            value = "-" if row.value is None else f"{row.value:+.4g}" if row.unit == "%" else f"{row.value:.6g}"
            uncertainty = "-" if row.uncertainty is None else f"{row.uncertainty:.3g}"
            limits = f"{'-inf' if row.low is None else f'{row.low:g}'} .. " \
                     f"{'+inf' if row.high is None else f'{row.high:g}'}"
            started = (row.started or '-')[:19].replace('T', ' ')
            lines.append(f"  {row.run_id:>4}  {started:<20} {row.firmware or '-':<10} "
                         f"{(row.git_revision or '-')[:20]:<20} {value:>10} {uncertainty:>9} {limits:<16} "
                         f"{(row.verdict or '-').upper()}")
        lines.append("")
    return lines


def plot_trends(rows: list[TrendRow], path: Path, title: str) -> None:
    """One panel per measurement and unit; a line per series across runs (x: run, labelled with its date and the
    firmware), error bars at the expanded uncertainty, limits dashed where a panel shares them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_ids = sorted({row.run_id for row in rows}, key=lambda rid: next(r.started for r in rows if r.run_id == rid))
    x_of = {run_id: index for index, run_id in enumerate(run_ids)}
    panels: dict[tuple, dict[tuple, list[TrendRow]]] = {}
    for key, members in series_of(rows).items():
        panels.setdefault((key[0], key[3]), {})[key] = members
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for axis, ((name, unit), series) in zip(axes[:, 0], panels.items(), strict=True):
        for (_name, _point, _pf, _unit, serial), members in series.items():
            label = " ".join(p for p in (serial, members[0].point_text) if p)
            drawn = [m for m in members if m.value is not None]
            axis.errorbar([x_of[m.run_id] for m in drawn], [m.value for m in drawn],
                          yerr=[m.uncertainty or 0.0 for m in drawn], marker="o", capsize=3, label=label)
        limits = {(m.low, m.high) for members in series.values() for m in members}
        if len(limits) == 1:
            for bound in next(iter(limits)):
                if bound is not None:
                    axis.axhline(bound, color="grey", linestyle="--", linewidth=1)
        axis.set_ylabel(f"{name} ({unit})" if unit else name)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        axis.set_xticks(range(len(run_ids)))
        firmware = {}
        for row in rows:
            firmware.setdefault(row.run_id, set()).add(row.firmware or "-")
        started = {row.run_id: (row.started or "-")[:16].replace("T", " ") for row in rows}
        axis.set_xticklabels([f"run {rid}\n{started[rid]}\n"
                              f"fw {', '.join(sorted(firmware[rid]))}" for rid in run_ids], fontsize=7)
        axis.set_xlim(-0.5, len(run_ids) - 0.5)
    axes[0, 0].set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
