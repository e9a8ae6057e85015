"""The positive-balance guard and emergency credit plans on the twin: pass on the good twin, fail where they should.

The HES twin has no defect that breaks emergency credit; the emergency credit plan is shown to fail on a twin
whose HES runs the UPPCL policy without emergency credit (the plan judges it by the UPPCL policy).
"""

import yaml
from plan_runner import PLANS, hes_defects_file, write_bench

from rig.prepaid import POLICY_DIR

GUARD = PLANS / "prepaid" / "test_group_guard.py"
EMERGENCY = PLANS / "prepaid" / "test_emergency_credit.py"


def by_name(run, name: str) -> dict:
    return {m["position"]: m for m in run.measurements() if m["name"] == name}


def test_guard_plan_passes_on_the_good_twin(run_plan, tmp_path):
    run = run_plan(GUARD, write_bench(tmp_path))
    assert run.wait(timeout_s=300) == 0, run.output
    for name in ("cut_with_positive_balance", "cut_in_no_disconnection_window"):
        cuts = by_name(run, name)
        assert sorted(cuts) == [1, 2, 3]
        assert all(m["value"] == 0 and m["details"]["lowest_a"] > 4.5 for m in cuts.values())
    refused = [m for m in run.measurements() if m["name"] == "group_disconnect_refused"]
    assert len(refused) == 6 and all(m["value"] == 1 for m in refused)
    assert not [e for e in run.truth() if e["event"] == "hes.disconnect_sent"]


def test_guard_plan_fails_on_an_hes_that_disconnects_positive_balances(run_plan, tmp_path):
    defects = hes_defects_file(tmp_path, {"disconnect_positive_balance": True})

    def guard_alone(data):  # no second approver to hold the group of three: the balance guard alone is judged
        data["twin"]["instruments"]["hes"]["approval_above_meters"] = 3

    run = run_plan(GUARD, write_bench(tmp_path, edit=guard_alone), f"--twin-defects={defects}")
    assert run.wait(timeout_s=300) == 1, run.output
    for position in (1, 2, 3):
        assert f"cut_with_positive_balance at position {position} (SIM000{position}) = True" in run.output
    cuts = by_name(run, "cut_with_positive_balance")
    assert sorted(cuts) == [1, 2, 3] and all(m["verdict"] == "fail" for m in cuts.values())
    window = by_name(run, "cut_in_no_disconnection_window")
    assert all(m["verdict"] == "pass" for m in window.values())
    assert "1 passed, 1 failed" in run.output


def test_guard_plan_fails_on_an_hes_that_ignores_friendly_hours(run_plan, tmp_path):
    defects = hes_defects_file(tmp_path, {"ignore_friendly_hours": True})
    run = run_plan(GUARD, write_bench(tmp_path), "-k", "window", f"--twin-defects={defects}")
    assert run.wait(timeout_s=300) == 1, run.output
    window = by_name(run, "cut_in_no_disconnection_window")
    assert sorted(window) == [1, 2, 3] and all(m["verdict"] == "fail" for m in window.values())


def test_emergency_credit_plan_passes_on_the_good_twin(run_plan, tmp_path):
    run = run_plan(EMERGENCY, write_bench(tmp_path))
    assert run.wait(timeout_s=300) == 0, run.output
    held = by_name(run, "current_during_emergency_credit")
    delays = by_name(run, "cutoff_delay_after_emergency_credit")
    assert sorted(held) == sorted(delays) == [1, 2, 3]
    assert all(m["value"] > 4.5 and m["details"]["readings"] > 100 for m in held.values())
    assert all(0 <= m["value"] <= 60 for m in delays.values())
    assert all(m["value"] == 50 for m in by_name(run, "emergency_credit_granted").values())
    relay_events = [(e["position"], e["closed"]) for e in run.truth() if e["event"] == "relay"]
    for number in (1, 2, 3):  # positions run together: their events interleave, each in its own order
        assert [closed for position, closed in relay_events if position == number] == [False, True]


def test_emergency_credit_plan_fails_on_an_hes_without_emergency_credit(run_plan, tmp_path):
    policy = yaml.safe_load((POLICY_DIR / "uppcl.yaml").read_text())
    policy["emergency_credit"] = {"amount": 0, "automatic": False}
    policy_path = tmp_path / "uppcl-no-emergency-credit.yaml"
    policy_path.write_text(yaml.safe_dump(policy))

    def edit(data):
        data["twin"]["instruments"]["hes"]["policy"] = str(policy_path)

    run = run_plan(EMERGENCY, write_bench(tmp_path, edit=edit), "-k", "position1")
    assert run.wait(timeout_s=300) == 1, run.output
    assert "current_during_emergency_credit at position 1 (SIM0001)" in run.output
    verdicts = {m["name"]: m for m in run.measurements()}
    assert verdicts["emergency_credit_granted"]["verdict"] == "fail"
    assert "grants no emergency credit" in verdicts["emergency_credit_granted"]["details"]["error"]
    held = verdicts["current_during_emergency_credit"]
    assert held["verdict"] == "fail" and held["value"] < 1
