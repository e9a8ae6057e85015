"""Twin defects files: defects that could never show (a band upside down, a position or HES the bench has not)
are refused, naming file, line and field."""

import pytest
from plan_runner import SIM_BENCH, write_bench

from rig.config import load_bench
from rig.errors import ConfigError
from rig.sim.defects import check_defects, load_defects


def write(tmp_path, text: str):
    path = tmp_path / "defects.yaml"
    path.write_text(text)
    return path


def refused(call) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_an_inverted_current_band_is_refused(tmp_path):
    path = write(tmp_path, "positions:\n  2:\n    error_pct:\n      - {current_a: [0.6, 0.25], pf: 1, value: 2.5}\n")
    assert refused(lambda: load_defects(path)) == (
        f"{path}:4: positions.2.error_pct.0.current_a: a band is [low, high] with 0 <= low <= high, got [0.6, 0.25]: "
        f"it would never apply")


def test_an_ordered_band_applies_within_it(tmp_path):
    path = write(tmp_path, "positions:\n  2:\n    error_pct:\n      - {current_a: [0.25, 0.6], pf: 1, value: 2.5}\n")
    defects = load_defects(path).for_position(2)
    assert (defects.error_pct_at(0.5, "1"), defects.error_pct_at(0.7, "1")) == (2.5, 0.0)


def test_defects_of_a_position_the_bench_lacks_are_refused(tmp_path):
    path = write(tmp_path, "positions:\n  1:\n    creep_pulses_per_hour: 2\n  7:\n    relay_stuck: closed\n")
    bench = load_bench(SIM_BENCH)
    assert refused(lambda: check_defects(path, bench)) == (
        f"{path}:4: positions.7: bench 'sim' (sim.yaml) has no position 7 (positions: 1, 2, 3)")


def test_hes_defects_on_a_bench_without_a_hes_are_refused(tmp_path):
    path = write(tmp_path, "hes:\n  disconnect_delay_s: 5\n")
    bench = load_bench(write_bench(tmp_path, only_roles=("source",)))
    assert refused(lambda: check_defects(path, bench)) == (
        f"{path}:1: hes: bench 'sim' (bench.yaml) has no head-end system (a role with driver hes_http)")


def test_defects_that_fit_the_bench_are_returned(tmp_path):
    path = write(tmp_path, "positions:\n  3:\n    relay_stuck: closed\nhes:\n  disconnect_delay_s: 5\n")
    defects = check_defects(path, load_bench(SIM_BENCH))
    assert (defects.for_position(3).relay_stuck, defects.hes.disconnect_delay_s) == ("closed", 5.0)


def test_interface_and_tamper_defects_are_held_against_the_bench(tmp_path):
    path = write(tmp_path, "positions:\n  2:\n    interface_dead: true\n    tamper_logged_late_s: 30\n"
                           "  9:\n    tamper_not_logged: true\n")
    assert refused(lambda: check_defects(path, load_bench(SIM_BENCH))) == (
        f"{path}:5: positions.9: bench 'sim' (sim.yaml) has no position 9 (positions: 1, 2, 3)")
    path = write(tmp_path, "positions:\n  2:\n    interface_dead: true\n    tamper_logged_late_s: 30\n")
    defects = check_defects(path, load_bench(SIM_BENCH)).for_position(2)
    assert (defects.interface_dead, defects.tamper_not_logged, defects.tamper_logged_late_s) == (True, False, 30.0)


def test_a_negative_tamper_delay_is_refused(tmp_path):
    path = write(tmp_path, "positions:\n  1:\n    tamper_logged_late_s: -1\n")
    assert refused(lambda: load_defects(path)).startswith(f"{path}:3: positions.1.tamper_logged_late_s: ")
