"""A fleet shard: one asyncio process serving N twin DLMS meters, each on its own IEC 62056-47 TCP wrapper endpoint
(its loopback alias and the fleet's port, or with a bind address that address and a port of its own;
rig/fleet/model.py derives serial, address and keys from the shard's index, the shard count, the meters per shard
and the bind), all answered by one shared logical device (rig/fleet/device.py).

Per meter the shard keeps a MeterState (slots: serial, address, keys, consumption, relay, mains, counters), one
listening socket and, while a client is connected, one connection protocol; energy is integrated on read, so no
meter has a timer of its own. With mains off a meter's communication module is dead: its listener is closed and
its connections dropped (clients see the connection refused), after it has sent its last-gasp push; with mains on
it listens again on the same address and port and pushes its power-up.

Pushes (rig/fleet/push.py): with a push target (host, port), each meter dials it (from its own loopback alias
when the target is on loopback) and sends a ciphered DataNotification on power down, power up and each relay
switching (remote disconnect or reconnect), `push_attempts` tries each with a timeout of PUSH_TIMEOUT_S.

The control API (async methods, JSON-able arguments and results, no engine specifics): mains_off, mains_on,
set_consumption, meters, states, metrics. rig/fleet/control.py serves it over a JSON-lines socket for local
processes; another engine calls the same methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import resource
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rig.errors import ConfigError
from rig.fleet.device import FleetDevice
from rig.fleet.model import (
    BIND_LOOPBACK,
    BIND_NODE,
    CONNECTED,
    DEFAULT_BASE_W,
    DEFAULT_FIRST_OCTET,
    DEFAULT_PORT,
    MAX_PORT,
    FleetClock,
    FleetLayout,
    MeterState,
    check_bind,
    derive_key,
    read_fleet_secret,
    this_machine_address,
)
from rig.fleet.push import EVENT_CODES, Notification, encode_frame
from rig.sim.dlms.association import SERVER_SAP, Link
from rig.sim.dlms.server import wrap

PUSH_TIMEOUT_S = 5.0
PUSH_RETRY_DELAY_S = 1.0
LATENCY_SAMPLES = 50_000
INACTIVITY_TIMEOUT_S = 120.0
SWEEP_PERIOD_S = 10.0
LISTEN_BACKLOG = 16
MAX_APDU = 0xFFFF
START_BATCH = 500
PORT_RUN_ATTEMPTS = 20


@dataclass(frozen=True)
class ShardConfig:
    """What a shard serves: its layout (index, count, meters per shard, port, first address octet), the fleet seed
    and secret file, the push target ("host:port" or None), fleet time scale, mean power per meter and the meter
    reader's LLS password.

    bind: "loopback" (each meter on its own 127.x.y.z alias, all on `port`), "node" (every meter on the address of
    the machine the shard runs on: `host` when given, else the Ray node's IP or this machine's route-out address)
    or an IPv4 address; with "node" or an address, meter i listens on port + i (port 0: a free port each)."""

    shard_index: int
    shard_count: int
    meters_per_shard: int
    seed: int = 0
    port: int = DEFAULT_PORT
    first_octet: int = DEFAULT_FIRST_OCTET
    secret_file: str | None = None
    push: str | None = None
    time_scale: float = 1.0
    base_w: float = DEFAULT_BASE_W
    lls_password: str = "12345678"
    push_attempts: int = 2
    inactivity_timeout_s: float = INACTIVITY_TIMEOUT_S
    bind: str = BIND_LOOPBACK
    host: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bind", check_bind(self.bind))
        if self.host is not None and check_bind(self.host) in (BIND_LOOPBACK, BIND_NODE):
            raise ConfigError(f"fleet host {self.host!r} is not an IPv4 address")

    def bind_address(self, node_address: str | None = None) -> str | None:
        """The one address the shard's meters bind on (None: loopback aliases); for "node": `host`, else
        node_address (the Ray node's IP), else this machine's route-out address."""
        if self.bind == BIND_LOOPBACK:
            return None
        if self.bind == BIND_NODE:
            return self.host or node_address or this_machine_address()
        return self.bind

    def layout(self, node_address: str | None = None) -> FleetLayout:
        return FleetLayout(self.shard_index, self.shard_count, self.meters_per_shard, self.port, self.first_octet,
                           self.bind_address(node_address))

    def push_target(self) -> tuple[str, int] | None:
        if not self.push:
            return None
        host, _, port = self.push.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"push target {self.push!r} is not HOST:PORT")
        return host, int(port)


def free_port_run(address: str, count: int) -> int:
    """A port p such that p .. p + count - 1 are all free on address now (bound as the meters bind them, with
    SO_REUSEADDR; "0.0.0.0": free on every address of this machine): scanned upwards from a port the kernel
    picks; ConfigError after PORT_RUN_ATTEMPTS tries."""
    for _ in range(PORT_RUN_ATTEMPTS):
        run_start = port = _kernel_port(address)
        while port <= MAX_PORT:
            if not _port_free(address, port):
                run_start = port + 1
            elif port - run_start + 1 == count:
                return run_start
            port += 1
    raise ConfigError(f"fleet: no run of {count} free ports on {address} in {PORT_RUN_ATTEMPTS} tries")


def _kernel_port(address: str) -> int:
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            raise ConfigError(f"fleet: cannot bind on {address}: {exc.strerror}") from None
        return probe.getsockname()[1]


def _port_free(address: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
        return True


def spread_port_bases(configs: list[ShardConfig], slots: list[int], port_base: int) -> list[ShardConfig]:
    """Shards sharing one address: shard in slot k of its address gets ports from port_base + k x meters per
    shard, so the ports of the shards on one address do not overlap (loopback shards, or a port base of 0, a free
    port per meter: the configs as they are)."""
    if not port_base:
        return list(configs)
    return [config if config.bind == BIND_LOOPBACK
            else dataclasses.replace(config, port=port_base + slot * config.meters_per_shard)
            for config, slot in zip(configs, slots, strict=True)]


def percentile(samples: list[float], fraction: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def raise_open_file_limit(meters: int) -> None:
    """Room for every meter's listening socket and as many connections (the soft limit raised up to the hard
    one); ConfigError when the hard limit cannot hold even the listeners."""
    needed, wanted = meters + 256, 2 * meters + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(f"a shard of {meters} meters needs at least {needed} open files; the hard limit is {hard}")
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard),
                                                    hard))


class MeterConnection(asyncio.Protocol):
    """One client's TCP wrapper connection to one meter."""

    __slots__ = ("shard", "meter", "transport", "buffer", "link", "last_s")

    def __init__(self, shard: FleetShard, meter: MeterState):
        self.shard = shard
        self.meter = meter
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.link = Link("tcp")
        self.last_s = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.meter.mains_on:
            transport.abort()
            return
        self.shard.connections.setdefault(self.meter.index, set()).add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        held = self.shard.connections.get(self.meter.index)
        if held is not None:
            held.discard(self)
            if not held:
                del self.shard.connections[self.meter.index]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.last_s = time.monotonic()
        while len(self.buffer) >= 8:
            version, source, destination, length = struct.unpack_from(">HHHH", self.buffer)
            if version != 1:
                self.transport.close()
                return
            if len(self.buffer) < 8 + length:
                return
            apdu = bytes(self.buffer[8:8 + length])
            del self.buffer[:8 + length]
            if destination != SERVER_SAP:
                continue  # no such logical device: the wrapper discards it
            response = self.shard.answer(self, source, apdu)
            if response is not None:
                self.transport.write(wrap(SERVER_SAP, source, response))


class FleetShard:
    """The meters of one shard and its control API."""

    def __init__(self, config: ShardConfig, node_address: str | None = None):
        """node_address: the address of the node the shard runs on, for bind "node" without a host."""
        self.config = config
        self.layout = config.layout(node_address)
        self.secret = read_fleet_secret(config.secret_file)
        self.push_target = config.push_target()
        self.clock = FleetClock(config.time_scale)
        self.consumption_scale = 1.0
        self.rng = random.Random(f"{config.seed}:{config.shard_index}:control")
        now = self.clock.now()
        self.members = [MeterState(self.layout, index, config.seed, self.secret, now)
                       for index in range(config.meters_per_shard)]
        self.device = FleetDevice(self, config.lls_password.encode())
        self.connections: dict[int, set[MeterConnection]] = {}
        self.clock_offsets: dict[int, float] = {}
        self.requests = 0
        self.get_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.pushes_sent = 0
        self.push_failures = 0
        self.rss_before_meters = 0
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on every meter's endpoint (a port of 0 becomes the meter's own free port)."""
        raise_open_file_limit(len(self.members))
        for first in range(0, len(self.members), START_BATCH):
            batch = self.members[first:first + START_BATCH]
            await asyncio.gather(*(self._listen(meter) for meter in batch))
        self._sweeper = asyncio.create_task(self._sweep_idle())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._tasks):
            task.cancel()
        for meter in self.members:
            self._stop_listening(meter)
        for held in list(self.connections.values()):
            for connection in list(held):
                connection.transport.abort()
        await asyncio.sleep(0)

    async def _listen(self, meter: MeterState) -> None:
        loop = asyncio.get_running_loop()
        try:
            meter.server = await loop.create_server(lambda: MeterConnection(self, meter), meter.host, meter.port,
                                                    backlog=LISTEN_BACKLOG, reuse_address=True)
        except OSError as exc:
            raise ConfigError(f"meter {meter.serial}: cannot listen on {meter.host}:{meter.port}: "
                              f"{exc.strerror}") from None
        meter.port = meter.server.sockets[0].getsockname()[1]

    def _stop_listening(self, meter: MeterState) -> None:
        if meter.server is not None:
            meter.server.close()
            meter.server = None

    async def _sweep_idle(self) -> None:
        """Close connections idle longer than the inactivity timeout (IEC 62056-47 practice)."""
        timeout_s = self.config.inactivity_timeout_s
        while True:
            await asyncio.sleep(SWEEP_PERIOD_S)
            if not timeout_s:
                continue
            limit = time.monotonic() - timeout_s
            for held in list(self.connections.values()):
                for connection in list(held):
                    if connection.last_s < limit:
                        connection.transport.close()

    # -- serving ----------------------------------------------------------------------------------------------

    def answer(self, connection: MeterConnection, client_sap: int, apdu: bytes) -> bytes | None:
        started = time.perf_counter()
        response, was_get = self.device.answer(connection.meter, connection.link, client_sap, apdu)
        self.requests += 1
        if was_get:
            self.get_ms.append((time.perf_counter() - started) * 1000.0)
        return response

    def settle(self, meter: MeterState) -> float:
        return meter.settle(self.clock.now(), self.consumption_scale, self.config.base_w, self.clock.utc_offset_min)

    def power_w(self, meter: MeterState) -> float:
        return meter.power_w(self.clock.now(), self.consumption_scale, self.config.base_w, self.clock.utc_offset_min)

    def master_key(self, serial: str) -> bytes:
        return derive_key(self.secret, serial, "master")

    def switch_relay(self, meter: MeterState, control_state: int) -> None:
        """A relay switching commanded over DLMS: energy settled up to it, then a push of the new state."""
        self.settle(meter)
        meter.control_state = control_state
        self._spawn(self._push(meter, "relay_connected" if control_state == CONNECTED else "relay_disconnected"))

    # -- pushes -----------------------------------------------------------------------------------------------

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _push(self, meter: MeterState, event: str) -> bool:
        """Send one push of the meter's event to the push target (no target: nothing to do); True when sent."""
        if self.push_target is None:
            return False
        now = self.clock.now()
        meter.push_sequence += 1
        notification = Notification(meter.serial, EVENT_CODES[event], now, meter.control_state,
                                    int(self.settle(meter)), meter.push_sequence, now)
        for attempt in range(self.config.push_attempts):
            meter.push_counter += 1
            frame = encode_frame(notification, meter.system_title, meter.keys, meter.push_counter)
            try:
                await asyncio.wait_for(self._deliver(meter, frame), PUSH_TIMEOUT_S)
            except (OSError, TimeoutError):
                if attempt + 1 < self.config.push_attempts:
                    await asyncio.sleep(PUSH_RETRY_DELAY_S)
                continue
            self.pushes_sent += 1
            return True
        self.push_failures += 1
        return False

    async def _deliver(self, meter: MeterState, frame: bytes) -> None:
        host, port = self.push_target
        local = (meter.host, 0) if self.layout.bind_address is None and host.startswith("127.") else None
        _reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        try:
            writer.write(frame)
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # -- mains ------------------------------------------------------------------------------------------------

    async def _power_down(self, meter: MeterState, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not meter.mains_on:
            return
        self.settle(meter)
        meter.mains_on = False
        self._stop_listening(meter)
        for connection in list(self.connections.get(meter.index, ())):
            connection.transport.abort()
        await self._push(meter, "power_down")  # last gasp

    async def _power_up(self, meter: MeterState, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if meter.mains_on:
            return
        self.settle(meter)  # moves the anchor: nothing was consumed while off
        meter.mains_on = True
        await self._listen(meter)
        await self._push(meter, "power_up")

    # -- control API ------------------------------------------------------------------------------------------

    async def mains_off(self, fraction: float = 1.0, jitter_s: float = 0.0) -> dict:
        """Mains off at a fraction of the shard's meters (drawn at random among those with mains on), each at a
        uniform random delay within jitter_s; returns once all are off and their pushes are done."""
        if not 0.0 <= fraction <= 1.0 or jitter_s < 0:
            raise ConfigError(f"mains_off: fraction {fraction} must be within 0..1 and jitter_s {jitter_s} >= 0")
        powered = [meter for meter in self.members if meter.mains_on]
        count = min(len(powered), round(fraction * len(self.members)))
        chosen = self.rng.sample(powered, count)
        await asyncio.gather(*(self._power_down(meter, self.rng.uniform(0, jitter_s)) for meter in chosen))
        return {"switched": count, "serials": [meter.serial for meter in chosen]}

    async def mains_on(self, jitter_s: float = 0.0) -> dict:
        """Mains back at every meter without it, each at a uniform random delay within jitter_s."""
        if jitter_s < 0:
            raise ConfigError(f"mains_on: jitter_s {jitter_s} must be >= 0")
        dark = [meter for meter in self.members if not meter.mains_on]
        await asyncio.gather(*(self._power_up(meter, self.rng.uniform(0, jitter_s)) for meter in dark))
        return {"switched": len(dark)}

    async def set_consumption(self, scale: float) -> dict:
        """Scale every meter's consumption from now on (1.0: the seeded model as it is)."""
        if scale < 0:
            raise ConfigError(f"set_consumption: scale {scale} must be >= 0")
        for meter in self.members:
            self.settle(meter)
        self.consumption_scale = float(scale)
        return {"scale": self.consumption_scale}

    async def meters(self) -> list[dict]:
        return [{"serial": meter.serial, "endpoint": f"{meter.host}:{meter.port}"} for meter in self.members]

    async def states(self) -> list[dict]:
        """Each meter's serial, mains, disconnect control state and energy register (Wh)."""
        return [{"serial": meter.serial, "mains_on": meter.mains_on, "control_state": meter.control_state,
                 "energy_wh": int(self.settle(meter))} for meter in self.members]

    async def metrics(self) -> dict:
        samples = list(self.get_ms)
        p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)
        return {
            "shard_index": self.layout.shard_index,
            "meters": len(self.members),
            "mains_on": sum(meter.mains_on for meter in self.members),
            "connections": sum(len(held) for held in self.connections.values()),
            "associations": sum(len(connection.link.associations) for held in self.connections.values()
                                for connection in held),
            "associations_accepted": self.device.events.counts.get("dlms.association.accepted", 0),
            "associations_rejected": self.device.events.counts.get("dlms.association.rejected-permanent", 0),
            "hls_refused": self.device.events.counts.get("dlms.hls.refused", 0),
            "requests": self.requests,
            "gets": len(samples),
            "get_p50_ms": round(p50, 4) if p50 is not None else None,
            "get_p99_ms": round(p99, 4) if p99 is not None else None,
            "pushes_sent": self.pushes_sent,
            "push_failures": self.push_failures,
            "relay_connected": sum(meter.control_state == CONNECTED for meter in self.members),
            "rss_bytes": rss_bytes(),
        }

    async def reset_latency(self) -> dict:
        """Forget the GET handling times gathered so far (a benchmark's warm-up)."""
        self.get_ms.clear()
        return {"cleared": True}


CONTROL_METHODS = frozenset({"mains_off", "mains_on", "set_consumption", "meters", "states", "metrics",
                             "reset_latency"})
