"""The cover-open plan on the twin: passes on a good meter, FAILs on a meter that never logs the tamper and on one
that logs it late, and a bench without a cover on a position skips that position, saying why."""

import yaml
from plan_runner import PLANS, write_bench

COVER_OPEN = PLANS / "tamper" / "test_cover_open.py"


def measured(run) -> dict:
    return {(m["position"], m["name"]): m for m in run.measurements()}


def test_cover_open_is_logged_at_once_by_good_meters(run_plan, tmp_path):
    run = run_plan(COVER_OPEN, write_bench(tmp_path))
    assert run.wait(timeout_s=120) == 0, run.output
    taken = measured(run)
    for position in (1, 2, 3):
        logged = taken[(position, "cover_open_logged_after")]
        assert logged["verdict"] == "pass" and 0 <= logged["value"] < 0.5
        assert logged["details"]["event"]["code"] == 251
        error = taken[(position, "cover_open_time_error")]
        assert error["verdict"] == "pass" and abs(error["value"]) < 0.2
    opened = [e for e in run.truth() if e["event"] == "cover"]
    assert [(e["position"], e["open"]) for e in opened if e["open"]] == [(1, True), (2, True), (3, True)]
    assert opened[-1]["open"] is False  # every cover closed again


def test_a_tamper_not_logged_or_logged_late_fails_its_position_only(run_plan, tmp_path):
    defects = tmp_path / "defects.yaml"
    defects.write_text(yaml.safe_dump({"positions": {2: {"tamper_not_logged": True},
                                                     3: {"tamper_logged_late_s": 4}}}))
    run = run_plan(COVER_OPEN, write_bench(tmp_path), f"--twin-defects={defects}")
    assert run.wait(timeout_s=120) == 1, run.output
    assert "1 passed, 2 failed" in run.output
    taken = measured(run)
    assert taken[(1, "cover_open_logged_after")]["verdict"] == "pass"
    never = taken[(2, "cover_open_logged_after")]
    assert never["verdict"] == "fail" and never["note"].startswith("not observed within ")
    late = taken[(3, "cover_open_logged_after")]
    assert late["verdict"] == "fail" and late["note"] is None and 3.9 < late["value"] < 5.0
    late_time = taken[(3, "cover_open_time_error")]
    assert late_time["verdict"] == "fail" and 3.5 < late_time["value"] < 4.5  # stamped when it was logged


def test_a_position_without_a_cover_is_skipped_saying_so(run_plan, tmp_path):
    def no_cover_on_3(data):
        del data["positions"][2]["cover"]

    run = run_plan(COVER_OPEN, write_bench(tmp_path, edit=no_cover_on_3), "-rs")
    assert run.wait(timeout_s=120) == 0, run.output
    assert "2 passed, 1 skipped" in run.output
    assert "position 3 (SIM0003) has no cover (positions[].cover in bench.yaml)" in run.output
