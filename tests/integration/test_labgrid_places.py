"""Shared benches through labgrid: a real coordinator and exporter on 127.0.0.1, runs holding a place."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from plan_runner import ROOT, PlanRun, free_port, write_bench

pytestmark = pytest.mark.xdist_group("labgrid")

LABGRID_BIN = ROOT / ".venv-labgrid" / "bin"
OTHER_USER = "other-operator"
RUN_USER = "rig-ci"
HOST = socket.gethostname()

ENERGISE_AND_WAIT = """
    import time

    def test_energised_then_waits(source):
        source.set_voltage(240.0)
        source.set_output(True)
        time.sleep(60)
"""

PLACE_IS_OURS_DURING_THE_RUN = """
    import os
    import subprocess

    def test_place_is_ours(source):
        shown = subprocess.run([os.environ["RIG_LABGRID_CLIENT"], "-p", os.environ["RIG_PLACE"], "show"],
                               capture_output=True, text=True, timeout=20).stdout
        assert "acquired: " + os.environ["EXPECTED_HOLDER"] in shown
"""


@pytest.fixture(scope="session")
def labgrid_bin() -> Path:
    """.venv-labgrid, made by the Makefile's target when it is missing."""
    if not (LABGRID_BIN / "labgrid-client").exists():
        made = subprocess.run(["make", "-C", str(ROOT), ".venv-labgrid/.installed"], capture_output=True, text=True,
                              timeout=600)
        if made.returncode != 0 or not (LABGRID_BIN / "labgrid-client").exists():
            pytest.skip(f".venv-labgrid missing and `make .venv-labgrid/.installed` failed: {made.stderr[-500:]}")
    return LABGRID_BIN


class Lab:
    """A labgrid coordinator and an exporter publishing a twin bench, on free loopback ports."""

    def __init__(self, folder: Path, labgrid_bin: Path):
        self.folder = folder
        self.bin = labgrid_bin
        self.coordinator = f"127.0.0.1:{free_port()}"
        self.exporter_name = f"rig-test-{os.getpid()}"
        self.place = "meter-bench-1"
        self.processes: list[subprocess.Popen] = []
        self.bench = write_bench(folder)
        self.exporter_config = folder / "exporter.yaml"
        subprocess.run([sys.executable, "-m", "rig.cli", "labgrid", "export", str(self.bench), "-o",
                        str(self.exporter_config)], check=True, cwd=ROOT, capture_output=True)
        self._start("labgrid-coordinator", "-l", self.coordinator)
        self._wait_until(lambda: self.client("places").returncode == 0, "coordinator")
        self._start("labgrid-exporter", "-c", self.coordinator, "--name", self.exporter_name,
                    str(self.exporter_config))
        self._wait_until(lambda: f"{self.exporter_name}/sim/MeterBench" in self.client("resources").stdout,
                         "exporter")
        for args in (("create",), ("add-match", f"{self.exporter_name}/sim/*")):
            assert self.client("-p", self.place, *args).returncode == 0

    def _start(self, program: str, *args: str) -> None:
        log = open(self.folder / f"{program}.log", "w")  # noqa: SIM115 - kept open while the process runs
        self.processes.append(subprocess.Popen([str(self.bin / program), *args], cwd=self.folder, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def _wait_until(self, ready, what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert all(p.poll() is None for p in self.processes), f"{what} ended: see {self.folder}"
            assert time.monotonic() < deadline, f"{what} not ready within {timeout_s} s"
            time.sleep(0.3)

    def client(self, *args: str, user: str = OTHER_USER) -> subprocess.CompletedProcess:
        env = {**os.environ, "LG_COORDINATOR": self.coordinator, "LG_USERNAME": user}
        return subprocess.run([str(self.bin / "labgrid-client"), *args], env=env, capture_output=True, text=True,
                              timeout=30)

    def holder(self) -> str:
        shown = self.client("-p", self.place, "show").stdout
        return next(line.split(":", 1)[1].strip() for line in shown.splitlines() if "acquired:" in line)

    def run_env(self, lease_s: float = 1.0) -> dict[str, str]:
        return {**os.environ, "LG_COORDINATOR": self.coordinator, "LG_USERNAME": RUN_USER,
                "RIG_LABGRID_CLIENT": str(self.bin / "labgrid-client"), "RIG_PLACE_LEASE_S": str(lease_s),
                "EXPECTED_HOLDER": f"{HOST}/{RUN_USER}"}

    def stop(self) -> None:
        for process in self.processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def lab(labgrid_bin, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("labgrid"), labgrid_bin)
    yield lab
    lab.stop()


def test_exporter_configuration_publishes_the_bench_instruments(lab):
    config = yaml.safe_load(lab.exporter_config.read_text())
    group = config["sim"]
    assert group["sim"] == {"cls": "MeterBench", "name": "sim", "file": str(lab.bench.resolve()), "twin": True}
    assert group["source"] == {"cls": "PyVISADevice", "type": "TCPIP", "url": "127.0.0.1::51025::SOCKET"}
    assert group["counter-coil32"] == {"cls": "ModbusTCPCoil", "host": "127.0.0.1:51502", "coil": 32}
    assert group["modem-1"] == {"cls": "RigSerialDevice", "port": "/tmp/rig-sim-modem-1", "driver": "at_modem"}
    assert group["meter-1"]["cls"] == "RigNetworkEndpoint" and group["meter-1"]["port"] == 51401
    resources = lab.client("resources").stdout.split()
    assert f"{lab.exporter_name}/sim/PyVISADevice" in resources
    assert f"{lab.exporter_name}/sim/ModbusTCPCoil" in resources


def test_run_with_a_place_locks_it_and_unlocks_it(lab, tmp_path):
    assert lab.holder() == "None"
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "test_plan.py").write_text(PLACE_IS_OURS_DURING_THE_RUN.replace("\n    ", "\n"))
    run = subprocess.run([sys.executable, "-m", "rig.cli", "run", "--bench", str(lab.bench), "--plans",
                          str(folder / "test_plan.py"), "--results", str(folder / "results"), "--place", lab.place,
                          "--", "-p", "no:cacheprovider", "-q"], cwd=folder, env=lab.run_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert lab.holder() == "None"
    record = yaml.safe_load((folder / "results" / "run.json").read_text())
    assert record["place"]["place"] == lab.place and record["place"]["lost"] is None
    assert record["place"]["events"] == [f"acquired by {HOST}/{RUN_USER}", f"released by {HOST}/{RUN_USER}"]
    assert f"owner: {HOST}/{RUN_USER}" not in lab.client("reservations").stdout  # its reservation cancelled


def test_place_held_by_someone_else_names_the_holder_within_10_s(lab, tmp_path):
    assert lab.client("-p", lab.place, "acquire").returncode == 0
    try:
        start = time.monotonic()
        run = PlanRun(tmp_path, "def test_nothing(source):\n    pass\n", lab.bench,
                      env={**lab.run_env(), "RIG_PLACE": lab.place})
        exit_code = run.wait(30)
        assert time.monotonic() - start < 10
        assert exit_code != 0
        assert f"labgrid place '{lab.place}' (coordinator {lab.coordinator}) is held by {HOST}/{OTHER_USER}" \
            in run.output
        assert not (tmp_path / "results" / "run.json").exists()  # refused before a run folder is made
    finally:
        assert lab.client("-p", lab.place, "release").returncode == 0


def test_place_kicked_during_the_run_stops_it_and_leaves_the_source_off(lab, tmp_path):
    run = PlanRun(tmp_path, ENERGISE_AND_WAIT, lab.bench, env={**lab.run_env(lease_s=1.0), "RIG_PLACE": lab.place})
    run.wait_for_truth(lambda event: event["event"] == "source.output" and event["on"])
    assert lab.holder() == f"{HOST}/{RUN_USER}"
    kicked = lab.client("-p", lab.place, "release", "--kick")
    assert kicked.returncode == 0, kicked.stderr
    start = time.monotonic()
    exit_code = run.wait(30)
    assert time.monotonic() - start < 10
    assert exit_code == 2, run.output  # interrupted, as by SIGTERM
    truth = run.truth()
    outputs = [event for event in truth if event["event"] == "source.output"]
    assert [event["on"] for event in outputs][-2:] == [True, False]
    assert outputs[-1]["by"] == "source"  # switched off by the rig's command, not by the twin stopping
    assert truth[-1]["event"] == "twin.stop" and truth[-1]["state"]["source"]["output_on"] is False
    record = run.run_json()
    assert record["place"]["lost"].startswith(f"labgrid place '{lab.place}'")
    assert "was taken from this run: now released" in record["place"]["lost"]
    assert record["exit_status"] == 2
    assert record["safe_state"][-1]["reason"] == "end of session"
    assert "was taken from this run" in run.output
    assert lab.holder() == "None"


class RigRun(PlanRun):
    """`rig run --place` in a process group of its own, as a terminal's foreground job (Ctrl-C reaches the group)."""

    def __init__(self, lab: Lab, folder: Path, plan: str, *options: str):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.results = folder / "results"
        plan_path = folder / "test_plan.py"
        plan_path.write_text(textwrap.dedent(plan))
        self.args = [sys.executable, "-m", "rig.cli", "run", "--bench", str(lab.bench), "--plans", str(plan_path),
                     "--results", str(self.results), "--place", lab.place, *options, "--", "-p", "no:cacheprovider",
                     "-q"]
        self.process = subprocess.Popen(self.args, cwd=folder, env=lab.run_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.output = ""

    def signal_group(self, number: int) -> None:
        os.killpg(self.process.pid, number)


def reservations_of(lab: Lab, owner: str) -> list[dict[str, str]]:
    """The coordinator's reservations owned by owner (HOST/USER), each as its fields."""
    listed = lab.client("reservations")
    assert listed.returncode == 0, listed.stderr
    blocks = [dict(re.findall(r"(?m)^\s+(\w+): (\S+)\s*$", block))
              for block in re.split(r"(?m)^Reservation ", listed.stdout) if block.strip()]
    return [block for block in blocks if block.get("owner") == owner]


def assert_place_free(lab: Lab) -> None:
    """Neither acquired nor reserved, as the coordinator shows it, and no reservation of the run left."""
    shown = lab.client("-p", lab.place, "show")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"(?m)^\s+acquired: None$", shown.stdout), shown.stdout
    assert "reservation:" not in shown.stdout, shown.stdout
    assert reservations_of(lab, f"{HOST}/{RUN_USER}") == []


def wait_until(condition, what: str, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"not {what} within {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_run_with_a_place_leaves_the_source_off_and_frees_the_place(lab, tmp_path, signal_number):
    run = RigRun(lab, tmp_path, ENERGISE_AND_WAIT)
    run.wait_for_truth(lambda event: event["event"] == "source.output" and event["on"])
    assert lab.holder() == f"{HOST}/{RUN_USER}"
    start = time.monotonic()
    run.signal_group(signal_number)  # the whole group, labgrid-client of the lease check included, as Ctrl-C does
    exit_code = run.wait(30)
    assert time.monotonic() - start < 10
    assert exit_code == 2, run.output
    truth = run.truth()
    outputs = [event for event in truth if event["event"] == "source.output"]
    assert [event["on"] for event in outputs][-2:] == [True, False]
    assert outputs[-1]["by"] == "source"  # switched off by the rig's command, not by the twin stopping
    assert truth[-1]["event"] == "twin.stop" and truth[-1]["state"]["source"]["output_on"] is False
    record = run.run_json()
    assert record["exit_status"] == 2
    assert record["safe_state"][-1]["reason"] == "end of session"
    assert record["place"]["lost"] is None
    events = record["place"]["events"]
    assert events[0] == f"acquired by {HOST}/{RUN_USER}" and events[-1] == f"released by {HOST}/{RUN_USER}"
    assert_place_free(lab)


def test_place_wait_acquires_the_place_once_its_holder_releases_it(lab, tmp_path):
    assert lab.client("-p", lab.place, "acquire").returncode == 0
    try:
        run = RigRun(lab, tmp_path, PLACE_IS_OURS_DURING_THE_RUN, "--place-wait", "30")
        wait_until(lambda: [r.get("state") for r in reservations_of(lab, f"{HOST}/{RUN_USER}")] == ["waiting"],
                   "reserved and waiting", run.process)
        time.sleep(2)  # the holder keeps the place a while longer: the run keeps waiting
        assert run.process.poll() is None
        assert lab.holder() == f"{HOST}/{OTHER_USER}"
    finally:
        assert lab.client("-p", lab.place, "release").returncode == 0
    assert run.wait(60) == 0, run.output
    record = run.run_json()
    assert record["place"]["events"] == [f"acquired by {HOST}/{RUN_USER}", f"released by {HOST}/{RUN_USER}"]
    assert_place_free(lab)


def test_place_wait_shorter_than_the_hold_gives_up_naming_the_holder(lab, tmp_path):
    wait_s = 4
    assert lab.client("-p", lab.place, "acquire").returncode == 0
    try:
        start = time.monotonic()
        run = RigRun(lab, tmp_path, "def test_nothing(source):\n    pass\n", "--place-wait", str(wait_s))
        exit_code = run.wait(wait_s + 30)
        assert time.monotonic() - start < wait_s + 10
        assert exit_code == 4, run.output  # refused as a usage error, before the run starts
        assert (f"labgrid place '{lab.place}' (coordinator {lab.coordinator}) is held by {HOST}/{OTHER_USER} "
                f"after waiting {wait_s} s") in run.output
        assert not (tmp_path / "results" / "run.json").exists()
        assert lab.holder() == f"{HOST}/{OTHER_USER}"
        assert reservations_of(lab, f"{HOST}/{RUN_USER}") == []  # its reservation cancelled
    finally:
        assert lab.client("-p", lab.place, "release").returncode == 0
    assert_place_free(lab)
