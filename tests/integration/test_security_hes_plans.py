"""The HES security plans on the twin: each passes on the good twin and fails on its own defect key; a whole run's
folder holds none of the bench's HES tokens."""

from pathlib import Path

from plan_runner import PLANS, SIM_BENCH, hes_defects_file, write_bench

SECURITY = PLANS / "security" / "test_hes_security.py"


def by_name(run, name: str) -> list[dict]:
    return [m for m in run.measurements() if m["name"] == name]


def tokens() -> dict[str, str]:
    return {path.name: path.read_text().strip() for path in sorted(SIM_BENCH.parent.glob("sim-hes-token-*"))}


def files_holding(folder: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_plans_pass_on_the_good_twin_and_the_run_folder_holds_no_token(run_plan, tmp_path):
    run = run_plan(SECURITY, write_bench(tmp_path))
    assert run.wait(timeout_s=300) == 0, run.output
    assert "7 passed" in run.output
    assert [m["value"] for m in by_name(run, "unauthenticated_recharge_status")] == [401, 401]
    assert [m["value"] for m in by_name(run, "read_only_disconnect_status")] == [403, 403, 403]
    assert [m["value"] for m in by_name(run, "group_disconnect_held_for_approval")] == [True]
    assert [m["value"] for m in by_name(run, "requester_approval_status")] == [403]
    approved = by_name(run, "cut_with_credit_after_approval")
    assert len(approved) == 3 and all(m["details"]["refused"].startswith("balance") for m in approved)
    assert all(m["verdict"] == "pass" for m in run.measurements())
    audits = [e for e in run.truth() if e["event"] == "hes.audit"]
    assert {(e["operator"], e["action"], e["outcome"], e["status"]) for e in audits} >= {
        (None, "recharge", "denied", 401), ("viewer", "disconnect", "denied", 403),
        ("lineman", "group_disconnect", "held", 202), ("lineman", "approve", "denied", 403),
        ("rig", "approve", "done", 200), ("cashier", "recharge", "done", 200)}
    assert len(tokens()) == 6
    for name, token in tokens().items():
        assert files_holding(tmp_path, token) == [], f"the token of {name} was written"


def test_an_hes_without_auth_fails_the_recharge_and_disconnect_plans(run_plan, tmp_path):
    defects = hes_defects_file(tmp_path, {"no_auth": True})
    run = run_plan(SECURITY, write_bench(tmp_path), "-k", "unauthenticated or read_only and position1",
                   f"--twin-defects={defects}")
    assert run.wait(timeout_s=300) == 1, run.output
    assert "3 failed" in run.output, run.output
    statuses = by_name(run, "unauthenticated_recharge_status")
    assert [(m["value"], m["verdict"]) for m in statuses] == [(200, "fail"), (200, "fail")]
    credited = by_name(run, "balance_credited_by_unauthenticated_recharge")
    assert [(m["value"], m["verdict"]) for m in credited] == [(500.0, "fail"), (500.0, "fail")]
    disconnect = by_name(run, "read_only_disconnect_status")
    assert [m["verdict"] for m in disconnect] == ["fail"] and disconnect[0]["value"] != 403


def test_an_hes_that_skips_approval_fails_the_group_plan(run_plan, tmp_path):
    defects = hes_defects_file(tmp_path, {"skip_approval": True})
    run = run_plan(SECURITY, write_bench(tmp_path), "-k", "blast_radius", f"--twin-defects={defects}")
    assert run.wait(timeout_s=300) == 1, run.output
    held = by_name(run, "group_disconnect_held_for_approval")
    assert [(m["value"], m["verdict"]) for m in held] == [(False, "fail")]
    assert [e for e in run.truth() if e["event"] == "hes.approval_skipped"]


def test_an_hes_without_audit_fails_the_audit_plan(run_plan, tmp_path):
    defects = hes_defects_file(tmp_path, {"no_audit": True})
    run = run_plan(SECURITY, write_bench(tmp_path), "-k", "audit", f"--twin-defects={defects}")
    assert run.wait(timeout_s=300) == 1, run.output
    audited = [m for m in run.measurements() if m["name"].startswith("audited_")]
    assert [(m["name"], m["value"], m["verdict"]) for m in audited] == [
        ("audited_unauthenticated_recharge", False, "fail"), ("audited_read_only_disconnect", False, "fail"),
        ("audited_recharge", False, "fail")]
    assert not [e for e in run.truth() if e["event"] == "hes.audit"]
