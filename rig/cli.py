"""`rig`: run the test plans, check a bench, serve the twin, publish the bench schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from rig.errors import RigError

DEFAULT_BENCH = "benches/sim.yaml"
DEFAULT_PLANS = "testplans"
DEFAULT_HISTORY = "results/history.sqlite"


def cmd_run(args: argparse.Namespace) -> int:
    import os

    import pytest

    from rig.junit import JunitIntoRunFolder

    if args.history:
        from rig.history_db import HISTORY_ENV, target_from_url

        target_from_url(args.history)  # an address that cannot work is refused before the run starts
        os.environ[HISTORY_ENV] = args.history
    if args.place:
        from rig.labgrid import PLACE_ENV, PLACE_WAIT_ENV

        os.environ[PLACE_ENV] = args.place  # the session holds it beside the bench lock
        os.environ[PLACE_WAIT_ENV] = str(args.place_wait)
    plugins, bench = [JunitIntoRunFolder()], args.bench
    if args.serial or args.note or args.status_file:
        from rig.station.run_options import StationRun, bench_with_serials, parse_serials

        serials = parse_serials(args.serial or [], Path(args.bench).resolve())
        if serials:  # the positions' serials of the bench file, replaced for this run only
            bench = str(bench_with_serials(Path(args.bench).resolve(), serials))
        plugins.append(StationRun(Path(args.bench).resolve(), serials, args.note or [],
                                  Path(args.status_file) if args.status_file else None))
    # --opt=value keeps pytest from taking the bench file's folder into its rootdir
    pytest_args = [args.plans, f"--bench={bench}", *args.pytest_args]
    if args.results:
        pytest_args.append(f"--results={args.results}")
    try:
        return int(pytest.main(pytest_args, plugins=plugins))
    finally:
        if bench != args.bench:
            Path(bench).unlink(missing_ok=True)


def cmd_check(args: argparse.Namespace) -> int:
    from rig.bench import Bench
    from rig.config import load_bench, position_of_role
    from rig.driver import available_drivers
    from rig.lock import BenchLock
    from rig.preflight import preflight
    from rig.sim.launcher import TwinProcess
    from rig.transcript import Transcript

    bench_file = load_bench(args.bench, known_drivers=set(available_drivers()))
    preflight(bench_file)
    config = bench_file.config
    lock = BenchLock.for_bench(bench_file, with_bench_file=False)  # a run holds these instruments: hands off
    lock.acquire()
    print(f"bench {config.name!r} ({bench_file.path}): valid, {len(config.roles)} roles, "
          f"{len(config.positions)} meter positions")
    for message in lock.taken_over:
        print(f"rig: {message}", file=sys.stderr)
    twin = None
    with tempfile.TemporaryDirectory(prefix="rig-check-") as tmp:
        try:
            if config.twin is not None and config.twin.autostart:
                twin = TwinProcess(bench_file.path, Path(tmp) / "twin-truth.jsonl")
            bench = Bench(bench_file, Transcript(None), twin.resources if twin else None)
            rows, unreachable = [], 0
            for role in bench.roles:
                role_config = bench.role_config(role)
                try:
                    identity = bench.open_role(role)
                    rows.append((role, role_config.driver, role_config.resource, identity.manufacturer,
                                 identity.model, identity.serial, identity.firmware, "ok"))
                except RigError as exc:
                    unreachable += 1
                    rows.append((role, role_config.driver, role_config.resource, "-", "-", "-", "-", str(exc)))
            firmware = {position_of_role(role): identity.firmware for role, identity in bench.identities.items()
                        if role.startswith("meter@")}
            for driver in bench.drivers.values():
                driver.close()
        finally:
            if twin is not None:
                twin.stop()
            lock.release()
    _print_table(("role", "driver", "resource", "maker", "model", "serial", "firmware", "status"), rows)
    if config.positions:
        print()
        _print_table(("position", "serial", "class", "base A", "Imax A", "Un V", "imp/kWh", "firmware"),
                     [(m.position, m.serial, m.accuracy_class, m.base_current_a, m.imax_a, m.un_v,
                       m.meter_constant_imp_per_kwh, firmware.get(m.position, "-")) for m in config.positions])
    if unreachable:
        print(f"\n{unreachable} role(s) could not be reached", file=sys.stderr)
        return 1
    return 0


def _print_table(header: tuple, rows: list[tuple]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def cmd_certificate(args: argparse.Namespace) -> int:
    from rig.certificate import write_certificates

    folder = Path(args.run_folder).resolve()  # results/latest is a link: name the run itself
    written = write_certificates(folder)
    if not written:
        print(f"rig: {folder}: no accuracy measurements, no certificate", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _history_database(args: argparse.Namespace, default: Path | None):
    """The database `rig history` works on: --db (a SQLite file or a postgresql:// address), the database of
    --bench's `history:` section, else `default`."""
    from rig.history_db import bench_target, is_database_url, target_from_url

    if args.db and is_database_url(args.db):
        return target_from_url(args.db)
    if args.db:
        return Path(args.db)
    if args.bench:
        from rig.config import load_bench

        bench_file = load_bench(args.bench)
        if bench_file.config.history is None:
            raise RigError(f"{bench_file.path}: no history section (history: {{url: postgresql://...}})")
        return bench_target(bench_file.config.history, bench_file.path.parent)
    return default


def cmd_history_upload(args: argparse.Namespace) -> int:
    from rig.history_db import pending_folders, upload_pending

    target = _history_database(args, None)
    if target is None or isinstance(target, Path):
        raise RigError("history upload: name the database with --db postgresql://... or --bench BENCH")
    results = Path(args.results)
    if not pending_folders(results, target.label):
        print(f"history: {target.label}: nothing pending in {results}")
        return 0
    result = upload_pending(target, results)
    for folder, run_id in result.uploaded:
        print(f"history: {target.label}: run {run_id} from {folder}")
    for problem in result.unreadable + ([result.failure] if result.failure else []):
        print(f"rig: {problem}", file=sys.stderr)
    left = len(pending_folders(results, target.label))
    if left:
        print(f"rig: {left} run(s) still pending in {results}", file=sys.stderr)
    return 1 if left else 0


def cmd_history(args: argparse.Namespace) -> int:
    from rig import history

    if args.action == "upload":
        return cmd_history_upload(args)
    if args.add:
        folder = Path(args.add).resolve()
        database, run_id = history.append_run_folder(folder, _history_database(args, None))
        print(f"history: {history.database_label(database)}: run {run_id} from {folder}")
        return 0
    database = _history_database(args, Path(DEFAULT_HISTORY))
    label = history.database_label(database)
    filters = {"meter": args.meter, "plan": args.plan, "name": args.measurement, "point": args.point, "pf": args.pf}
    if not any(value is not None for value in filters.values()):
        _print_table(("run", "started", "bench", "revision", "passed", "failed", "error", "skipped", "meters"),
                     [(r["id"], (r["started"] or "-")[:19], r["bench"], r["git_revision"] or "-", r["passed"],
                       r["failed"], r["error"], r["skipped"], r["meters"] or "-") for r in history.runs(database)])
        return 0
    rows = history.trends(database, **filters)
    if not rows:
        chosen = ", ".join(f"{key} {value!r}" for key, value in filters.items() if value is not None)
        print(f"rig: {label}: no measurements for {chosen}", file=sys.stderr)
        return 1
    print("\n".join(history.format_trends(rows)).rstrip())
    if args.plot:
        title = ", ".join(f"{key} {value}" for key, value in filters.items() if value is not None)
        history.plot_trends(rows, Path(args.plot), f"History: {title}")
        print(f"plot: {args.plot}")
    return 0


def add_certificate_and_history(sub) -> None:
    certificate = sub.add_parser("certificate", help="write accuracy certificates (HTML, PDF) of a run's meters")
    certificate.add_argument("run_folder", help="run folder, e.g. results/latest")
    certificate.set_defaults(func=cmd_certificate)

    history = sub.add_parser("history", help="list runs, or a meter's or plan's measurements across runs",
                             description="Without filters: the runs in the history database. With --meter or "
                                         "--plan (and optional filters): each measurement's values across runs.")
    history.add_argument("action", nargs="?", choices=["upload"],
                         help="upload: send the runs pending under --results to the database of --db or --bench")
    history.add_argument("--db", help=f"history database: a SQLite file (default: {DEFAULT_HISTORY}; with --add: "
                                      f"beside the run) or postgresql://USER@HOST:PORT/DATABASE (password from "
                                      f"PGPASSWORD or ~/.pgpass)")
    history.add_argument("--bench", help="the database of this bench's history section (its password secret)")
    history.add_argument("--results", default="results", help="with upload: the folder of the run folders")
    history.add_argument("--add", metavar="RUN_FOLDER", help="append (or replace) a run folder in the database")
    history.add_argument("--meter", metavar="SERIAL", help="only this meter's measurements")
    history.add_argument("--plan", help="only this plan's measurements (e.g. accuracy, prepaid)")
    history.add_argument("--measurement", metavar="NAME", help="only this measurement (e.g. error)")
    history.add_argument("--point", help="only this load point (e.g. Ib, '0.5 Imax'; spaces ignored)")
    history.add_argument("--pf", help="only this power factor (1, 0.5L, 0.8C)")
    history.add_argument("--plot", metavar="FILE.png", help="also draw the trends into this image")
    history.set_defaults(func=cmd_history)


def cmd_sim(args: argparse.Namespace) -> int:
    import socket

    from rig.config import load_bench
    from rig.sim.defects import check_defects
    from rig.sim.twin import is_serial_device, parse_resource, serve, simulated_roles, simulator_class

    bench_file = load_bench(args.bench)
    defects = Path(args.defects) if args.defects else None
    if defects is not None:
        check_defects(defects, bench_file)
    if not args.ephemeral_ports:  # a port in use is named with its role before anything is served
        for role, config in simulated_roles(bench_file.config).items():
            if getattr(simulator_class(config.driver), "transport", None) == "pty" or is_serial_device(config.resource):
                continue
            _host, port = parse_resource(config.resource, role)
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError as exc:
                    raise RigError(f"twin: {role} ({config.resource}): cannot serve on 127.0.0.1:{port}: "
                                   f"{exc.strerror} (is another twin serving this bench? --ephemeral-ports "
                                   f"picks free ports)") from None
    try:
        asyncio.run(serve(bench_file, Path(args.truth), args.ephemeral_ports,
                          Path(args.ready_file) if args.ready_file else None, args.parent_pid, defects,
                          announce=lambda line: print(line, flush=True)))
    except OSError as exc:
        raise RigError(f"twin: cannot serve {bench_file.path.name}: {exc.strerror or exc}") from None
    return 0


def cmd_labgrid_export(args: argparse.Namespace) -> int:
    from rig.config import load_bench
    from rig.labgrid import write_exporter_config

    bench_file = load_bench(args.bench)
    text = write_exporter_config(bench_file, Path(args.output) if args.output else None)
    if args.output:
        print(f"labgrid exporter configuration: {args.output} (group {bench_file.name!r})")
    else:
        sys.stdout.write(text)
    return 0


def add_labgrid(sub) -> None:
    labgrid = sub.add_parser("labgrid", help="shared benches through labgrid")
    actions = labgrid.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write a labgrid exporter configuration publishing a bench")
    export.add_argument("bench")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.set_defaults(func=cmd_labgrid_export)


def cmd_schema(args: argparse.Namespace) -> int:
    from rig.config import bench_json_schema

    text = json.dumps(bench_json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rig.report.browser import find_chromium, view_report
    from rig.report.html import build_html

    folder = Path(args.run_folder).resolve()  # results/latest is a link: name the run itself
    index = build_html(folder, Path(args.output) if args.output else None)
    print(f"report: {index}")
    if args.no_screenshot:
        return 0
    if find_chromium() is None:
        print("screenshot: none (no chromium; apt-get install chromium)")
        return 0
    try:  # the report is built; a screenshot that fails is told, not fatal
        view = view_report(index, index.parent / "screenshot.png", test_names=("test_error_at_load_point", ""))
        print(f"screenshot: {view.screenshot} ({view.test})")
    except RigError as exc:
        print(f"screenshot: none ({exc})", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rig", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the test plans on a bench (default: the twin)")
    run.add_argument("--bench", default=DEFAULT_BENCH)
    run.add_argument("--results", default=None, help="run folder (default: results/<timestamp>)")
    run.add_argument("--plans", default=DEFAULT_PLANS, help="test plans folder or file")
    run.add_argument("--history", metavar="postgresql://USER@HOST:PORT/DATABASE",
                     help="also upload the run to this database (instead of the bench's history section); the "
                          "password from PGPASSWORD or ~/.pgpass")
    run.add_argument("--serial", action="append", metavar="POSITION=SERIAL",
                     help="the meter serial at this bench position for this run (instead of the bench file's)")
    run.add_argument("--note", action="append", help="a note kept in run.json (e.g. why an overdue calibration "
                                                     "was accepted)")
    run.add_argument("--status-file", help="keep this JSON file up to date with the tests, outcomes and current wait")
    run.add_argument("--place", metavar="NAME",
                     help="hold this labgrid place for the run (coordinator: LG_COORDINATOR)")
    run.add_argument("--place-wait", metavar="SECONDS", type=float, default=0.0,
                     help="wait this long for a place someone else holds (default: refuse at once)")
    run.add_argument("pytest_args", nargs=argparse.REMAINDER, help="further pytest arguments, after --")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a bench, reach every role, print identities")
    check.add_argument("bench")
    check.set_defaults(func=cmd_check)

    sim = sub.add_parser("sim", help="serve the digital twin of a bench in the foreground")
    sim.add_argument("--bench", default=DEFAULT_BENCH)
    sim.add_argument("--truth", default="twin-truth.jsonl", help="ground-truth file to append to")
    sim.add_argument("--ephemeral-ports", action="store_true", help="bind free ports instead of the bench's")
    sim.add_argument("--ready-file", help="write the served resources here once listening")
    sim.add_argument("--parent-pid", type=int, help="exit when this parent process is gone")
    sim.add_argument("--defects", help="defect profile YAML: make chosen meters, the HES or the link misbehave")
    sim.set_defaults(func=cmd_sim)

    report = sub.add_parser("report", help="build a run's offline HTML report (Allure 3, one file)")
    report.add_argument("run_folder", nargs="?", default="results/latest", help="run folder (default: results/latest)")
    report.add_argument("-o", "--output", help="report folder (default: RUN_FOLDER/report)")
    report.add_argument("--no-screenshot", action="store_true", help="skip the screenshot in headless Chromium")
    report.set_defaults(func=cmd_report)

    schema = sub.add_parser("schema", help="print the bench description's JSON Schema")
    schema.add_argument("-o", "--output")
    schema.set_defaults(func=cmd_schema)

    add_certificate_and_history(sub)
    add_labgrid(sub)
    from rig.station.cli import add_station_command

    add_station_command(sub)
    from rig.fleet.cli import add_fleet_commands

    add_fleet_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "pytest_args", None) and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    try:
        return args.func(args)
    except RigError as exc:
        print(f"rig: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
