"""Overhead of the rig's driver stack over a bare pyvisa-py session, against the digital twin.

Starts the twin (`rig sim`) for a bench, opens the rig's Bench (with a real Transcript to a temporary file,
as every run has one) and, beside it, a raw pyvisa-py session to the same simulated AC source. Then times
N round trips on each side with time.perf_counter_ns, interleaved in blocks so that drift on the machine
hits both alike:

    rig: bench["source"].measure_voltage()
    raw: float(session.query("MEAS:VOLT:ACDC?"))

Prints median, p90 and p99 per query for both and, as the last line, `driver_overhead ratio=<rig/raw>`
(ratio of the medians). No pass/fail. Run from the project root:

    python bench/driver_overhead.py [--queries N] [--bench benches/sim.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyvisa

from rig.bench import Bench
from rig.config import load_bench
from rig.driver import available_drivers
from rig.sim.launcher import TwinProcess
from rig.transcript import Transcript

ROLE = "source"
QUERY = "MEAS:VOLT:ACDC?"
MIN_QUERIES = 1000
WARMUP = 100
BLOCK = 100
DEFAULT_BENCH = Path(__file__).resolve().parents[1] / "benches" / "sim.yaml"

Call = Callable[[], float]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000, help="timed queries per side (default 2000)")
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH,
                        help="bench YAML (default benches/sim.yaml)")
    args = parser.parse_args()
    if args.queries < MIN_QUERIES:
        parser.error(f"--queries must be at least {MIN_QUERIES}")
    return args


def timed(call: Call, count: int) -> list[int]:
    """Round-trip time of each of `count` calls, in nanoseconds."""
    times = []
    for _ in range(count):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return times


def interleaved(rig: Call, raw: Call, count: int) -> tuple[list[int], list[int]]:
    """`count` timed calls of each, in alternating blocks; which side goes first alternates too."""
    rig_ns: list[int] = []
    raw_ns: list[int] = []
    for index, start in enumerate(range(0, count, BLOCK)):
        size = min(BLOCK, count - start)
        if index % 2 == 0:
            rig_ns += timed(rig, size)
            raw_ns += timed(raw, size)
        else:
            raw_ns += timed(raw, size)
            rig_ns += timed(rig, size)
    return rig_ns, raw_ns


def summary_us(times_ns: list[int]) -> tuple[float, float, float]:
    """Median, p90 and p99 in microseconds."""
    cuts = statistics.quantiles(times_ns, n=100, method="inclusive")
    return statistics.median(times_ns) / 1000, cuts[89] / 1000, cuts[98] / 1000


def measure(bench_path: Path, count: int) -> tuple[list[int], list[int]]:
    bench_file = load_bench(bench_path, known_drivers=set(available_drivers()))
    with tempfile.TemporaryDirectory(prefix="driver-overhead-") as tmp:
        twin = TwinProcess(bench_file.path, Path(tmp) / "twin-truth.jsonl")
        try:
            transcript = Transcript(Path(tmp) / "transcript.jsonl")
            bench = Bench(bench_file, transcript, twin.resources)
            try:
                bench.open()
                source = bench[ROLE]
                manager = pyvisa.ResourceManager("@py")
                session = manager.open_resource(
                    twin.resources[ROLE], read_termination="\n", write_termination="\n",
                    timeout=int(bench.role_config(ROLE).timeout_s * 1000))
                try:
                    def raw() -> float:
                        return float(session.query(QUERY))

                    timed(source.measure_voltage, WARMUP)
                    timed(raw, WARMUP)
                    return interleaved(source.measure_voltage, raw, count)
                finally:
                    session.close()
                    manager.close()
            finally:
                bench.close()
                transcript.close()
        finally:
            twin.stop()


def main() -> None:
    args = parse_args()
    rig_ns, raw_ns = measure(args.bench, args.queries)
    print(f"{args.queries} queries per side ({QUERY!r}), interleaved in blocks of {BLOCK}, "
          f"after {WARMUP} warm-up queries each")
    print(f"{'side':<5} {'median us':>10} {'p90 us':>10} {'p99 us':>10}")
    for side, times_ns in (("rig", rig_ns), ("raw", raw_ns)):
        print(f"{side:<5}" + "".join(f" {value:>10.1f}" for value in summary_us(times_ns)))
    print(f"driver_overhead ratio={statistics.median(rig_ns) / statistics.median(raw_ns):.3f}")


if __name__ == "__main__":
    main()
