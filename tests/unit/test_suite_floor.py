"""bench/suite_floor.py: the floor arithmetic and the plan times taken from Allure results."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "suite_floor.py"
spec = importlib.util.spec_from_file_location("suite_floor", SCRIPT)
suite_floor = sys.modules.setdefault("suite_floor", importlib.util.module_from_spec(spec))
spec.loader.exec_module(suite_floor)


def test_polled_deliveries_wait_a_poll_each_after_the_first():
    assert suite_floor.polled_deliveries_s(6, 15.0, 4.0) == pytest.approx(79.0)
    assert suite_floor.polled_deliveries_s(1, 15.0, 0.5) == pytest.approx(0.5)
    assert suite_floor.polled_deliveries_s(0, 15.0, 0.5) == 0.0


def test_a_lost_delivery_costs_the_retry_up_to_the_next_poll():
    assert suite_floor.loss_cost_s(1.0, 15.0, 15.0) == pytest.approx(30.0)  # 16 s after the poll: two polls later
    assert suite_floor.loss_cost_s(0.0, 15.0, 15.0) == pytest.approx(15.0)  # exactly the next poll
    assert suite_floor.loss_cost_s(0.1, 1.0, None) == pytest.approx(1.1)  # no polling: latency and retry wait


def test_a_retried_command_arrives_at_the_first_attempt_after_the_meter_answers():
    # attempts at 0.1, 1.2, 2.3 s; the meter answers from 1.5 s on
    assert suite_floor.retried_until_s(0.1, 1.0, 1.5) == pytest.approx(2.3)
    assert suite_floor.retried_until_s(0.1, 1.0, 0.0) == pytest.approx(0.1)


def test_floor_sums_terms_times_their_count():
    terms = [suite_floor.Term("a", 0.1, 3), suite_floor.Term("b", 2.0)]
    assert suite_floor.floor_s(terms) == pytest.approx(2.3)
    assert suite_floor.ratio_text(4.6, 2.3) == "2.00"
    assert suite_floor.ratio_text(0.1, 0.0) == "-"


def test_plan_times_sum_each_modules_tests():
    results = [{"fullName": "prepaid.test_cutoff#test_cutoff_after_credit_exhaustion", "start": 1000, "stop": 7000},
               {"fullName": "prepaid.test_cutoff#test_cutoff_after_credit_exhaustion", "start": 7000, "stop": 7010},
               {"fullName": "link.test_2g_vs_4g#test_2g_reconnects_far_slower_than_4g", "start": 7010,
                "stop": 9010}]
    times = suite_floor.plan_times(results)
    assert times["prepaid.test_cutoff"].seconds == pytest.approx(6.01)
    assert (times["prepaid.test_cutoff"].start_s, times["prepaid.test_cutoff"].stop_s) == (1.0, 7.01)
    assert times["link.test_2g_vs_4g"].seconds == pytest.approx(2.0)


def test_option_defaults_come_from_the_plans_conftest(tmp_path):
    conftest = tmp_path / "conftest.py"
    conftest.write_text('def pytest_addoption(parser):\n'
                        '    group = parser.getgroup("x")\n'
                        '    group.addoption("--link-sweep", default="0,30", help="steps")\n'
                        '    group.addoption("--link-trials", default=3, type=int)\n'
                        '    group.addoption("--plan", default=str(HERE / "plan.yaml"))\n')
    assert suite_floor.option_defaults(conftest) == {"link_sweep": "0,30", "link_trials": 3}


def test_link_truth_finds_lost_and_first_2g_commands_inside_the_window(tmp_path):
    events = [
        {"t_wall": 5.0, "event": "link.lost", "position": 1, "what": "remote_disconnect"},  # before the window
        {"t_wall": 10.0, "event": "link.technology", "position": 1, "technology": "2g"},
        {"t_wall": 10.1, "event": "link.attenuation", "position": 1, "attenuation_db": 30.0},
        {"t_wall": 11.0, "event": "link.delivered", "position": 1, "what": "read 1.0.1.8.0.255", "queued_s": 9.0},
        {"t_wall": 20.0, "event": "link.delivered", "position": 1, "what": "remote_disconnect", "queued_s": 7.5},
        {"t_wall": 21.0, "event": "link.lost", "position": 1, "what": "remote_reconnect"},
        {"t_wall": 40.0, "event": "link.delivered", "position": 1, "what": "remote_reconnect", "queued_s": 19.0},
    ]
    (tmp_path / "twin-truth.jsonl").write_text("".join(f"{json.dumps(e)}\n" for e in events))
    truth = suite_floor.link_truth(tmp_path, suite_floor.PlanTime(0.0, 8.0, 50.0))
    assert truth[1].lost == [("2g", 30.0)]
    assert truth[1].first_2g == (7.5, 30.0)
    assert suite_floor.link_truth(tmp_path / "elsewhere", suite_floor.PlanTime(0.0, 8.0, 50.0)) is None
