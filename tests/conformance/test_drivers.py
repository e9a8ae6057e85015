"""The rig's own drivers on each device: opened with the role's settings, identified, read without changing an
output. On the twin the identity is the one the sim bench gives; on a device it is what the instrument says."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from plan_runner import write_bench

from rig.bench import Bench
from rig.config import load_bench
from rig.driver import available_drivers
from rig.transcript import Transcript

ROLES = ["source", "current", "reference", "counter", "hes", "meter@1", "load@1", "attenuator@1", "attenuator@2",
         "modem@1", "cover@1"]


def read_only_exchange(role: str, driver) -> object:
    """One reading of the role's state through its interface; nothing is set."""
    kind = role.partition("@")[0]
    reads = {
        "source": lambda: (driver.output_enabled(), driver.measure_voltage()),
        "current": lambda: (driver.output_enabled(), driver.measure_current()),
        "reference": lambda: driver.measure(),
        "counter": lambda: driver.read_counts(),
        "meter": lambda: driver.read_energy_import_kwh(),
        "load": lambda: (driver.input_enabled(), driver.measure_current()),
        "attenuator": lambda: driver.attenuation(),
        "modem": lambda: driver.signal(),
    }
    return reads[kind]() if kind in reads else None


def numbers_in(reading: object) -> list[float]:
    """The numbers of a reading (a number, a tuple, a dict or a dataclass of them); booleans are not numbers."""
    if dataclasses.is_dataclass(reading):
        reading = dataclasses.asdict(reading)
    if isinstance(reading, dict):
        reading = list(reading.values())
    if isinstance(reading, list | tuple):
        return [number for item in reading for number in numbers_in(item)]
    return [float(reading)] if isinstance(reading, int | float) and not isinstance(reading, bool) else []


@pytest.fixture
def bench_on_device(request, device, tmp_path):
    """A Bench whose `device.role` is the device; its role settings from --device-bench or the sim bench."""
    given = request.config.getoption("--device-bench", default=None)
    bench_path = Path(given) if given and not device.on_twin else write_bench(tmp_path)
    bench = Bench(load_bench(bench_path, known_drivers=set(available_drivers())), Transcript(tmp_path / "t.jsonl"),
                  {device.role: device.resource.text})
    yield bench
    for driver in bench.drivers.values():
        driver.close()  # closed, not made safe: a read-only test leaves the device as it found it


@pytest.mark.parametrize("role", [pytest.param(role, marks=pytest.mark.role(role)) for role in ROLES])
def test_driver_identifies_the_device_and_reads_it(role, device, bench_on_device):
    identity = bench_on_device.open_role(role)
    assert identity.manufacturer.strip() and identity.model.strip(), f"{role}: empty identity {identity}"
    reading = read_only_exchange(role, bench_on_device.drivers[role])
    assert all(math.isfinite(value) for value in numbers_in(reading)), f"{role}: {reading}"
    if device.on_twin:
        expected = {"source": "Chroma ATE", "load@1": "Chroma", "counter": "Advantech",
                    "attenuator@1": "Mini-Circuits", "attenuator@2": "Mini-Circuits"}
        if role in expected:
            assert identity.manufacturer.startswith(expected[role]), identity
        if role == "attenuator@1":
            assert reading == 0.0
        if role == "counter":
            assert set(reading) == {1, 2, 3} and all(count >= 0 for count in reading.values())
