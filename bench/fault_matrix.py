"""Fault matrix: inject faults into real plan runs against a served twin and judge the bench by the twin's reading.

Serves the twin of a copy of benches/sim.yaml on free ports (`rig sim`, state kept across runs as a real bench
keeps it), then for each fault of FAULTS: starts `rig run` on a short plan selection that energises the bench,
injects the fault (once the plan has the bench live, or before the run on a bench left live as a crashed run
leaves it), waits for the run to end (a run still going HANG_S after the fault is a hang: killed), and judges:

    outputs_left_on   the twin's own reading over raw sockets, never the rig's drivers: source and current
                      amplifier OUTP?, every load LOAD?, every attenuator ATT? against its bench safe value
    false_fail        a test FAILED (run.json outcomes, else the run's terminal output) or a measurement was
                      recorded with verdict fail: under a rig fault the meter must not be blamed
    stop_s            from the fault to the end of the last run of the fault (a restart run included)
    records_whole     run.json parses with `end` and `outcomes` set, measurements.jsonl and transcript.jsonl have
                      no torn line (a run the fault SIGKILLed: run.json parses, no torn line); full disk: records
                      cannot be whole, so "reported" when the run's output names the write failure (errno 28), else
                      "unreported" (counted broken); its safe state is judged like every other fault's
    hang              the run did not end within HANG_S after the fault

Transport faults put a FaultProxy (rig/sim/fault_proxy.py) in front of one role in the run's copy of the bench:
trickle sends replies a byte every TRICKLE_S, garbage answers undecodable bytes while the requests still reach the
instrument. Between faults the twin is restored: SIGCONT, proxies gone, outputs off, attenuators at their safe
values. With --keep the work folder (bench copies, run folders and logs, the twin's truth) stays for a post-mortem.
Last line: `faults tried=<n> outputs_left_on=<faults with any> false_fails=<f> hangs=<h> records_broken=<r>`.

    python bench/fault_matrix.py [--list] [--only NAME ...] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rig.sim.fault_proxy import Mode, ProxyThread

ROOT = Path(__file__).resolve().parents[1]
SIM_BENCH = ROOT / "benches" / "sim.yaml"
HANG_S = 120.0
ENERGISE_TIMEOUT_S = 60.0
FREEZE_S = 8.0
TRICKLE_S = 0.4
SOCKET_TIMEOUT_S = 2.0
PORT = re.compile(r"^(TCPIP\d*::[^:]+::|(?:tcp|http|telnet)://[^:/]+:)(\d+)(.*)$")
POSITION_FIELDS = {"interface": "meter", "load": "load", "attenuator": "attenuator", "modem": "modem",
                   "cover": "cover"}


@dataclass(frozen=True)
class Plan:
    args: tuple[str, ...]
    live: tuple[str, ...]  # outputs the plan switches on: a mid-run fault waits for all of them


CUTOFF = Plan(("-m", "prepaid", "-k", "position1 and cutoff"), ("source", "load@1"))
SMOKE = Plan(("-m", "smoke"), ("source",))


# -- bench copies -------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def role_configs(data: dict) -> dict[str, dict]:
    """Role name -> its config dict inside data (edits go into data)."""
    roles = dict(data["roles"])
    for position in data.get("positions", []):
        for field_name, prefix in POSITION_FIELDS.items():
            if position.get(field_name):
                roles[f"{prefix}@{position['position']}"] = position[field_name]
    return roles


def port_of(resource: str) -> int | None:
    match = PORT.match(resource)
    return int(match[2]) if match else None


def with_port(resource: str, port: int) -> str:
    return PORT.sub(lambda match: f"{match[1]}{port}{match[3]}", resource)


def twin_bench(folder: Path) -> dict:
    """benches/sim.yaml on free ports, served separately, with its own lock folder and modem links."""
    data = yaml.safe_load(SIM_BENCH.read_text())
    data["twin"]["autostart"] = False
    data["lock_dir"] = str(folder / "locks")
    for role, config in role_configs(data).items():
        if port_of(config["resource"]) is not None:
            config["resource"] = with_port(config["resource"], free_port())
        elif role.startswith("modem@"):
            config["resource"] = str(folder / f"{role.replace('@', '-')}")
        for ref in config.get("secrets", {}).values():
            if "file" in ref:
                ref["file"] = str(SIM_BENCH.parent / ref["file"])
    return data


def write_bench(data: dict, path: Path, ports: dict[str, int] | None = None) -> Path:
    """A copy of data with some roles' resources on other ports (a proxy's, a closed one)."""
    copy = deepcopy(data)
    configs = role_configs(copy)
    for role, port in (ports or {}).items():
        configs[role]["resource"] = with_port(configs[role]["resource"], port)
    path.write_text(yaml.safe_dump(copy, sort_keys=False))
    return path


# -- the served twin, read and restored over raw sockets ------------------------------------------------

class ServedTwin:
    """`rig sim` on the bench's own ports; its outputs are read and switched over raw sockets."""

    def __init__(self, folder: Path, data: dict):
        self.folder = folder
        self.data = data
        self.bench = write_bench(data, folder / "twin.yaml")
        self.truth = folder / "twin-truth.jsonl"
        self.roles = role_configs(data)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        ready = self.folder / "twin-ready.json"
        ready.unlink(missing_ok=True)
        with open(self.folder / "twin.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rig.cli", "sim", "--bench", str(self.bench), "--truth", str(self.truth),
                 "--ready-file", str(ready)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"twin did not start (log: {self.folder / 'twin.log'})")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def port(self, role: str) -> int:
        return port_of(self.roles[role]["resource"])

    def _roles(self, driver: str) -> list[str]:
        return [role for role, config in self.roles.items() if config["driver"] == driver]

    def scpi(self, role: str, *commands: str) -> str:
        """Send commands, then a query to sync on; its reply."""
        with socket.create_connection(("127.0.0.1", self.port(role)), timeout=SOCKET_TIMEOUT_S) as sock:
            sock.sendall("".join(f"{command}\n" for command in commands).encode())
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
        return reply.decode("ascii", errors="replace").strip()

    def attenuator(self, role: str, command: str) -> str:
        resource = self.roles[role]["resource"]
        with socket.create_connection(("127.0.0.1", self.port(role)), timeout=SOCKET_TIMEOUT_S) as sock:
            if resource.startswith("telnet://"):
                sock.sendall(f":{command}\r\n".encode())
                reply = b""
                while not reply.endswith(b"\n"):
                    reply += sock.recv(256) or b"\n"
                return reply.decode("ascii", errors="replace").strip()
            sock.sendall(f"GET /{command} HTTP/1.0\r\nHost: twin\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        return reply.partition(b"\r\n\r\n")[2].decode("ascii", errors="replace").strip()

    def safe_db(self, role: str) -> float:
        return float(self.roles[role].get("safe", {}).get("attenuation_db", 0.0))

    def outputs_left_on(self) -> list[str]:
        """Every output the twin reads ON and every attenuator off its safe value ('?' when it does not answer)."""
        left = []
        checks = [(role, "OUTP?") for role in self._roles("chroma61500") + self._roles("scpi_current_amplifier")]
        checks += [(role, "LOAD?") for role in self._roles("chroma63800")]
        for role, query in checks:
            try:
                if self.scpi(role, query) != "OFF":
                    left.append(role)
            except OSError:
                left.append(f"{role}?")
        for role in self._roles("rcdat"):
            try:
                value = float(self.attenuator(role, "ATT?"))
                if abs(value - self.safe_db(role)) > 1e-6:
                    left.append(f"{role}={value:g}dB")
            except (OSError, ValueError):
                left.append(f"{role}?")
        return left

    def make_safe(self) -> None:
        for role in self._roles("chroma61500") + self._roles("scpi_current_amplifier"):
            self.scpi(role, "OUTP OFF", "*OPC?")
        for role in self._roles("chroma63800"):
            self.scpi(role, "LOAD OFF", "*OPC?")
        for role in self._roles("rcdat"):
            self.attenuator(role, f"SETATT={self.safe_db(role):g}")

    def leave_live(self) -> None:
        """The bench as a killed run leaves it: source and current on, load@1 drawing, attenuators at 30 dB."""
        self.scpi("source", "SOUR:VOLT:AC 240", "OUTP ON", "*OPC?")
        self.scpi("current", "SOUR:CURR 1", "OUTP ON", "*OPC?")
        self.scpi("load@1", "MODE CURR", "CURR 5", "LOAD ON", "*OPC?")
        for role in self._roles("rcdat"):
            self.attenuator(role, "SETATT=30")

    def restore(self) -> None:
        """Running again, outputs off, attenuators safe; restarted when it died or does not answer."""
        self.signal(signal.SIGCONT)
        for _attempt in range(2):
            try:
                if self.process is not None and self.process.poll() is None:
                    self.make_safe()
                    if not self.outputs_left_on():
                        return
            except OSError:
                pass
            self.stop()
            self.start()
        raise RuntimeError(f"twin cannot be made safe: {self.outputs_left_on()}")


class TruthTail:
    """The twin's truth events written since it was created."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.rest = b""

    def events(self) -> list[dict]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = self.rest + handle.read()
        self.offset += len(data) - len(self.rest)
        *lines, self.rest = data.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


# -- one fault: its runs, proxy and injection ------------------------------------------------------------

@dataclass
class Run:
    process: subprocess.Popen
    results: Path
    log: Path
    crashed: bool = False  # killed by the fault itself: its records cannot be complete
    ended: float | None = None


class Trial:
    def __init__(self, matrix: Matrix, fault: Fault):
        self.matrix = matrix
        self.twin = matrix.twin
        self.fault = fault
        self.folder = matrix.workdir / fault.name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.results_root = self.folder
        self.runs: list[Run] = []
        self.cleanups: list[Callable[[], None]] = []
        self.proxy: ProxyThread | None = None
        ports = {}
        if fault.proxy:
            self.proxy = ProxyThread(("127.0.0.1", self.twin.port(fault.proxy)), trickle_s=TRICKLE_S).start()
            ports[fault.proxy] = self.proxy.port
        self.bench = write_bench(self.twin.data, self.folder / "bench.yaml", ports)

    @property
    def run(self) -> Run:
        return self.runs[-1]

    def launch(self, bench: Path | None = None) -> Run:
        index = len(self.runs) + 1
        results = self.results_root / f"run{index}"
        log = self.folder / f"run{index}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "rig.cli", "run", "--bench", str(bench or self.bench), "--results",
                 str(results), "--", *self.fault.plan.args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        run = Run(process, results, log)
        threading.Thread(target=self._note_end, args=(run,), daemon=True).start()  # while an injection blocks
        self.runs.append(run)
        return run

    @staticmethod
    def _note_end(run: Run) -> None:
        run.process.wait()
        run.ended = run.ended or time.monotonic()

    def wait_live(self, tail: TruthTail) -> bool:
        """Until the plan has switched on every output it uses (False: the run ended or took too long)."""
        state = dict.fromkeys(self.fault.plan.live, False)
        deadline = time.monotonic() + ENERGISE_TIMEOUT_S
        while time.monotonic() < deadline and self.run.process.poll() is None:
            for event in tail.events():
                if event["event"] == "source.output":
                    state["source"] = event["on"]
                elif event["event"] == "load":
                    state[f"load@{event['position']}"] = event["on"]
            if all(state[name] for name in self.fault.plan.live):
                return True
            time.sleep(0.05)
        return False

    def wait_end(self, deadline: float) -> bool:
        """Until the last run ends; False (and the run killed) if it is still going at the deadline."""
        try:
            self.run.process.wait(max(0.0, deadline - time.monotonic()))
            self.run.ended = self.run.ended or time.monotonic()
            return True
        except subprocess.TimeoutExpired:
            self.kill(self.run)
            return False

    def kill(self, run: Run) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait()
        run.ended = run.ended or time.monotonic()

    def close(self) -> None:
        for run in self.runs:
            if run.process.poll() is None:
                self.kill(run)
        if self.proxy is not None:
            self.proxy.stop()
        for cleanup in reversed(self.cleanups):
            cleanup()


Injection = Callable[[Trial], None]


@dataclass(frozen=True)
class Fault:
    name: str
    does: str
    inject: Injection
    plan: Plan = CUTOFF
    at: str = "live"  # "live": once the plan has the bench live; "start": before the run, on a bench left live
    proxy: str | None = None  # the role whose resource goes through a FaultProxy
    prepare: Callable[[Trial], str | None] | None = None  # None, or why the fault cannot be tried here


# -- injections ---------------------------------------------------------------------------------------------

def proxy_mode(mode: Mode) -> Injection:
    return lambda trial: trial.proxy.set_mode(mode)


def paused(seconds: float, pause: Injection, resume: Injection) -> Injection:
    """pause, then resume after seconds."""
    def inject(trial: Trial) -> None:
        pause(trial)
        time.sleep(seconds)
        resume(trial)
    return inject


def freeze_link(seconds: float) -> Injection:
    return paused(seconds, proxy_mode(Mode.FREEZE), proxy_mode(Mode.PASS))


def freeze_twin(seconds: float) -> Injection:
    return paused(seconds, lambda trial: trial.twin.signal(signal.SIGSTOP),
                  lambda trial: trial.twin.signal(signal.SIGCONT))


def send_signals(*numbers: int, gap_s: float = 0.4) -> Injection:
    def inject(trial: Trial) -> None:
        for index, number in enumerate(numbers):
            if index:
                time.sleep(gap_s)
            with contextlib.suppress(ProcessLookupError):
                trial.run.process.send_signal(number)
    return inject


def kill_and_rerun(unreachable: str | None = None) -> Injection:
    """SIGKILL the live run, then run again (with one role pointed at a closed port)."""
    def inject(trial: Trial) -> None:
        trial.kill(trial.run)
        trial.run.crashed = True
        bench = None
        if unreachable:
            bench = write_bench(trial.twin.data, trial.folder / "rerun.yaml", {unreachable: free_port()})
        trial.launch(bench)
    return inject


def small_disk(trial: Trial) -> str | None:
    """Results on a 600k tmpfs (root only)."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    mount = trial.folder / "disk"
    mount.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        return f"mount failed: {done.stderr.strip()}"
    trial.cleanups.append(lambda: subprocess.run(["umount", "-l", str(mount)], check=False))
    trial.results_root = mount
    return None


def fill_disk(trial: Trial) -> None:
    filler = os.open(trial.results_root / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while os.write(filler, b"\0" * 4096):
                pass
    finally:
        os.close(filler)


TRANSPORTS = [  # role, name, plan, when: a role a plan uses while live is faulted then; the others at open
    ("source", "source-scpi", SMOKE, "live"),
    ("counter", "counter-modbus", CUTOFF, "start"),
    ("meter@1", "meter-dlms", CUTOFF, "live"),
    ("hes", "hes-http", CUTOFF, "live"),
    ("attenuator@1", "attenuator-http", CUTOFF, "start"),
    ("attenuator@2", "attenuator-telnet", CUTOFF, "start"),
]


def transport_faults() -> list[Fault]:
    return [Fault(f"{mode}-{name}", f"{role}: {mode}, " + ("while live" if at == "live" else "from the start, bench "
                                                          "left live"), proxy_mode(mode), plan, at, proxy=role)
            for role, name, plan, at in TRANSPORTS for mode in (Mode.TRICKLE, Mode.GARBAGE)]


FAULTS = [
    Fault("full-disk", "results on a 600k tmpfs, filled while the bench is live", fill_disk, prepare=small_disk),
    Fault("frozen-twin", f"SIGSTOP the served twin for {FREEZE_S:g} s while live, then SIGCONT",
          freeze_twin(FREEZE_S)),
    Fault("frozen-source-link", f"the source's link holds everything for {FREEZE_S:g} s while live (proxy)",
          freeze_link(FREEZE_S), SMOKE, proxy="source"),
    *transport_faults(),
    Fault("unreachable-meter-after-kill", "SIGKILL a live run, then run with meter@1 on a closed port",
          kill_and_rerun(unreachable="meter@1")),
    Fault("sigint", "SIGINT the run while live", send_signals(signal.SIGINT)),
    Fault("sigterm", "SIGTERM the run while live", send_signals(signal.SIGTERM)),
    Fault("double-sigint", "SIGINT twice, 0.4 s apart, while live", send_signals(signal.SIGINT, signal.SIGINT)),
    Fault("sigkill-restart", "SIGKILL the run while live, then run again", kill_and_rerun()),
    Fault("sigint-smoke", "SIGINT the smoke plan once the source is on", send_signals(signal.SIGINT), plan=SMOKE),
]


# -- judging ------------------------------------------------------------------------------------------------

def torn_lines(path: Path) -> int:
    if not path.exists():
        return 0
    text = path.read_text(errors="replace")
    torn = 0 if not text or text.endswith("\n") else 1
    for line in text.splitlines():
        try:
            json.loads(line)
        except ValueError:
            torn += 1
    return torn


def records_problem(run: Run) -> str | None:
    """What is wrong with a run's records, or None."""
    try:
        record = json.loads((run.results / "run.json").read_text())
    except (OSError, ValueError) as exc:
        return f"run.json: {exc.__class__.__name__}"
    if not run.crashed and (not record.get("end") or not record.get("outcomes")):
        return "run.json without end/outcomes"
    for name in ("measurements.jsonl", "transcript.jsonl"):
        if torn := torn_lines(run.results / name):
            return f"{name}: {torn} torn line(s)"
    return None


def blamed_meter(run: Run) -> str | None:
    """A FAIL in the run: failed tests or measurements with verdict fail."""
    failed = None
    with contextlib.suppress(OSError, ValueError):
        failed = json.loads((run.results / "run.json").read_text()).get("outcomes", {}).get("failed")
    if failed is None:
        output = run.log.read_text(errors="replace")
        match = re.search(r"outcomes: \d+ passed, (\d+) failed", output) or re.search(r"(\d+) failed", output)
        failed = int(match[1]) if match else 0
    verdicts = []
    with contextlib.suppress(OSError):
        for line in (run.results / "measurements.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("verdict") == "fail":
                    verdicts.append(entry.get("name"))
    if failed or verdicts:
        return f"{failed} failed" + (f", verdict fail: {','.join(verdicts)}" if verdicts else "")
    return None


def bench_broken(run: Run) -> str:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((run.results / "run.json").read_text()).get("bench_broken") or ""
    return ""


@dataclass
class Outcome:
    name: str
    tried: bool = True
    left_on: list[str] = field(default_factory=list)
    false_fail: str | None = None
    stop_s: float | None = None
    records: str = "yes"  # yes, no, reported, unreported
    hang: bool = False
    note: str = ""

    @property
    def records_broken(self) -> bool:
        return self.records in ("no", "unreported")

    def line(self) -> str:
        if not self.tried:
            return f"{self.name:<30} not tried: {self.note}"
        stop = f"{self.stop_s:.1f}" if self.stop_s is not None else "-"
        return (f"{self.name:<30} {','.join(self.left_on) or 'none':<28} {'yes' if self.false_fail else 'no':<10} "
                f"{stop:>7} {self.records:<13} {'yes' if self.hang else 'no':<4} {self.note}")


HEADER = f"{'fault':<30} {'outputs_left_on':<28} {'false_fail':<10} {'stop_s':>7} {'records_whole':<13} hang note"


def judge(trial: Trial, fault_at: float | None, ended: bool) -> Outcome:
    outcome = Outcome(trial.fault.name, hang=not ended)
    outcome.left_on = trial.twin.outputs_left_on()
    if fault_at is not None:
        outcome.stop_s = trial.run.ended - fault_at
    final = trial.run
    outcome.false_fail = blamed_meter(final)
    problems = [f"run{index}: {problem}" for index, run in enumerate(trial.runs, 1)
                if (problem := records_problem(run))]
    if trial.fault.prepare is small_disk:
        output = final.log.read_text(errors="replace")
        reported = "No space left on device" in output or f"Errno {errno.ENOSPC}" in output
        outcome.records = "reported" if reported else "unreported"
    elif problems:
        outcome.records = "no"
    notes = [f"exit={','.join(str(run.process.returncode) for run in trial.runs)}"]
    if fault_at is None:
        notes.append("fault not injected: the plan never had the bench live")
    if outcome.false_fail:
        notes.append(outcome.false_fail)
    notes += problems
    if broken := bench_broken(final):
        notes.append(f"broken: {broken[:90]}")
        if final.process.returncode == 0:
            notes.append("exit 0 though the bench broke")
    outcome.note = "; ".join(notes)
    return outcome


# -- the matrix ---------------------------------------------------------------------------------------------

class Matrix:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.twin = ServedTwin(workdir, twin_bench(workdir))

    def start(self) -> None:
        """Serve the twin, on other free ports if another process took one of them meanwhile."""
        for attempt in range(3):
            try:
                self.twin.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                self.twin = ServedTwin(self.workdir, twin_bench(self.workdir))
        self.twin.restore()

    def try_fault(self, fault: Fault) -> Outcome:
        trial = Trial(self, fault)
        try:
            if fault.prepare is not None and (reason := fault.prepare(trial)):
                return Outcome(fault.name, tried=False, note=reason)
            tail = TruthTail(self.twin.truth)
            fault_at = None
            if fault.at == "start":
                self.twin.leave_live()
                fault.inject(trial)
                fault_at = time.monotonic()
                trial.launch()
            else:
                trial.launch()
                if trial.wait_live(tail):
                    fault_at = time.monotonic()
                    fault.inject(trial)
            ended = trial.wait_end((fault_at or time.monotonic()) + HANG_S)
            return judge(trial, fault_at, ended)
        finally:
            trial.close()
            self.twin.restore()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these faults (names or NAME,NAME)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (runs, logs, truth)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.list:
        for fault in FAULTS:
            print(f"{fault.name:<30} {fault.does}")
        return 0
    faults = FAULTS
    if args.only:
        names = {name for option in args.only for name in option.split(",") if name}
        unknown = names - {fault.name for fault in FAULTS}
        if unknown:
            print(f"unknown fault(s): {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
            return 2
        faults = [fault for fault in FAULTS if fault.name in names]
    workdir = Path(tempfile.mkdtemp(prefix="fault-matrix-"))
    matrix = Matrix(workdir)
    outcomes = []
    try:
        matrix.start()
        print(HEADER, flush=True)
        for fault in faults:
            try:
                outcome = matrix.try_fault(fault)
            except (OSError, RuntimeError) as exc:
                outcome = Outcome(fault.name, tried=False, note=f"matrix error: {exc}")
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
    finally:
        matrix.twin.stop()
        if args.keep:
            print(f"work folder: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    tried = [outcome for outcome in outcomes if outcome.tried]
    print(f"faults tried={len(tried)} outputs_left_on={sum(bool(o.left_on) for o in tried)} "
          f"false_fails={sum(bool(o.false_fail) for o in tried)} hangs={sum(o.hang for o in tried)} "
          f"records_broken={sum(o.records_broken for o in tried)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
