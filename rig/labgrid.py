"""Shared benches through labgrid: a bench's instruments as an exporter configuration, and a place held for a run.

The rig never imports labgrid (it brings its own pyserial fork): it runs `labgrid-client` from its own virtual
environment (.venv-labgrid, made by `make .venv-labgrid/.installed`) against the coordinator of LG_COORDINATOR.
A run reserves its place (a reservation filtered on the place's name), waits for the reservation to be allocated,
acquires the place with the reservation's token, and releases it and cancels the reservation when it ends. While
it runs, a lease thread polls the place: when it is no longer ours (`release --kick`, `release-from`), the run is
interrupted as SIGTERM interrupts it, and the bench is driven safe.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from rig.config import BenchFile, bench_roles
from rig.errors import ConfigError, RigError

PLACE_ENV = "RIG_PLACE"
PLACE_WAIT_ENV = "RIG_PLACE_WAIT"
LEASE_ENV = "RIG_PLACE_LEASE_S"
CLIENT_ENV = "RIG_LABGRID_CLIENT"
DEFAULT_LEASE_S = 5.0
CLIENT_TIMEOUT_S = 20.0
RESERVATION_REFRESH_S = 20.0  # the coordinator drops an unused reservation after 60 s
BENCH_RESOURCE = "MeterBench"  # not a labgrid class: exported as declared, for a place to match the bench by


class PlaceHeld(RigError):
    """The place is held (or reserved) by someone else."""


# -- exporter configuration ---------------------------------------------------------------------------------


def _visa_resource(resource: str) -> dict | None:
    """'TCPIP0::host::port::SOCKET' -> PyVISADevice params (labgrid's pyvisa driver appends ::INSTR to them)."""
    match = re.match(r"(?i)^(TCPIP|ASRL|GPIB|USB)\d*::(.+)$", resource.strip())
    if match is None:
        return None
    return {"cls": "PyVISADevice", "type": match.group(1).upper(), "url": match.group(2)}


def _host_port(resource: str) -> tuple[str, int] | None:
    match = re.match(r"^[a-z0-9+]+://\[?([^\]/:]+)\]?:(\d+)", resource.strip())
    return (match.group(1), int(match.group(2))) if match else None


def role_resources(role: str, driver: str, resource: str, counter_coils: list[int]) -> dict[str, dict]:
    """The labgrid resources of one role, by resource name."""
    visa = _visa_resource(resource)
    if visa is not None:
        return {role: visa}
    if resource.startswith("/") or resource.upper().startswith("ASRL/"):
        port = re.sub(r"(?i)^ASRL|::INSTR$", "", resource)
        # not RawSerialPort: the exporter then serves it through ser2net, which must be installed to acquire a place
        return {role: {"cls": "RigSerialDevice", "port": port, "driver": driver}}
    endpoint = _host_port(resource)
    if endpoint is not None and counter_coils:
        return {f"{role}-coil{coil}": {"cls": "ModbusTCPCoil", "host": f"{endpoint[0]}:{endpoint[1]}",
                                       "coil": coil} for coil in counter_coils}
    if endpoint is not None:
        scheme = resource.split("://", 1)[0]
        return {role: {"cls": "NetworkService" if scheme == "ssh" else "RigNetworkEndpoint",
                       "address": endpoint[0], "port": endpoint[1], "protocol": scheme, "driver": driver}}
    return {role: {"cls": "RigNetworkEndpoint", "url": resource, "driver": driver}}


def _counter_coils(role_config) -> list[int]:
    """The start/stop coils of the channels a Modbus counter module counts (the coils a labgrid client may switch)."""
    if role_config.driver != "adam6051":
        return []
    from rig.registermaps import load_register_map

    settings = role_config.settings
    register_map = load_register_map(settings.get("register_map") or "adam6051")
    block = register_map.counters
    if block is None:
        return []
    mapping = settings.get("channel_of_position") or {}
    channels = sorted(set(mapping.values())) if mapping else range(settings.get("channels") or block.channels)
    return [block.control_coils.address(channel, block.control_coils.start_stop) for channel in channels]


def exporter_config(bench_file: BenchFile) -> dict:
    """An exporter configuration publishing the bench's instruments in one group named after the bench."""
    group: dict[str, dict] = {
        "location": f"{socket.gethostname()}:{bench_file.path.resolve()}",
        bench_file.name: {"cls": BENCH_RESOURCE, "name": bench_file.name, "file": str(bench_file.path.resolve()),
                          "twin": bool(bench_file.config.twin and bench_file.config.twin.autostart)},
    }
    for role, role_config in bench_roles(bench_file.config).items():
        names = role_resources(role, role_config.driver, role_config.resource, _counter_coils(role_config))
        for name, params in names.items():
            group[name.replace("@", "-")] = params
    return {bench_file.name: group}


def write_exporter_config(bench_file: BenchFile, output: Path | None) -> str:
    # the exporter reads its configuration as a Jinja2 template: '#' starts a statement there, '##' a comment
    header = (f"## labgrid exporter configuration of bench {bench_file.name!r} ({bench_file.path.resolve()}),\n"
              f"## written by `rig labgrid export`. Serve it: labgrid-exporter -c COORDINATOR THIS_FILE;\n"
              f"## a place for it: labgrid-client -p PLACE create; labgrid-client -p PLACE add-match "
              f"'*/{bench_file.name}/*'\n")
    text = header + yaml.safe_dump(exporter_config(bench_file), sort_keys=False)
    if output is not None:
        output.write_text(text)
    return text


# -- labgrid-client -----------------------------------------------------------------------------------------


def client_path() -> str:
    """labgrid-client: RIG_LABGRID_CLIENT, else .venv-labgrid's beside the rig, else the one on PATH."""
    configured = os.environ.get(CLIENT_ENV)
    if configured:
        return configured
    beside = Path(__file__).resolve().parent.parent / ".venv-labgrid" / "bin" / "labgrid-client"
    if beside.exists():
        return str(beside)
    found = shutil.which("labgrid-client")
    if found is None:
        raise ConfigError(f"labgrid-client not found: run `make .venv-labgrid/.installed` (or set {CLIENT_ENV})")
    return found


@dataclass
class ClientResult:
    returncode: int
    output: str


class LabgridClient:
    """`labgrid-client` runs against one coordinator (LG_COORDINATOR unless given)."""

    def __init__(self, coordinator: str | None = None, client: str | None = None):
        self.coordinator = coordinator or os.environ.get("LG_COORDINATOR", "127.0.0.1:20408")
        self.client = client or client_path()

    def run(self, *args: str, token: str | None = None, timeout_s: float = CLIENT_TIMEOUT_S) -> ClientResult:
        env = {**os.environ, "LG_COORDINATOR": self.coordinator}
        if token is not None:
            env["LG_TOKEN"] = token  # in the environment, not on a command line others can read
        try:
            done = subprocess.run([self.client, *args], env=env, capture_output=True, text=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return ClientResult(-1, f"no answer within {timeout_s:g} s")
        except OSError as exc:
            raise ConfigError(f"labgrid-client ({self.client}): {exc.strerror or exc}") from None
        return ClientResult(done.returncode, (done.stdout + done.stderr).strip())

    def place_state(self, place: str) -> dict[str, str]:
        """The fields of `show`: 'acquired' (HOST/USER or 'None'), 'reservation' when reserved."""
        result = self.run("-p", place, "show")
        if result.returncode != 0:
            raise RigError(f"labgrid place {place!r} (coordinator {self.coordinator}): "
                           f"{_client_error(result.output)}")
        return dict(re.findall(r"(?m)^\s+(acquired|reservation): (\S+)\s*$", result.output))

    def reservation_owner(self, token: str) -> str | None:
        result = self.run("reservations")
        for block in re.split(r"(?m)^Reservation ", result.output):
            if f"token: {token}" in block:
                owner = re.search(r"owner: (\S+)", block)
                return owner.group(1) if owner else None
        return None


def _client_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return (lines[-1] if lines else "no output").removeprefix("labgrid-client: ").removeprefix("Error: ")


def me() -> str:
    """HOST/USER as the coordinator names this client."""
    import getpass

    return f"{os.environ.get('LG_HOSTNAME', socket.gethostname())}/{os.environ.get('LG_USERNAME', getpass.getuser())}"


# -- a place held for a run ----------------------------------------------------------------------------------


class PlaceLock:
    """A labgrid place reserved, acquired and watched for one run; released on every exit path."""

    def __init__(self, place: str, wait_s: float = 0.0, lease_s: float = DEFAULT_LEASE_S,
                 client: LabgridClient | None = None):
        self.place = place
        self.wait_s = wait_s
        self.lease_s = lease_s
        self.client = client or LabgridClient()
        self.holder = me()
        self.lost: str | None = None  # why the place is no longer ours, once it is not
        self.events: list[str] = []  # acquire, refresh failures, loss, release, in words (for the run record)
        self._token: str | None = None
        self._acquired = False
        self._stop = threading.Event()
        self._lease: threading.Thread | None = None

    @classmethod
    def from_environment(cls) -> PlaceLock | None:
        place = os.environ.get(PLACE_ENV)
        if not place:
            return None
        try:
            wait_s = float(os.environ.get(PLACE_WAIT_ENV) or 0)
            lease_s = float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE_S)
        except ValueError:
            raise ConfigError(f"{PLACE_WAIT_ENV}/{LEASE_ENV}: seconds expected") from None
        return cls(place, wait_s, lease_s)

    def where(self) -> str:
        return f"labgrid place {self.place!r} (coordinator {self.client.coordinator})"

    def acquire(self) -> None:
        """Reserve, wait (at most wait_s) for the reservation, acquire; raise PlaceHeld naming the holder."""
        state = self.client.place_state(self.place)
        held_by = state.get("acquired", "None")
        if held_by == self.holder:
            raise PlaceHeld(f"{self.where()} is already acquired by {held_by} (this user on this host: a run that "
                            f"was killed? `labgrid-client -p {self.place} release` frees it)")
        if held_by != "None" and self.wait_s <= 0:
            raise self._held(held_by)
        reserved = self.client.run("reserve", "--shell", f"name={self.place}")
        token = re.search(r"LG_TOKEN=(\S+)", reserved.output)
        if reserved.returncode != 0 or token is None:
            raise RigError(f"{self.where()}: reservation refused: {_client_error(reserved.output)}")
        self._token = token.group(1)
        try:
            self._wait_and_acquire()
        except BaseException:
            self._cancel_reservation()
            raise
        self.events.append(f"acquired by {self.holder}")

    def _wait_and_acquire(self) -> None:
        deadline = time.monotonic() + max(self.wait_s, 3.0)
        while True:
            left = deadline - time.monotonic()
            waited = self.client.run("wait", self._token, timeout_s=max(left, 1.0))
            if waited.returncode == 0 and re.search(r"state: (allocated|acquired)", waited.output):
                break
            if time.monotonic() >= deadline:
                state = self.client.place_state(self.place)
                holder = state.get("acquired", "None")
                raise self._held(holder if holder != "None" else self._reserver(state))
        acquired = self.client.run("-p", "+", "acquire", token=self._token)
        if acquired.returncode != 0:
            holder = self.client.place_state(self.place).get("acquired", "None")
            raise self._held(holder) if holder not in ("None", self.holder) else RigError(
                f"{self.where()}: cannot acquire: {_client_error(acquired.output)}")
        self._acquired = True

    def _reserver(self, state: dict[str, str]) -> str:
        token = state.get("reservation")
        owner = self.client.reservation_owner(token) if token else None
        return f"a reservation of {owner}" if owner else "another reservation"

    def _held(self, holder: str) -> PlaceHeld:
        waited = f" after waiting {self.wait_s:g} s" if self.wait_s > 0 else ""
        return PlaceHeld(f"{self.where()} is held by {holder}{waited}; --place-wait SECONDS waits for it, or "
                         f"{holder.split('/')[-1]} releases it (CI cleanup: labgrid-client -p {self.place} "
                         f"release-from {holder})")

    # -- lease -------------------------------------------------------------------------------------------

    def start_lease(self, on_lost: Callable[[str], None]) -> None:
        """Poll the place every lease_s (and keep the reservation fresh); call on_lost(why) once it is not ours."""
        self._lease = threading.Thread(target=self._watch, args=(on_lost,), name=f"labgrid-lease-{self.place}",
                                       daemon=True)
        self._lease.start()

    def _watch(self, on_lost: Callable[[str], None]) -> None:
        refreshed = time.monotonic()
        while not self._stop.wait(self.lease_s):
            try:
                holder = self.client.place_state(self.place).get("acquired", "None")
            except RigError as exc:  # coordinator unreachable: the place may still be ours; say so, keep watching
                self.events.append(f"lease check failed: {exc}")
                continue
            if self._stop.is_set():
                return
            if holder != self.holder:
                self.lost = (f"{self.where()} was taken from this run: now "
                             f"{'held by ' + holder if holder != 'None' else 'released'} (kicked or released-from)")
                self._acquired = False
                self.events.append(self.lost)
                on_lost(self.lost)
                return
            if time.monotonic() - refreshed >= RESERVATION_REFRESH_S:
                self.client.run("wait", self._token, timeout_s=5.0)
                refreshed = time.monotonic()

    def release(self) -> None:
        """Stop the lease, release the place (only if still ours) and cancel the reservation; harmless twice."""
        self._stop.set()
        if self._lease is not None and self._lease is not threading.current_thread():
            self._lease.join(CLIENT_TIMEOUT_S)
        try:
            if self._acquired:
                released = self.client.run("-p", self.place, "release-from", self.holder)
                if released.returncode != 0:
                    raise RigError(f"{self.where()}: not released: {_client_error(released.output)}")
                self._acquired = False
                self.events.append(f"released by {self.holder}")
        finally:
            self._cancel_reservation()

    def _cancel_reservation(self) -> None:
        if self._token is not None:
            self.client.run("cancel-reservation", self._token, timeout_s=10.0)
            self._token = None

    def as_record(self) -> dict:
        return {"place": self.place, "coordinator": self.client.coordinator, "holder": self.holder,
                "lost": self.lost, "events": list(self.events)}
