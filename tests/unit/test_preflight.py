"""Preflight: everything wrong with a bench that can be known before an instrument is touched, as one line with
the bench file, the YAML line and the field."""

import pytest
from plan_runner import SIM_BENCH, write_bench

from rig.config import RoleConfig, load_bench
from rig.driver import SetpointLimits, driver_class
from rig.errors import ConfigError
from rig.preflight import preflight
from rig.transcript import Transcript


def line_of(path, text: str, after: str | None = None) -> int:
    """1-based line of the first row holding `text` (after the first row holding `after`)."""
    rows = path.read_text().splitlines()
    start = next(i for i, row in enumerate(rows) if after in row) if after else 0
    return next(i for i, row in enumerate(rows) if i >= start and text in row) + 1


def refused(path) -> str:
    with pytest.raises(ConfigError) as info:
        preflight(path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def counter(data) -> dict:
    return data["roles"]["counter"]


def test_the_sim_bench_passes():
    preflight(SIM_BENCH)
    preflight(load_bench(SIM_BENCH))


def test_a_counter_setting_that_is_not_a_number_names_role_line_and_field(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: counter(d)["settings"].update(channels="twelve"))
    assert refused(path) == (f"{path}:{line_of(path, 'channels: twelve')}: roles.counter.settings.channels: Input "
                             f"should be a valid integer, unable to parse string as an integer (got 'twelve')")


def test_a_misspelt_setting_is_refused_with_the_settings_the_driver_knows(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: counter(d)["settings"].update(chanels=12))
    assert refused(path) == (f"{path}:{line_of(path, 'chanels')}: roles.counter.settings.chanels: unknown field "
                             f"(settings of this driver: register_map, device_id, channels, channel_of_position, "
                             f"positions)")


def test_a_counter_without_a_channel_for_a_position_is_refused(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: counter(d)["settings"].update(channel_of_position={1: 0, 2: 1}))
    assert refused(path) == (f"{path}:{line_of(path, 'channel_of_position')}: roles.counter.settings."
                             f"channel_of_position: no channel for bench position(s) 3 (SIM0003); channels are "
                             f"given to position(s) 1, 2")


def test_a_role_limit_above_the_instrument_rating_names_both(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["source"]["limits"].update(voltage_v=400))
    assert refused(path) == (f"{path}:{line_of(path, 'voltage_v: 400')}: roles.source.limits.voltage_v: 400 V is "
                             f"above the rating of the chroma61500 instrument (300 V)")


def test_a_frequency_range_beyond_the_rating_is_refused(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["source"]["limits"].update(frequency_hz={"min": 10,
                                                                                                    "max": 55}))
    assert refused(path) == (f"{path}:{line_of(path, 'min: 10')}: roles.source.limits.frequency_hz.min: 10 Hz is "
                             f"below the rating of the chroma61500 instrument (15..1000 Hz)")


def test_a_secret_from_an_unset_variable_is_refused_at_its_line(tmp_path, monkeypatch):
    monkeypatch.delenv("RIG_TEST_HES_TOKEN", raising=False)
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["hes"].update(settings={}, secrets={"token": {"env":
                                                                                            "RIG_TEST_HES_TOKEN"}}))
    assert refused(path) == (f"{path}:{line_of(path, 'token:')}: roles.hes.secrets.token: "
                             f"environment variable RIG_TEST_HES_TOKEN is not set")
    monkeypatch.setenv("RIG_TEST_HES_TOKEN", " ")
    assert refused(path).endswith("roles.hes.secrets.token: environment variable RIG_TEST_HES_TOKEN is empty")
    monkeypatch.setenv("RIG_TEST_HES_TOKEN", "t0ken")
    preflight(path)


def test_a_position_secret_file_missing_empty_or_not_text_is_refused(tmp_path):
    secret = tmp_path / "pw"
    path = write_bench(tmp_path, edit=lambda d: d["positions"][1]["interface"].update(
        secrets={"lls_password": {"file": str(secret)}}))
    line = line_of(path, "lls_password", after="position: 2")
    assert refused(path) == (f"{path}:{line}: positions.1.interface.secrets.lls_password: cannot read secret file "
                             f"{secret}: No such file or directory")
    secret.write_text("\n")
    assert refused(path) == f"{path}:{line}: positions.1.interface.secrets.lls_password: secret file {secret} is empty"
    secret.write_bytes(b"\xff\xfe")
    assert refused(path).endswith(f"secret file {secret} is not UTF-8 text")


def test_a_bad_resource_scheme_is_refused_before_opening(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["hes"].update(resource="ftp://127.0.0.1:51080"))
    assert refused(path) == (f"{path}:{line_of(path, 'ftp://')}: roles.hes.resource: an HES resource is "
                             f"'http://host:port[/prefix]', got 'ftp://127.0.0.1:51080'")


def test_credentials_in_a_resource_are_refused_without_echoing_them(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["hes"].update(resource="http://lab:hunter2@hes:8080/api"))
    message = refused(path)
    assert message == (f"{path}:{line_of(path, 'hunter2')}: roles.hes.resource: credentials in the address "
                       f"(http://***@hes:8080) are not allowed: give them under 'secrets:' as {{env: NAME}} or "
                       f"{{file: PATH}}")
    assert "hunter2" not in message and "lab:" not in message


def test_a_bench_with_credentials_in_a_resource_never_gets_a_run_folder(tmp_path):
    from fixtures.session import RigSession

    path = write_bench(tmp_path, edit=lambda d: d["roles"]["hes"].update(resource="http://lab:hunter2@hes:8080"))
    with pytest.raises(ConfigError, match="credentials in the address"):
        RigSession.start(path, tmp_path / "results" / "r1", tmp_path, source_root=tmp_path)
    assert not (tmp_path / "results").exists()


def test_a_position_driver_setting_is_named_by_its_position(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["positions"][1]["interface"].update(settings={"client": "admin"}))
    line = line_of(path, "client: admin")
    assert refused(path) == (f"{path}:{line}: positions.1.interface.settings.client: 'admin' is not one of public, "
                             f"reader, utility")


def test_a_modem_baudrate_that_is_not_a_number(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["positions"][2].__setitem__(
        "modem", {"driver": "at_modem", "resource": "/tmp/rig-sim-modem-3", "settings": {"baudrate": "fast"}}))
    assert refused(path).startswith(f"{path}:{line_of(path, 'baudrate: fast')}: positions.2.modem.settings.baudrate: "
                                    f"Input should be a valid integer")


def test_an_unknown_safe_key_names_its_line(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["positions"][0]["attenuator"].update(safe={"attenuation": 0}))
    assert refused(path) == (f"{path}:{line_of(path, 'safe:')}: positions.0.attenuator.safe: unknown "
                             f"key(s) attenuation for driver rcdat (accepted: attenuation_db)")


def test_a_scpi_setting_that_is_not_a_number_names_its_line(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["reference"]["settings"].update(accuracy_class_pct="tiny"))
    assert refused(path) == (f"{path}:{line_of(path, 'accuracy_class_pct: tiny')}: roles.reference.settings."
                             f"accuracy_class_pct: Input should be a valid number, unable to parse string as a number "
                             f"(got 'tiny')")


def test_a_misspelt_scpi_setting_names_file_line_and_field(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["source"].update(settings={
        "voltage_accuracy_pct_readng": 0.1}))
    assert refused(path) == (f"{path}:{line_of(path, 'voltage_accuracy_pct_readng')}: roles.source.settings."
                             f"voltage_accuracy_pct_readng: unknown field (settings of this driver: visa_backend, "
                             f"voltage_accuracy_pct_reading, voltage_accuracy_pct_full_scale)")


def test_a_setting_of_a_driver_without_settings_is_refused(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["positions"][0]["attenuator"].update(settings={"model": "X"}))
    assert refused(path) == (f"{path}:{line_of(path, 'model: X')}: positions.0.attenuator.settings.model: unknown "
                             f"field (settings of this driver: none)")


def test_a_malformed_scpi_address_is_refused_before_opening(tmp_path):
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["current"].update(resource="TCPIP0::127.0.0.1::x::SOCKET"))
    assert refused(path) == (f"{path}:{line_of(path, '::x::')}: roles.current.resource: port 'x' in "
                             f"'TCPIP0::127.0.0.1::x::SOCKET' is not a number")
    path = write_bench(tmp_path, edit=lambda d: d["roles"]["source"].update(resource="tcp://127.0.0.1:5025"))
    assert refused(path) == (f"{path}:{line_of(path, 'tcp://127.0.0.1:5025')}: roles.source.resource: a SCPI "
                             f"instrument is reached at a VISA resource name such as "
                             f"'TCPIP0::192.0.2.10::5025::SOCKET', got 'tcp://127.0.0.1:5025'")


def test_any_other_exception_of_a_driver_constructor_names_the_role_settings(tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise ValueError("could not convert string to float: 'tiny'")

    monkeypatch.setattr(driver_class("scpi_reference_meter"), "__init__", refuse)
    path = write_bench(tmp_path)
    assert refused(path) == (f"{path}:{line_of(path, 'settings:', after='reference:')}: roles.reference.settings: "
                             f"driver scpi_reference_meter refused this role's configuration: ValueError: could not "
                             f"convert string to float: 'tiny'")


@pytest.mark.parametrize("driver, resource, settings, role, message", [
    ("adam6051", "tcp://127.0.0.1:1", {"chanels": 12}, "counter", "roles.counter.settings.chanels: unknown field"),
    ("adam6051", "tcp://127.0.0.1:1", {"device_id": 300}, "counter",
     "roles.counter.settings.device_id: Input should be less than or equal to 255 (got 300)"),
    ("adam6051", "tcp://127.0.0.1:1", {"channel_of_position": {"one": 0}}, "counter",
     "roles.counter.settings.channel_of_position.one: Input should be a valid integer"),
    ("sdm630", "tcp://127.0.0.1:1", {"device": 7}, "meter@1", "roles.meter@1.settings.device: unknown field"),
    ("dlms_meter", "tcp://127.0.0.1:1", {"deadline_s": 0}, "meter@2",
     "roles.meter@2.settings.deadline_s: Input should be greater than 0 (got 0)"),
    ("dlms_meter", "tcp://127.0.0.1:1", {"clinet": "reader"}, "meter@2", "roles.meter@2.settings.clinet: unknown"),
    ("at_modem", "/dev/ttyUSB2", {"baud": 9600}, "modem@1", "roles.modem@1.settings.baud: unknown field"),
    ("chroma61500", "TCPIP0::127.0.0.1::1::SOCKET", {"visa_backend": ""}, "source",
     "roles.source.settings.visa_backend: String should have at least 1 character"),
    ("chroma63800", "TCPIP0::127.0.0.1::1::SOCKET", {"current_sample_latency": 0.01}, "load@1",
     "roles.load@1.settings.current_sample_latency: unknown field"),
    ("scpi_current_amplifier", "TCPIP0::127.0.0.1::1::SOCKET", {"accuracy_class_pct": 0.1}, "current",
     "roles.current.settings.accuracy_class_pct: unknown field (settings of this driver: visa_backend)"),
    ("scpi_reference_meter", "TCPIP0::127.0.0.1::1::SOCKET", {"sample_instant": "end"}, "reference",
     "roles.reference.settings.sample_instant: Input should be 'send', 'middle' or 'reply' (got 'end')"),
    ("hes_http", "http://127.0.0.1:1", {"policy": "uppcl"}, "hes", "roles.hes.settings.policy: unknown field"),
    ("rcdat", "telnet://127.0.0.1", {"serial": "X"}, "attenuator@1", "roles.attenuator@1.settings.serial: unknown"),
])
def test_each_driver_declares_its_settings(driver, resource, settings, role, message):
    config = RoleConfig(driver=driver, resource=resource, settings=settings)
    with pytest.raises(ConfigError) as info:
        driver_class(driver)(role, config, SetpointLimits(), Transcript(None))
    assert str(info.value).startswith(message)


def test_declared_settings_keep_their_values():
    counter = driver_class("adam6051")("counter", RoleConfig(driver="adam6051", resource="tcp://127.0.0.1:1", settings={
        "channels": "12", "channel_of_position": {"1": 3, 2: "4"}}), SetpointLimits(), Transcript(None))
    assert (counter.channels, counter.channel_of_position) == (12, {1: 3, 2: 4})
    modem = driver_class("at_modem")("modem@1", RoleConfig(driver="at_modem", resource="/dev/ttyUSB2"),
                                     SetpointLimits(), Transcript(None))
    assert modem.baudrate == 115200
