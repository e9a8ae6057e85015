"""The twin's fleet of meters (rig/fleet/) as the Fleet role: started from the bench file's `fleet:` section, its
shards in local processes (rig/fleet/local.py LocalFleet, engine `local`) or as Ray actors (rig/fleet/ray_engine.py,
engine `ray`, imported only then), controlled over the shards' own control API from an event loop of its own.

The fleet holds no voltage: its safe state is its stop, which `close` makes on every exit path of the run (and each
shard process ends by itself when the rig's process is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from rig.config import FleetConfig
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout, RigError
from rig.fleet.model import read_fleet_secret
from rig.roles.fleet import Fleet, FleetMeter, FleetMeterState
from rig.roles.relay import ControlState

START_TIMEOUT_S = 180.0
CALL_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def fleet_engine(config: FleetConfig, secret_file: Path, push: str | None):
    """The engine serving the fleet: LocalFleet, or RayFleet when the bench asks for `engine: ray`."""
    settings = {"seed": config.seed, "port": config.port, "first_octet": config.first_octet,
                "secret_file": str(secret_file), "push": push, "time_scale": config.time_scale}
    if config.engine == "ray":
        try:
            from rig.fleet.ray_engine import RayFleet, require_ray
        except ImportError as exc:
            raise ConfigError(f"fleet: engine ray is not available here ({exc}); install the fleet extra "
                              f"(pip install .[fleet]) or use engine: local") from None
        require_ray()
        return RayFleet(config.meters, config.shards, config.address, **settings)
    if config.address:
        raise ConfigError("fleet.address: a Ray cluster's address; engine local takes none")
    from rig.fleet.local import LocalFleet

    return LocalFleet(config.meters, config.shards, **settings)


class TwinFleet(Fleet):
    """The Fleet role over the twin's fleet of meters."""

    def __init__(self, config: FleetConfig, bench_dir: Path):
        self.config = config
        self.secret_file = config.secret_file if config.secret_file.is_absolute() else bench_dir / config.secret_file
        read_fleet_secret(self.secret_file)  # a missing or malformed secret is refused before anything starts
        self.engine = None
        self._meters: list[FleetMeter] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._restoring: Future | None = None
        self._observers: list = []  # control connections of their own for states(), free while mains_on runs
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._meters) if self._meters else self.config.meters

    @property
    def running(self) -> bool:
        return self.engine is not None

    def describe(self) -> str:
        return f"fleet of {self.config.meters} meters in {self.config.shards} shards (engine {self.config.engine})"

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self, push_to: tuple[str, int] | None = None) -> list[FleetMeter]:
        with self._lock:
            if self.engine is not None:
                raise RigError(f"{self.describe()}: already started")
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-control", daemon=True)
            self._thread.start()
            push = f"{push_to[0]}:{push_to[1]}" if push_to is not None else None
            engine = fleet_engine(self.config, self.secret_file, push)
            self.engine = engine  # stopped by close() even when its start fails half way
            self._call(engine.start(), START_TIMEOUT_S, "start")
        self._meters = [FleetMeter(m["serial"], f"tcp://{m['endpoint']}") for m in self._call(engine.meters())]
        self._call(self._open_observers(engine), what="observer connections")
        return list(self._meters)

    async def _open_observers(self, engine) -> None:
        """A local shard answers one call at a time per connection, and mains_on holds its connection for the
        whole jitter: states() goes over connections of its own (a Ray actor takes calls concurrently)."""
        from rig.fleet.control import ControlClient

        for line in getattr(engine, "ready", None) or []:
            if isinstance(line, dict) and "control" in line:
                host, port = line["control"].rsplit(":", 1)
                client = ControlClient(host, int(port), f"fleet shard {line.get('shard_index')} (observer)")
                await client.connect()
                self._observers.append(client)

    async def _close_observers(self) -> None:
        observers, self._observers = self._observers, []
        for client in observers:
            await client.close()

    async def _states(self) -> list[dict]:
        if not self._observers:
            return await self._engine().states()
        answers = await asyncio.gather(*(client.call("states") for client in self._observers))
        return [meter for shard in answers for meter in shard]

    def close(self) -> None:
        with self._lock:
            engine, self.engine = self.engine, None
            if engine is not None:
                with contextlib.suppress(RigError):
                    self._call(self._close_observers(), STOP_TIMEOUT_S, "observer connections")
                with contextlib.suppress(RigError):
                    self._call(engine.stop(), STOP_TIMEOUT_S, "stop")
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5.0)
                if not self._thread.is_alive():
                    self._loop.close()
                self._loop = self._thread = None

    def _call(self, coroutine, timeout_s: float = CALL_TIMEOUT_S, what: str | None = None):
        if self._loop is None:
            coroutine.close()
            raise RigError(f"{self.describe()}: not started")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            future.cancel()
            raise InstrumentTimeout(f"{self.describe()}: {what or 'control call'} not done within "
                                    f"{timeout_s:g} s") from None
        except RigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a shard's or an engine's fault, named
            raise InstrumentError(f"{self.describe()}: {what or 'control call'}: {type(exc).__name__}: "
                                  f"{exc}") from None

    def _engine(self):
        if self.engine is None:
            raise RigError(f"{self.describe()}: not started")
        return self.engine

    # -- control -----------------------------------------------------------------------------------------------

    def meters(self) -> list[FleetMeter]:
        self._engine()
        return list(self._meters)

    def mains_off(self, fraction: float = 1.0, jitter_s: float = 0.0) -> list[str]:
        answers = self._call(self._engine().mains_off(fraction, jitter_s), CALL_TIMEOUT_S + jitter_s, "mains_off")
        return [serial for shard in answers for serial in shard["serials"]]

    def mains_on(self, jitter_s: float = 0.0) -> float:
        engine = self._engine()
        began = time.monotonic()
        self._restoring = asyncio.run_coroutine_threadsafe(engine.mains_on(jitter_s), self._loop)
        return began

    def wait_mains(self, timeout_s: float) -> None:
        if self._restoring is None:
            return
        try:
            self._restoring.result(timeout_s)
        except FutureTimeout:
            raise InstrumentTimeout(f"{self.describe()}: mains not back at every meter within {timeout_s:g} s") \
                from None
        finally:
            if self._restoring.done():
                self._restoring = None

    def set_consumption(self, scale: float) -> None:
        self._call(self._engine().set_consumption(scale), what="set_consumption")

    def states(self) -> dict[str, FleetMeterState]:
        return {s["serial"]: FleetMeterState(s["serial"], s["mains_on"], ControlState(s["control_state"]),
                                             s["energy_wh"])
                for s in self._call(self._states(), what="states")}

    def metrics(self) -> dict:
        metrics = self._call(self._engine().metrics(), what="metrics")
        metrics.pop("shards", None)
        return metrics
