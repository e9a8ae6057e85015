"""Modbus TCP instruments described by a register map (pymodbus sync client)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, ClassVar

from pydantic import Field
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from rig.config import DriverSettings
from rig.driver import Driver, Identity
from rig.errors import InstrumentError, InstrumentTimeout
from rig.registermaps import Quantity, RegisterMap, load_register_map
from rig.resources import Accepts

EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   8: "memory parity error", 10: "gateway path unavailable",
                   11: "gateway target device failed to respond"}


class ModbusSettings(DriverSettings):
    """Settings of every Modbus TCP driver: its register map and device id."""

    register_map: str | None = None  # a packaged map's name or a path; default: the driver's
    device_id: Annotated[int, Field(ge=0, le=255)] = 1


class ModbusTcpDriver(Driver):
    """A driver for a Modbus TCP device whose registers a register map describes.

    Settings: `register_map` (a packaged map's name or a path; default DEFAULT_MAP), `device_id` (default 1).
    Every request is one exchange of the transcript: sent 'read_input_registers 0 count=6 device_id=1',
    received the register list. Timeouts, refusals and lost connections name role, address, device id and
    the request.
    """

    DEFAULT_MAP: ClassVar[str] = ""
    KIND: ClassVar[str] = "device"
    SETTINGS_MODEL: ClassVar[type[ModbusSettings]] = ModbusSettings
    ACCEPTS = Accepts(("tcp",), "a Modbus TCP resource is 'tcp://host:port'", default_port=502)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.map: RegisterMap = load_register_map(self.settings.register_map or self.DEFAULT_MAP)
        self.device_id = self.settings.device_id
        self.host, self.port = self.resource.host, self.resource.port
        self.client: ModbusTcpClient | None = None

    def open(self) -> None:
        client = ModbusTcpClient(self.host, port=self.port, timeout=self.config.timeout_s, retries=0)
        if not client.connect():
            raise InstrumentError(f"{self.role} ({self.address}): cannot connect to Modbus TCP device "
                                  f"{self.device_id}")
        self.client = client
        self.transcript.record(self.role, None, None, note=f"opened {self.address} device_id={self.device_id}")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def make_safe(self) -> list[str]:
        return [f"{self.KIND}: nothing to switch"]

    # -- exchanges --------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.role} ({self.address}, device {self.device_id})"

    def request(self, sent: str, call: Callable[[ModbusTcpClient], object]):
        """Run one request; return (response, monotonic time sent) or raise InstrumentError naming the request."""
        client = self.client
        if client is None:
            raise InstrumentError(f"{self._where()}: not open when sending {sent!r}")
        t_sent = time.monotonic()
        try:
            response = call(client)
        except ModbusIOException as exc:
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note=str(exc))
            if "No response" in str(exc):
                client.close()  # a late reply must not be read as the answer to the next request
                raise InstrumentTimeout(f"{self._where()}: no answer within {self.config.timeout_s:g} s "
                                        f"to {sent!r}") from None
            raise InstrumentError(f"{self._where()}: bad answer to {sent!r}: {exc}") from None
        except ConnectionException as exc:
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note=str(exc))
            raise InstrumentError(f"{self._where()}: not reachable when sending {sent!r}") from None
        except ModbusException as exc:
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note=str(exc))
            raise InstrumentError(f"{self._where()}: exchange {sent!r} failed: {exc}") from None
        if response.isError():
            code = getattr(response, "exception_code", None)
            text = f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"
            self.transcript.record(self.role, sent, text, t_mono=t_sent)
            raise InstrumentError(f"{self._where()}: refused {sent!r}: {text}")
        return response, t_sent

    def read_registers(self, table: str, address: int, count: int) -> list[int]:
        """`count` input or holding registers from `address`, in one request."""
        sent = f"read_{table}_registers {address} count={count} device_id={self.device_id}"
        device_id = self.device_id
        if table == "input":
            response, t_sent = self.request(sent, lambda c: c.read_input_registers(address, count=count,
                                                                                   device_id=device_id))
        else:
            response, t_sent = self.request(sent, lambda c: c.read_holding_registers(address, count=count,
                                                                                     device_id=device_id))
        registers = response.registers
        self.transcript.record(self.role, sent, str(registers), t_mono=t_sent)
        if len(registers) != count:
            raise InstrumentError(f"{self._where()}: sent {sent!r}, expected {count} registers, "
                                  f"got {len(registers)}")
        return registers

    def read_coils(self, address: int, count: int) -> list[bool]:
        """`count` coils from `address`, in one request (function code 1)."""
        sent = f"read_coils {address} count={count} device_id={self.device_id}"
        device_id = self.device_id
        response, t_sent = self.request(sent, lambda c: c.read_coils(address, count=count, device_id=device_id))
        bits = [bool(bit) for bit in response.bits[:count]]
        self.transcript.record(self.role, sent, "".join("1" if bit else "0" for bit in bits), t_mono=t_sent)
        if len(bits) != count:
            raise InstrumentError(f"{self._where()}: sent {sent!r}, expected {count} coils, got {len(bits)}")
        return bits

    def write_coil(self, address: int, value: bool) -> None:
        """Set one coil (function code 5); the reply must echo it."""
        sent = f"write_coil {address} {int(value)} device_id={self.device_id}"
        device_id = self.device_id
        response, t_sent = self.request(sent, lambda c: c.write_coil(address, value, device_id=device_id))
        echoed = bool(response.bits[0]) if response.bits else None
        self.transcript.record(self.role, sent, f"{response.address} {int(echoed) if echoed is not None else '?'}",
                               t_mono=t_sent)
        if response.address != address or echoed != value:
            raise InstrumentError(f"{self._where()}: sent {sent!r}, the reply echoed coil {response.address} = "
                                  f"{echoed}")

    def read_quantities(self, names: list[str]) -> dict[str, int | float | str]:
        """Values of named quantities; those of one table within one request's reach (the map's
        max_read_registers) are read together."""
        quantities = sorted(((self.map.quantity(name), name) for name in names),
                            key=lambda item: (item[0].table, item[0].address))
        values: dict[str, int | float | str] = {}
        group: list[tuple[Quantity, str]] = []

        def read_group() -> None:
            first = group[0][0].address
            end = max(q.address + q.count for q, _ in group)
            registers = self.read_registers(group[0][0].table, first, end - first)
            for quantity, name in group:
                offset = quantity.address - first
                values[name] = quantity.decode(registers[offset:offset + quantity.count])

        for quantity, name in quantities:
            if group and (quantity.table != group[0][0].table
                          or quantity.address + quantity.count - group[0][0].address > self.map.max_read_registers):
                read_group()
                group = []
            group.append((quantity, name))
        if group:
            read_group()
        return values

    def read_quantity(self, name: str) -> int | float | str:
        return self.read_quantities([name])[name]

    def identify(self) -> Identity:
        spec = self.map.identity
        names = {getattr(spec, part).quantity for part in ("manufacturer", "model", "serial", "firmware")}
        values = self.read_quantities(sorted(name for name in names if name is not None))
        try:
            texts = self.map.identity_texts(values)
        except ValueError as exc:
            raise InstrumentError(f"{self._where()}: {exc}") from None
        raw = " ".join(f"{name}={value!r}" for name, value in values.items())
        return Identity(texts["manufacturer"], texts["model"], texts["serial"], texts["firmware"], raw=raw)
