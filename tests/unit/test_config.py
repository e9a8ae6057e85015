"""Bench descriptions: validation on load and one-line errors naming file, line and field."""

import json
from pathlib import Path

import pytest
from plan_runner import SOURCE_ONLY_BENCH

from rig.config import MeterPosition, SecretRef, bench_json_schema, load_bench
from rig.driver import available_drivers
from rig.errors import ConfigError

BENCHES = Path(__file__).resolve().parents[2] / "benches"

HEADER = SOURCE_ONLY_BENCH

METER = dict(position=1, serial="A1", accuracy_class="1", ib_a=10, imax_a=60, un_v=240,
             meter_constant_imp_per_kwh=3200)


def write(tmp_path, text, name="bench.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path, **kwargs):
    with pytest.raises(ConfigError) as info:
        load_bench(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def meter_line(**fields):
    return "  - {" + ", ".join(f"{key}: {value}" for key, value in {**METER, **fields}.items()
                               if value is not None) + "}\n"


def test_sim_bench_loads():
    bench = load_bench(BENCHES / "sim.yaml", known_drivers=set(available_drivers()))
    assert bench.name == "sim"
    assert list(bench.config.roles) == ["source", "current", "reference", "counter", "hes"]
    assert [m.interface.driver for m in bench.config.positions] == ["dlms_meter"] * 3
    assert [m.load.driver for m in bench.config.positions] == ["chroma63800"] * 3
    assert [m.position for m in bench.config.positions] == [1, 2, 3]
    assert bench.path == (BENCHES / "sim.yaml").resolve()


def test_minimal_bench_gets_defaults(tmp_path):
    bench = load_bench(write(tmp_path, HEADER))
    role = bench.config.roles["source"]
    assert (role.timeout_s, role.safe_timeout_s, bench.config.positions) == (2.0, 5.0, [])


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "name: test\nroles:\n  source: {driver: x\n")
    message = load_error(path)
    assert message.startswith(f"{path}:4: YAML syntax error")


def test_malformed_yaml_in_the_middle_names_its_line(tmp_path):
    path = write(tmp_path, "name: test\nroles:\n  source:\n    driver: [a\n    resource: b\n")
    assert load_error(path).startswith(f"{path}:5: YAML syntax error")


def test_missing_file_is_a_config_error(tmp_path):
    path = tmp_path / "absent.yaml"
    assert load_error(path).startswith(f"{path}: cannot read bench file")


def test_non_mapping_is_refused(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    assert load_error(path).startswith(f"{path}: a bench file must be a mapping")


def test_wrong_type_names_file_line_and_field(tmp_path):
    path = write(tmp_path, HEADER + "    limits:\n      voltage_v: abc\n")
    message = load_error(path)
    assert message.startswith(f"{path}:7: roles.source.limits.voltage_v: ")
    assert "valid number" in message


def test_unknown_field_is_named(tmp_path):
    path = write(tmp_path, HEADER + "    colour: red\n")
    assert load_error(path) == f"{path}:6: roles.source.colour: unknown field"


def test_unknown_top_level_field_is_named(tmp_path):
    path = write(tmp_path, HEADER + "extra: 1\n")
    assert load_error(path) == f"{path}:6: extra: unknown field"


def test_missing_roles_says_field_required(tmp_path):
    path = write(tmp_path, "name: test\n")
    assert load_error(path) == f"{path}:1: roles: field required"


def test_several_errors_report_the_first_and_count_the_rest(tmp_path):
    path = write(tmp_path, "name: test\ncolour: red\nshape: round\n")
    assert load_error(path) == f"{path}:2: colour: unknown field (missing: roles) (and 1 more)"


def test_inline_secret_is_refused_without_echoing_it(tmp_path):
    path = write(tmp_path, HEADER + '    secrets: {password: "12345678"}\n')
    message = load_error(path)
    assert message.startswith(f"{path}:6: roles.source.secrets.password: inline secrets are not allowed")
    assert "12345678" not in message


def test_secret_ref_needs_exactly_one_source(tmp_path):
    path = write(tmp_path, HEADER + "    secrets: {password: {env: A, file: /b}}\n")
    assert "give exactly one of 'env' or 'file'" in load_error(path)


def test_secret_ref_from_bench_is_kept_as_reference(tmp_path):
    bench = load_bench(write(tmp_path, HEADER + "    secrets: {password: {env: METER_PW}}\n"))
    assert bench.config.roles["source"].secrets["password"] == SecretRef(env="METER_PW")


def test_secret_ref_resolves_from_env(monkeypatch):
    monkeypatch.setenv("RIG_TEST_SECRET", "s3cret")
    assert SecretRef(env="RIG_TEST_SECRET").resolve("roles.x.secrets.pw") == "s3cret"


def test_secret_ref_resolves_from_file_without_trailing_newline(tmp_path):
    secret = tmp_path / "pw.txt"
    secret.write_text("from-file\n")
    assert SecretRef(file=secret).resolve("roles.x.secrets.pw") == "from-file"


def test_secret_ref_missing_env_names_variable(monkeypatch):
    monkeypatch.delenv("RIG_TEST_ABSENT", raising=False)
    with pytest.raises(ConfigError) as info:
        SecretRef(env="RIG_TEST_ABSENT").resolve("roles.x.secrets.pw")
    assert str(info.value) == "roles.x.secrets.pw: environment variable RIG_TEST_ABSENT is not set"


def test_secret_ref_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read secret file"):
        SecretRef(file=tmp_path / "absent").resolve("roles.x.secrets.pw")


def test_unknown_driver_names_role_and_known_drivers(tmp_path):
    path = write(tmp_path, HEADER.replace("chroma61500", "keithley"))
    message = load_error(path, known_drivers={"chroma61500", "other"})
    assert message == f"{path}:4: roles.source.driver: unknown driver 'keithley' (known: chroma61500, other)"


def test_known_driver_passes(tmp_path):
    assert load_bench(write(tmp_path, HEADER), known_drivers={"chroma61500"}).name == "test"


def test_duplicate_position_numbers_are_refused(tmp_path):
    path = write(tmp_path, HEADER + "positions:\n" + meter_line() + meter_line(serial="A2"))
    message = load_error(path)
    assert "positions: position 1 appears twice (again at positions[1])" in message


def test_duplicate_serials_are_refused(tmp_path):
    path = write(tmp_path, HEADER + "positions:\n" + meter_line() + meter_line(position=2))
    assert "positions: serial 'A1' appears twice (again at positions[1])" in load_error(path)


def test_both_ib_and_in_are_refused(tmp_path):
    path = write(tmp_path, HEADER + "positions:\n" + meter_line(in_a=5))
    message = load_error(path)
    assert message.startswith(f"{path}:7: positions.0: give exactly one of 'ib_a'")


def test_neither_ib_nor_in_is_refused(tmp_path):
    path = write(tmp_path, HEADER + "positions:\n" + meter_line(ib_a=None))
    assert "positions.0: give exactly one of 'ib_a' (direct meters) or 'in_a' (CT meters)" in load_error(path)


def test_imax_not_above_base_current_is_refused(tmp_path):
    path = write(tmp_path, HEADER + "positions:\n" + meter_line(imax_a=10))
    assert "positions.0: imax_a 10.0 must be above the base current 10.0" in load_error(path)


def test_ct_meter_uses_in_as_base_current():
    meter = MeterPosition(**{**METER, "ib_a": None, "in_a": 5, "imax_a": 6})
    assert meter.base_current_a == 5.0


def test_accuracy_class_as_yaml_number_becomes_text(tmp_path):
    bench = load_bench(write(tmp_path, HEADER + "positions:\n" + meter_line(accuracy_class=1)))
    assert bench.config.positions[0].accuracy_class == "1"


def test_unknown_accuracy_class_is_refused(tmp_path):
    path = write(tmp_path, HEADER + "positions:\n" + meter_line(accuracy_class="3"))
    assert load_error(path).startswith(f"{path}:7: positions.0.accuracy_class: ")


def test_max_voltage_is_un_times_factor():
    assert MeterPosition(**METER).max_voltage_v == 288.0
    assert MeterPosition(**METER, max_voltage_factor=1.1).max_voltage_v == pytest.approx(264.0)


def test_published_schema_matches_the_model():
    published = json.loads((BENCHES / "bench.schema.json").read_text())
    assert published == json.loads(json.dumps(bench_json_schema()))


def test_schema_is_draft_2020_12_and_closed():
    schema = bench_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name", "roles"]
