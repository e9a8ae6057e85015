"""YAML data files: bytes that are not UTF-8, keys given twice and misspelt keys are one line with file and line."""

from pathlib import Path

import pytest
from plan_runner import SOURCE_ONLY_BENCH

from rig.config import load_bench
from rig.errors import ConfigError
from rig.prepaid import load_limits, load_policy
from rig.sim.defects import load_defects
from rig.yamlfile import read_yaml

POLICY = Path(__file__).resolve().parents[2] / "testplans" / "prepaid" / "policies" / "uppcl.yaml"

BENCH = SOURCE_ONLY_BENCH


def error_of(load, path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("load, what", [(load_bench, "bench file"), (load_defects, "defects file"),
                                        (load_policy, "prepaid policy")])
def test_a_file_that_is_not_utf8_names_file_and_line(tmp_path, load, what):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: Jörg\n# Zähler\n".encode("latin-1"))
    assert error_of(load, path) == f"{path}:1: {what} is not UTF-8 text (byte 0xf6 at offset 7); save it as UTF-8"


def test_the_line_of_the_first_bad_byte_is_named(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_bytes(BENCH.encode() + "description: Prüfplatz\n".encode("cp1252"))
    assert error_of(load_bench, path).startswith(f"{path}:6: bench file is not UTF-8 text (byte 0xfc")


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BENCH.encode())
    assert load_bench(path).name == "test"


def test_a_role_defined_twice_is_refused_at_the_second(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text(BENCH + "  current:\n    driver: x\n    resource: y\n  source:\n    driver: z\n    resource: w\n")
    assert error_of(load_bench, path) == (f"{path}:9: roles.source: given twice (first at line 3); the second "
                                          f"would silently replace the first")


def test_a_key_twice_in_a_flow_mapping_inside_a_list_names_its_place(tmp_path):
    path = tmp_path / "defects.yaml"
    path.write_text("positions:\n  1:\n    error_pct:\n      - {current_a: [1, 2], pf: 1, value: 1, value: 2}\n")
    assert error_of(load_defects, path) == (f"{path}:4: positions.1.error_pct.0.value: given twice (first at line "
                                            f"4); the second would silently replace the first")


def test_a_policy_key_twice_is_refused(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.read_text() + "tariff_per_kwh: 0.01\n")
    assert error_of(load_policy, path).startswith(f"{path}:{len(POLICY.read_text().splitlines()) + 1}: "
                                                  f"tariff_per_kwh: given twice (first at line ")


def test_merge_keys_and_aliases_are_not_duplicates(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("base: &base {a: 1, b: 2}\nother:\n  <<: *base\n  b: 3\nagain: *base\n")
    data, _root = read_yaml(path, "data")
    assert data == {"base": {"a": 1, "b": 2}, "other": {"a": 1, "b": 3}, "again": {"a": 1, "b": 2}}


def test_the_same_text_as_a_number_and_a_string_are_two_keys(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("1: a\n'1': b\n")
    assert read_yaml(path, "data")[0] == {1: "a", "1": "b"}


def test_a_misspelt_policy_key_is_reported_before_the_field_it_leaves_missing(tmp_path):
    path = tmp_path / "policy.yaml"
    text = POLICY.read_text().replace("tariff_per_kwh:", "tarif_per_kwh:")
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("tarif_per_kwh"))
    assert error_of(load_policy, path) == (f"{path}:{line}: tarif_per_kwh: unknown field (did you mean "
                                           f"'tariff_per_kwh'? it is missing)")


def test_an_unknown_field_unlike_the_missing_ones_names_them(tmp_path):
    path = tmp_path / "limits.yaml"
    path.write_text("profiles:\n  twin:\n    colour: red\n")
    assert error_of(lambda p: load_limits("twin", p), path) == (
        f"{path}:3: profiles.twin.colour: unknown field (missing: cutoff_after_exhaustion_max_s, "
        f"reconnect_after_recharge_max_s, alert_after_threshold_max_s, ...) (and 4 more)")


def test_an_unknown_field_comes_before_other_errors(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text(BENCH + "    timeout_s: -1\n    colour: red\n")
    assert error_of(load_bench, path) == f"{path}:7: roles.source.colour: unknown field (and 1 more)"
