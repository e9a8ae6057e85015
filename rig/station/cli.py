"""`rig station`: the operator station's command."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PORT = 8040


def cmd_station(args: argparse.Namespace) -> int:
    from rig.station.server import serve

    serve(Path(args.bench), args.port, Path(args.results), args.marker, Path(args.plans))
    return 0


def add_station_command(sub) -> None:
    station = sub.add_parser("station", help="serve the operator station page (127.0.0.1): scan serials, Start, "
                                             "follow the batch, PASS/FAIL per position")
    station.add_argument("--bench", required=True, help="bench description YAML")
    station.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    station.add_argument("--results", default="results", help="folder of the batches' run folders (default: results)")
    station.add_argument("-m", "--marker", default=None,
                         help="plans of a batch: a pytest marker expression, e.g. smoke (default: all plans)")
    station.add_argument("--plans", default="testplans", help="test plans folder")
    station.set_defaults(func=cmd_station)
