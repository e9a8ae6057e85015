"""Publishers run once run.json is complete; one that fails is told and the others still run."""

import json

from plan_runner import write_bench

from fixtures.session import RigSession
from rig.measure import Measurement


class Recorder:
    name = "recorder"
    needs_whole_record = True

    def __init__(self):
        self.seen = []

    def publish(self, folder, record):
        self.seen.append((folder, record["end"], record["outcomes"]))
        return f"recorder: {len(self.seen)}"


class Failing:
    name = "lims upload"
    needs_whole_record = False

    def publish(self, folder, record):
        raise ConnectionError("LIMS not reachable")


def test_publishers_run_in_order_on_the_complete_record_and_a_failure_does_not_stop_the_others(tmp_path):
    session = RigSession.start(write_bench(tmp_path, only_roles=("source",)), tmp_path / "results" / "r1", tmp_path,
                               source_root=tmp_path)
    recorder = Recorder()
    session.publishers[:0] = [Failing(), recorder]
    session.record.add_measurement(Measurement("test_x.py::test_y", "voltage", 230.0, "V", 220, 240, "pass"))
    session.finish(0)
    folder = tmp_path / "results" / "r1"
    assert recorder.seen == [(folder, json.loads((folder / "run.json").read_text())["end"],
                              {"passed": 0, "failed": 0, "error": 0, "skipped": 0})]
    lines = session.summary_lines()
    assert "lims upload: LIMS not reachable" in lines and "recorder: 1" in lines
    assert any(line.startswith("history: ") and line.endswith("(run 1)") for line in lines)
    assert (folder / "allure-results" / "environment.properties").exists()
    assert json.loads((folder / "run.json").read_text())["report_errors"] == ["lims upload: LIMS not reachable"]
