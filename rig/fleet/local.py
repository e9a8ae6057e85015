"""The fleet in local processes, without Ray: K shard processes (`python -m rig.cli fleet shard ...`), each with
its JSON-lines control channel (rig/fleet/control.py), and the shard control API fanned out to all of them at
once. Each control call returns the shards' results in shard order.

With a bind address (bind "node": `host`, else this machine's route-out address; or an explicit IPv4 address) all
shards share that address: shard s serves ports port + s x meters per shard onwards (port 0: a run of free ports
found at start)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

from rig.errors import RigError
from rig.fleet.control import ControlClient
from rig.fleet.model import BIND_LOOPBACK, BIND_NODE
from rig.fleet.shard import ShardConfig, free_port_run, spread_port_bases

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
SUMMED_METRICS = ("meters", "mains_on", "connections", "associations", "associations_accepted",
                  "associations_rejected", "hls_refused", "requests", "gets", "pushes_sent", "push_failures",
                  "relay_connected", "rss_bytes")


def shard_command(config: ShardConfig, control_port: int = 0) -> list[str]:
    """The command line of one shard process."""
    command = [sys.executable, "-m", "rig.cli", "fleet", "shard", "--shard-index", str(config.shard_index),
               "--shard-count", str(config.shard_count), "--meters-per-shard", str(config.meters_per_shard),
               "--seed", str(config.seed), "--port", str(config.port), "--first-octet", str(config.first_octet),
               "--time-scale", repr(config.time_scale), "--base-w", repr(config.base_w),
               "--control-port", str(control_port), "--parent-pid", str(os.getpid())]
    if config.secret_file:
        command += ["--secret-file", str(config.secret_file)]
    if config.push:
        command += ["--push", config.push]
    if config.bind != BIND_LOOPBACK:
        command += ["--bind", config.bind]
    if config.host:
        command += ["--host", config.host]
    return command


def split_meters(meters: int, shards: int) -> int:
    """Meters per shard: the fleet's meters spread over its shards (rounded up)."""
    if meters < 1 or shards < 1:
        raise RigError(f"a fleet needs at least one meter and one shard, got {meters} meters, {shards} shards")
    return math.ceil(meters / shards)


class FleetControl:
    """The shard control API over a whole fleet, on top of `each` (one call to every shard at once, the results
    in shard order); the engines (LocalFleet, rig/fleet/ray_engine.py RayFleet) provide `each`."""

    async def each(self, method: str, **args) -> list:
        raise NotImplementedError

    async def mains_off(self, fraction: float = 1.0, jitter_s: float = 0.0) -> list[dict]:
        return await self.each("mains_off", fraction=fraction, jitter_s=jitter_s)

    async def mains_on(self, jitter_s: float = 0.0) -> list[dict]:
        return await self.each("mains_on", jitter_s=jitter_s)

    async def set_consumption(self, scale: float) -> list[dict]:
        return await self.each("set_consumption", scale=scale)

    async def meters(self) -> list[dict]:
        return [meter for shard in await self.each("meters") for meter in shard]

    async def states(self) -> list[dict]:
        return [meter for shard in await self.each("states") for meter in shard]

    async def metrics(self) -> dict:
        """The shards' metrics summed (percentiles: the worst shard's), and each shard's under "shards"."""
        shards = await self.each("metrics")
        total = {key: sum(shard.get(key) or 0 for shard in shards) for key in SUMMED_METRICS}
        for key in ("get_p50_ms", "get_p99_ms"):
            values = [shard[key] for shard in shards if shard.get(key) is not None]
            total[key] = max(values) if values else None
        total["shards"] = shards
        return total


class LocalFleet(FleetControl):
    """K shard processes serving `meters` meters (rounded up to K equal shards); control calls go to all."""

    def __init__(self, meters: int, shards: int, **shard_settings):
        """shard_settings: ShardConfig's fields other than the layout's index, count and meters per shard (seed,
        push, port, first_octet, secret_file, time_scale, base_w, bind, host, ...)."""
        per_shard = split_meters(meters, shards)
        self.configs = [ShardConfig(index, shards, per_shard, **shard_settings) for index in range(shards)]
        if self.configs[0].bind == BIND_NODE and not self.configs[0].host:  # one address for all shards
            host = self.configs[0].bind_address()
            self.configs = [dataclasses.replace(config, host=host) for config in self.configs]
        self.processes: list[subprocess.Popen] = []
        self.logs: list = []  # each shard's stderr, in a temporary file (a pipe nobody reads would fill up)
        self.ready: list[dict] = []
        self.clients: list[ControlClient] = []

    @property
    def total_meters(self) -> int:
        return sum(config.meters_per_shard for config in self.configs)

    async def start(self) -> list[dict]:
        """Start every shard process and wait for its ready line; returns the ready lines."""
        try:
            self._place_ports()
            for config in self.configs:
                log = tempfile.TemporaryFile(mode="w+", prefix=f"fleet-shard-{config.shard_index}-")
                self.logs.append(log)
                self.processes.append(subprocess.Popen(shard_command(config), stdout=subprocess.PIPE, stderr=log,
                                                       text=True, start_new_session=True))
            self.ready = await asyncio.gather(*(asyncio.to_thread(self._await_ready, process, config, log)
                                                for process, config, log in zip(self.processes, self.configs,
                                                                                self.logs, strict=True)))
            for line in self.ready:
                host, port = line["control"].rsplit(":", 1)
                client = ControlClient(host, int(port), f"fleet shard {line['shard_index']}")
                await client.connect()
                self.clients.append(client)
        except BaseException:
            await self.stop()
            raise
        return self.ready

    def _place_ports(self) -> None:
        """Shards on one bind address: consecutive port ranges, from a run of free ports when the port is 0."""
        first = self.configs[0]
        if first.bind == BIND_LOOPBACK:
            return
        base = first.port or free_port_run(first.bind_address(), self.total_meters)
        self.configs = spread_port_bases(self.configs, [config.shard_index for config in self.configs], base)
        for config in self.configs:
            config.layout()  # ConfigError naming the shard whose ports go past 65535

    @staticmethod
    def _await_ready(process: subprocess.Popen, config: ShardConfig, log) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                process.wait()
                log.seek(0)
                error = log.read().strip().splitlines()
                raise RigError(f"fleet shard {config.shard_index}: exited with {process.wait()} before it was "
                               f"ready: {error[-1] if error else 'no message'}")
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("event") == "ready":
                    return message
        raise RigError(f"fleet shard {config.shard_index}: not ready within {READY_TIMEOUT_S:.0f} s")

    async def stop(self) -> None:
        """SIGTERM to every shard (they stop their meters cleanly), SIGKILL to any still running after
        STOP_TIMEOUT_S."""
        for client in self.clients:
            await client.close()
        self.clients = []
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
            if process.stdout is not None:
                process.stdout.close()
        for log in self.logs:
            log.close()
        self.processes, self.logs = [], []

    async def each(self, method: str, **args) -> list:
        """One control call sent to every shard at once; their results in shard order."""
        if not self.clients:
            raise RigError(f"fleet: {method}: the fleet is not running")
        return list(await asyncio.gather(*(client.call(method, **args) for client in self.clients)))
