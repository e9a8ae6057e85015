"""Prepaid and link plans on a 24-position twin bench against a 1-position one: the wall time ratio.

Both benches come from rig.sim.benchgen (sim.yaml's roles, N positions each with its own meter, load,
attenuator, modem and cover). The prepaid and link plans (`-m "prepaid or link"`) run every position at once
(marker `together`), so 24 positions should take about the time of one: target ratio <= 1.3. Each run is
`rig run` as a user starts it (the twin in its own process, every plan's outcome recorded); a run that does not
pass is reported, and its time still printed. Beside the ratio: each plan's time on both benches, and both runs'
physics floors (bench/suite_floor.py): 24 positions wait for the slowest one's 2G polls and lost deliveries, so
the floor itself grows; the ratio over the floor is what the rig adds.

Run from the project root:  python bench/position_scaling.py [--positions 24] [-m "prepaid or link"]
Last line: position_scaling ratio=<x> t24_s=<a> t1_s=<b>
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rig.sim.benchgen import write_bench

ROOT = Path(__file__).resolve().parents[1]
RIG = Path(sys.executable).with_name("rig")


def plan_times(results: Path) -> dict[str, float]:
    """Each plan's wall time in a run (test function -> first start to last stop of its positions' results)."""
    spans: dict[str, list[float]] = {}
    for path in (results / "allure-results").glob("*-result.json"):
        result = json.loads(path.read_text())
        plan = result.get("fullName", result["name"]).split("#")[-1].split("[")[0]
        span = spans.setdefault(plan, [math.inf, -math.inf])
        span[0], span[1] = min(span[0], result["start"] / 1000), max(span[1], result["stop"] / 1000)
    return {plan: stop - start for plan, (start, stop) in sorted(spans.items(), key=lambda item: item[1][0])}


def floor_of(folder: Path, bench: Path) -> float | None:
    """The run's physics floor as bench/suite_floor.py computes it from the plans' data and the run's twin truth
    (the slowest position's 2G poll phase and lost deliveries); None if it could not."""
    finished = subprocess.run([sys.executable, str(ROOT / "bench" / "suite_floor.py"), "--results-from", str(folder),
                               "--bench", str(bench)], cwd=ROOT, capture_output=True, text=True)
    found = re.search(r"floor_s=([0-9.]+)\s*$", finished.stdout)
    return float(found.group(1)) if found else None


def timed_run(positions: int, marker: str, folder: Path) -> tuple[float, dict, int]:
    """Wall time of `rig run -m marker` on an N-position twin bench; its outcomes and exit status."""
    bench = write_bench(positions, folder / f"bench{positions}.yaml", name=f"scaling-{positions}")
    results = folder / f"results{positions}"
    command = [str(RIG), "run", "--bench", str(bench), "--results", str(results), "--", "-m", marker, "-q",
               "-p", "no:randomly"]
    start = time.monotonic()
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    outcomes = {}
    if (results / "run.json").exists():
        outcomes = json.loads((results / "run.json").read_text()).get("outcomes", {})
    if finished.returncode != 0:
        print(f"{positions} position(s): exit status {finished.returncode}\n{finished.stdout[-3000:]}"
              f"{finished.stderr[-2000:]}", file=sys.stderr)
    return elapsed, outcomes, finished.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=24)
    parser.add_argument("-m", "--marker", default="prepaid or link")
    parser.add_argument("--keep", metavar="FOLDER", help="keep the benches and run folders here (default: removed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rig-position-scaling-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t1, outcomes1, status1 = timed_run(1, args.marker, folder)
        print(f"1 position:  {t1:7.1f} s  exit {status1}  {outcomes1}")
        tn, outcomes_n, status_n = timed_run(args.positions, args.marker, folder)
        print(f"{args.positions} positions: {tn:7.1f} s  exit {status_n}  {outcomes_n}")
        plans1, plans_n = plan_times(folder / "results1"), plan_times(folder / f"results{args.positions}")
        floor1 = floor_of(folder / "results1", folder / "bench1.yaml")
        floor_n = floor_of(folder / f"results{args.positions}", folder / f"bench{args.positions}.yaml")
    print(f"{'plan':55s} {'1 position':>11s} {f'{args.positions} positions':>13s} {'ratio':>6s}")
    for plan, t1_plan in plans1.items():
        tn_plan = plans_n.get(plan, math.nan)
        print(f"{plan:55s} {t1_plan:9.1f} s {tn_plan:11.1f} s {tn_plan / t1_plan if t1_plan else math.nan:6.2f}")
    if floor1 and floor_n:
        print(f"physics floors (bench/suite_floor.py, with each run's slowest position): 1 position {floor1:.1f} s, "
              f"{args.positions} positions {floor_n:.1f} s, floor ratio {floor_n / floor1:.3f}; the rig's time over "
              f"its floor: {t1 / floor1:.3f} and {tn / floor_n:.3f}, ratio over floor "
              f"{(tn / floor_n) / (t1 / floor1):.3f}")
    print(f"target: ratio <= 1.3 ({args.positions} positions against 1, -m {args.marker!r})")
    print(f"position_scaling ratio={tn / t1:.3f} t{args.positions}_s={tn:.1f} t1_s={t1:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
