"""The twin HES's link to the twin meters: a DLMS/COSEM client on each meter's TCP wrapper port, over the radio.

Every register read and every disconnect or reconnect is first carried by the position's radio link
(`model.radio(position).carry`: queued while the modem is unregistered, polls on 2G, latency and retries), then
performed as a real DLMS/COSEM exchange with that position's twin meter over the IEC 62056-47 TCP wrapper on
loopback, as utility settings (client SAP 48, HLS-GMAC with the meter's global keys, which the head end holds;
every APDU authenticated and encrypted). Before each association the public client (SAP 16) reads the
association's invocation counter (0.0.43.1.3.255) and the head end goes on above it and above its own last one.
The exchange is dlms-cosem's (sans-IO `DlmsConnection` and wrapper classes) on asyncio streams. One association
per meter, opened on first use (the meter's port is known only once it serves) and dropped after any failure, so
the next exchange opens a fresh one. A meter whose communication module is down (no supply voltage) gives no
answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

from dlms_cosem import cosem, dlms_data, enumerations, state
from dlms_cosem.connection import DlmsConnection
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.wrappers import WrapperHeader, WrapperProtocolDataUnit

from rig.sim.dlms.codec import decode_one
from rig.sim.dlms.meter import DlmsMeterSim
from rig.sim.model import PhysicalModel

T = TypeVar("T")

PUBLIC_SAP, UTILITY_SAP, SERVER_SAP = 16, 48, 1
HES_SYSTEM_TITLE = b"RIGHES01"
INVOCATION_COUNTER = cosem.Obis(0, 0, 43, 1, 3, 255)  # of the utility settings association
CURRENT_ASSOCIATION = cosem.Obis(0, 0, 40, 0, 0, 255)
ENERGY_IMPORT = cosem.Obis(1, 0, 1, 8, 0, 255)
DISCONNECT_CONTROL = cosem.Obis(0, 0, 96, 3, 10, 255)
UNIT_WH = 30
IDLE_RELEASE_S = 100.0  # an association idle this long is closed and made again before the next exchange
METHODS = {"remote_disconnect": 1, "remote_reconnect": 2}


class MeterUnreachable(ConnectionError):
    """The meter did not answer, refused, or answered nonsense; the message names the meter and the exchange."""


async def read_invocation_counter(host: str, port: int) -> int:
    """A meter's utility association invocation counter, read by the public client on a connection of its own."""
    reader, writer = await asyncio.open_connection(host, port)
    public = _Association(reader, writer)
    try:
        await public.associate()
        value = await public.get(INVOCATION_COUNTER, 1, 2)
        await public.release()
    finally:
        public.close()
    if isinstance(value, bool) or not isinstance(value, int):
        raise MeterUnreachable(f"invocation counter 0.0.43.1.3.255 is {value!r}, not an integer")
    return value


class _Association:
    """One TCP wrapper connection to a meter with a client's association on it: utility settings (HLS-GMAC) with
    `keys` (encryption, authentication), else the public client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 keys: tuple[bytes, bytes] | None = None, invocation_counter: int = 0):
        self.reader = reader
        self.writer = writer
        self.client_sap = UTILITY_SAP if keys else PUBLIC_SAP
        if keys:
            self.connection = DlmsConnection(
                client_system_title=HES_SYSTEM_TITLE, global_encryption_key=keys[0], global_authentication_key=keys[1],
                authentication_method=enumerations.AuthenticationMechanism.HLS_GMAC,
                client_invocation_counter=invocation_counter)
        else:
            self.connection = DlmsConnection(client_system_title=None)
        self.energy_scaler: int | None = None
        self.last_used = time.monotonic()

    async def exchange(self, apdu):
        self.last_used = time.monotonic()
        data = self.connection.send(apdu)
        header = WrapperHeader(source_wport=self.client_sap, destination_wport=SERVER_SAP, length=len(data))
        self.writer.write(WrapperProtocolDataUnit(data, header).to_bytes())
        await self.writer.drain()
        answer = WrapperHeader.from_bytes(await self.reader.readexactly(8))
        self.connection.receive_data(await self.reader.readexactly(answer.length))
        return self.connection.next_event()

    async def associate(self) -> None:
        aarq = self.connection.get_aarq()
        if self.client_sap == PUBLIC_SAP:
            aarq.system_title = None  # no ciphering: no calling AP title
        aare = await self.exchange(aarq)
        if not isinstance(aare, acse.ApplicationAssociationResponse):
            raise MeterUnreachable(f"sent an AARQ, got {type(aare).__name__}")
        if aare.result is not enumerations.AssociationResult.ACCEPTED:
            raise MeterUnreachable(f"association refused ({aare.result.name.lower()}, "
                                   f"{aare.result_source_diagnostics!r})")
        if self.connection.state.current_state is state.SHOULD_SEND_HLS_SEVER_CHALLENGE_RESULT:
            method = cosem.CosemMethod(enumerations.CosemInterface.ASSOCIATION_LN, CURRENT_ASSOCIATION, 1)
            reply = dlms_data.OctetStringData(self.connection.get_hls_reply()).to_bytes()
            answer = await self.exchange(xdlms.ActionRequestNormal(method, reply))
            if self.connection.state.current_state is not state.READY:
                raise MeterUnreachable(f"HLS-GMAC authentication failed: {_describe(answer)}")

    async def release(self) -> None:
        await self.exchange(self.connection.get_rlrq())

    async def get(self, logical_name: cosem.Obis, class_id: int, index: int):
        attribute = cosem.CosemAttribute(enumerations.CosemInterface(class_id), logical_name, index)
        answer = await self.exchange(xdlms.GetRequestNormal(attribute))
        if not isinstance(answer, xdlms.GetResponseNormal):
            raise MeterUnreachable(f"GET {logical_name.to_string()} attribute {index}: {_describe(answer)}")
        return decode_one(bytes(answer.data))[1]

    async def energy_wh(self) -> Decimal:
        """The register exactly: its integer value times 10**scaler Wh."""
        if self.energy_scaler is None:
            scaler, unit = (item[1] for item in await self.get(ENERGY_IMPORT, 3, 3))
            if unit != UNIT_WH:
                raise MeterUnreachable(f"1.0.1.8.0.255 is in unit {unit}, not Wh")
            self.energy_scaler = scaler
        value = await self.get(ENERGY_IMPORT, 3, 2)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MeterUnreachable(f"1.0.1.8.0.255 value is not an integer: {value!r}")
        return Decimal(value).scaleb(self.energy_scaler)

    async def action(self, method: str) -> None:
        target = cosem.CosemMethod(enumerations.CosemInterface(70), DISCONNECT_CONTROL, METHODS[method])
        answer = await self.exchange(xdlms.ActionRequestNormal(target, dlms_data.IntegerData(0).to_bytes()))
        if not isinstance(answer, xdlms.ActionResponseNormal) or \
                answer.status != enumerations.ActionResultStatus.SUCCESS:
            raise MeterUnreachable(f"ACTION {method}: {_describe(answer)}")

    def close(self) -> None:
        self.writer.close()


def _describe(answer) -> str:
    for name in ("error", "status"):
        value = getattr(answer, name, None)
        if value is not None:
            return f"{type(answer).__name__} {getattr(value, 'name', value)}".lower()
    return type(answer).__name__


class DlmsMeterLink:
    """MeterLink over DLMS/COSEM and the radio for positions with a twin DLMS meter (`add_meter`); the others are
    reached through `fallback` (a ModelMeterLink). `deadline_s` bounds each DLMS exchange, not the radio's wait."""

    def __init__(self, model: PhysicalModel, fallback, by: str = "hes", deadline_s: float = 5.0):
        self.model = model
        self.fallback = fallback
        self.by = by
        self.deadline_s = deadline_s
        self.meters: dict[int, DlmsMeterSim] = {}
        self._associations: dict[int, _Association] = {}
        self._invocation_counters: dict[int, int] = {}  # position -> the last one the head end used

    def add_meter(self, position: int, meter: DlmsMeterSim) -> None:
        self.meters[position] = meter

    def reaches(self, position: int) -> str:
        """'dlms' or 'model': how this link reaches the position's meter."""
        return "dlms" if position in self.meters else "model"

    async def read_energy_wh(self, position: int) -> Decimal:
        if position not in self.meters:
            return await self.fallback.read_energy_wh(position)
        async with self.model.radio(position).carry("read 1.0.1.8.0.255"):
            return await self._exchange(position, "read 1.0.1.8.0.255", lambda a: a.energy_wh())

    async def disconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None:
        await self._command(position, "remote_disconnect", on_sent)

    async def reconnect(self, position: int, on_sent: Callable[[], None] | None = None) -> None:
        await self._command(position, "remote_reconnect", on_sent)

    async def _command(self, position: int, method: str, on_sent: Callable[[], None] | None) -> None:
        if position not in self.meters:
            action = self.fallback.disconnect if method == "remote_disconnect" else self.fallback.reconnect
            await action(position, on_sent=on_sent)
            return
        async with self.model.radio(position).carry(method):
            if on_sent is not None:
                on_sent()
            await self._exchange(position, method, lambda a: a.action(method))

    async def _exchange(self, position: int, what: str, body: Callable[[_Association], Awaitable[T]]) -> T:
        meter = self.meters[position]
        where = f"{meter.role} over DLMS (tcp://127.0.0.1:{meter.port})"
        if not meter.answering():
            raise MeterUnreachable(f"{where}: no answer to {what}: the meter's communication module is down")
        try:
            return await asyncio.wait_for(self._on_association(position, meter, body), self.deadline_s)
        except Exception as exc:  # noqa: BLE001 - socket, protocol and library errors alike end the association
            association = self._associations.pop(position, None)
            if association is not None:
                self._keep_counter(position, association)
                association.close()
            reason = "no answer within the deadline" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            raise MeterUnreachable(f"{where}: {what}: {reason}") from None

    async def _on_association(self, position: int, meter: DlmsMeterSim,
                              body: Callable[[_Association], Awaitable[T]]) -> T:
        association = self._associations.get(position)
        if association is not None and time.monotonic() - association.last_used > IDLE_RELEASE_S:
            self._keep_counter(position, association)
            association.close()  # the meter closes a connection idle for its inactivity timeout (~120 s)
            association = None
        if association is None:
            if meter.port is None:
                raise MeterUnreachable("the meter does not serve yet")
            counter = max(await self._read_invocation_counter(meter), self._invocation_counters.get(position, 0))
            setup = meter.security.setup("utility")
            reader, writer = await asyncio.open_connection("127.0.0.1", meter.port)
            association = _Association(reader, writer, (setup.encryption_key, setup.authentication_key),
                                       counter + 1)
            self._associations[position] = association
            await association.associate()
        try:
            return await body(association)
        finally:
            self._keep_counter(position, association)

    def _keep_counter(self, position: int, association: _Association) -> None:
        used = association.connection.client_invocation_counter - 1
        self._invocation_counters[position] = max(self._invocation_counters.get(position, 0), used)

    async def _read_invocation_counter(self, meter: DlmsMeterSim) -> int:
        return await read_invocation_counter("127.0.0.1", meter.port)

    async def close(self) -> None:
        for association in self._associations.values():
            association.close()
        self._associations.clear()
