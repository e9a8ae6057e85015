"""Every parser of outside bytes, as a fuzz target: what it parses, the error it documents, valid seeds.

A case passes when the parser returns or raises its own clear error (`clear_errors`); any other exception is a
crash. Rig-side targets are the drivers' and loaders' parsers (the SCPI, Modbus and AT drivers on their real
transports against a peer that answers with the case's bytes); twin-side targets are the twin servers' request
parsers, run on the twin's own event loop. `FuzzContext` opens what the targets need once and closes it.
"""

from __future__ import annotations

import importlib.util
import json
import random
import struct
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from mutations import mutate, mutate_json
from peers import AtReplyPty, ModbusReplyPeer, ScpiReplyPeer
from plan_runner import ROOT, SIM_BENCH, write_bench
from pydantic import ValidationError
from twin_thread import TwinOnThread

from rig.config import RoleConfig, load_bench
from rig.driver import SetpointLimits
from rig.errors import ConfigError, InstrumentError, RigError
from rig.transcript import Transcript

Parse = Callable[[bytes], object]


@dataclass
class Target:
    """One parser under fuzz: `make(context)` gives the function a case's bytes go to."""

    name: str
    side: str  # "rig" or "twin"
    clear_errors: tuple[type[BaseException], ...]
    seeds: list[bytes]
    make: Callable[[FuzzContext], Parse]
    engine: Callable[..., bytes] = mutate
    cost: int = 1  # relative time of a case: the bench gives costly targets fewer cases

    def generate(self, rng: random.Random) -> bytes:
        seed = rng.choice(self.seeds)
        return seed if rng.random() < 0.02 else self.engine(seed, rng, self.seeds)


@dataclass
class Crash:
    target: str
    data: bytes
    error: BaseException

    def describe(self) -> str:
        return f"{self.target}: {type(self.error).__name__}: {str(self.error)[:200]}"

    def reproducer(self, limit: int = 2000) -> str:
        """The crash and the case that gives it, as Python to paste (long cases shortened: see the bench's file)."""
        shown = self.data.hex() if len(self.data) <= limit else self.data[:limit].hex() + "..."
        return f"{self.describe()}\n  parse(bytes.fromhex({shown!r}))  # {len(self.data)} bytes"


def run_case(target: Target, parse: Parse, data: bytes) -> Crash | None:
    """None when the parser returned or raised its own clear error; the crash otherwise."""
    try:
        parse(data)
    except target.clear_errors:
        return None
    except Exception as exc:  # noqa: BLE001 - any other exception is what fuzzing looks for
        return Crash(target.name, data, exc)
    return None


def selector(data: bytes, choices: int) -> tuple[int, bytes]:
    """(which of `choices` entry points, the rest): the first byte of a case picks the entry point."""
    return (data[0] % choices, data[1:]) if data else (0, b"")


# -- the context ---------------------------------------------------------------------------------------------------


def twin_bench_edit(data: dict) -> None:
    """The sim bench, with position 3's meter on an HDLC optical port (a pty) besides the TCP wrappers."""
    data["positions"][2]["interface"] = {"driver": "dlms_meter", "resource": "/dev/ttyFUZZ-HDLC-3",
                                         "settings": {"client": "public"}}


class FuzzContext:
    """What targets need, opened on first use: a folder, the twin on a thread, drivers on peers."""

    def __init__(self, folder: Path | None = None):
        self._tmp = None if folder else tempfile.TemporaryDirectory(prefix="fuzz-")
        self.folder = Path(folder or self._tmp.name)
        self.transcript = Transcript(None)
        self._closers: list[Callable[[], None]] = []
        self._twin: TwinOnThread | None = None
        self._cache: dict[str, object] = {}
        self.server_exceptions: list[str] = []  # what the twin's event loop caught: an exception inside a server

    def once(self, key: str, opener: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = opener()
        return self._cache[key]

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    @property
    def twin(self) -> TwinOnThread:
        if self._twin is None:
            folder = self.folder / "twin"
            folder.mkdir(exist_ok=True)
            twin = TwinOnThread()
            twin.truth_path = folder / "truth.jsonl"
            twin.start_twin(load_bench(write_bench(folder, edit=twin_bench_edit)), None)
            twin.loop.set_exception_handler(lambda _loop, problem: self.server_exceptions.append(
                f"{problem.get('message')}: {problem.get('exception')!r}"))
            self._twin = twin
        return self._twin

    def role_config(self, driver: str, resource: str, timeout_s: float, settings: dict | None = None) -> RoleConfig:
        return RoleConfig(driver=driver, resource=resource, timeout_s=timeout_s, settings=settings or {})

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing after a fuzz run: nothing left to report to
                pass
        if self._twin is not None:
            self._twin.stop_twin()
        self.transcript.close()
        if self._tmp is not None:
            self._tmp.cleanup()


# -- rig side: SCPI ------------------------------------------------------------------------------------------------

SCPI_METHODS = ("identify", "output_enabled", "measure_voltage", "set_output_off")
SCPI_SEEDS = [b"\x00Chroma ATE,61504,SIM61504-0001,1.10", b"\x01ON", b"\x010", b"\x02230.017", b"\x02-1.5E+02",
              b'\x030,"No error"', b'\x03-222,"Data out of range"', b"\x00a,b,c,d,e", b"\x029.9E37"]


def make_scpi_reply(context: FuzzContext) -> Parse:
    from drivers.chroma_source import Chroma61500Source

    def open_driver():
        peer = ScpiReplyPeer()
        config = context.role_config("chroma61500", peer.resource, timeout_s=0.5)
        driver = Chroma61500Source("source", config, SetpointLimits(), context.transcript)
        driver.open()
        context.on_close(peer.close)
        context.on_close(driver.close)
        return driver, peer

    driver, peer = context.once("scpi", open_driver)

    def parse(data: bytes) -> object:
        method, reply = selector(data, len(SCPI_METHODS))
        peer.reply = reply.replace(b"\n", b"")  # one reply line per query, whatever bytes it holds
        if SCPI_METHODS[method] == "set_output_off":
            return driver.set_output(False)
        return getattr(driver, SCPI_METHODS[method])()

    return parse


SCPI_MESSAGE_SEEDS = [b"SOUR:VOLT:AC 230;:OUTP ON", b"VOLT 0.231KV", b"FREQ 50HZ;:SYST:ERR?", b"OUTP1 ON",
                      b'*RST;*CLS;DISP:TEXT "a;b"', b":SOURce:VOLTage:LEVel:IMMediate:AMPLitude:AC 1E2 V"]


def make_scpi_message(_context: FuzzContext) -> Parse:
    from drivers.scpi_messages import compile_header, parsed_units, setting_value

    def parse(data: bytes) -> object:
        message = data.decode("latin-1")
        for unit in parsed_units(message):
            unit.addresses("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]:AC")
            setting_value(unit.parameter, "V")
            setting_value(unit.parameter, "HZ")
        return compile_header(message)

    return parse


# -- rig side: Modbus ------------------------------------------------------------------------------------------------

MODBUS_METHODS = ("read_counts", "read_coils", "write_coil")


def _mbap(pdu: bytes, unit: int = 1) -> bytes:
    return struct.pack(">HHHB", 0, 0, len(pdu) + 1, unit) + pdu


MODBUS_SEEDS = [b"\x00" + _mbap(b"\x03\x0c" + bytes(range(12))),
                b"\x00" + _mbap(b"\x03\x0c" + b"\xff" * 12),
                b"\x01" + _mbap(b"\x01\x01\x07"),
                b"\x02" + _mbap(b"\x05\x00\x20\xff\x00"),
                b"\x00" + _mbap(b"\x83\x02"),
                b"\x01" + _mbap(b"\x81\x0b", unit=2)]


def make_modbus_response(context: FuzzContext) -> Parse:
    from drivers.pulse_counter import Adam6051Counter

    def open_driver():
        peer = ModbusReplyPeer()
        config = context.role_config("adam6051", peer.resource, timeout_s=0.3,
                                     settings={"channels": 3, "channel_of_position": {1: 0, 2: 1, 3: 2}})
        driver = Adam6051Counter("counter", config, SetpointLimits(), context.transcript)
        context.on_close(peer.close)
        context.on_close(driver.close)
        return driver, peer

    driver, peer = context.once("modbus", open_driver)

    def parse(data: bytes) -> object:
        method, reply = selector(data, len(MODBUS_METHODS))
        peer.reply = reply
        driver.close()  # the peer closes after each reply: a fresh connection per case
        from drivers.modbus import ModbusTcpDriver
        ModbusTcpDriver.open(driver)
        if MODBUS_METHODS[method] == "read_counts":
            return driver.read_counts()
        if MODBUS_METHODS[method] == "read_coils":
            return driver.read_coils(32, 3)
        return driver.write_coil(33, True)

    return parse


# -- rig side: DLMS --------------------------------------------------------------------------------------------------

def _dlms_seeds() -> list[bytes]:
    from rig.sim.dlms import codec

    now = codec.encode_date_time(1_773_124_200.0, 330)

    def column(class_id: int, logical_name: bytes, attribute: int) -> bytes:
        return codec.encode_structure(codec.encode_int(codec.LONG_UNSIGNED, class_id),
                                      codec.encode_octets(logical_name), codec.encode_int(codec.INTEGER, attribute),
                                      codec.encode_int(codec.LONG_UNSIGNED, 0))

    clock, energy = bytes([0, 0, 1, 0, 0, 255]), bytes([1, 0, 1, 8, 0, 255])
    captures = codec.encode_array([column(8, clock, 2), column(3, energy, 2)])
    buffer = codec.encode_array([codec.encode_structure(codec.encode_octets(now),
                                                        codec.encode_int(codec.DOUBLE_LONG_UNSIGNED, 1234))])
    scaler_captures = codec.encode_array([column(3, bytes([1, 0, 1, 8, 0, 255]), 3)])
    scaler_buffer = codec.encode_array([codec.encode_structure(codec.encode_scaler_unit(-3, "Wh"))])
    return [codec.encode_int(codec.DOUBLE_LONG_UNSIGNED, 12345), codec.encode_scaler_unit(-3, "Wh"),
            codec.encode_octets(now), codec.encode_visible("SIM0001"), codec.encode_bool(True),
            b"\x17" + struct.pack(">f", 231.5), b"\x18" + struct.pack(">d", 0.98), b"\x04\x10\xa5\x5a",
            b"\x0c\x03abc", b"\x01\x82\x00\x02\x00\x00", captures, buffer,
            codec.encode_structure(captures, buffer, scaler_captures, scaler_buffer)]


DLMS_SEEDS = _dlms_seeds()
DLMS_DATA_ERRORS = (ValueError, IndexError, struct.error)  # what DlmsMeter._get_value turns into InstrumentError


def make_dlms_data(_context: FuzzContext) -> Parse:
    from drivers.dlms_meter import decode_value

    return decode_value


def make_dlms_date_time(_context: FuzzContext) -> Parse:
    from drivers.dlms_meter import date_time_from_bytes

    def parse(data: bytes) -> object:
        if len(data) != 12:  # read_clock and the profile cells check the length first
            raise ValueError("not a 12-octet date-time")
        return date_time_from_bytes(data, 330)

    return parse


class ProfileHost:
    """The association side DlmsProfiles needs, answering from one decoded fuzz document
    {capture_objects, buffer, scaler profile capture_objects, scaler profile buffer}."""

    utc_offset_min = 330

    def __init__(self, document: list):
        self.document = document

    def _where(self) -> str:
        return "meter@1 (fuzz)"

    def _date_time(self, raw):
        from drivers.dlms_meter import DlmsMeter
        return DlmsMeter._date_time(self, raw)

    def _selective_access(self, _session) -> bool:
        return False

    def _get_value(self, _session, logical_name: str, _class_id: int, index: int, _access=None):
        from drivers.dlms_profiles import SCALER_PROFILES
        part = (0 if index == 3 else 1) + (2 if logical_name in SCALER_PROFILES.values() else 0)
        if part >= len(self.document):
            raise InstrumentError(f"{self._where()}: refused GET {logical_name} attribute {index}")
        return self.document[part]

    def _get_optional(self, session, logical_name: str, class_id: int, index: int):
        try:
            return self._get_value(session, logical_name, class_id, index)
        except InstrumentError:
            return None


def make_dlms_profile(_context: FuzzContext) -> Parse:
    from drivers.dlms_meter import decode_value
    from drivers.dlms_profiles import DateRange, DlmsProfiles

    class Host(ProfileHost, DlmsProfiles):
        pass

    since = datetime(2026, 3, 10, tzinfo=UTC)

    def parse(data: bytes) -> object:
        try:
            document = decode_value(data)
        except DLMS_DATA_ERRORS as exc:  # as DlmsMeter._get_value reports it
            raise InstrumentError(f"cannot decode: {exc}") from None
        if not isinstance(document, list):
            document = [document]
        selection = DateRange(since if len(data) % 2 else None, None)
        session = type("Session", (), {"cache": {}})()
        return Host(document)._read_profile(session, "1.0.99.1.0.255", selection)

    return parse


# -- rig side: AT modem ----------------------------------------------------------------------------------------------

AT_METHODS = ("csq", "cesq", "qcsq", "registration", "technology", "identify", "open_status")
AT_SEEDS = [b"\x00\r\n+CSQ: 20,99\r\n\r\nOK\r\n", b"\x01\r\n+CESQ: 99,99,255,255,20,50\r\n\r\nOK\r\n",
            b'\x02\r\n+QCSQ: "LTE",-65,-90,150,-9\r\n\r\nOK\r\n', b'\x02\r\n+QCSQ: "GSM",-70\r\n\r\nOK\r\n',
            b'\x03\r\n+CEREG: 2,1,"1A2B","01A2B301",7\r\n\r\nOK\r\n', b"\x03\r\n+CEREG: 0,2\r\n\r\nOK\r\n",
            b'\x04\r\n+QCFG: "nwscanmode",3\r\n\r\nOK\r\n', b"\x05\r\nQuectel\r\nEC25\r\n\r\nOK\r\n",
            b"\x05\r\n866758040000011\r\n\r\nOK\r\n", b"\x06\r\n+CPIN: READY\r\n\r\nOK\r\n",
            b'\x00\r\n+CEREG: 1,"1A2B","01A2B301",7\r\n+CSQ: 31,99\r\n\r\nOK\r\n', b"\x00\r\n+CME ERROR: 30\r\n",
            b"\x03\r\nRDY\r\n+CPIN: READY\r\n+CEREG: 2,1\r\n\r\nOK\r\n"]
AT_TOKENS = (b"\r\n", b"\r", b"\n", b"OK", b"ERROR", b"+CME ERROR: ", b"+CEREG: ", b"+CREG: ", b",", b'"',
             b"99", b"255", b"-1", b"9" * 30, b"\x00", b"\xff", b"RDY", b"+QIND: ")


def make_at_reply(context: FuzzContext) -> Parse:
    from drivers.modem import AtModem

    def open_driver():
        pty = AtReplyPty()
        config = context.role_config("at_modem", pty.path, timeout_s=0.5)
        driver = AtModem("modem@1", config, SetpointLimits(), context.transcript)
        driver.open()
        context.on_close(pty.close)
        context.on_close(driver.close)
        return driver, pty

    driver, pty = context.once("at", open_driver)

    def parse(data: bytes) -> object:
        method, reply = selector(data, len(AT_METHODS))
        pty.reply = reply
        try:
            if AT_METHODS[method] == "open_status":
                return driver.command("AT+CPIN?")
            return getattr(driver, AT_METHODS[method])()
        finally:
            driver._reader.join(0)
            if not driver._reader.is_alive():
                raise AssertionError(f"the reader thread of {driver.role} died: {driver._reader_error}")

    return parse


def at_engine(seed: bytes, rng: random.Random, seeds) -> bytes:
    return mutate(seed, rng, seeds, tokens=AT_TOKENS)


# -- rig side: HES JSON answers --------------------------------------------------------------------------------------

_ACCOUNT = {"account": "SIM0001", "balance": "12.30", "currency": "INR", "supply": "connected",
            "pending_command": None, "emergency_credit": {"state": "none", "taken": "0.00"},
            "last_energy_wh": "1234.5", "disconnect_reason": None}
_COMMAND = {"id": "cmd-1", "account": "SIM0001", "action": "disconnect", "origin": "operator", "status": "queued",
            "attempts": 0, "group": None, "error": None, "reason": None, "history": [{"status": "queued"}]}
HES_PARSERS = ("account", "command", "credited", "alert", "group", "audit", "clock", "accounts")
HES_SEEDS = [b"\x00" + json.dumps(_ACCOUNT).encode(), b"\x01" + json.dumps(_COMMAND).encode(),
             b"\x02" + json.dumps({"account": _ACCOUNT, "reconnect": _COMMAND}).encode(),
             b"\x02" + json.dumps({"account": _ACCOUNT, "reconnect": None}).encode(),
             b"\x03" + json.dumps({"seq": 3, "account": "SIM0001", "threshold_pct": 30, "balance": "29.99",
                                   "local_time": "2026-03-10T12:00:00+05:30"}).encode(),
             b"\x04" + json.dumps({"id": "grp-1", "commands": [_COMMAND],
                                   "refused": [{"account": "SIM0002", "reason": "unknown account"}],
                                   "status": "awaiting_approval", "requested_by": "ops", "approved_by": None,
                                   "held": ["SIM0001"], "skipped": [{"account": "SIM0003", "reason": "window"}]
                                   }).encode(),
             b"\x05" + json.dumps({"seq": 7, "local_time": "2026-03-10T12:00:00.000+05:30", "operator": "ops",
                                   "action": "disconnect", "accounts": ["SIM0001"], "outcome": "done",
                                   "status": 200}).encode(),
             b"\x06" + json.dumps({"local_time": "2026-03-10T12:00:00.000+05:30", "offset_s": 0}).encode(),
             b"\x07" + json.dumps([_ACCOUNT, _ACCOUNT]).encode()]


def make_hes_answer(_context: FuzzContext) -> Parse:
    """The driver's answer parsers, behind its JSON decoding (drivers/hes.py answer_json, as HesClient reads a
    body)."""
    from drivers import hes

    parsers = {"account": hes.account_of, "command": hes.command_of, "credited": hes.credited_of,
               "alert": hes.alert_of, "group": hes.group_of, "audit": hes.audit_entry_of,
               "clock": hes.local_time_of, "accounts": hes.each(hes.account_of)}

    def parse(data: bytes) -> object:
        which, body = selector(data, len(HES_PARSERS))
        what = f"fuzz {HES_PARSERS[which]} answer"
        return parsers[HES_PARSERS[which]](hes.answer_json(body, what), what)

    return parse


def hes_engine(seed: bytes, rng: random.Random, seeds) -> bytes:
    if seed[1:] and rng.random() < 0.8:
        return seed[:1] + mutate_json(seed[1:], rng)
    return mutate(seed, rng, seeds)


# -- rig side: YAML files --------------------------------------------------------------------------------------------

YAML_TOKENS = (b"\n", b"\n  ", b": ", b"- ", b"~", b"''", b'"', b"{", b"}", b"[", b"]", b"&a ", b"*a", b"<<: *a",
               b"!!binary x", b"!!python/object:os.system", b"2020-13-45", b"1e999", b".nan", b"-1", b"0", b"\t",
               b"\xff", b"\x00", b"? ", b"|", b">", b"%YAML 1.1\n", b"---\n", b"...", b"yes", b"0x1F", b"1_000",
               b"190:20:30", b"!!int ", b"!!float ", b"!!timestamp ", b"!!str ", b"&x [*x]", b"*x")


def yaml_engine(seed: bytes, rng: random.Random, seeds) -> bytes:
    data = seed
    if rng.random() < 0.5:  # whole lines: dropped, repeated, swapped
        lines = data.split(b"\n")
        for _ in range(rng.randint(1, 3)):
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            choice = rng.random()
            if choice < 0.4:
                del lines[i]
            elif choice < 0.7:
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            if not lines:
                lines = [b""]
        data = b"\n".join(lines)
    return mutate(data, rng, seeds, tokens=YAML_TOKENS, max_mutations=3) if rng.random() < 0.8 else data


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@cache
def _yaml_loaders() -> dict[str, tuple[Path, Callable[[Path], object]]]:
    from rig import prepaid
    from rig.plan.data import load_plan_data
    from rig.registermaps import load_register_map
    from rig.sim.defects import check_defects, load_defects
    from rig.standards import load_standard

    link = ROOT / "testplans" / "link"
    sim_bench = load_bench(SIM_BENCH)

    def defects(path: Path) -> object:
        load_defects(path)
        return check_defects(path, sim_bench)

    sweep = _module(link / "sweep.py", "fuzz_link_sweep")
    meter_groups = _module(ROOT / "testplans" / "accuracy" / "meter_groups.py", "fuzz_meter_groups")

    def link_limits(path: Path) -> object:
        return sweep.load_limits(f"{path}:twin")

    return {
        "bench": (SIM_BENCH, load_bench),
        "defects": (ROOT / "tests" / "fuzz" / "defects-seed.yaml", defects),
        "plan_data": (ROOT / "testplans" / "prepaid" / "plan.yaml", load_plan_data),
        "tamper_limits": (ROOT / "testplans" / "tamper" / "limits.yaml", load_plan_data),
        "prepaid_limits": (prepaid.LIMITS_FILE, lambda path: prepaid.load_limits("twin", path)),
        "prepaid_policy": (prepaid.POLICY_DIR / "uppcl.yaml", prepaid.load_policy),
        "link_limits": (link / "limits.yaml", link_limits),
        "accuracy_limits": (ROOT / "testplans" / "accuracy" / "iec62053-21.yaml", load_standard),
        "accuracy_plan": (ROOT / "testplans" / "accuracy" / "plan.yaml", meter_groups.load_plan),
        "register_map": (ROOT / "rig" / "registermaps" / "adam6051.yaml", load_register_map),
    }


def make_yaml(kind: str) -> Callable[[FuzzContext], Parse]:
    def make(context: FuzzContext) -> Parse:
        _seed, loader = _yaml_loaders()[kind]
        path = context.folder / f"fuzz-{kind}.yaml"

        def parse(data: bytes) -> object:
            path.write_bytes(data)
            return loader(path)

        return parse

    return make


def yaml_seed(kind: str) -> bytes:
    return _yaml_loaders()[kind][0].read_bytes()


# -- twin side -------------------------------------------------------------------------------------------------------

def on_twin_loop(context: FuzzContext, function: Callable[[bytes], object]) -> Parse:
    """function run on the twin's event loop (the twin's only thread), its exception raised here."""
    twin = context.twin
    return lambda data: twin.call(function, data)


TWIN_SCPI_SEEDS = [b"*IDN?", b"SOUR:VOLT:AC 230;:OUTP ON;:SYST:ERR?", b"VOLT 0.231KV;FREQ 50HZ", b"*ESR?;*STB?",
                   b"MEAS:VOLT:ACDC?;CURR:AC?", b"STAT:OPER:ENAB 32767", b"*ESE 255;*SRE 16", b"SOUR:FREQ MAX",
                   b"INT:STAR;:FETC:ENER?", b"CURR 10;PHAS 60;OUTP ON", b"LOAD:MODE CURR;CURR 5A;LOAD ON",
                   b"SYST:ERR:NEXT?", b"OUTP OFF;OUTP?", b'DISP:TEXT "x;y"']
SCPI_TOKENS = (b";", b":", b"?", b"*", b",", b" ", b'"', b"'", b"MIN", b"MAX", b"1E999", b"-1E-999", b"NAN",
               b"9" * 400, b"KV", b"MHZ", b"MA", b"\x00", b"\xff", b"\t", b"[", b"]")


def scpi_engine(seed: bytes, rng: random.Random, seeds) -> bytes:
    return mutate(seed, rng, seeds, tokens=SCPI_TOKENS)


def make_twin_scpi(context: FuzzContext) -> Parse:
    roles = ("source", "current", "reference", "load@1")
    instruments = [context.twin.twin.instruments[role] for role in roles]

    def handle(data: bytes) -> object:
        which, message = selector(data, len(instruments))
        return instruments[which].handle(message.decode("latin-1"))

    return on_twin_loop(context, handle)


MODBUS_REQUEST_SEEDS = [b"\x01\x03\x00\x00\x00\x06", b"\x01\x01\x00\x20\x00\x03", b"\x01\x05\x00\x21\xff\x00",
                        b"\x01\x10\x00\x00\x00\x02\x04\x00\x01\x00\x02", b"\x01\x0f\x00\x20\x00\x03\x01\x05",
                        b"\x01\x2b\x0e\x01\x00", b"\x01\x11", b"\xff\x04\x00\x00\x00\x02", b"\x02\x03\x00\x00\x00\x01"]


def make_twin_modbus(context: FuzzContext) -> Parse:
    from rig.sim.modbus import request_problem
    counter = context.twin.twin.instruments["counter"]

    def handle(data: bytes) -> object:
        if len(data) < 2:  # the request handler passes a unit id and a PDU of at least its function code
            return None
        request_problem(data[1:])
        return counter.answer_directly(data[0], data[1:])

    return on_twin_loop(context, handle)


def _twin_dlms_seeds() -> list[bytes]:
    """Client SAP selector byte (16 or 32), then an APDU: AARQs, GET/SET/ACTION requests, GET-Request-Next, RLRQ."""
    from rig.sim.dlms import codec

    def request(service: int, class_id: int, logical_name: str, index: int, rest: bytes) -> bytes:
        obis = bytes(int(part) for part in logical_name.split("."))
        return bytes([service, 1, 0xC1]) + class_id.to_bytes(2, "big") + obis + bytes([index]) + rest

    aarq_public = bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400001e1dffff")
    aarq_reader = bytes.fromhex("6036a1090607608574050801018a0207808b0760857405080201ac0a80085346495854454e31"
                                "be10040e01000000065f1f0400001e1dffff")
    moment = codec.encode_octets(codec.encode_date_time(1_773_124_200.0, 330))
    clock_column = codec.encode_structure(codec.encode_int(codec.LONG_UNSIGNED, 8),
                                          codec.encode_octets(bytes([0, 0, 1, 0, 0, 255])),
                                          codec.encode_int(codec.INTEGER, 2), codec.encode_int(codec.LONG_UNSIGNED, 0))
    by_range = b"\x01\x01" + codec.encode_structure(clock_column, moment, moment, codec.encode_array([]))
    by_entry = b"\x01\x02" + codec.encode_structure(*(codec.encode_int(codec.DOUBLE_LONG_UNSIGNED, n) for n in (1, 0)),
                                                    *(codec.encode_int(codec.LONG_UNSIGNED, n) for n in (0, 0)))
    return [b"\x00" + aarq_public, b"\x01" + aarq_reader,
            b"\x00" + request(0xC0, 3, "1.0.1.8.0.255", 2, b"\x00"),
            b"\x00" + request(0xC0, 1, "0.0.96.1.0.255", 2, b"\x00"),
            b"\x01" + request(0xC0, 8, "0.0.1.0.0.255", 2, b"\x00"),
            b"\x01" + request(0xC0, 7, "1.0.99.1.0.255", 2, by_range),
            b"\x01" + request(0xC0, 7, "0.0.99.98.5.255", 2, by_entry),
            b"\x01" + request(0xC1, 8, "0.0.1.0.0.255", 2, b"\x00" + moment),
            b"\x01" + request(0xC3, 70, "0.0.96.3.10.255", 1, b"\x01" + codec.encode_int(codec.INTEGER, 0)),
            b"\x01" + request(0xC3, 70, "0.0.96.3.10.255", 2, b"\x00"),
            b"\x01" + request(0xC1, 71, "0.0.17.0.0.255", 4,
                               b"\x00" + codec.encode_int(codec.DOUBLE_LONG_UNSIGNED, 10**5)),
            b"\x00" + bytes.fromhex("c002c100000001"), b"\x00" + bytes.fromhex("6203800100")]


TWIN_DLMS_SEEDS = _twin_dlms_seeds()


def make_twin_dlms_apdu(context: FuzzContext) -> Parse:
    from rig.sim.dlms.association import SERVER_CONFORMANCE, Association, Link
    meter = context.twin.twin.instruments["meter@1"]

    def handle(data: bytes) -> object:
        which, apdu = selector(data, 2)
        client_sap = (16, 32)[which]
        link = Link("fuzz")
        link.associations[client_sap] = Association(client_sap, {16: "public", 32: "reader"}[client_sap],
                                                    SERVER_CONFORMANCE, 0x1E1D)
        return meter.handle_apdu(link, client_sap, apdu)

    return on_twin_loop(context, handle)


def make_twin_dlms_aarq(context: FuzzContext) -> Parse:
    from rig.sim.dlms.association import aarq_fields, judge_aarq
    from rig.sim.dlms.codec import DataError
    password = context.twin.twin.instruments["meter@1"].password

    def parse(data: bytes) -> object:
        which, aarq = selector(data, 2)
        try:
            return judge_aarq((16, 32)[which], aarq_fields(aarq), password)
        except (DataError, IndexError, KeyError) as exc:  # what DlmsServer._associate answers as a refusal
            raise DataError(str(exc)) from None

    return parse


def make_twin_dlms_codec(_context: FuzzContext) -> Parse:
    from rig.sim.dlms.codec import decode_date_time, decode_one

    def parse(data: bytes) -> object:
        decode_one(data)
        return decode_date_time(data[-12:], 330)

    return parse


def _hdlc_seeds() -> list[bytes]:
    from rig.sim.dlms.hdlc import LLC_REQUEST, encode_hdlc_parameters, hdlc_frame
    server, client = b"\x02\x23", b"\x21"  # logical device 1, physical 17; public client 16
    aarq = TWIN_DLMS_SEEDS[0][1:]
    get = TWIN_DLMS_SEEDS[3][1:]
    return [hdlc_frame(server, client, 0x93, encode_hdlc_parameters(128, 128)),
            hdlc_frame(server, client, 0x10, LLC_REQUEST + aarq),
            hdlc_frame(server, client, 0x32, LLC_REQUEST + get),
            hdlc_frame(server, client, 0x10, LLC_REQUEST + aarq[:20], segmented=True),
            hdlc_frame(server, client, 0x31), hdlc_frame(server, client, 0x53)]


HDLC_SEEDS = _hdlc_seeds()


def with_checksums(frame: bytes) -> bytes:
    """The frame with its HCS and FCS recomputed, so that a mutated frame still reaches the parser behind them."""
    from rig.sim.dlms.codec import DataError
    from rig.sim.dlms.hdlc import crc16_x25, hdlc_address_end
    if len(frame) < 9 or frame[0] != 0x7E or frame[-1] != 0x7E:
        return frame
    content = bytearray(frame[1:-1])
    try:
        source_end = hdlc_address_end(content, hdlc_address_end(content, 2))
    except DataError:
        return frame
    if len(content) > source_end + 3:
        content[source_end + 1:source_end + 3] = crc16_x25(bytes(content[:source_end + 1]))
    content[-2:] = crc16_x25(bytes(content[:-2]))
    return bytes([0x7E]) + bytes(content) + bytes([0x7E])


def hdlc_engine(seed: bytes, rng: random.Random, seeds) -> bytes:
    data = mutate(seed, rng, seeds, tokens=(b"\x7e", b"\x7d", b"\xe6\xe6\x00", b"\xa0", b"\xa8"))
    return with_checksums(data) if rng.random() < 0.7 else data


def make_twin_hdlc(context: FuzzContext) -> Parse:
    from rig.sim.dlms.hdlc import LLC_REQUEST, HdlcLink, hdlc_frame
    meter = context.twin.twin.instruments["meter@1"]

    def handle(data: bytes) -> object:
        link = HdlcLink(meter)
        link.feed(HDLC_SEEDS[0])  # connected (SNRM/UA), so that I-frames reach the DLMS server
        answers = link.feed(data)
        if link.connected:  # then an AARQ in sequence: what a mutated SNRM or I-frame left behind is exercised
            answers += link.feed(hdlc_frame(b"\x02\x23", b"\x21", (link.vr << 5) | (link.vs << 1) | 0x10,
                                            LLC_REQUEST + TWIN_DLMS_SEEDS[0][1:]))
        return answers

    return on_twin_loop(context, handle)


TWIN_AT_SEEDS = [b"AT\r", b"ATE0Q0V1\r", b"AT+CMEE=2;+CPIN?\r", b"AT+CSQ;+CESQ;+QCSQ\r", b"AT+CEREG=2\r",
                 b"AT+CEREG?\r", b'AT+QCFG="nwscanmode",3,1\r', b"ATI\r", b"AT+CGSN\r", b"AT+COPS=3,2;+COPS?\r",
                 b"AT+CFUN=4\r", b"ATS3?\r", b"ATS5=8\r", b"A/", b"AT&F;&W;Z\r", b"AT+IPR=115200\r",
                 b'AT+QURCCFG="urcport","usbat"\r', b"AT+QNWINFO;+CREG=1;+CGREG?\r", b"at+csq\r\n"]
TWIN_AT_TOKENS = (b"\r", b"\n", b"\x08", b";", b"=", b"?", b"=?", b",", b'"', b"AT", b"+", b"&", b"S3=", b"S5=",
                  b"S4=", b"255", b"99", b"-1", b"9" * 30, b"\x00", b"\xff", b"A/")


def twin_at_engine(seed: bytes, rng: random.Random, seeds) -> bytes:
    return mutate(seed, rng, seeds, tokens=TWIN_AT_TOKENS)


def make_twin_at(context: FuzzContext) -> Parse:
    from rig.sim.modem import ModemSim
    model = context.twin.model

    def handle(data: bytes) -> object:
        modem = ModemSim("modem@1", model, {})  # a fresh modem: settings a case changed do not carry over
        modem._buffer = data
        answers = []
        while (out := modem._next_line()) is not None:
            answers.append(out)
        return answers

    return on_twin_loop(context, handle)


TELNET_SEEDS = [b":MN?\r\n", b":SN?\r\n", b":ATT?\r\n", b":SETATT=30.25\r\n", b"\xff\xfd\x01:FIRMWARE?\r\x00",
                b"\xff\xfb\x18\xff\xfa\x18\x00xterm\xff\xf0:ATT?\n", b":SETATT=1e999\r", b"\xff\xff\r\n"]


def make_twin_telnet(context: FuzzContext) -> Parse:
    from rig.sim.lines import TelnetLines
    attenuator = context.twin.twin.instruments["attenuator@2"]

    def handle(data: bytes) -> object:
        lines, answer = TelnetLines().feed(data)
        for line in lines:
            text = line.decode("ascii", errors="replace").strip()
            if text:
                attenuator.handle(text).encode("ascii", errors="replace")
        return answer

    return on_twin_loop(context, handle)


HES_BODIES = ("Recharge", "Adjustment", "Conversion", "TariffChange", "ClockChange", "GroupCommandBody", "NoFields")
HES_BODY_SEEDS = [b"\x00" + b'{"amount": "100.00", "reference": "r-1"}', b"\x00" + b'{"amount": 12.5}',
                  b"\x01" + b'{"amount": "-5.00", "reason": "meter swap"}',
                  b"\x02" + b'{"converted_at": "2026-03-01T00:00:00+05:30"}', b"\x02" + b'{"converted_at": null}',
                  b"\x03" + b'{"per_kwh": "6.5000"}', b"\x04" + b'{"local_time": "2026-03-10T18:30:00"}',
                  b"\x04" + b'{"offset_s": 3600}',
                  b"\x05" + b'{"action": "disconnect", "accounts": ["SIM0001", "SIM0002"], "reason": "test"}',
                  b"\x06" + b"{}"]


def make_twin_hes_body(_context: FuzzContext) -> Parse:
    from rig.sim.hes import api_base

    models = [getattr(api_base, name) for name in HES_BODIES]

    def parse(data: bytes) -> object:
        which, raw = selector(data, len(models))
        payload = api_base._json_object(raw)
        try:
            body = models[which].model_validate(payload)
        except ValidationError as exc:
            raise api_base._validation_error(exc) from None
        for name in ("converted_at", "local_time"):
            value = getattr(body, name, None)
            if value is not None:
                api_base.iso_time(name, value)
        return body

    return parse


def hes_body_engine(seed: bytes, rng: random.Random, seeds) -> bytes:
    if rng.random() < 0.8:
        return seed[:1] + mutate_json(seed[1:], rng)
    return mutate(seed, rng, seeds)


# -- the registry ----------------------------------------------------------------------------------------------------


def _targets() -> list[Target]:
    from rig.sim.dlms.codec import DataError
    from rig.sim.hes.api_base import ApiError

    targets = [
        Target("rig.scpi.reply", "rig", (InstrumentError,), SCPI_SEEDS, make_scpi_reply, cost=5),
        Target("rig.scpi.message", "rig", (), SCPI_MESSAGE_SEEDS, make_scpi_message, scpi_engine),
        Target("rig.modbus.response", "rig", (InstrumentError,), MODBUS_SEEDS, make_modbus_response, cost=20),
        Target("rig.dlms.data", "rig", DLMS_DATA_ERRORS, DLMS_SEEDS, make_dlms_data),
        Target("rig.dlms.date_time", "rig", (ValueError,), [DLMS_SEEDS[2][2:]], make_dlms_date_time),
        Target("rig.dlms.profile", "rig", (InstrumentError,), DLMS_SEEDS[10:], make_dlms_profile),
        Target("rig.at.reply", "rig", (InstrumentError,), AT_SEEDS, make_at_reply, at_engine, cost=5),
        Target("rig.hes.answer", "rig", (InstrumentError,), HES_SEEDS, make_hes_answer, hes_engine),
    ]
    targets += [Target(f"rig.yaml.{kind}", "rig", (ConfigError,), [yaml_seed(kind)], make_yaml(kind), yaml_engine,
                       cost=8) for kind in _yaml_loaders()]
    targets += [
        Target("twin.scpi", "twin", (), TWIN_SCPI_SEEDS, make_twin_scpi, scpi_engine),
        Target("twin.modbus.request", "twin", (), MODBUS_REQUEST_SEEDS, make_twin_modbus),
        Target("twin.dlms.apdu", "twin", (), TWIN_DLMS_SEEDS, make_twin_dlms_apdu),
        Target("twin.dlms.aarq", "twin", (DataError,), [s for s in TWIN_DLMS_SEEDS if s[1:2] == b"\x60"],
               make_twin_dlms_aarq),
        Target("twin.dlms.codec", "twin", (DataError,), DLMS_SEEDS, make_twin_dlms_codec),
        Target("twin.dlms.hdlc", "twin", (), HDLC_SEEDS, make_twin_hdlc, hdlc_engine),
        Target("twin.at", "twin", (), TWIN_AT_SEEDS, make_twin_at, twin_at_engine),
        Target("twin.telnet", "twin", (), TELNET_SEEDS, make_twin_telnet),
        Target("twin.hes.body", "twin", (ApiError,), HES_BODY_SEEDS, make_twin_hes_body, hes_body_engine),
    ]
    return targets


TARGETS: dict[str, Target] = {target.name: target for target in _targets()}
ALL_ERRORS = (RigError,)  # for reference: every clear error above derives from it, or is the twin's own
