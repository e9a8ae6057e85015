"""The friendly-hours and alerts plans on the twin: they pass on the good twin and fail on the matching defect."""

import yaml
from plan_runner import PLANS, hes_defects_file, write_bench

FRIENDLY_HOURS = PLANS / "prepaid" / "test_friendly_hours.py"
ALERTS = PLANS / "prepaid" / "test_alerts.py"


def by_name(run, name: str) -> dict:
    return {(m["position"], (m.get("details") or {}).get("case")): m for m in run.measurements() if m["name"] == name}


def test_friendly_hours_plan_passes_on_the_good_twin(run_plan, tmp_path):
    run = run_plan(FRIENDLY_HOURS, write_bench(tmp_path))
    assert run.wait(timeout_s=300) == 0, run.output
    held = by_name(run, "current_after_exhaustion_in_window")
    cuts = by_name(run, "cutoff_after_window_end")
    cases = ["sunday_noon", "weekday_evening"]
    assert sorted(held) == sorted(cuts) == [(p, c) for p in (1, 2, 3) for c in cases]
    assert all(m["value"] > 4.5 for m in held.values())
    assert all(0 <= m["value"] <= 60 for m in cuts.values())
    deferred = [e for e in run.truth() if e["event"] == "hes.disconnect_deferred"]
    assert deferred and all("no-disconnection" in e["reason"] or "Sundays" in e["reason"] for e in deferred)


def test_friendly_hours_plan_fails_on_an_hes_that_ignores_them(run_plan, tmp_path):
    defects = hes_defects_file(tmp_path, {"ignore_friendly_hours": True})
    run = run_plan(FRIENDLY_HOURS, write_bench(tmp_path), "-k", "position1", f"--twin-defects={defects}")
    assert run.wait(timeout_s=300) == 1, run.output
    assert "current_after_exhaustion_in_window at position 1 (SIM0001)" in run.output
    held = by_name(run, "current_after_exhaustion_in_window")
    assert sorted(held) == [(1, "sunday_noon"), (1, "weekday_evening")]
    assert all(m["verdict"] == "fail" and m["value"] < 1 for m in held.values())


def test_alerts_plan_passes_on_the_good_twin(run_plan, tmp_path):
    run = run_plan(ALERTS, write_bench(tmp_path))
    assert run.wait(timeout_s=300) == 0, run.output
    order = {m["position"]: m for m in run.measurements() if m["name"] == "alert_order"}
    assert sorted(order) == [1, 2, 3]
    assert all(m["details"]["logged"] == [30, 10, 0] for m in order.values())
    delays = [m for m in run.measurements() if m["name"].endswith("pct_delay")]
    assert len(delays) == 9 and all(0 <= m["value"] <= 30 for m in delays)


def test_alerts_plan_fails_on_an_hes_that_skips_the_10_pct_alert(run_plan, tmp_path):
    limits = yaml.safe_load((PLANS / "prepaid" / "limits.yaml").read_text())
    limits["profiles"]["quick"] = {**limits["profiles"]["twin"], "alert_after_threshold_max_s": 3}
    limits_path = tmp_path / "limits.yaml"
    limits_path.write_text(yaml.safe_dump(limits))
    defects = hes_defects_file(tmp_path, {"skip_alerts": [10]})
    run = run_plan(ALERTS, write_bench(tmp_path), "-k", "position1", f"--twin-defects={defects}",
                   f"--prepaid-limits={limits_path}:quick")
    assert run.wait(timeout_s=300) == 1, run.output
    assert "alert_10pct_present at position 1 (SIM0001) = False" in run.output
    verdicts = {m["name"]: m["verdict"] for m in run.measurements()}
    assert verdicts["alert_30pct_present"] == verdicts["alert_0pct_present"] == "pass"
    assert verdicts["alert_10pct_present"] == verdicts["alert_order"] == "fail"
