"""Simulated Modbus TCP instruments: a register map served live from the model.

pymodbus frames the traffic and runs the requests; this module is its datastore (the map, read live from the
model) and answers, per the MODBUS Application Protocol Specification V1.1b3, what pymodbus 3.16 answers wrongly:
exception frames for malformed requests (section 7), Read Device Identification (0x2B/0x0E, 6.21) and Report
Server ID (0x11, 6.17) with the device's own identity instead of a process-wide one.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import ClassVar

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.device import DeviceInformationFactory, ModbusDeviceIdentification
from pymodbus.pdu.mei_message import ReadDeviceInformationResponse
from pymodbus.pdu.other_message import ReportDeviceIdResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from rig.errors import ConfigError
from rig.registermaps import RegisterMap, load_register_map
from rig.sim.model import PhysicalModel

TABLE_OF_FUNCTION = {1: "coil", 5: "coil", 15: "coil", 2: "discrete_input", 4: "input",
                     3: "holding", 6: "holding", 16: "holding"}
READ_LIMITS = {1: 2000, 2: 2000, 3: 125, 4: 125}  # quantity ranges of the read functions (6.1-6.4)
WRITE_LIMITS = {15: (0x7B0, lambda n: (n + 7) // 8), 16: (0x7B, lambda n: 2 * n)}  # (max quantity, byte count)
BROADCAST_UNIT = 0xFF  # the unit id of a device addressed by its IP address (MODBUS on TCP/IP guide, 4.4.1.2)
MEI_READ_DEVICE_ID = 0x0E
BASIC_OBJECTS, REGULAR_OBJECTS = range(0x03), range(0x07)
CONFORMITY_BASIC = 0x81  # basic identification, stream and individual access


def request_problem(pdu: bytes) -> int | None:
    """The exception code a server answers to this request PDU before touching its data, or None.

    01: function (or MEI type) not supported; 03: quantity, byte count, coil value or length not as the function
    allows. Address checks (02) need the data model and come later.
    """
    function_code, body = pdu[0], pdu[1:]
    if function_code in READ_LIMITS:
        return None if len(body) == 4 and 1 <= struct.unpack(">H", body[2:])[0] <= READ_LIMITS[function_code] else 3
    if function_code == 5:
        return None if len(body) == 4 and body[2:] in (b"\x00\x00", b"\xff\x00") else 3
    if function_code == 6:
        return None if len(body) == 4 else 3
    if function_code in WRITE_LIMITS:
        if len(body) < 5:
            return 3
        _address, quantity, byte_count = struct.unpack(">HHB", body[:5])
        limit, bytes_for = WRITE_LIMITS[function_code]
        fits = 1 <= quantity <= limit and byte_count == bytes_for(quantity) == len(body) - 5
        return None if fits else 3
    if function_code == 0x11:
        return None if not body else 3
    if function_code == 0x2B:
        if not body or body[0] != MEI_READ_DEVICE_ID:
            return 1
        return None if len(body) == 3 and body[1] in (1, 2, 3, 4) else 3
    return 1


class ConformingRequestHandler(ServerRequestHandler):
    """pymodbus's connection handler, with the checks and identity functions of ModbusSim in front of it."""

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        if len(data) < 8:
            return 0
        end = 6 + int.from_bytes(data[4:6], "big")
        if end < 8:
            return len(data)  # a length no Modbus frame has: drop what came
        if len(data) < end:
            return 0
        transaction_id, protocol_id, unit_id = struct.unpack(">HHxxB", data[:7])
        if protocol_id != 0:
            return end  # not Modbus: no answer
        reply = self.server.sim.answer_directly(unit_id, data[7:end])
        if reply is None:
            return super().callback_data(data[:end], addr)
        reply.transaction_id, reply.dev_id = transaction_id, unit_id
        self.pdu_send(reply, addr)
        return end


class TwinModbusServer(ModbusTcpServer):
    """A Modbus TCP server whose datastore and early answers are a ModbusSim's."""

    def __init__(self, sim: ModbusSim, address: tuple[str, int], trace_pdu=None):
        placeholder = SimDevice(sim.device_id, [SimData(0, datatype=DataType.INVALID)])
        super().__init__(placeholder, address=address, trace_pdu=trace_pdu)
        self.sim = sim
        self.context = sim  # type: ignore[assignment] - pymodbus calls async_getValues/async_setValues on it

    def callback_new_connection(self):
        return ConformingRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusSim:
    """One Modbus TCP server answering for one device with the tables of a register map.

    Settings: `register_map` (name or path), `device_id` (default 1), `latency_s` (added before every answer),
    `log_requests` (record every request received as a 'modbus.request' truth event). Device identification and
    Report Server ID give the map's identity. The device answers its own unit id and 0xFF; any other unit id gets
    exception 0B (gateway target failed to respond), as a Modbus TCP gateway answers for a device it cannot reach.
    Registers the map does not define (outside its block-read spans) answer exception 02, as do writes to
    read-only registers; a read of more registers than the map's max_read_registers answers exception 03.
    Quantities in `live` are recomputed from the model at the instant of each read.
    """

    transport = "modbus"
    DEFAULT_MAP: ClassVar[str] = ""

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        self.role = role
        self.model = model
        self.map: RegisterMap = load_register_map(settings.get("register_map", self.DEFAULT_MAP))
        self.device_id = int(settings.get("device_id", 1))
        if not 1 <= self.device_id <= 247:
            raise ConfigError(f"{role}: device_id {self.device_id} is outside 1..247")
        self.latency_s = float(settings.get("latency_s", 0.0))
        self.log_requests = bool(settings.get("log_requests", False))
        self.fixed: dict[str, int | float | str] = {name: q.value for name, q in self.map.registers.items()
                                                    if q.value is not None}
        self.live: dict[str, Callable[[], float]] = {}
        self.server: TwinModbusServer | None = None
        self._written: list[bool] = []  # the last coil write, echoed by a write single coil reply

    # -- identity ---------------------------------------------------------------------------------------

    def identity_texts(self) -> dict[str, str]:
        return self.map.identity_texts(self.fixed)

    def identification(self) -> ModbusDeviceIdentification:
        texts = self.identity_texts()
        return ModbusDeviceIdentification(info_name={"VendorName": texts["manufacturer"],
                                                     "ProductCode": texts["model"],
                                                     "MajorMinorRevision": texts["firmware"]})

    def answer_directly(self, unit_id: int, pdu: bytes) -> ModbusPDU | None:
        """The reply to a request answered before pymodbus decodes it (or None: pymodbus runs it)."""
        function_code = pdu[0]
        if unit_id not in (self.device_id, BROADCAST_UNIT):
            return ExceptionResponse(function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        if (code := request_problem(pdu)) is not None:
            return ExceptionResponse(function_code, code)
        if function_code == 0x11:
            texts = self.identity_texts()
            return ReportDeviceIdResponse(f"{texts['manufacturer']} {texts['model']} {texts['firmware']}".encode())
        if function_code == 0x2B:
            return self.device_information(read_code=pdu[2], object_id=pdu[3])
        return None

    def device_information(self, read_code: int, object_id: int) -> ModbusPDU:
        """Read Device Identification (6.21): basic objects; a stream from an unknown object restarts at 0."""
        class Control:
            Identity = self.identification()

        if read_code == 4:
            if object_id not in BASIC_OBJECTS:
                return ExceptionResponse(0x2B, ExcCodes.ILLEGAL_ADDRESS)
        elif object_id not in (BASIC_OBJECTS if read_code == 1 else REGULAR_OBJECTS):
            object_id = 0
        information = DeviceInformationFactory.get(Control, read_code, object_id)
        response = ReadDeviceInformationResponse(read_code=read_code, information=information)
        response.conformity = CONFORMITY_BASIC
        return response

    # -- data model -------------------------------------------------------------------------------------

    def served(self, table: str, address: int, count: int) -> bool:
        """Whether every register address..address+count-1 of the table is one the device answers for."""
        return all(self.served_address(table, a) for a in range(address, address + count))

    def served_address(self, table: str, address: int) -> bool:
        if any(span.table == table and span.first <= address < span.end for span in self.map.block_reads):
            return True
        return any(q.table == table and q.address <= address < q.address + q.count for q in self.map.registers.values())

    def read_registers(self, table: str, address: int, count: int) -> list[int] | ExcCodes:
        if count > self.map.max_read_registers:
            return ExcCodes.ILLEGAL_VALUE  # more than the device reads in one request
        if not self.served(table, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        registers = [0] * count
        self.model.now()
        end = address + count
        for name, quantity in self.map.registers.items():
            if quantity.table != table or quantity.address >= end or quantity.address + quantity.count <= address:
                continue
            if name in self.live:
                value = self.live[name]()
            elif name in self.fixed:
                value = self.fixed[name]
            else:
                continue
            for index, word in enumerate(quantity.encode(value)):
                if address <= quantity.address + index < end:
                    registers[quantity.address + index - address] = word
        return registers

    def write_registers(self, address: int, values: list[int]) -> ExcCodes | None:
        """Holding registers: only whole read-write quantities may be written."""
        end = address + len(values)
        touched = [(name, q) for name, q in self.map.registers.items()
                   if q.table == "holding" and q.address < end and q.address + q.count > address]
        whole = all(q.access == "rw" and address <= q.address and q.address + q.count <= end for _, q in touched)
        if not touched or not whole or sum(q.count for _, q in touched) != len(values):
            return ExcCodes.ILLEGAL_ADDRESS
        for name, quantity in touched:
            offset = quantity.address - address
            self.fixed[name] = quantity.decode(values[offset:offset + quantity.count])
        return None

    def read_bits(self, table: str, address: int, count: int) -> list[bool] | ExcCodes:
        return ExcCodes.ILLEGAL_ADDRESS

    def write_coils(self, address: int, values: list[bool]) -> ExcCodes | None:
        return ExcCodes.ILLEGAL_ADDRESS

    # -- pymodbus datastore -----------------------------------------------------------------------------

    async def async_getValues(self, device_id: int, func_code: int, address: int,  # noqa: N802 - pymodbus's name
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        if self.latency_s and func_code not in (5, 6):
            await asyncio.sleep(self.latency_s)
        if func_code == 5:  # the reply to a single coil write echoes the request
            return list(self._written)
        table = TABLE_OF_FUNCTION.get(func_code)
        if table in ("coil", "discrete_input"):
            return self.read_bits(table, address, count)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        return self.read_registers(table, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int,  # noqa: N802 - pymodbus's name
                              values: list[int] | list[bool]) -> ExcCodes | None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if func_code in (5, 15):
            self._written = [bool(v) for v in values]
            return self.write_coils(address, self._written)
        if func_code in (6, 16):
            return self.write_registers(address, [int(v) for v in values])
        return ExcCodes.ILLEGAL_FUNCTION

    def device_ids(self) -> list[int]:
        return [self.device_id]

    def _trace(self, sending: bool, pdu):
        if not sending:
            values = list(pdu.bits or pdu.registers or []) or None
            self.model.truth.event("modbus.request", role=self.role, function_code=pdu.function_code,
                                   device_id=pdu.dev_id, address=pdu.address,
                                   count=pdu.count or len(values or []),
                                   values=[int(v) for v in values] if values else None)
        return pdu

    # -- server -----------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0: a free port); return the bound port."""
        self.server = TwinModbusServer(self, (host, port), trace_pdu=self._trace if self.log_requests else None)
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
