"""A plan's data files (prepaid limits and policy, link limits, accuracy plan) are read before any test: a bad one
stops the run with one line naming file, line and field, and no test runs."""

from plan_runner import PLANS, PlanRun, write_bench

from rig.prepaid import POLICY_DIR


def run_refused(tmp_path, plan: str, *options: str) -> str:
    run = PlanRun(tmp_path / "run", PLANS / plan, write_bench(tmp_path), options)
    assert run.wait(120) == 4, run.output
    assert "Traceback" not in run.output and "outcomes: 0 passed, 0 failed, 0 error, 0 skipped" in run.output
    assert "no tests ran" in run.output
    assert "history: not made for a run stopped by a usage error" in run.output
    assert not (tmp_path / "run" / "history.sqlite").exists()
    return run.output


def test_a_misspelt_prepaid_limit_stops_the_run_before_any_test(tmp_path):
    limits = tmp_path / "limits.yaml"
    limits.write_text("profiles:\n  lab:\n    cutof_after_exhaustion_max_s: 60\n")
    output = run_refused(tmp_path, "prepaid", f"--prepaid-limits={limits}:lab")
    assert (f"ERROR: {limits}:3: profiles.lab.cutof_after_exhaustion_max_s: unknown field (did you mean "
            f"'cutoff_after_exhaustion_max_s'? it is missing) (and 6 more)") in output


def test_a_prepaid_policy_that_is_not_utf8_stops_the_run(tmp_path):
    policy = tmp_path / "policy.yaml"
    text = (POLICY_DIR / "uppcl.yaml").read_text().replace("name: UPPCL", "name: Zähler")
    policy.write_bytes(text.encode("cp1252"))
    output = run_refused(tmp_path, "prepaid/test_cutoff.py", f"--prepaid-policy={policy}")
    assert f"ERROR: {policy}:4: prepaid policy is not UTF-8 text (byte 0xe4" in output


def test_a_bad_link_limit_stops_the_run(tmp_path):
    limits = tmp_path / "limits.yaml"
    limits.write_text("profiles:\n  lab:\n    reconnect_max_s: -3\n")
    output = run_refused(tmp_path, "link", f"--link-limits={limits}:lab")
    assert f"ERROR: {limits}:3: profiles.lab.reconnect_max_s: Input should be greater than 0" in output


def test_a_bad_link_option_stops_the_run(tmp_path):
    assert "ERROR: --link-trials: at least 1, got 0" in run_refused(tmp_path, "link", "--link-trials=0")


def test_a_bad_accuracy_plan_stops_the_run(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text('standards: {"1": iec62053-21.yaml}\nmethod:\n  min_window_s: 0\n')
    output = run_refused(tmp_path, "accuracy", f"--accuracy-plan={plan}")
    assert f"ERROR: {plan}:3: method.min_window_s: Input should be greater than 0" in output
