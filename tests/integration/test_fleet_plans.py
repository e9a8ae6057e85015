"""The fleet plans on the twin: all pass on the good twin; each fleet defect of the twin HES fails its own plan, named
by the measurement that caught it, while the plans it does not touch pass.

Each run is pytest in its own process on a copy of the sim bench with its fleet (300 meters in 2 local shard
processes, each meter on its own loopback alias), as `make run` runs them.
"""

import contextlib
import signal
import time
from pathlib import Path

import pytest
import yaml
from plan_runner import PLANS, SIM_BENCH, write_bench

pytestmark = pytest.mark.slow

FLEET = PLANS / "fleet"
PLAN_TESTS = {"mass_disconnect": "test_mass_disconnect.py::test_mass_disconnect_cuts_only_the_eligible_within_the_"
                                 "group_bound",
              "outage": "test_outage_restoration.py::test_outage_and_restoration",
              "recharge_storm": "test_recharge_storm.py::test_recharge_storm_restores_supply_within_the_sla",
              "success": "test_command_success.py::test_commands_succeed_and_the_head_end_agrees_with_the_meters"}


def fleet_bench(folder):
    def edit(data):
        data["fleet"]["secret_file"] = str(SIM_BENCH.parent / data["fleet"]["secret_file"])
    return write_bench(folder, edit=edit)


def run_fleet_plans(run_plan, tmp_path, *extra: str, hes_defects: dict | None = None, timeout_s: float = 150):
    args = list(extra)
    if hes_defects is not None:
        path = tmp_path / "defects.yaml"
        path.write_text(yaml.safe_dump({"hes": hes_defects}))
        args.append(f"--twin-defects={path}")
    limits = yaml.safe_load((FLEET / "limits.yaml").read_text())
    limits["profiles"]["quick"] = {**limits["profiles"]["twin"], "trial_timeout_s": 8}  # a missing cut is not waited
    limits_path = tmp_path / "limits.yaml"
    limits_path.write_text(yaml.safe_dump(limits))
    run = run_plan(FLEET, fleet_bench(tmp_path), f"--fleet-limits={limits_path}:quick", "-rA", *args)
    return run, run.wait(timeout_s=timeout_s)


def outcomes(run) -> dict[str, str]:
    """Each fleet plan's outcome in run.json terms (passed, failed, error)."""
    found = {}
    for line in run.output.splitlines():
        for plan, test in PLAN_TESTS.items():
            if line.endswith(test) or f"{test} " in line:
                found[plan] = line.split()[0].lower()
    return found


def named(run, name: str) -> list[dict]:
    return [m for m in run.measurements() if m["name"] == name]


def failing(run) -> set[str]:
    return {m["name"] for m in run.measurements() if m["verdict"] != "pass"}


def test_the_fleet_plans_pass_on_the_good_twin(run_plan, tmp_path):
    run, code = run_fleet_plans(run_plan, tmp_path)
    assert code == 0, run.output
    assert outcomes(run) == dict.fromkeys(PLAN_TESTS, "passed"), run.output
    assert failing(run) == set()
    (in_window,) = named(run, "cut_in_no_disconnection_window")
    assert in_window["value"] == 0 and in_window["details"]["refused"] == 300
    (eligible,) = named(run, "eligible_consumers_cut")
    assert eligible["value"] == 90 and eligible["details"]["protected"] == 30 and eligible["details"]["paying"] == 180
    (peak,) = named(run, "exchanges_in_flight_peak")
    assert 1 <= peak["value"] <= 32 and peak["high"] == 32 and peak["details"]["bounded"] is True
    (restored,) = named(run, "restoration_time_p99")
    assert restored["details"]["meters"] == 300 and restored["high"] == 15.0
    (storm,) = named(run, "recharge_to_supply_p99")
    assert storm["details"]["meters"] == 150 and storm["value"] < 3.0
    (rate,) = named(run, "command_success_rate")
    assert rate["value"] == 100.0 and rate["details"]["issued"] == 300
    run_json = run.run_json()
    assert run_json["outcomes"]["passed"] == 4


def test_a_group_disconnect_without_balance_checks_fails_the_mass_disconnect(run_plan, tmp_path):
    run, code = run_fleet_plans(run_plan, tmp_path, hes_defects={"batch_without_balance_check": True})
    assert code == 1, run.output
    assert outcomes(run) == {**dict.fromkeys(PLAN_TESTS, "passed"), "mass_disconnect": "failed"}, run.output
    assert failing(run) == {"cut_in_no_disconnection_window", "paying_consumers_cut", "protected_consumers_cut"}
    assert [m["value"] for m in named(run, "paying_consumers_cut")] == [180]


def test_a_head_end_without_a_bound_on_its_exchanges_fails_the_outage_plan(run_plan, tmp_path):
    run, code = run_fleet_plans(run_plan, tmp_path, hes_defects={"reconnect_all_at_once": True})
    assert code == 1, run.output
    assert outcomes(run) == {**dict.fromkeys(PLAN_TESTS, "passed"), "outage": "failed"}, run.output
    assert failing(run) == {"exchanges_in_flight_peak"}
    (peak,) = named(run, "exchanges_in_flight_peak")
    assert peak["value"] > 2 * peak["high"] and peak["details"]["bounded"] is False


def test_a_head_end_dropping_commands_in_a_storm_fails_the_recharge_storm_and_the_success_rate(run_plan, tmp_path):
    run, code = run_fleet_plans(run_plan, tmp_path, "-k", "recharge_storm or commands_succeed",
                                hes_defects={"storm_drops_commands_pct": 20})
    assert code == 1, run.output
    assert outcomes(run) == {"recharge_storm": "failed", "success": "failed"}, run.output
    (restored,) = named(run, "meters_restored")
    assert 100 <= restored["value"] < 150 and restored["verdict"] == "fail"
    (p99,) = named(run, "recharge_to_supply_p99")
    assert p99["verdict"] == "fail" and p99["note"] == "not observed within 8 s"
    (rate,) = named(run, "command_success_rate")
    assert rate["value"] < 99.9 and rate["verdict"] == "fail"
    (disagree,) = named(run, "relay_state_disagreements")
    assert disagree["value"] > 0 and disagree["verdict"] == "fail"


def test_a_run_stopped_by_sigterm_stops_the_fleet(run_plan, tmp_path):
    run = run_plan(FLEET, fleet_bench(tmp_path), "-k", "outage")

    def shards() -> list[int]:
        found = []
        for task in Path(f"/proc/{run.process.pid}/task").glob("*"):  # started by any thread of the run
            with contextlib.suppress(OSError):
                found += [int(pid) for pid in (task / "children").read_text().split()
                          if b"fleet\0shard" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        return found

    deadline = time.monotonic() + 60
    while len(shards()) < 2:
        assert time.monotonic() < deadline and run.process.poll() is None, "the fleet's two shards never started"
        time.sleep(0.05)
    started = shards()
    time.sleep(1.0)
    run.signal(signal.SIGTERM)
    assert run.wait(timeout_s=60) == 2, run.output
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()
                and b"fleet" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert run.run_json()["exit_status"] == 2
