"""A shard as a foreground process (`rig fleet shard`): its meters served, its control channel on 127.0.0.1, one
JSON ready line on stdout, and a clean stop on SIGINT or SIGTERM (or when the parent process is gone)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable

from rig.errors import ConfigError
from rig.fleet.control import ControlServer
from rig.fleet.shard import FleetShard, ShardConfig, rss_bytes

PARENT_POLL_S = 1.0


def shard_index_from(explicit: int | None, environ: dict[str, str] | None = None) -> int:
    """--shard-index, else JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's pod index); ConfigError without
    either."""
    if explicit is not None:
        return explicit
    value = (environ if environ is not None else os.environ).get("JOB_COMPLETION_INDEX")
    if value is None:
        raise ConfigError("fleet shard: give --shard-index or set JOB_COMPLETION_INDEX")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"fleet shard: JOB_COMPLETION_INDEX {value!r} is not a number") from None


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(PARENT_POLL_S)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            stop.set()


async def serve_shard(config: ShardConfig, control_port: int = 0, announce: Callable[[str], None] = print,
                      parent_pid: int | None = None) -> None:
    """Serve the shard until a signal (or the parent's end) stops it."""
    rss_empty = rss_bytes()
    shard = FleetShard(config)
    await shard.start()
    control = ControlServer(shard)
    port = await control.start(control_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    meters = shard.members
    announce(json.dumps({"event": "ready", "shard_index": config.shard_index, "shard_count": config.shard_count,
                         "meters": len(meters), "first": f"{meters[0].serial} {meters[0].host}:{meters[0].port}",
                         "last": f"{meters[-1].serial} {meters[-1].host}:{meters[-1].port}",
                         "control": f"127.0.0.1:{port}", "pid": os.getpid(),
                         "rss_empty_bytes": rss_empty,
                         "rss_per_meter_bytes": (rss_bytes() - rss_empty) // len(meters)}))
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await control.stop()
        await shard.stop()
        announce(json.dumps({"event": "stopped", "shard_index": config.shard_index}))
