"""Test helpers: temporary twin benches, plans run in a real pytest process, the twin's truth."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

from rig.bench import Bench
from rig.config import load_bench
from rig.sim.launcher import TwinProcess
from rig.sim.truth import read_truth
from rig.transcript import Transcript

ROOT = Path(__file__).resolve().parent.parent
SIM_BENCH = ROOT / "benches" / "sim.yaml"
PLANS = ROOT / "testplans"
SOURCE_ONLY_BENCH = """\
name: test
roles:
  source:
    driver: chroma61500
    resource: TCPIP0::127.0.0.1::5025::SOCKET
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hes_defects_file(folder: Path, hes_defects: dict) -> Path:
    """A defects file in folder giving the twin's HES hes_defects."""
    path = folder / "defects.yaml"
    path.write_text(yaml.safe_dump({"hes": hes_defects}))
    return path


def write_bench(folder: Path, name: str = "bench.yaml", *, autostart: bool = True, port: int | None = None,
                timeout_s: float = 2.0, only_roles: tuple[str, ...] | None = None, edit=None) -> Path:
    """A copy of the sim bench with its own lock folder; `only_roles` keeps just those roles (and no
    position interfaces, loads, attenuators, modems or covers); `edit(data)` may change anything."""
    data = yaml.safe_load(SIM_BENCH.read_text())
    role_configs = list(data["roles"].values()) + [
        position[field] for position in data["positions"] for field in ("interface", "load") if position.get(field)]
    for role_config in role_configs:  # secret files stay where the sim bench keeps them
        for ref in role_config.get("secrets", {}).values():
            if "file" in ref:
                ref["file"] = str(SIM_BENCH.parent / ref["file"])
    if only_roles is not None:
        data["roles"] = {role: config for role, config in data["roles"].items() if role in only_roles}
        for position in data["positions"]:
            for field in ("interface", "load", "attenuator", "modem", "cover"):
                position.pop(field, None)
    data["lock_dir"] = str(folder / "locks")
    data["twin"]["autostart"] = autostart
    source = data["roles"]["source"]
    source["timeout_s"] = timeout_s
    if port is not None:
        source["resource"] = f"TCPIP0::127.0.0.1::{port}::SOCKET"
    if edit is not None:
        edit(data)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def bench_on_twin_process(folder: Path, edit=None):
    """Yields (bench, truth path): the rig's bench opened on a twin process serving a copy of the sim bench
    (write_bench's edit) in folder; both closed when the block ends."""
    bench_file = load_bench(write_bench(folder, edit=edit))
    twin = TwinProcess(bench_file.path, folder / "truth.jsonl")
    bench = Bench(bench_file, Transcript(folder / "transcript.jsonl"), twin.resources)
    bench.open()
    yield bench, folder / "truth.jsonl"
    bench.close()
    twin.stop()


class PlanRun:
    """A test plan run by pytest in its own process, as `rig run` runs it."""

    def __init__(self, folder: Path, plan: str | Path, bench: Path, extra: tuple[str, ...] = (),
                 results: Path | None = None, **popen_options):
        """plan: the source of a plan module, or the path of a plan in testplans/; popen_options go to Popen."""
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.results = results or folder / "results"
        if isinstance(plan, Path):
            plan_path = plan
        else:
            plan_path = folder / "test_plan.py"
            plan_path.write_text(textwrap.dedent(plan))
        self.args = [sys.executable, "-m", "pytest", str(plan_path), f"--bench={bench}",
                     f"--results={self.results}", "-p", "no:cacheprovider", "-q", *extra]
        self.process = subprocess.Popen(self.args, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, **popen_options)
        self.output = ""

    def wait(self, timeout_s: float = 60) -> int:
        self.output, _ = self.process.communicate(timeout=timeout_s)
        return self.process.returncode

    def truth(self) -> list[dict]:
        return read_truth(self.results / "twin-truth.jsonl")

    def run_json(self) -> dict:
        return json.loads((self.results / "run.json").read_text())

    def measurements(self) -> list[dict]:
        path = self.results / "measurements.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def wait_for_truth(self, predicate, timeout_s: float = 30, truth_path: Path | None = None) -> None:
        """Wait until the twin's truth holds an event matching predicate."""
        path = truth_path or self.results / "twin-truth.jsonl"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.exists() and any(predicate(event) for event in read_truth(path)):
                return
            if self.process.poll() is not None:
                raise AssertionError(f"plan ended early:\n{self.process.stdout.read()}")
            time.sleep(0.05)
        raise AssertionError(f"no matching truth event within {timeout_s} s in {path}")

    def signal(self, number: int) -> None:
        os.kill(self.process.pid, number)


def source_output_events(truth: list[dict]) -> list[bool]:
    return [event["on"] for event in truth if event["event"] == "source.output"]
