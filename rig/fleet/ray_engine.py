"""The fleet over Ray: one Ray actor per shard, and RayFleet, the control plane with LocalFleet's API.

Each shard is an async actor (ShardActor) whose constructor builds the shard from its index, count and seed
(rig/fleet/model.py) and listens on every meter's endpoint; its methods run on the actor's event loop, the same
loop that serves the meters. The actor is created with `max_restarts` (default: unbounded) and `max_task_retries`:
a shard whose worker dies (killed, crashed) comes back on a new worker, re-derives the same meters and listens on
the same addresses and ports, so clients reconnect and associate again; control calls in flight are retried on
the new actor. A restarted shard starts afresh: its meters' energy, relay and mains states are the seeded ones.

Placement: by default every meter listens on a loopback alias (127.x.y.z) of the node its shard runs on, so a
client reaches a shard's meters from that node only. With bind "node" every meter listens on its node's IP
(ray.util.get_node_ip_address() in the actor), one port per meter: the shard in slot k of its node (shard index //
node count) serves ports port + k x meters per shard onwards, so a head end on any machine reaches every meter.
On a cluster of several nodes the shards go round the alive nodes, each pinned to its node (hard node affinity:
Ray's soft affinity and SPREAD left nodes of one CPU unevenly loaded), so a restarted shard serves the same
addresses and ports on the same machine; a shard whose node is lost stays lost (its control calls fail naming it)
until the fleet is started again. Each shard's ready line names its node.

Ray is an optional extra (`pip install '.[fleet]'`); this module imports without it and says how to install it
when an engine call needs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
import warnings

from rig.errors import RigError
from rig.fleet.local import FleetControl, split_meters
from rig.fleet.model import BIND_LOOPBACK, BIND_NODE
from rig.fleet.shard import CONTROL_METHODS, FleetShard, ShardConfig, free_port_run, rss_bytes, spread_port_bases

RAY_MISSING = ("fleet: --engine ray needs Ray, which is not installed: pip install '.[fleet]' (from the project "
               "root), or serve the fleet with --engine local")
NAMESPACE = "meter-hil-rig-fleet"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
DEFAULT_MAX_RESTARTS = -1  # unbounded: a shard comes back however often it is killed
DEFAULT_SHARD_CPUS = 0.0  # a shard is one event loop waiting on sockets: it reserves no CPU, so K shards always fit


def require_ray():
    """The ray module; RigError saying how to install it when it is missing."""
    try:
        import ray
    except ImportError:
        raise RigError(RAY_MISSING) from None
    return ray


class ShardActor:
    """One fleet shard in a Ray actor (wrapped with ray.remote by RayFleet)."""

    async def __init__(self, config: ShardConfig):
        import ray

        self.config = config
        self.node_ip = ray.util.get_node_ip_address()
        self.rss_empty = rss_bytes()
        self.shard = FleetShard(config, self.node_ip)
        await self.shard.start()
        self.rss_started = rss_bytes()
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        with warnings.catch_warnings():  # the property itself uses a deprecated accessor inside Ray
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = context.was_current_actor_reconstructed

    async def ready(self) -> dict:
        """The shard's ready line, as a local shard process prints it, and where it runs."""
        meters = self.shard.members
        return {"event": "ready", "shard_index": self.config.shard_index, "shard_count": self.config.shard_count,
                "meters": len(meters), "first": f"{meters[0].serial} {meters[0].host}:{meters[0].port}",
                "last": f"{meters[-1].serial} {meters[-1].host}:{meters[-1].port}", "pid": os.getpid(),
                "node_id": self.node_id, "node_ip": self.node_ip, "restarted": self.restarted,
                "rss_empty_bytes": self.rss_empty,
                "rss_per_meter_bytes": (self.rss_started - self.rss_empty) // len(meters)}

    async def call(self, method: str, args: dict):
        if method not in CONTROL_METHODS:
            raise RigError(f"unknown control method {method!r} (known: {', '.join(sorted(CONTROL_METHODS))})")
        return await getattr(self.shard, method)(**args)

    async def stop(self) -> None:
        await self.shard.stop()


def free_fleet_port(config: ShardConfig) -> int:
    """A port free on the first meter's loopback alias, for every meter of the fleet (each on its own alias)."""
    host = config.layout().host(0)
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            raise RigError(f"fleet: no free port on {host}: {exc.strerror}") from None
        return probe.getsockname()[1]


def _cause(error: Exception) -> str:
    """The shard's own error message out of a Ray error (which carries the remote traceback)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}" if not isinstance(cause, RigError) else str(cause)
    return str(error).strip().splitlines()[0]


class RayFleet(FleetControl):
    """K shard actors serving `meters` meters (rounded up to K equal shards) on a Ray cluster; control calls go
    to all shards at once.

    address: an existing cluster's ("auto", "HOST:PORT" of its GCS, or "ray://HOST:PORT" for Ray Client); None
    starts a local head with this machine's CPUs and no dashboard (and ends it in stop). A port of 0 becomes one
    free port, picked at start, for every meter (with bind "node" or an address: the first of a run of free ports
    on the machine that starts the fleet - on a cluster give the port): a restarted shard listens on the same
    endpoints."""

    def __init__(self, meters: int, shards: int, address: str | None = None, *,
                 max_restarts: int = DEFAULT_MAX_RESTARTS, shard_cpus: float = DEFAULT_SHARD_CPUS,
                 ray_temp_dir: str | None = None, **shard_settings):
        """shard_settings: ShardConfig's fields other than the layout's (seed, push, port, first_octet, ...).
        ray_temp_dir: the local head's session folder (only when no address is given)."""
        self.per_shard = split_meters(meters, shards)
        self.shard_count = shards
        self.address = address
        self.max_restarts = max_restarts
        self.shard_cpus = shard_cpus
        self.ray_temp_dir = ray_temp_dir
        self.shard_settings = shard_settings
        self.configs: list[ShardConfig] = []
        self.actors: list = []
        self.ready: list[dict] = []
        self._owns_ray = False

    @property
    def total_meters(self) -> int:
        return self.per_shard * self.shard_count

    def connect(self):
        """Join the cluster at `address`, or start a local head; the ray module."""
        ray = require_ray()
        if ray.is_initialized():
            return ray
        options = {"namespace": NAMESPACE, "logging_level": "WARNING"}
        if self.address:
            options["address"] = self.address
        else:
            options.update(num_cpus=os.cpu_count() or 1, include_dashboard=False)
            if self.ray_temp_dir:
                options["_temp_dir"] = self.ray_temp_dir
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local head"
            raise RigError(f"fleet: cannot join the Ray cluster at {where}: {exc}") from None
        self._owns_ray = True
        return ray

    def _placements(self, ray) -> tuple[list, int]:
        """Per shard: a strategy pinning it to the next alive node in turn (None on a single node); and the number
        of nodes the shards go round."""
        nodes = sorted((node for node in ray.nodes() if node.get("Alive")), key=lambda node: node["NodeID"])
        if len(nodes) < 2:
            return [None] * self.shard_count, 1
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return [NodeAffinitySchedulingStrategy(nodes[index % len(nodes)]["NodeID"], soft=False)
                for index in range(self.shard_count)], len(nodes)

    def _shard_configs(self, node_count: int) -> list[ShardConfig]:
        """Every shard's config; its port resolved (0: picked here) and, bound to one address per node, its own
        port range on its node."""
        settings = dict(self.shard_settings)
        configs = [ShardConfig(index, self.shard_count, self.per_shard, **settings)
                   for index in range(self.shard_count)]
        first = configs[0]
        if first.bind == BIND_LOOPBACK:
            if first.port == 0:
                port = free_fleet_port(first)
                configs = [dataclasses.replace(config, port=port) for config in configs]
            return configs
        slots = [index // node_count for index in range(self.shard_count)]
        address = "0.0.0.0" if first.bind == BIND_NODE and not first.host else first.bind_address()
        base = first.port or free_port_run(address, (max(slots) + 1) * self.per_shard)
        configs = spread_port_bases(configs, slots, base)
        for config in configs:
            config.layout(address)  # ConfigError naming the shard whose ports go past 65535
        return configs

    async def start(self) -> list[dict]:
        """Create every shard actor and wait until each serves its meters; returns their ready lines."""
        try:
            ray = self.connect()
            placements, node_count = self._placements(ray)
            self.configs = self._shard_configs(node_count)
            remote = ray.remote(ShardActor)
            for config, placement in zip(self.configs, placements, strict=True):
                options = {"max_restarts": self.max_restarts, "max_task_retries": -1, "num_cpus": self.shard_cpus}
                if placement is not None:
                    options["scheduling_strategy"] = placement
                self.actors.append(remote.options(**options).remote(config))
            self.ready = await self._gather([actor.ready.remote() for actor in self.actors], "start",
                                            READY_TIMEOUT_S)
        except BaseException:
            await self.stop()
            raise
        return self.ready

    async def _gather(self, refs: list, method: str, timeout_s: float | None = None) -> list:
        """Every shard's result of one call (all calls already sent), in shard order; RigError naming the first
        shard that failed."""
        ray = require_ray()

        def collect() -> list:
            deadline = time.monotonic() + timeout_s if timeout_s else None
            results = []
            for index, ref in enumerate(refs):
                try:
                    left = max(0.0, deadline - time.monotonic()) if deadline else None
                    results.append(ray.get(ref, timeout=left))
                except ray.exceptions.GetTimeoutError:
                    raise RigError(f"fleet shard {index}: {method}: no answer within {timeout_s:.0f} s") from None
                except ray.exceptions.RayError as exc:
                    raise RigError(f"fleet shard {index}: {method}: {_cause(exc)}") from None
            return results

        return await asyncio.to_thread(collect)

    async def each(self, method: str, **args) -> list:
        """One control call sent to every shard at once; their results in shard order."""
        if not self.actors:
            raise RigError(f"fleet: {method}: the fleet is not running")
        return await self._gather([actor.call.remote(method, args) for actor in self.actors], method)

    async def stop(self) -> None:
        """Stop every shard's meters, end the actors (no restart) and, when this fleet joined or started the
        cluster, leave it (a local head ends with it)."""
        if self.actors:
            ray = require_ray()
            stopping = [actor.stop.remote() for actor in self.actors]
            await asyncio.to_thread(ray.wait, stopping, num_returns=len(stopping), timeout=STOP_TIMEOUT_S)
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors = []
        if self._owns_ray:
            require_ray().shutdown()
            self._owns_ray = False
