"""rig.sim.benchgen: a twin bench of N positions that loads, passes the preflight and gives every position its
own addresses, serial and modem path."""

import pytest
import yaml

from rig.config import bench_roles, load_bench
from rig.driver import available_drivers
from rig.preflight import preflight
from rig.sim import benchgen


def generated(tmp_path, positions):
    path = benchgen.write_bench(positions, tmp_path / f"bench{positions}.yaml")
    return load_bench(path, known_drivers=set(available_drivers()))


@pytest.mark.parametrize("positions", [1, 3, 14, 24, 48])
def test_generated_bench_loads_and_passes_the_preflight(tmp_path, positions):
    bench = generated(tmp_path, positions)
    preflight(bench)
    assert bench.name == f"sim{positions}"
    assert [m.position for m in bench.config.positions] == list(range(1, positions + 1))
    assert bench.config.twin.autostart is True
    roles = bench_roles(bench.config)
    for position in range(1, positions + 1):
        for prefix in ("meter", "load", "attenuator", "modem", "cover"):
            assert f"{prefix}@{position}" in roles


def test_every_position_has_its_own_serial_ports_and_modem_path(tmp_path):
    bench = generated(tmp_path, 24)
    positions = bench.config.positions
    assert [m.serial for m in positions] == [f"SIM{n:04d}" for n in range(1, 25)]
    resources = [config.resource for config in bench_roles(bench.config).values()]
    assert len(set(resources)) == len(resources)
    ports = [r.replace("::SOCKET", "").rsplit(":", 1)[1] for r in resources if not r.startswith("/")]
    assert len(set(ports)) == len(ports)
    assert [m.modem.resource for m in positions] == [f"/tmp/rig-sim-sim24-modem-{n}" for n in range(1, 25)]
    assert [m.attenuator.resource.split(":")[0] for m in positions[:4]] == ["http", "telnet", "http", "telnet"]


def test_twin_settings_are_given_to_every_position(tmp_path):
    bench = generated(tmp_path, 24)
    instruments = bench.config.twin.instruments
    assert instruments["meter@24"] == {"energy_scaler": -3, "limiter_duration_s": 2, "powered_by_source": True}
    assert instruments["attenuator@24"] == {"model": "RCDAT-6000-110", "serial": "SIM11600024"}
    assert instruments["hes"]["read_interval_s"] == 0.5
    serials = [instruments[f"attenuator@{n}"]["serial"] for n in range(1, 25)]
    assert len(set(serials)) == 24


def test_the_counter_counts_every_position_up_to_its_14_channels(tmp_path):
    counter = generated(tmp_path, 14).config.roles["counter"]
    assert counter.settings["channel_of_position"] == {n: n - 1 for n in range(1, 15)}
    assert "counter" not in generated(tmp_path, 15).config.roles


def test_the_meters_secret_is_found_from_anywhere(tmp_path):
    bench = generated(tmp_path, 2)
    ref = bench.config.positions[1].interface.secrets["lls_password"]
    password = (benchgen.SIM_BENCH.parent / "sim-lls-password").read_text().strip()
    assert ref.resolve("meter@2", bench.path.parent) == password


@pytest.mark.parametrize("positions", [0, 49])
def test_positions_out_of_range_are_refused(positions):
    with pytest.raises(ValueError, match="1..48"):
        benchgen.bench_data(positions)


def test_command_line_writes_the_bench(tmp_path, capsys):
    out = tmp_path / "b.yaml"
    assert benchgen.main(["--positions", "5", "-o", str(out), "--name", "lab5"]) == 0
    data = yaml.safe_load(out.read_text())
    assert data["name"] == "lab5" and len(data["positions"]) == 5
    assert data["positions"][4]["modem"]["resource"] == "/tmp/rig-sim-lab5-modem-5"
    assert str(out) in capsys.readouterr().out
