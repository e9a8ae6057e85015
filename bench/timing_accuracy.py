"""How well CurrentWatchers time relays switching, against the digital twin's truth, on 1 to 48 positions.

One position (the default): the twin, in this process (its event loop in a background thread), serves a copy
of benches/sim.yaml with the source and position 1's AC load (chroma63800) only. N positions: the twin serves a
whole generated N-position bench (rig.sim.benchgen: meters, HES reading every meter, modems, attenuators, covers,
loads), in a process of its own as `rig run` has it (`--twin thread` keeps it in this process).

The script opens the bench's source and every position's load with rig.bench.Bench, switches the supply on
(240 V) and every load on (CURR 5 A), and polls every load's MEAS:CURR? every poll period with a CurrentWatcher
of its own (one thread each, as the plans have them). Then, round after round, every position's relay opens or
closes (alternately) in the twin's model, each at a random instant of its own (so many switch close together),
and each watcher detects its crossing of 2.5 A. Each detected time is compared with the truth file's "relay"
event of that position (both on this host's monotonic clock: CLOCK_MONOTONIC is system-wide on Linux).

Prints median and p99 of |error| in ms, how often the error stayed within the stated uncertainty, the polls'
spacing, and, as the last line, `timing_error median_ms=<a> p99_ms=<b> poll_ms=<c> positions=<n>`. Targets:
median <= poll/2 + 5 ms, p99 <= poll + 10 ms. No pass/fail. Run from the project root:

    python bench/timing_accuracy.py [--positions 1] [--poll-ms 10] [--switches 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import yaml

from rig.bench import Bench
from rig.config import BenchFile, load_bench
from rig.driver import available_drivers
from rig.sim.benchgen import MAX_POSITIONS, bench_data
from rig.sim.truth import read_truth
from rig.sim.twin import Twin
from rig.timing import CurrentWatcher, PhysicalEvent
from rig.transcript import Transcript

ROOT = Path(__file__).resolve().parents[1]
SIM_BENCH = ROOT / "benches" / "sim.yaml"
LOAD_A = 5.0
THRESHOLD_A = LOAD_A / 2
MIN_SWITCHES = 200
START_TIMEOUT_S = 60.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1, help=f"meter positions, 1..{MAX_POSITIONS} (default 1)")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="watcher poll period in ms (default 10)")
    parser.add_argument("--switches", type=int, default=MIN_SWITCHES,
                        help=f"relay switchings of each position (default and minimum {MIN_SWITCHES})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random switching instants (default 1)")
    parser.add_argument("--twin", choices=("thread", "process"),
                        help="serve the twin in a thread of this process or in a process of its own "
                             "(default: thread for one position, process for more)")
    parser.add_argument("--serve-twin", nargs=2, metavar=("BENCH", "TRUTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_twin:
        return args
    if args.switches < MIN_SWITCHES:
        parser.error(f"--switches must be at least {MIN_SWITCHES}")
    if args.poll_ms <= 0:
        parser.error("--poll-ms must be positive")
    if not 1 <= args.positions <= MAX_POSITIONS:
        parser.error(f"--positions must be 1..{MAX_POSITIONS}")
    args.twin = args.twin or ("thread" if args.positions == 1 else "process")
    return args


def write_bench(folder: Path, positions: int) -> Path:
    """One position: sim.yaml's source and position 1's load only. More: a whole generated bench."""
    if positions == 1:
        data = yaml.safe_load(SIM_BENCH.read_text())
        data["roles"] = {"source": data["roles"]["source"]}
        for position in data["positions"]:
            position.pop("interface", None)
            position.pop("load", None)
        data["positions"][0]["load"] = {"driver": "chroma63800", "resource": "TCPIP0::127.0.0.1::0::SOCKET"}
    else:
        data = bench_data(positions)
    data["lock_dir"] = str(folder / "locks")
    data["twin"]["autostart"] = False
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class ThreadTwin:
    """The twin on an event loop in a thread of this process."""

    def __init__(self, bench_file: BenchFile, truth_path: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="twin", daemon=True)
        self.thread.start()
        self.twin = Twin(bench_file, truth_path, ephemeral_ports=True)
        self.resources = asyncio.run_coroutine_threadsafe(self.twin.start(), self.loop).result(START_TIMEOUT_S)

    def switch(self, position: int, closed: bool, delay_s: float) -> None:
        self.loop.call_soon_threadsafe(self.loop.call_later, delay_s, self.twin.model.set_relay, position, closed,
                                       "bench")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.twin.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def cpu_s(self) -> None:
        """None: the twin's CPU time is this process's own."""
        return None


class ProcessTwin:
    """The twin in a child process (this script with --serve-twin); relay switchings go over its stdin."""

    def __init__(self, bench_file: BenchFile, truth_path: Path):
        self.process = subprocess.Popen([sys.executable, __file__, "--serve-twin", str(bench_file.path),
                                         str(truth_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"twin process exited with code {self.process.wait()} before it was ready")
        self.resources = json.loads(line)

    def switch(self, position: int, closed: bool, delay_s: float) -> None:
        self.process.stdin.write(f"{position} {int(closed)} {delay_s:.6f}\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_s(self) -> float | None:
        """CPU time (user + system) the twin process used, once it has stopped."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


async def serve_twin(bench_path: str, truth_path: str) -> None:
    """The child of ProcessTwin: serve the bench, print its resources, switch relays as stdin says until EOF."""
    twin = Twin(load_bench(bench_path, known_drivers=set(available_drivers())), Path(truth_path), ephemeral_ports=True)
    print(json.dumps(await twin.start()), flush=True)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while line := await commands.readline():
        position, closed, delay_s = line.split()
        loop.call_later(float(delay_s), twin.model.set_relay, int(position), closed == b"1", "bench")
    await twin.stop()


def open_loads(bench: Bench, positions: list[int]) -> dict[int, object]:
    """Source on at 240 V, every position's load on at CURR LOAD_A; the loads by position."""
    for role in ["source", *(f"load@{p}" for p in positions)]:
        bench.open_role(role)
    source = bench["source"]
    source.set_voltage(240.0)
    source.set_output(True)
    loads = {p: bench[f"load@{p}"] for p in positions}
    for load in loads.values():
        load.set_mode("CURR")
        load.set_level(LOAD_A)
        load.set_input(True)
    return loads


def switch_rounds(twin, watchers: dict[int, CurrentWatcher], poll_s: float, switches: int,
                  seed: int) -> dict[int, list[PhysicalEvent]]:
    """`switches` rounds; in each, every position's relay changes at a random instant of its own (2 to 6 polls
    after the round starts, out of step with the polls), and each watcher's crossing is waited for."""
    rng = random.Random(seed)
    events: dict[int, list[PhysicalEvent]] = {p: [] for p in watchers}
    for index in range(switches):
        closed = index % 2 == 1
        time.sleep(rng.uniform(poll_s, 2 * poll_s))
        for position in watchers:
            twin.switch(position, closed, rng.uniform(2 * poll_s, 6 * poll_s))
        for position, watcher in watchers.items():
            events[position].append(watcher.wait_for("rises_above" if closed else "falls_below", THRESHOLD_A,
                                                     timeout_s=max(2.0, 20 * poll_s)))
    return events


@dataclass
class Measurement:
    events: dict[int, list[PhysicalEvent]]  # detected, by position, in switching order
    relays: dict[int, list[dict]]  # the truth's relay events, likewise
    spacings_s: list[float]  # between successive readings of each watcher
    wall_s: float  # from the first switching round to the last detection
    cpu_s: float  # of this process in that time
    twin_cpu_s: float | None  # of the twin process over its life, when it has one


def measure(folder: Path, args: argparse.Namespace) -> Measurement:
    bench_file = load_bench(write_bench(folder, args.positions), known_drivers=set(available_drivers()))
    truth_path = folder / "twin-truth.jsonl"
    poll_s = args.poll_ms / 1000
    positions = [meter.position for meter in bench_file.config.positions if meter.load is not None]
    twin = (ThreadTwin if args.twin == "thread" else ProcessTwin)(bench_file, truth_path)
    try:
        transcript = Transcript(folder / "transcript.jsonl")
        bench = Bench(bench_file, transcript, twin.resources)
        try:
            loads = open_loads(bench, positions)
            with ExitStack() as stack:
                watchers = {p: stack.enter_context(CurrentWatcher.for_load(load, poll_s)) for p, load in loads.items()}
                time.sleep(5 * poll_s)
                wall_from, cpu_from = time.monotonic(), time.process_time()
                events = switch_rounds(twin, watchers, poll_s, args.switches, args.seed)
                wall_s, cpu_s = time.monotonic() - wall_from, time.process_time() - cpu_from
                spacings = [b.t_mono - a.t_mono for w in watchers.values() for a, b in pairwise(w.samples)]
        finally:
            bench.close()
            transcript.close()
    finally:
        twin.stop()
    relays: dict[int, list[dict]] = {p: [] for p in positions}
    for event in read_truth(truth_path):
        if event["event"] == "relay" and event["by"] == "bench":
            relays[event["position"]].append(event)
    return Measurement(events, relays, spacings, wall_s, cpu_s, twin.cpu_s())


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def main() -> None:
    args = parse_args()
    if args.serve_twin:
        asyncio.run(serve_twin(*args.serve_twin))
        return
    with tempfile.TemporaryDirectory(prefix="timing-accuracy-") as tmp:
        result = measure(Path(tmp), args)
    events, relays, spacings = result.events, result.relays, result.spacings_s
    errors_ms, covered = [], 0
    for position, detected in events.items():
        if len(relays[position]) != len(detected):
            raise SystemExit(f"position {position}: {len(detected)} detections but {len(relays[position])} relay "
                             f"events in the truth file")
        for event, truth in zip(detected, relays[position], strict=True):
            errors_ms.append((event.t_mono - truth["t_mono"]) * 1000)
            covered += abs(errors_ms[-1]) <= event.uncertainty_s * 1000
    all_events = [event for detected in events.values() for event in detected]
    magnitudes = [abs(error) for error in errors_ms]
    median_ms, p99_ms = statistics.median(magnitudes), percentile(magnitudes, 99)
    print(f"{len(all_events)} relay switchings on {args.positions} position(s), {args.switches} each (alternately "
          f"open/closed, load CURR {LOAD_A:g} A), twin in a {args.twin}; a watcher per load, MEAS:CURR? every "
          f"{args.poll_ms:g} ms, threshold {THRESHOLD_A:g} A")
    print(f"|error| ms: median {median_ms:.2f}  p90 {percentile(magnitudes, 90):.2f}  p99 {p99_ms:.2f}  "
          f"max {max(magnitudes):.2f}; signed mean {statistics.fmean(errors_ms):+.2f}")
    print(f"stated uncertainty ms: median {statistics.median(e.uncertainty_s for e in all_events) * 1000:.2f}; "
          f"error within it: {covered}/{len(all_events)}")
    print(f"poll spacing ms: median {statistics.median(spacings) * 1000:.2f}  p99 {percentile(spacings, 99) * 1000:.2f}"
          f"  max {max(spacings) * 1000:.2f} (cpus: {os.cpu_count()})")
    twin_cpu = "" if result.twin_cpu_s is None else f", the twin process {result.twin_cpu_s:.1f} s over its life"
    print(f"cpu: this process {result.cpu_s:.1f} s in the {result.wall_s:.1f} s of switching{twin_cpu}")
    print(f"targets: median <= {args.poll_ms / 2 + 5:g} ms, p99 <= {args.poll_ms + 10:g} ms")
    print(f"timing_error median_ms={median_ms:.2f} p99_ms={p99_ms:.2f} poll_ms={args.poll_ms:g} "
          f"positions={args.positions}")


if __name__ == "__main__":
    main()
