"""A generated 24-position twin bench (rig.sim.benchgen) served in process on free ports: every position's AC
load, meter and attenuator answers the rig's own driver, and the model keeps each position's load path apart."""

import pytest
import yaml
from twin_thread import TwinOnThread

from rig.bench import Bench
from rig.config import load_bench
from rig.sim.benchgen import bench_data
from rig.transcript import Transcript

POSITIONS = 24


class ManyPositionTwin(TwinOnThread):
    def __init__(self, folder):
        data = bench_data(POSITIONS)
        data["lock_dir"] = str(folder / "locks")
        path = folder / "bench.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.truth_path = folder / "truth.jsonl"
        self.bench_file = load_bench(path)
        self.start_twin(self.bench_file, self.truth_path)
        self.transcript = Transcript(folder / "transcript.jsonl")
        self.bench = Bench(self.bench_file, self.transcript, self.resources)

    def close(self):
        self.bench.close()
        self.transcript.close()
        self.stop_twin()


@pytest.fixture
def twin(tmp_path):
    twin = ManyPositionTwin(tmp_path)
    try:
        yield twin
    finally:
        twin.close()


def test_every_position_answers_on_its_own_address(twin):
    assert len(twin.resources) == len(set(twin.resources.values()))
    bench = twin.bench
    for position in range(1, POSITIONS + 1):
        load = bench.open_role(f"load@{position}")
        meter = bench.open_role(f"meter@{position}")
        attenuator = bench.open_role(f"attenuator@{position}")
        assert load.serial == f"SIM63803-{position:04d}"
        assert meter.serial == f"SIM{position:04d}"
        assert attenuator.serial == f"SIM1160{position:04d}"
        assert bench[f"load@{position}"].measure_current() < 0.1
        assert bench[f"meter@{position}"].relay_state() is not None
        assert bench[f"attenuator@{position}"].attenuation() == 0


def test_each_load_draws_through_its_own_meter_only(twin):
    bench = twin.bench
    bench.open_role("source")
    on = (3, POSITIONS)
    for position in on:
        bench.open_role(f"load@{position}")
    bench["source"].set_voltage(240.0)
    bench["source"].set_output(True)
    for position in on:
        load = bench[f"load@{position}"]
        load.set_mode("CURR")
        load.set_level(2.0 * position / POSITIONS)
        load.set_input(True)
    currents = twin.call(lambda: {p: twin.model.position_current_a(p) for p in range(1, POSITIONS + 1)})
    assert currents == {p: (2.0 * p / POSITIONS if p in on else 0.0) for p in range(1, POSITIONS + 1)}
    assert bench[f"load@{POSITIONS}"].measure_current() == pytest.approx(2.0, abs=0.02)
