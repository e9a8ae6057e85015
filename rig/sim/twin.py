"""The twin process: every simulated instrument of a bench on loopback, one model, one clock."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from importlib import metadata
from pathlib import Path

from rig.config import BenchConfig, BenchFile, RoleConfig, bench_roles
from rig.errors import ConfigError
from rig.resources import Accepts
from rig.sim.defects import Defects, load_defects
from rig.sim.model import PhysicalModel
from rig.sim.scpi import MAX_MESSAGE_BYTES, serve_scpi
from rig.sim.truth import TruthLog

SIMULATOR_GROUP = "rig.simulators"


def available_simulators() -> dict[str, metadata.EntryPoint]:
    """Driver name -> its simulator, as registered under the entry-point group 'rig.simulators' (so a driver
    package ships its twin: `[project.entry-points."rig.simulators"] my_driver = "my_pkg.sim:MySim"`).

    A simulator answers its driver's protocol and declares its transport: "scpi" (lines over a raw TCP socket,
    served here), "pty" (a pseudo-terminal the simulator opens: its slave path is advertised as the role's
    resource) or any other (served by the simulator itself on a loopback port). A simulator with `transports`
    serves the one its role's resource names ('http://...' or 'telnet://...')."""
    return {entry.name: entry for entry in metadata.entry_points(group=SIMULATOR_GROUP)}


def simulator_class(driver: str, role: str | None = None,
                    simulators: dict[str, metadata.EntryPoint] | None = None) -> type:
    """The simulator registered for a driver (among `simulators`, default: those available); ConfigError naming
    the role and driver when there is none."""
    simulators = available_simulators() if simulators is None else simulators
    entry = simulators.get(driver)
    if entry is None:
        raise ConfigError(f"{role or 'twin'}: driver {driver!r} has no simulator, so the twin cannot serve it "
                          f"(simulators registered under the entry-point group {SIMULATOR_GROUP!r}: "
                          f"{', '.join(sorted(simulators)) or 'none'})")
    try:
        return entry.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{role or 'twin'}: simulator of driver {driver!r} ({entry.value}) cannot be loaded: "
                          f"{exc}") from None


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TWIN_RESOURCES = Accepts(("socket", "tcp", "http", "telnet"), "the twin serves 'TCPIP0::127.0.0.1::<port>::SOCKET', "
                                                               "'tcp://127.0.0.1:<port>', 'http://...' or 'telnet://...'")


def parse_resource(resource: str, role: str) -> tuple[str, int]:
    """'TCPIP0::127.0.0.1::5025::SOCKET', 'tcp://127.0.0.1:502', 'http://127.0.0.1:8080/api' or
    'telnet://127.0.0.1:2323' -> (host, port); the twin serves loopback only."""
    where = TWIN_RESOURCES.parse(resource, role)
    if where.host not in LOOPBACK_HOSTS:
        raise ConfigError(f"{role}: the twin serves loopback only, got host {where.host!r}")
    return where.host, where.port or 0


def format_resource(transport: str, port: int) -> str:
    if transport == "scpi":
        return f"TCPIP0::127.0.0.1::{port}::SOCKET"
    return f"{transport if transport in ('http', 'telnet') else 'tcp'}://127.0.0.1:{port}"


def is_serial_device(resource: str) -> bool:
    """'/dev/ttyUSB0', 'COM3' or 'ASRL/dev/ttyUSB0::INSTR': a serial line, which the twin serves on a pty."""
    upper = resource.upper()
    return resource.startswith("/") or upper.startswith("COM") or (upper.startswith("ASRL") and
                                                                   upper.endswith("::INSTR"))


def resource_transport(resource: str, role: str, transports: tuple[str, ...]) -> str:
    """Which of a simulator's transports a role's resource names: 'telnet' for 'telnet://...'."""
    for transport in transports:
        if resource.startswith(f"{transport}://"):
            return transport
    raise ConfigError(f"{role}: the twin serves this instrument at "
                      f"{' or '.join(f'{t}://127.0.0.1:<port>' for t in transports)}, got {resource!r}")


def simulated_roles(bench: BenchConfig) -> dict[str, RoleConfig]:
    """Every role of the bench, each of which the twin serves; ConfigError for the first whose driver has no
    simulator."""
    roles = bench_roles(bench)
    simulators = available_simulators()
    for role, config in roles.items():
        if config.driver not in simulators:
            simulator_class(config.driver, role)  # raises, naming the role, the driver and the simulators known
    return roles


class Twin:
    """Builds the simulators of a bench and serves each on its own loopback port."""

    def __init__(self, bench: BenchFile, truth_path: Path | None, ephemeral_ports: bool = False,
                 defects: Defects | None = None, defects_path: Path | None = None):
        self.bench = bench
        self.truth = TruthLog(truth_path)
        self.defects = defects or Defects()
        self.defects_path = defects_path
        self.model = PhysicalModel.from_bench(bench.config, self.truth, self.defects)
        self.ephemeral_ports = ephemeral_ports
        self.instruments = {}
        self.roles = simulated_roles(bench.config)
        self.resources: dict[str, str] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._links: list[Path] = []  # device-path symlinks to ptys, removed at stop
        twin_settings = bench.config.twin.instruments if bench.config.twin else {}
        simulators = available_simulators()
        for role, config in self.roles.items():
            cls = simulator_class(config.driver, role, simulators)
            # the instrument knows its own secrets (an LLS password, say) by the same reference as the rig
            secrets = {name: ref.resolve(f"{role}.secrets.{name} in {bench.path.name}", bench.path.parent)
                       for name, ref in config.secrets.items()}
            settings = {**secrets, **config.settings, **twin_settings.get(role, {})}
            self.instruments[role] = cls(role, self.model, settings)
        for instrument in self.instruments.values():
            if hasattr(instrument, "attach"):
                instrument.attach(self.instruments)  # e.g. the HES reaches the meters' disconnect controls

    async def start(self) -> dict[str, str]:
        for role, instrument in self.instruments.items():
            if instrument.transport == "pty":
                self.resources[role] = await instrument.start_pty()
                if not self.ephemeral_ports:
                    self._link_pty(role, self.resources[role])
                continue
            if instrument.transport == "dlms" and is_serial_device(self.roles[role].resource):
                instrument.hdlc = True  # the meter's optical port: HDLC on a pty, advertised instead of the path
                await instrument.start("127.0.0.1", 0)
                self.resources[role] = instrument.pty_path
                if not self.ephemeral_ports:
                    self._link_pty(role, instrument.pty_path)
                continue
            if hasattr(instrument, "transports"):
                instrument.transport = resource_transport(self.roles[role].resource, role, instrument.transports)
            _host, port = parse_resource(self.roles[role].resource, role)
            port = 0 if self.ephemeral_ports else port
            if instrument.transport == "scpi":
                server = await asyncio.start_server(lambda r, w, inst=instrument: serve_scpi(inst, r, w),
                                                    host="127.0.0.1", port=port, limit=MAX_MESSAGE_BYTES)
                self._servers.append(server)
                port = server.sockets[0].getsockname()[1]
            else:
                port = await instrument.start("127.0.0.1", port)
            self.resources[role] = format_resource(instrument.transport, port)
        self.truth.event("twin.start", bench=self.bench.config.name, resources=self.resources,
                         pid=os.getpid(), defects=self.defects.model_dump(mode="json"),
                         defects_file=str(self.defects_path) if self.defects_path else None,
                         state=self.model.snapshot())
        return self.resources

    def _link_pty(self, role: str, pty_path: str) -> None:
        """Serving on the bench's own addresses: the device path the bench names becomes a symlink to the pty
        (as socat's `link=`), so a rig started separately finds the instrument there. A resource that names no
        absolute path (COM3) gets no link."""
        resource = self.roles[role].resource
        if resource.upper().startswith("ASRL") and resource.upper().endswith("::INSTR"):
            resource = resource[len("ASRL"):-len("::INSTR")]
        if not resource.startswith("/"):
            return
        link = Path(resource)
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise ConfigError(f"{role}: {link} exists and is not a symlink; the twin will not replace it")
        try:
            link.symlink_to(pty_path)
        except OSError as exc:
            raise ConfigError(f"{role}: cannot link {link} to the twin's pty {pty_path}: {exc.strerror}") from None
        self._links.append(link)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for instrument in self.instruments.values():
            if instrument.transport != "scpi":
                await instrument.stop()
        for link in self._links:
            link.unlink(missing_ok=True)
        self.truth.event("twin.stop", state=self.model.snapshot())
        self.truth.close()


def _write_ready_file(path: Path, resources: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "resources": resources}))
    tmp.replace(path)


async def serve(bench: BenchFile, truth_path: Path | None, ephemeral_ports: bool, ready_file: Path | None,
                parent_pid: int | None, defects_path: Path | None = None, announce=print) -> None:
    """Run the twin until SIGINT/SIGTERM, or until the parent process is gone."""
    twin = Twin(bench, truth_path, ephemeral_ports, load_defects(defects_path), defects_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    resources = await twin.start()
    for role, resource in resources.items():
        announce(f"twin: {role:<12} {twin.roles[role].driver:<14} {resource}")
    if ready_file is not None:
        _write_ready_file(ready_file, resources)

    async def watch_parent() -> None:
        while parent_pid is not None and not stop.is_set():
            if os.getppid() != parent_pid:
                stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_parent())
    await stop.wait()
    watcher.cancel()
    await twin.stop()
    sys.stdout.flush()
