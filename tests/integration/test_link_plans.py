"""The link plans on the twin: each passes on the good twin and fails on the defect it exists to catch.

Each run is pytest in its own process on a copy of the sim bench, position 1 only, on a short sweep.
"""

import pytest
import yaml
from plan_runner import PLANS, write_bench

LINK = PLANS / "link"
SHORT = ("-k", "position1", "--link-sweep", "0,45", "--link-trials", "2")


def run_link_plan(run_plan, tmp_path, plan: str, *extra: str, defects: dict | None = None, timeout_s: float = 120):
    args = list(extra)
    if defects is not None:
        path = tmp_path / "defects.yaml"
        path.write_text(yaml.safe_dump(defects))
        args.append(f"--twin-defects={path}")
    run = run_plan(LINK / plan, write_bench(tmp_path), *args)
    return run, run.wait(timeout_s=timeout_s)


def named(run, name: str) -> list[dict]:
    return [m for m in run.measurements() if m["name"] == name]


# -- reconnect latency --------------------------------------------------------------------------------------


def test_reconnect_latency_passes_on_the_good_twin(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_reconnect_latency.py", *SHORT)
    assert code == 0, run.output
    trials = named(run, "reconnect_latency_4g")
    assert [m["details"]["attenuation_db"] for m in trials] == [0.0, 0.0, 45.0, 45.0]
    assert all(m["verdict"] == "pass" and m["high"] == 3.0 for m in trials)
    # 0.1 s per delivery at good signal, doubling every 8 dB below -100 dBm: 0.37 s at -115 dBm
    assert all(0.09 <= m["value"] <= 0.35 for m in trials[:2]) and all(0.35 <= m["value"] <= 1.0 for m in trials[2:])
    steps = named(run, "reconnect_latency_4g_step_max")
    assert [(m["details"]["attenuation_db"], m["verdict"]) for m in steps] == [(0.0, "pass"), (45.0, "pass")]
    assert steps[1]["details"]["median_s"] > 2 * steps[0]["details"]["median_s"]
    results = (run.results / "allure-results").glob("*-attachment.png")
    assert any(path.read_bytes().startswith(b"\x89PNG") for path in results)


def test_reconnect_latency_fails_on_a_meter_that_reconnects_late(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_reconnect_latency.py", *SHORT,
                              defects={"positions": {1: {"reconnect_extra_delay_s": 5}}})
    assert code == 1, run.output
    trials = named(run, "reconnect_latency_4g")
    assert len(trials) == 4 and all(m["verdict"] == "fail" and 5.0 <= m["value"] <= 6.5 for m in trials)
    assert "reconnect_latency_4g_step_max at position 1 (SIM0001) = 5." in run.output


def test_reconnect_latency_fails_on_a_slow_link(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_reconnect_latency.py", "-k", "position1",
                              "--link-sweep", "0", "--link-trials", "1", defects={"link": {"extra_latency_s": 4}})
    assert code == 1, run.output
    (trial,) = named(run, "reconnect_latency_4g")
    assert trial["verdict"] == "fail" and 4.0 <= trial["value"] <= 9.0


def test_reconnect_latency_fails_on_a_link_that_drops_deliveries(run_plan, tmp_path):
    # 80 % of deliveries lost, each retried after 1 s: a reconnect within 3 s needs the first or second attempt
    # through (0.36 per trial at 45 dB); the cuts may take many attempts, so the trial timeout is longer here
    limits = yaml.safe_load((LINK / "limits.yaml").read_text())
    limits["profiles"]["patient"] = {**limits["profiles"]["twin"], "trial_timeout_s": 120}
    limits_path = tmp_path / "limits.yaml"
    limits_path.write_text(yaml.safe_dump(limits))
    run, code = run_link_plan(run_plan, tmp_path, "test_reconnect_latency.py", "-k", "position1",
                              "--link-sweep", "45", "--link-trials", "5", f"--link-limits={limits_path}:patient",
                              defects={"link": {"drop_rate": 0.8}}, timeout_s=400)
    assert code == 1, run.output
    trials = named(run, "reconnect_latency_4g")
    assert any(m["verdict"] == "fail" and m["value"] > 3.0 for m in trials)
    lost = [e for e in run.truth() if e["event"] == "link.lost" and e["position"] == 1]
    assert len(lost) >= 5


# -- group reconnect ----------------------------------------------------------------------------------------


def test_group_reconnect_passes_on_the_good_twin(run_plan, tmp_path):
    # 60 dB puts every modem at -130 dBm, beyond registration loss: the deepest usable step is 45 dB
    run, code = run_link_plan(run_plan, tmp_path, "test_group_reconnect.py", "--link-sweep", "0,60,45")
    assert code == 0, run.output
    trials = named(run, "group_reconnect_latency")
    assert [(m["details"]["attenuation_db"], m["verdict"], m["high"]) for m in trials] == [
        (0.0, "pass", 15.0), (45.0, "pass", 15.0)]
    for trial in trials:
        rows = trial["details"]["positions"]
        assert [row["position"] for row in rows] == [1, 2, 3] and all(row["reconnected"] for row in rows)
        # the group ends with its last position: its own latency plus how much later its recharge was accepted
        assert trial["value"] == pytest.approx(max(r["latency_s"] + r["recharge_accepted_after_first_s"]
                                                   for r in rows), abs=1e-6)
        assert 0 < trial["uncertainty"] < 0.1
    assert all(0.09 <= row["latency_s"] <= 0.35 for row in trials[0]["details"]["positions"])
    assert all(0.35 <= row["latency_s"] <= 1.0 for row in trials[1]["details"]["positions"])
    reconnects = [e for e in run.truth() if e["event"] == "hes.reconnect_sent"]
    assert sorted(e["position"] for e in reconnects) == [1, 1, 2, 2, 3, 3]
    assert {e["origin"] for e in reconnects} == {"recharge"}


def test_group_reconnect_fails_when_one_meter_reconnects_late(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_group_reconnect.py", "--link-sweep", "0",
                              defects={"positions": {2: {"reconnect_extra_delay_s": 20}}})
    assert code == 1, run.output
    (trial,) = named(run, "group_reconnect_latency")
    assert [m["name"] for m in run.measurements() if m["verdict"] == "fail"] == ["group_reconnect_latency"]
    assert "group_reconnect_latency = 20." in run.output
    assert trial["details"]["all_reconnected"] and trial["details"]["last_position"] == 2
    latency = {row["position"]: row["latency_s"] for row in trial["details"]["positions"]}
    assert latency[2] >= 20.0 and latency[1] < 1.0 and latency[3] < 1.0
    assert 20.0 <= trial["value"] <= 21.0


# -- link loss and recovery ---------------------------------------------------------------------------------


def test_link_recovery_passes_on_the_good_twin(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_link_recovery.py", "-k", "position1")
    assert code == 0, run.output
    assert named(run, "relay_transitions_after_recovery")[0]["details"]["transitions"] == ["cut", "reconnect"]
    commands = named(run, "commands_executed")[0]["details"]["commands"]
    assert [(c["action"], [h["status"] for h in c["history"]]) for c in commands] == [
        ("disconnect", ["queued", "sent", "executed"]), ("connect", ["queued", "sent", "executed"])]
    waited = [e for e in run.truth() if e["event"] == "link.delivered" and e["what"] == "remote_disconnect"]
    assert [e["waited_for_registration"] for e in waited] == [True]


@pytest.mark.parametrize(("defect", "transitions", "failing"), [
    ("loses_queued_commands", [], {"relay_transitions_after_recovery", "transitions_in_order"}),
    ("duplicate_execution", ["cut", "reconnect", "cut"],
     {"relay_transitions_after_recovery", "current_after_recovery", "reported_output_state"})])
def test_link_recovery_fails_on_a_meter_that_mishandles_queued_commands(run_plan, tmp_path, defect, transitions,
                                                                        failing):
    run, code = run_link_plan(run_plan, tmp_path, "test_link_recovery.py", "-k", "position1",
                              defects={"positions": {1: {defect: True}}})
    assert code == 1, run.output
    assert {m["name"] for m in run.measurements() if m["verdict"] == "fail"} == failing
    assert named(run, "relay_transitions_after_recovery")[0]["details"]["transitions"] == transitions
    assert named(run, "commands_executed")[0]["verdict"] == "pass"  # the HES believes every command executed


# -- signal reporting ---------------------------------------------------------------------------------------


def test_signal_reporting_passes_on_the_good_twin(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_signal_reporting.py", *SHORT)
    assert code == 0, run.output
    readings = [(m["name"], m["value"]) for m in run.measurements()]
    assert readings == [("meter_reported_rsrp", -70.0), ("modem_cesq_rsrp", -70.0), ("modem_qcsq_rsrp", -70.0),
                        ("meter_reported_rsrp", -115.0), ("modem_cesq_rsrp", -115.0), ("modem_qcsq_rsrp", -115.0)]


def test_signal_reporting_fails_on_a_meter_reporting_8_db_off(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_signal_reporting.py", *SHORT,
                              defects={"link": {"rsrp_report_offset_db": 8}})
    assert code == 1, run.output
    meter = named(run, "meter_reported_rsrp")
    assert [(m["value"], m["expected"], m["verdict"]) for m in meter] == [(-62.0, -70.0, "fail"),
                                                                         (-107.0, -115.0, "fail")]


# -- 2G against 4G ------------------------------------------------------------------------------------------


def test_2g_against_4g_passes_on_the_good_twin(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_2g_vs_4g.py", "-k", "position1", "--link-sweep", "0",
                              "--link-trials", "1")
    assert code == 0, run.output
    (fourg,) = named(run, "reconnect_latency_4g")
    (twog,) = named(run, "reconnect_latency_2g")
    assert fourg["value"] < 0.5 and fourg["high"] == 3.0
    assert 1.0 < twog["value"] <= 20.0 and twog["high"] == 120.0  # the meter's next poll (every 15 s)
    technologies = [e["technology"] for e in run.truth() if e["event"] == "link.technology"]
    assert technologies == ["2g", "4g"]  # switched for the 2G sweep, back to 4G at the end


def test_2g_against_4g_fails_on_a_meter_that_reconnects_late(run_plan, tmp_path):
    run, code = run_link_plan(run_plan, tmp_path, "test_2g_vs_4g.py", "-k", "position1", "--link-sweep", "0",
                              "--link-trials", "1", defects={"positions": {1: {"reconnect_extra_delay_s": 5}}})
    assert code == 1, run.output
    (fourg,) = named(run, "reconnect_latency_4g")
    assert fourg["verdict"] == "fail" and fourg["value"] >= 5.0
