"""Accuracy plan timing on the twin: 24 positions against 1, and the whole plan against its physics floor.

1. Scaling: the error sweep (every load point of the plan, `-k load_point`) on a twin bench with 24 meter
   positions and on one with a single position; all positions are measured on the same energisations, so
   the ratio of wall times should stay near 1 (target <= 1.3).
2. Floor: the whole accuracy plan (`-m accuracy`) on the default twin bench against its physics floor: the
   sum over the points of the pulses needed / pulse rate plus the settling time, plus the fixed durations of
   the starting-current, no-load and register tests (target <= 1.25).

The twin's meters give 1,000,000 imp/kWh on their test output (benches/sim.yaml: test_output_imp_per_kwh)
to keep runs short; their nameplate constant is 3200 imp/kWh.

Run from the project root:  python bench/accuracy_scaling.py
Last line: accuracy_scaling ratio=<x> floor_ratio=<y>
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "testplans" / "accuracy"))

from meter_groups import load_plan, meter_groups  # noqa: E402

from rig.accuracy import creep_minimum_time_s, pulse_period_s, pulses_needed  # noqa: E402
from rig.config import load_bench  # noqa: E402
from rig.standards import load_points  # noqa: E402

PLAN = ROOT / "testplans" / "accuracy"
PLAN_FILE = PLAN / "plan.yaml"


def bench_with_positions(folder: Path, count: int) -> Path:
    data = yaml.safe_load((ROOT / "benches" / "sim.yaml").read_text())
    rating = {key: value for key, value in data["positions"][0].items() if key != "interface"}
    data["positions"] = [{**rating, "position": n, "serial": f"SIM{n:04d}"} for n in range(1, count + 1)]
    data["roles"]["counter"].setdefault("settings", {})["channels"] = max(count, 12)
    data["roles"]["counter"]["settings"]["channel_of_position"] = {n: n - 1 for n in range(1, count + 1)}
    data["lock_dir"] = str(folder / "locks")
    path = folder / f"bench-{count}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_plan(bench: Path, results: Path, *selection: str) -> float:
    """Wall time of the plan run (seconds), from the run record's own start and end."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", str(PLAN), f"--bench={bench}", f"--results={results}",
                           "-q", "-p", "no:cacheprovider", *selection], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"plan failed on {bench.name}:\n{done.stdout[-3000:]}")
    record = json.loads((results / "run.json").read_text())
    print(f"  {bench.name}: {record['outcomes']['passed']} tests passed in {wall:.1f} s")
    return wall


def physics_floor_s(bench_path: Path) -> float:
    """Sum over the plan's tests of the time the physics needs (pulses needed / pulse rate + settling)."""
    bench = load_bench(bench_path)
    plan = load_plan(PLAN_FILE)
    method = plan.method
    settle_s = max(bench.config.roles["source"].settle_s, bench.config.roles["current"].settle_s)
    floor = 0.0
    for group in meter_groups(PLAN_FILE, bench.config.positions):
        rating = group.rating
        for point in load_points(group.standard, rating, "floor"):
            power = rating.un_v * point.current_a * math.cos(math.radians(point.phase_deg))
            needed = max(pulses_needed(method.min_window_s, m.test_output_constant, power, method.min_pulses)
                         * pulse_period_s(m.test_output_constant, power) for m in group.positions)
            floor += settle_s + needed
        ist_power = rating.un_v * group.spec.starting_current_factor * rating.base_current_a
        starting = plan.starting_current
        floor += settle_s + max(pulse_period_s(m.test_output_constant, ist_power) for m in group.positions) * (
            starting.pulses * starting.time_allowance + 1)
        floor += settle_s + plan.creep.duration_factor * max(
            creep_minimum_time_s(group.spec.creep_constant, m.test_output_constant, m.measuring_elements, m.un_v,
                                 m.imax_a) for m in group.positions)
        rest = max(plan.dosage.rest_s, settle_s)
        floor += 2 * rest + plan.dosage.duration_s
    return floor


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="accuracy-scaling-") as tmp:
        folder = Path(tmp)
        print("error sweep (-k load_point):")
        one = run_plan(bench_with_positions(folder, 1), folder / "one", "-k", "load_point")
        many = run_plan(bench_with_positions(folder, 24), folder / "many", "-k", "load_point")
        print("whole accuracy plan (-m accuracy) on benches/sim.yaml:")
        bench = ROOT / "benches" / "sim.yaml"
        whole = run_plan(bench, folder / "whole", "-m", "accuracy")
        floor = physics_floor_s(bench)
        print(f"  physics floor {floor:.1f} s")
    print(f"24 positions {many:.1f} s, 1 position {one:.1f} s; whole plan {whole:.1f} s, floor {floor:.1f} s")
    print(f"accuracy_scaling ratio={many / one:.3f} floor_ratio={whole / floor:.3f}")


if __name__ == "__main__":
    main()
