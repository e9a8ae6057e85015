"""Simulated Modbus TCP instruments: a register map served live from the model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from rig.errors import ConfigError
from rig.registermaps import RegisterMap, load_register_map
from rig.sim.model import PhysicalModel

TABLE_OF_FUNCTION = {1: "coil", 5: "coil", 15: "coil", 2: "discrete_input", 4: "input",
                     3: "holding", 6: "holding", 16: "holding", 22: "holding", 23: "holding"}
REGISTER_TABLES = ("holding", "input")


class ModbusSim:
    """One Modbus TCP server answering for one device id with the tables of a register map.

    Settings: `register_map` (name or path), `device_id` (default 1), `latency_s` (added before every answer),
    `log_requests` (record every request received as a 'modbus.request' truth event). Requests for any other
    device id are answered with exception 11 (gateway target failed to respond), as a Modbus TCP gateway does;
    coils and discrete inputs the map does not use answer exception 1 (illegal function), addresses it does not
    define exception 2 (illegal data address); holding registers are read-only.
    Quantities in `live` are recomputed from the model at the instant of each read.
    """

    transport = "modbus"
    DEFAULT_MAP: ClassVar[str] = ""

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        self.role = role
        self.model = model
        self.map: RegisterMap = load_register_map(settings.get("register_map", self.DEFAULT_MAP))
        self.device_id = int(settings.get("device_id", 1))
        if not 0 <= self.device_id <= 247:
            raise ConfigError(f"{role}: device_id {self.device_id} is outside 0..247")
        self.latency_s = float(settings.get("latency_s", 0.0))
        self.log_requests = bool(settings.get("log_requests", False))
        self.fixed: dict[str, int | float | str] = {name: q.value for name, q in self.map.registers.items()
                                                    if q.value is not None}
        self.live: dict[str, Callable[[], float]] = {}
        self.server: ModbusTcpServer | None = None
        self._served: set[str] = set()

    # -- tables -----------------------------------------------------------------------------------------

    def register_spans(self) -> dict[str, tuple[int, int]]:
        """table -> (first address, end address) of every register the map defines there."""
        spans: dict[str, tuple[int, int]] = {}
        for quantity in self.map.registers.values():
            first, end = spans.get(quantity.table, (quantity.address, quantity.address + quantity.count))
            spans[quantity.table] = (min(first, quantity.address), max(end, quantity.address + quantity.count))
        return spans

    def coil_blocks(self) -> list[SimData]:
        return []

    def tables(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """(coils, discrete inputs, holding, input) blocks; each table is one contiguous span (gaps read 0)."""
        spans = self.register_spans()
        registers: dict[str, list[SimData]] = {}
        for table in REGISTER_TABLES:
            if table not in spans:
                registers[table] = [SimData(0, datatype=DataType.INVALID)]
                continue
            first, end = spans[table]
            values = [0] * (end - first)
            for name, value in self.fixed.items():
                quantity = self.map.registers[name]
                if quantity.table == table:
                    values[quantity.address - first:quantity.address - first + quantity.count] = quantity.encode(value)
            registers[table] = [SimData(first, values=values, datatype=DataType.REGISTERS,
                                        readonly=table == "holding")]
        unused_bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return (self.coil_blocks() or unused_bits, unused_bits, registers["holding"], registers["input"])

    def served_tables(self) -> set[str]:
        return set(self.register_spans()) | ({"coil"} if self.coil_blocks() else set())

    # -- access -----------------------------------------------------------------------------------------

    async def _access(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        table = TABLE_OF_FUNCTION.get(function_code)
        if table not in self._served:
            return ExcCodes.ILLEGAL_FUNCTION
        if table == "coil":
            return self.on_coils(address, values) if values is not None else None
        if values is None:
            self.refresh(table, start_address, address, count, registers)
        return None

    def refresh(self, table: str, start_address: int, address: int, count: int, registers: list[int]) -> None:
        """Write the live quantities the request covers into the block, computed at this instant."""
        end = address + count
        self.model.now()
        for name, value_of in self.live.items():
            quantity = self.map.registers[name]
            if quantity.table == table and quantity.address < end and quantity.address + quantity.count > address:
                offset = quantity.address - start_address
                registers[offset:offset + quantity.count] = quantity.encode(value_of())

    def on_coils(self, address: int, values: list[bool]) -> ExcCodes | None:
        return None

    async def _absent(self, *_args) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE

    def _trace(self, sending: bool, pdu):
        if not sending:
            values = list(pdu.bits or pdu.registers or []) or None
            self.model.truth.event("modbus.request", role=self.role, function_code=pdu.function_code,
                                   device_id=pdu.dev_id, address=pdu.address, count=pdu.count,
                                   values=[int(v) for v in values] if values else None)
        return pdu

    # -- server -----------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0: a free port); return the bound port."""
        self._served = self.served_tables()
        devices = [SimDevice(self.device_id, self.tables(), action=self._access)]
        if self.device_id != 0:
            devices.append(SimDevice(0, self.tables(), action=self._absent))
        self.server = ModbusTcpServer(devices, address=(host, port),
                                      trace_pdu=self._trace if self.log_requests else None)
        try:
            await self.server.serve_forever(background=True)
        except RuntimeError:
            self.server = None
            raise ConfigError(f"{self.role}: cannot serve Modbus TCP on {host}:{port}") from None
        return self.server.transport.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
