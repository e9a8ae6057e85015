"""A fleet meter's state, derived deterministically from (fleet seed, shard index, meter index): serial, loopback
address, system title, security keys, consumption model, relay and mains.

Layout: meter i of shard s is fleet meter n = s * meters_per_shard + i, serial F<s:03d><i:05d>, and listens on
the loopback alias 127.<first_octet + n // 62500>.<(n // 250) % 250>.<n % 250 + 1> (Linux routes all of 127/8 to
lo, so every such address binds without configuration), on the fleet's port (0: a free port per meter). Bound to
one address instead (`bind`: "node", the address of the machine the shard runs on, or an explicit IPv4 address),
meter i listens on port + i of that address, so a head end on another machine reaches it; whoever places shards
on a shared address gives each its port base (rig/fleet/local.py, rig/fleet/ray_engine.py), and an address holds
at most 65,536 - port meters. Its system title is "RIG" and the serial's digits as 5 octets, as the twin meter's
(rig/sim/dlms/meter.py).

Key diversification (the twin's choice, not a standard's): each meter's global unicast encryption key, its
authentication key and its master key are HMAC-SHA256(fleet secret, "<serial>:<purpose>")[:16] with purpose
"encryption", "authentication" or "master"; the fleet secret is the octets of the hex digits in a secret file
(default benches/sim-fleet-secret). A head end holding the same secret derives the same keys from the serial, or
from the system title (serial_of_system_title). Keys never leave the meter objects and the head end.

Consumption: power = base_w x the meter's scale (seeded, log-normal around 1) x the fleet's consumption scale x
the hour's weight in a daily load shape (DAILY_SHAPE, Indian residential: evening peak) x the meter's noise for that
hour (seeded, 0.8..1.2), integrated on read from the time elapsed (no timers per meter); nothing is consumed with
the mains off or the relay open. Fleet time runs `time_scale` times faster than the wall clock.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import random
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from rig.errors import ConfigError

DEFAULT_SECRET_FILE = Path(__file__).resolve().parents[2] / "benches" / "sim-fleet-secret"
SERIAL_DIGITS_PER_SHARD = 100_000
MAX_SHARDS = 1000
ADDRESSES_PER_SECOND_OCTET = 62_500
DEFAULT_FIRST_OCTET = 10
DEFAULT_PORT = 4059
BIND_LOOPBACK, BIND_NODE = "loopback", "node"
MAX_PORT = 65535
# a documentation address (RFC 5737): a UDP socket "connected" to it names the interface of the route out, and
# nothing is sent
ROUTE_PROBE = ("192.0.2.1", 9)
KEY_PURPOSES = ("encryption", "authentication", "master")
# share of the day's energy per hour (local time), a residential feeder's shape: night low, morning and evening peaks
DAILY_SHAPE = (0.55, 0.5, 0.45, 0.45, 0.5, 0.7, 1.0, 1.2, 1.1, 0.9, 0.85, 0.85,
               0.9, 0.9, 0.85, 0.85, 0.95, 1.15, 1.6, 1.8, 1.75, 1.5, 1.1, 0.75)
SHAPE_MEAN = sum(DAILY_SHAPE) / len(DAILY_SHAPE)
HOUR_S = 3600.0
DEFAULT_BASE_W = 400.0
DISCONNECTED, CONNECTED, READY_FOR_RECONNECTION = 0, 1, 2


def serial_of(shard_index: int, meter_index: int) -> str:
    return f"F{shard_index:03d}{meter_index:05d}"


def system_title_of(serial: str) -> bytes:
    """"RIG" and the serial's digits as 5 octets (the twin meter's rule)."""
    digits = re.sub(r"\D", "", serial) or "0"
    return b"RIG" + (int(digits) % 2**40).to_bytes(5, "big")


def serial_of_system_title(system_title: bytes) -> str | None:
    """The fleet serial a system title belongs to (None when it is not a fleet meter's)."""
    if len(system_title) != 8 or system_title[:3] != b"RIG":
        return None
    number = int.from_bytes(system_title[3:], "big")
    shard, index = divmod(number, SERIAL_DIGITS_PER_SHARD)
    return serial_of(shard, index) if shard < MAX_SHARDS else None


def read_fleet_secret(path: Path | str | None = None) -> bytes:
    """The fleet secret: the hex digits in its file (at least 16 octets); ConfigError naming the file, never its
    content."""
    path = Path(path) if path is not None else DEFAULT_SECRET_FILE
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: fleet secret unreadable ({exc.strerror})") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{path}: the fleet secret is not hex digits") from None
    if len(secret) < 16:
        raise ConfigError(f"{path}: the fleet secret is {len(secret)} octets, at least 16 are needed")
    return secret


def derive_key(secret: bytes, serial: str, purpose: str) -> bytes:
    """HMAC-SHA256(secret, "<serial>:<purpose>")[:16]."""
    if purpose not in KEY_PURPOSES:
        raise ValueError(f"key purpose {purpose!r} is not one of {KEY_PURPOSES}")
    return hmac.new(secret, f"{serial}:{purpose}".encode("ascii"), hashlib.sha256).digest()[:16]


def meter_keys(secret: bytes, serial: str) -> tuple[bytes, bytes]:
    """(global unicast encryption key, authentication key) of a meter."""
    return derive_key(secret, serial, "encryption"), derive_key(secret, serial, "authentication")


def keys_of_system_title(secret: bytes, system_title: bytes) -> tuple[bytes, bytes] | None:
    """A head end's key lookup for push frames (rig/fleet/push.py decipher_apdu)."""
    serial = serial_of_system_title(system_title)
    return meter_keys(secret, serial) if serial is not None else None


def check_bind(bind: str) -> str:
    """A fleet's bind: "loopback" (each meter on its own 127.x.y.z alias), "node" (the shard's machine's address)
    or an IPv4 address; ConfigError otherwise."""
    if bind in (BIND_LOOPBACK, BIND_NODE):
        return bind
    try:
        address = ipaddress.IPv4Address(bind)
    except ValueError:
        raise ConfigError(f"fleet bind {bind!r} is not {BIND_LOOPBACK}, {BIND_NODE} or an IPv4 address") from None
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        raise ConfigError(f"fleet bind {bind!r}: meters need a unicast address of this machine")
    return str(address)


def this_machine_address() -> str:
    """The IPv4 address of the interface that holds this machine's route out; ConfigError without a route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(ROUTE_PROBE)
        except OSError as exc:
            raise ConfigError(f"fleet bind node: this machine's address not found ({exc.strerror}); "
                              "give it with --host") from None
        return probe.getsockname()[0]


@dataclass(frozen=True)
class FleetLayout:
    """Where a fleet's meters live: which shard of how many, meters per shard, the first address octet, port, and
    the one address every meter binds on (None: each on its own loopback alias, all on `port`)."""

    shard_index: int
    shard_count: int
    meters_per_shard: int
    port: int = DEFAULT_PORT
    first_octet: int = DEFAULT_FIRST_OCTET
    bind_address: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.shard_count <= MAX_SHARDS:
            raise ConfigError(f"shard count {self.shard_count} is outside 1..{MAX_SHARDS}")
        if not 0 <= self.shard_index < self.shard_count:
            raise ConfigError(f"shard index {self.shard_index} is outside 0..{self.shard_count - 1}")
        if not 1 <= self.meters_per_shard <= SERIAL_DIGITS_PER_SHARD:
            raise ConfigError(f"meters per shard {self.meters_per_shard} is outside 1..{SERIAL_DIGITS_PER_SHARD}")
        last = self.first_octet + (self.shard_count * self.meters_per_shard - 1) // ADDRESSES_PER_SECOND_OCTET
        if not 1 <= self.first_octet or last > 254:
            raise ConfigError(f"loopback addresses 127.{self.first_octet}.x.y to 127.{last}.x.y leave 127/8")
        if not 0 <= self.port <= MAX_PORT:
            raise ConfigError(f"port {self.port} is outside 0..{MAX_PORT}")
        if self.bind_address is not None and self.port and self.port + self.meters_per_shard - 1 > MAX_PORT:
            raise ConfigError(f"shard {self.shard_index}: {self.meters_per_shard} meters on {self.bind_address} "
                              f"from port {self.port} go past port {MAX_PORT} (one port per meter)")

    def host(self, meter_index: int) -> str:
        if self.bind_address is not None:
            return self.bind_address
        number = self.shard_index * self.meters_per_shard + meter_index
        second = self.first_octet + number // ADDRESSES_PER_SECOND_OCTET
        return f"127.{second}.{(number // 250) % 250}.{number % 250 + 1}"

    def port_of(self, meter_index: int) -> int:
        """The meter's port: the fleet's on a loopback alias; port + meter index on a shared address (0: a free
        port each)."""
        if self.bind_address is not None and self.port:
            return self.port + meter_index
        return self.port

    def serial(self, meter_index: int) -> str:
        return serial_of(self.shard_index, meter_index)


def _hour_noise(meter_seed: int, hour: int) -> float:
    """The meter's consumption factor in one hour, 0.8..1.2, from a 64-bit mix of its seed and the hour."""
    value = (meter_seed ^ (hour * 0x9E3779B97F4A7C15)) & 0xFFFF_FFFF_FFFF_FFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFF_FFFF_FFFF_FFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFF_FFFF_FFFF_FFFF
    value ^= value >> 31
    return 0.8 + 0.4 * (value / 2**64)


class FleetClock:
    """Fleet time: UTC seconds running `time_scale` times faster than the wall clock from the shard's start."""

    def __init__(self, time_scale: float = 1.0, utc_offset_min: int = 330):
        if time_scale <= 0:
            raise ConfigError(f"time scale {time_scale} is not positive")
        self.time_scale = time_scale
        self.utc_offset_min = utc_offset_min
        self.start_utc_s = time.time()
        self.start_mono_s = time.monotonic()

    def now(self) -> float:
        return self.start_utc_s + (time.monotonic() - self.start_mono_s) * self.time_scale


class MeterState:
    """One fleet meter's live state; slots keep it small (thousands per process)."""

    __slots__ = ("index", "serial", "host", "port", "system_title", "keys", "scale", "seed", "energy_wh",
                 "anchor_s", "mains_on", "control_state", "security", "push_counter", "push_sequence", "server")

    def __init__(self, layout: FleetLayout, meter_index: int, fleet_seed: int, secret: bytes, now_s: float):
        self.index = meter_index
        self.serial = layout.serial(meter_index)
        self.host = layout.host(meter_index)
        self.port = layout.port_of(meter_index)
        self.system_title = system_title_of(self.serial)
        self.keys = meter_keys(secret, self.serial)
        rng = random.Random(f"{fleet_seed}:{layout.shard_index}:{meter_index}")
        self.seed = rng.getrandbits(64)
        self.scale = math.exp(rng.gauss(0.0, 0.35))
        self.energy_wh = rng.uniform(200_000.0, 20_000_000.0)
        self.anchor_s = now_s
        self.mains_on = True
        self.control_state = CONNECTED
        self.security = None  # the meter's ServerSecurity, made at its first ciphered association
        self.push_counter = max(0, int(time.time()) - 1_704_067_200)
        self.push_sequence = 0
        self.server = None  # its listening asyncio.Server

    @property
    def supplied(self) -> bool:
        return self.mains_on and self.control_state == CONNECTED

    def settle(self, now_s: float, fleet_scale: float, base_w: float, utc_offset_min: int) -> float:
        """Add the energy consumed since the last settle (if supplied) and return the register, Wh."""
        start, self.anchor_s = self.anchor_s, max(now_s, self.anchor_s)
        if self.supplied and now_s > start:
            self.energy_wh += self._consumed_wh(start, now_s, fleet_scale * base_w, utc_offset_min)
        return self.energy_wh

    def _consumed_wh(self, start_s: float, end_s: float, mean_w: float, utc_offset_min: int) -> float:
        offset_s = utc_offset_min * 60.0
        energy_ws = 0.0
        t = start_s
        while t < end_s:
            hour = int((t + offset_s) // HOUR_S)
            slot_end = min(end_s, (hour + 1) * HOUR_S - offset_s)
            weight = DAILY_SHAPE[hour % 24] / SHAPE_MEAN * _hour_noise(self.seed, hour)
            energy_ws += mean_w * self.scale * weight * (slot_end - t)
            t = slot_end
        return energy_ws / 3600.0

    def power_w(self, now_s: float, fleet_scale: float, base_w: float, utc_offset_min: int) -> float:
        if not self.supplied:
            return 0.0
        hour = int((now_s + utc_offset_min * 60.0) // HOUR_S)
        return (fleet_scale * base_w * self.scale * DAILY_SHAPE[hour % 24] / SHAPE_MEAN
                * _hour_noise(self.seed, hour))
