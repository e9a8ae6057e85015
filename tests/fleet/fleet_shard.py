"""A fleet shard served in the test's process on an event loop in a background thread, and dlms-cosem clients
(independent of the shard's code) that read its meters over their TCP wrapper endpoints."""

from __future__ import annotations

import asyncio
import threading

from dlms_cosem import cosem, enumerations
from dlms_cosem.clients.dlms_client import DlmsClient

from rig.fleet.push import PushListener
from rig.fleet.shard import FleetShard, ShardConfig

ENERGY = cosem.CosemAttribute(enumerations.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0, 255), 2)
SERIAL = cosem.CosemAttribute(enumerations.CosemInterface.DATA, cosem.Obis(0, 0, 96, 1, 0, 255), 2)
CONTROL_STATE = cosem.CosemAttribute(enumerations.CosemInterface.DISCONNECT_CONTROL,
                                     cosem.Obis(0, 0, 96, 3, 10, 255), 3)
REMOTE_DISCONNECT = cosem.CosemMethod(enumerations.CosemInterface.DISCONNECT_CONTROL,
                                      cosem.Obis(0, 0, 96, 3, 10, 255), 1)
LLS_PASSWORD = b"12345678"
HES_TITLE = b"HESTEST1"


class ShardOnThread:
    """A FleetShard (free ports unless a port is given) and optionally a push listener, on a loop of their own."""

    def __init__(self, **settings):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.listener: PushListener | None = None
        self.shard: FleetShard | None = None
        self.settings = settings

    def start(self, with_listener: bool = False) -> FleetShard:
        settings = dict(self.settings)
        if with_listener:
            secret_file = settings.get("secret_file")

            async def listen():
                from rig.fleet.model import keys_of_system_title, read_fleet_secret
                secret = read_fleet_secret(secret_file)
                self.listener = PushListener(lambda title: keys_of_system_title(secret, title))
                return await self.listener.start()
            settings["push"] = f"127.0.0.1:{self.run(listen())}"
        config = ShardConfig(settings.pop("shard_index", 0), settings.pop("shard_count", 1),
                             settings.pop("meters_per_shard"), port=settings.pop("port", 0), **settings)

        async def make():
            shard = FleetShard(config)
            await shard.start()
            return shard
        self.shard = self.run(make())
        return self.shard

    def run(self, coroutine, timeout_s: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def stop(self) -> None:
        if self.shard is not None:
            self.run(self.shard.stop())
        if self.listener is not None:
            self.run(self.listener.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def endpoint(meter: dict) -> tuple[str, int]:
    host, port = meter["endpoint"].rsplit(":", 1)
    return host, int(port)


def reader_client(meter: dict, timeout_s: float = 5.0) -> DlmsClient:
    host, port = endpoint(meter)
    return DlmsClient.with_tcp_transport(host, port, client_logical_address=32, server_logical_address=1,
                                         authentication_method=enumerations.AuthenticationMechanism.LLS,
                                         password=LLS_PASSWORD, timeout=timeout_s)


def utility_client(meter: dict, keys: tuple[bytes, bytes], counter: int = 1, timeout_s: float = 5.0) -> DlmsClient:
    host, port = endpoint(meter)
    return DlmsClient.with_tcp_transport(host, port, client_logical_address=48, server_logical_address=1,
                                         authentication_method=enumerations.AuthenticationMechanism.HLS_GMAC,
                                         encryption_key=keys[0], authentication_key=keys[1],
                                         client_system_title=HES_TITLE, client_initial_invocation_counter=counter,
                                         timeout=timeout_s)


def read_energy_wh(meter: dict) -> int:
    """The energy register as the meter reader reads it (double-long-unsigned, scaler 0: Wh)."""
    with reader_client(meter).session() as client:
        raw = client.get(ENERGY)
    assert raw[0] == 0x06 and len(raw) == 5
    return int.from_bytes(raw[1:], "big")
