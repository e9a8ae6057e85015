"""The prepaid cutoff plan on the twin: passes on the good twin, fails on an HES that cuts late."""

import yaml
from plan_runner import PLANS, write_bench

CUTOFF = PLANS / "prepaid" / "test_cutoff.py"


def relays_by_position(relay_events: list[dict]) -> dict[int, list[bool]]:
    """Each position's relay openings and closings, in order (positions run together, so interleaved)."""
    found: dict[int, list[bool]] = {}
    for event in relay_events:
        found.setdefault(event["position"], []).append(event["closed"])
    return found


def test_cutoff_plan_passes_on_the_good_twin(run_plan, tmp_path):
    run = run_plan(CUTOFF, write_bench(tmp_path))
    assert run.wait(timeout_s=300) == 0, run.output
    delays = {m["position"]: m for m in run.measurements() if m["name"] == "cutoff_delay"}
    assert sorted(delays) == [1, 2, 3]
    assert all(0 <= m["value"] <= 60 and m["uncertainty"] < 0.1 for m in delays.values())
    relay_events = [e for e in run.truth() if e["event"] == "relay"]
    assert relays_by_position(relay_events) == {1: [False, True], 2: [False, True], 3: [False, True]}


def test_cutoff_plan_fails_on_an_hes_that_waits_too_long(run_plan, tmp_path):
    limits = yaml.safe_load((PLANS / "prepaid" / "limits.yaml").read_text())
    limits["profiles"]["quick"] = {**limits["profiles"]["twin"], "cutoff_after_exhaustion_max_s": 3}
    limits_path = tmp_path / "limits.yaml"
    limits_path.write_text(yaml.safe_dump(limits))
    defects = tmp_path / "defects.yaml"
    defects.write_text(yaml.safe_dump({"hes": {"disconnect_delay_s": 5}}))
    run = run_plan(CUTOFF, write_bench(tmp_path), "-k", "position1", f"--twin-defects={defects}",
                   f"--prepaid-limits={limits_path}:quick")
    assert run.wait(timeout_s=300) == 1, run.output
    assert "cutoff_delay at position 1 (SIM0001) = " in run.output
    delay = next(m for m in run.measurements() if m["name"] == "cutoff_delay")
    # the 5 s defect; the HES sees the exhaustion and the end of the delay on reads, each up to a read interval
    # (0.5 s) plus the read's radio delivery (0.1 s) late; then the disconnect's delivery (0.1 s)
    assert delay["verdict"] == "fail" and 5.0 <= delay["value"] <= 7.0
