"""The meter security plans on the twin: every plan passes on good meters, and each defect fails its own plan at
its own position only (reader_can_disconnect: the reader's disconnect; ignores_hls_tag: the wrong key;
accepts_replay: the replay and the stale invocation counter). No run leaves a key in its folder."""

import yaml
from plan_runner import PLANS, SIM_BENCH, write_bench

METER_SECURITY = PLANS / "security" / "test_meter_security.py"
PLAN_OF = {"reader_disconnect_refused": "test_the_meter_reader_cannot_operate_the_relay",
           "wrong_key_refused": "test_a_wrong_hls_key_is_refused",
           "replay_refused": "test_a_replayed_ciphered_frame_is_refused",
           "stale_counter_refused": "test_a_stale_invocation_counter_is_refused"}


def measured(run) -> dict:
    return {(m["position"], m["name"]): m for m in run.measurements()}


def keys() -> list[str]:
    return [(SIM_BENCH.parent / name).read_text().strip() for name in ("sim-encryption-key", "sim-authentication-key")]


def assert_no_key_in(folder) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace").lower()
            assert not any(key.lower() in text for key in keys()), f"a key in {path}"


def test_good_meters_refuse_every_attempt_and_keep_their_relays_closed(run_plan, tmp_path):
    run = run_plan(METER_SECURITY, write_bench(tmp_path))
    assert run.wait(timeout_s=240) == 0, run.output
    assert "12 passed" in run.output
    taken = measured(run)
    for position in (1, 2, 3):
        for name in PLAN_OF:
            assert taken[(position, name)]["verdict"] == "pass" and taken[(position, name)]["value"] is True
        assert taken[(position, "current_after_reader_disconnect")]["value"] > 2.5
        assert taken[(position, "reader_disconnect_refused")]["details"]["answer"] == \
            "actionresponsenormal read_write_denied"
        assert taken[(position, "wrong_key_refused")]["details"]["answer"] == \
            "AARE rejected_permanent, no_reason_given, deciphering-error"
        assert taken[(position, "replay_refused")]["details"]["answer"] == \
            "exception-response service-not-allowed/invocation-counter-error"
    truth = run.truth()
    assert not [e for e in truth if e["event"] == "relay" and not e["closed"]]  # no relay ever opened
    refusals = [e for e in truth if e["event"] == "dlms.ciphered_refused"]  # the replay and the stale counter
    assert sorted(e["role"] for e in refusals) == ["meter@1", "meter@1", "meter@2", "meter@2", "meter@3", "meter@3"]
    assert all(e["reason"].startswith("invocation counter ") for e in refusals)
    wrong_key = [e for e in truth if e["event"] == "dlms.association" and e["result"] == "rejected-permanent"]
    assert [(e["role"], e["client_sap"]) for e in wrong_key] == [(f"meter@{n}", 48) for n in (1, 2, 3)]
    assert_no_key_in(run.folder)


def test_each_defect_fails_its_own_plan_at_its_position(run_plan, tmp_path):
    defects = tmp_path / "defects.yaml"
    defects.write_text(yaml.safe_dump({"positions": {1: {"reader_can_disconnect": True},
                                                     2: {"ignores_hls_tag": True},
                                                     3: {"accepts_replay": True}}}))
    run = run_plan(METER_SECURITY, write_bench(tmp_path), f"--twin-defects={defects}")
    assert run.wait(timeout_s=240) == 1, run.output
    taken = measured(run)
    failing = {(position, name) for (position, name), m in taken.items() if m["verdict"] == "fail"}
    assert failing == {(1, "reader_disconnect_refused"), (1, "current_after_reader_disconnect"),
                       (2, "wrong_key_refused"), (3, "replay_refused"), (3, "stale_counter_refused")}
    assert "8 passed, 4 failed" in run.output
    failed_tests = {line.split("::")[1].split("[")[0] for line in run.output.splitlines() if line.startswith("FAILED")}
    assert failed_tests == {PLAN_OF[name] for _, name in failing if name in PLAN_OF}  # each defect's own plan
    opened = [e for e in run.truth() if e["event"] == "relay" and not e["closed"]]
    assert [(e["position"], e["by"]) for e in opened] == [(1, "meter@1 remote_disconnect")]
    assert taken[(1, "current_after_reader_disconnect")]["value"] < 2.5  # the relay really opened
