"""How well a CurrentWatcher times a relay switching, against the digital twin's truth.

Starts the twin in this process (its event loop in a background thread) for a copy of benches/sim.yaml with
the source and position 1's AC load (chroma63800) only, opens the bench with rig.bench.Bench, switches the supply on
(240 V) and the load on (CURR 5 A). Then, N times, at a random instant the script opens or closes position 1's
relay in the twin's model (alternately), while a CurrentWatcher polling the load's MEAS:CURR? every poll period
detects the crossing of 2.5 A. Each detected time is compared with the truth file's "relay" event (both on
this host's monotonic clock).

Prints median and p99 of |error| in ms, how often the error stayed within the stated uncertainty, and, as the
last line, `timing_error median_ms=<a> p99_ms=<b> poll_ms=<c>`. Targets: median <= poll/2 + 5 ms,
p99 <= poll + 10 ms. No pass/fail. Run from the project root:

    python bench/timing_accuracy.py [--poll-ms 10] [--switches 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

from rig.bench import Bench
from rig.config import load_bench
from rig.driver import available_drivers
from rig.sim.truth import read_truth
from rig.sim.twin import Twin
from rig.timing import CurrentWatcher, PhysicalEvent
from rig.transcript import Transcript

ROOT = Path(__file__).resolve().parents[1]
SIM_BENCH = ROOT / "benches" / "sim.yaml"
LOAD_ROLE = "load@1"
LOAD_A = 5.0
THRESHOLD_A = LOAD_A / 2
MIN_SWITCHES = 200


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll-ms", type=float, default=10.0, help="watcher poll period in ms (default 10)")
    parser.add_argument("--switches", type=int, default=MIN_SWITCHES,
                        help=f"relay switchings (default and minimum {MIN_SWITCHES})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random switching instants (default 1)")
    args = parser.parse_args()
    if args.switches < MIN_SWITCHES:
        parser.error(f"--switches must be at least {MIN_SWITCHES}")
    if args.poll_ms <= 0:
        parser.error("--poll-ms must be positive")
    return args


def bench_with_load(folder: Path) -> Path:
    data = yaml.safe_load(SIM_BENCH.read_text())
    data["lock_dir"] = str(folder / "locks")
    data["twin"]["autostart"] = False
    data["roles"] = {"source": data["roles"]["source"]}
    for position in data["positions"]:
        position.pop("interface", None)
        position.pop("load", None)
    data["positions"][0]["load"] = {"driver": "chroma63800", "resource": "TCPIP0::127.0.0.1::0::SOCKET"}
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def measure(folder: Path, poll_s: float, switches: int, seed: int) -> tuple[list[PhysicalEvent], list[dict]]:
    """Detected events and the truth's relay events, in switching order."""
    bench_file = load_bench(bench_with_load(folder), known_drivers=set(available_drivers()))
    truth_path = folder / "twin-truth.jsonl"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="twin", daemon=True)
    thread.start()
    twin = Twin(bench_file, truth_path, ephemeral_ports=True)
    model = twin.model
    rng = random.Random(seed)
    events: list[PhysicalEvent] = []
    try:
        resources = asyncio.run_coroutine_threadsafe(twin.start(), loop).result(10)
        transcript = Transcript(folder / "transcript.jsonl")
        bench = Bench(bench_file, transcript, resources)
        try:
            bench.open()
            source, load = bench["source"], bench[LOAD_ROLE]
            source.set_voltage(240.0)
            source.set_output(True)
            load.set_mode("CURR")
            load.set_level(LOAD_A)
            load.set_input(True)
            with CurrentWatcher.for_load(load, poll_s) as watcher:
                time.sleep(5 * poll_s)
                for index in range(switches):
                    closed = index % 2 == 1
                    time.sleep(rng.uniform(2 * poll_s, 4 * poll_s))  # a random instant, out of step with the polls
                    loop.call_soon_threadsafe(model.set_relay, 1, closed, "bench")
                    events.append(watcher.wait_for("rises_above" if closed else "falls_below", THRESHOLD_A,
                                                   timeout_s=max(2.0, 20 * poll_s)))
        finally:
            bench.close()
            transcript.close()
    finally:
        asyncio.run_coroutine_threadsafe(twin.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    relays = [event for event in read_truth(truth_path) if event["event"] == "relay" and event["by"] == "bench"]
    return events, relays


def main() -> None:
    args = parse_args()
    poll_s = args.poll_ms / 1000
    with tempfile.TemporaryDirectory(prefix="timing-accuracy-") as tmp:
        events, relays = measure(Path(tmp), poll_s, args.switches, args.seed)
    if len(relays) != len(events):
        raise SystemExit(f"{len(events)} detections but {len(relays)} relay events in the truth file")
    errors_ms = [(event.t_mono - truth["t_mono"]) * 1000 for event, truth in zip(events, relays, strict=True)]
    magnitudes = [abs(error) for error in errors_ms]
    covered = sum(abs(error) <= event.uncertainty_s * 1000 for error, event in zip(errors_ms, events, strict=True))
    median_ms, p99_ms = statistics.median(magnitudes), percentile(magnitudes, 99)
    print(f"{len(events)} relay switchings of position 1 (alternately open/closed, load CURR {LOAD_A:g} A), "
          f"watcher on {LOAD_ROLE} MEAS:CURR? every {args.poll_ms:g} ms, threshold {THRESHOLD_A:g} A")
    print(f"|error| ms: median {median_ms:.2f}  p90 {percentile(magnitudes, 90):.2f}  p99 {p99_ms:.2f}  "
          f"max {max(magnitudes):.2f}; signed mean {statistics.fmean(errors_ms):+.2f}")
    print(f"stated uncertainty ms: median {statistics.median(e.uncertainty_s for e in events) * 1000:.2f}; "
          f"error within it: {covered}/{len(events)}")
    print(f"targets: median <= {args.poll_ms / 2 + 5:g} ms, p99 <= {args.poll_ms + 10:g} ms")
    print(f"timing_error median_ms={median_ms:.2f} p99_ms={p99_ms:.2f} poll_ms={args.poll_ms:g}")


if __name__ == "__main__":
    main()
