"""A twin bench of N meter positions, built on benches/sim.yaml.

The bench-wide roles (source, current amplifier, reference, counter, HES) and the twin's settings are those of
sim.yaml; each position gets what sim.yaml gives its three: a DLMS meter interface, an AC load of its own, an RF
attenuator (HTTP and Telnet alternately: even positions over Telnet), a modem on a pty and a cover switch, with
the twin's per-meter and per-attenuator settings. Serials are SIM0001.., ports are unique placeholders (a bench
with twin.autostart is served on ephemeral ports) and each modem's device path names the bench.

The counter is one ADAM-6051 (14 channels) and the bench model has one `counter` role, which must count every
position (`rig check`). A bench of up to 14 positions maps position p to channel p - 1; a larger one has no
counter role (a real bench of that size would have a counter module per 14 positions), so the accuracy plan,
which needs it, does not run on it; the prepaid and link plans do not use it.

    python -m rig.sim.benchgen --positions 24 -o /tmp/bench24.yaml
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SIM_BENCH = ROOT / "benches" / "sim.yaml"
MAX_POSITIONS = 48
COUNTER_CHANNELS = 14  # ADAM-6051 counter inputs
# placeholder ports of the per-position roles: base + position (the bench roles keep sim.yaml's, 51025..51502)
PORT_BASES = {"interface": 51400, "load": 51700, "attenuator": 51800, "cover": 51900}


def _position(number: int, bench_name: str, secrets: dict[str, str]) -> dict:
    attenuator_scheme = "telnet" if number % 2 == 0 else "http"
    return {
        "position": number, "serial": f"SIM{number:04d}", "accuracy_class": "1", "ib_a": 10, "imax_a": 60,
        "un_v": 240, "fn_hz": 50, "meter_constant_imp_per_kwh": 3200, "test_output_imp_per_kwh": 1000000,
        "interface": {"driver": "dlms_meter", "resource": f"tcp://127.0.0.1:{PORT_BASES['interface'] + number}",
                      "settings": {"client": "utility"},
                      "secrets": {name: {"file": path} for name, path in secrets.items()}},
        "load": {"driver": "chroma63800",
                 "resource": f"TCPIP0::127.0.0.1::{PORT_BASES['load'] + number}::SOCKET"},
        "attenuator": {"driver": "rcdat",
                       "resource": f"{attenuator_scheme}://127.0.0.1:{PORT_BASES['attenuator'] + number}",
                       "safe": {"attenuation_db": 0}},
        "modem": {"driver": "at_modem", "resource": f"/tmp/rig-sim-{bench_name}-modem-{number}"},
        "cover": {"driver": "cover_switch", "resource": f"tcp://127.0.0.1:{PORT_BASES['cover'] + number}"},
    }


def _instrument_settings(template: dict, positions: int) -> dict:
    """sim.yaml's twin settings with those of meter@1 and attenuator@1 given to every position."""
    meter = template.get("meter@1", {})
    attenuator = template.get("attenuator@1", {})
    settings = {role: value for role, value in template.items() if "@" not in role}
    for number in range(1, positions + 1):
        settings[f"meter@{number}"] = dict(meter)
    for number in range(1, positions + 1):
        settings[f"attenuator@{number}"] = {**attenuator, "serial": f"SIM1160{number:04d}"}
    return settings


def bench_data(positions: int, name: str | None = None, template: Path = SIM_BENCH) -> dict:
    """The bench of `positions` meter positions as a mapping (what load_bench reads)."""
    if not 1 <= positions <= MAX_POSITIONS:
        raise ValueError(f"positions must be 1..{MAX_POSITIONS}, got {positions}")
    data = copy.deepcopy(yaml.safe_load(template.read_text()))
    name = name or f"sim{positions}"
    secrets = {name: str((template.parent / f"sim-{name.replace('_', '-')}").resolve())
               for name in ("lls_password", "encryption_key", "authentication_key")}
    data["name"] = name
    data["description"] = (f"Digital twin of a {positions}-position single-phase meter test bench, generated from "
                           f"{template.name} by rig.sim.benchgen.")
    data["twin"]["instruments"] = _instrument_settings(data["twin"]["instruments"], positions)
    for role in data["roles"].values():  # secret files (the HES's tokens) stay where sim.yaml keeps them
        for ref in role.get("secrets", {}).values():
            if "file" in ref:
                ref["file"] = str((template.parent / ref["file"]).resolve())
    if positions <= COUNTER_CHANNELS:
        counter = data["roles"]["counter"]["settings"]
        counter["channels"] = COUNTER_CHANNELS
        counter["channel_of_position"] = {number: number - 1 for number in range(1, positions + 1)}
    else:
        del data["roles"]["counter"]
    data["positions"] = [_position(number, name, secrets) for number in range(1, positions + 1)]
    return data


def write_bench(positions: int, path: Path, name: str | None = None) -> Path:
    """Write the bench of `positions` positions to path (YAML); return the path."""
    data = bench_data(positions, name)
    path = Path(path)
    path.write_text(f"# Generated by rig.sim.benchgen: {positions} positions\n"
                    + yaml.safe_dump(data, sort_keys=False, width=120))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rig.sim.benchgen", description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, required=True, help=f"meter positions, 1..{MAX_POSITIONS}")
    parser.add_argument("-o", "--output", type=Path, required=True, help="bench YAML to write")
    parser.add_argument("--name", help="bench name (default sim<N>)")
    args = parser.parse_args(argv)
    if not 1 <= args.positions <= MAX_POSITIONS:
        parser.error(f"--positions must be 1..{MAX_POSITIONS}")
    print(write_bench(args.positions, args.output, args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
