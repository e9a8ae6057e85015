"""`rig fleet serve` (a fleet of twin meters in K shards) and `rig fleet shard` (one shard in the foreground)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from rig.errors import RigError


def _shard_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="fleet seed: serials are fixed, consumption drawn from it")
    parser.add_argument("--port", type=int, default=4059,
                        help="every meter's TCP wrapper port; with --bind node or an address the first port, one "
                             "per meter (0: free ports)")
    parser.add_argument("--bind", default="loopback", metavar="loopback|node|IP",
                        help="where meters listen: loopback (default: each on its own 127.x.y.z alias, reachable "
                             "from its machine only), node (the address of the machine each shard runs on, "
                             "reachable from others) or an IPv4 address of this machine")
    parser.add_argument("--host", metavar="IP",
                        help="with --bind node and the local engine: this machine's address (default: the "
                             "address of its route out)")
    parser.add_argument("--first-octet", type=int, default=10,
                        help="meters listen on 127.<first-octet>.x.y upwards (default 10)")
    parser.add_argument("--secret-file", help="fleet secret the meters' keys derive from "
                                              "(default benches/sim-fleet-secret)")
    parser.add_argument("--push", metavar="HOST:PORT", help="the head end's push endpoint the meters dial")
    parser.add_argument("--time-scale", type=float, default=1.0, help="fleet time runs this much faster")
    parser.add_argument("--base-w", type=float, default=None, help="mean power of a meter at scale 1, W")


def add_fleet_commands(sub) -> None:
    fleet = sub.add_parser("fleet", help="serve a fleet of twin DLMS meters (shards of meters on loopback aliases "
                                         "or a node's address)")
    commands = fleet.add_subparsers(dest="fleet_command", required=True)

    serve = commands.add_parser("serve", help="serve N meters in K shards until Ctrl-C")
    serve.add_argument("--meters", type=int, required=True)
    serve.add_argument("--shards", type=int, default=1)
    serve.add_argument("--engine", choices=("local", "ray"), default="local")
    serve.add_argument("--address", help="with --engine ray: the cluster to join (auto, HOST:PORT of its head, or "
                                         "ray://HOST:10001); without it a local Ray head is started")
    serve.add_argument("--max-restarts", type=int, default=-1,
                       help="with --engine ray: restarts of a killed shard actor (-1: unbounded)")
    _shard_options(serve)
    serve.set_defaults(func=cmd_fleet_serve)

    shard = commands.add_parser("shard", help="serve one shard in the foreground",
                                description="The shard index comes from --shard-index or, without it, from "
                                            "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).")
    shard.add_argument("--shard-index", type=int, default=None)
    shard.add_argument("--shard-count", type=int, required=True)
    shard.add_argument("--meters-per-shard", type=int, required=True)
    shard.add_argument("--control-port", type=int, default=0, help="JSON-lines control channel on 127.0.0.1")
    shard.add_argument("--parent-pid", type=int, help="exit when this parent process is gone")
    _shard_options(shard)
    shard.set_defaults(func=cmd_fleet_shard)


def _shard_settings(args: argparse.Namespace) -> dict:
    settings = {"seed": args.seed, "port": args.port, "first_octet": args.first_octet,
                "secret_file": str(Path(args.secret_file).resolve()) if args.secret_file else None,
                "push": args.push, "time_scale": args.time_scale, "bind": args.bind, "host": args.host}
    if args.base_w is not None:
        settings["base_w"] = args.base_w
    return settings


def cmd_fleet_shard(args: argparse.Namespace) -> int:
    from rig.fleet.process import serve_shard, shard_index_from
    from rig.fleet.shard import ShardConfig

    config = ShardConfig(shard_index_from(args.shard_index), args.shard_count, args.meters_per_shard,
                         **_shard_settings(args))
    asyncio.run(serve_shard(config, args.control_port, lambda line: print(line, flush=True), args.parent_pid))
    return 0


def cmd_fleet_serve(args: argparse.Namespace) -> int:
    settings = _shard_settings(args)
    if args.engine == "ray":
        from rig.fleet.ray_engine import RayFleet, require_ray

        require_ray()
        if args.host:
            raise RigError("fleet: --host is the local engine's; with --engine ray each shard binds on its node's IP")
        fleet = RayFleet(args.meters, args.shards, args.address, max_restarts=args.max_restarts, **settings)
    else:
        if args.address:
            raise RigError("fleet: --address is a Ray cluster's; the local engine takes none")
        from rig.fleet.local import LocalFleet

        fleet = LocalFleet(args.meters, args.shards, **settings)
    asyncio.run(_serve(fleet, args))
    return 0


async def _serve(fleet, args: argparse.Namespace) -> None:
    """Start the fleet (LocalFleet or RayFleet), print each shard's ready line, serve until SIGINT or SIGTERM."""
    if fleet.total_meters != args.meters:
        print(f"fleet: serving {fleet.total_meters} meters ({args.shards} shards of "
              f"{fleet.total_meters // args.shards})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        for line in await fleet.start():
            print(json.dumps(line), flush=True)
        print(f"fleet: {fleet.total_meters} meters in {args.shards} shards ({args.engine}); Ctrl-C stops",
              flush=True)
        await stop.wait()
    finally:
        with contextlib.suppress(RigError):
            metrics = await fleet.metrics() if fleet.ready else None
            if metrics is not None:
                metrics.pop("shards")
                print(json.dumps({"event": "metrics", **metrics}), flush=True)
        await fleet.stop()
        print("fleet: stopped", file=sys.stderr, flush=True)
