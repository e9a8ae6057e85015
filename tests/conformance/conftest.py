"""Conformance: the exchanges each device's manual or standard documents, asserted with clients the rig did
not write (raw sockets, pyserial, a second Modbus library, Gurux DLMS, curl).

Without options every test runs against the twin of benches/sim.yaml, served in this process on free loopback
ports (a fresh twin per test module). The hardware tier runs the same tests against a real instrument:

    pytest tests/conformance --device source=TCPIP0::192.0.2.10::2101::SOCKET

`--device ROLE=RESOURCE` (repeatable; ROLE as the bench names it: source, current, reference, counter, hes,
meter@1, load@1, attenuator@1, modem@1, cover@1) tests that role on the device and skips the tests of every
other role. On a device the tests are read-only: a test that changes an output or a setting
(`@pytest.mark.changes_outputs`) runs only with `--device-writes`, and a test of what only the twin can be made
to do (`@pytest.mark.twin_only`) is skipped. The driver tests (test_drivers.py) open the rig's own driver on
the device with the role's settings and secrets from `--device-bench BENCH` (default: the sim bench's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from plan_runner import write_bench
from twin_thread import TwinOnThread

from rig.config import load_bench
from rig.resources import Resource, parse_resource


def pytest_addoption(parser):
    group = parser.getgroup("conformance", "conformance against a real device (hardware tier)")
    group.addoption("--device", action="append", default=[], metavar="ROLE=RESOURCE",
                    help="test ROLE on the instrument at RESOURCE instead of the twin (repeatable)")
    group.addoption("--device-writes", action="store_true", default=False,
                    help="on a device, also run the tests that change its outputs or settings")
    group.addoption("--device-bench", default=None, metavar="BENCH",
                    help="the bench file whose role settings and secrets the driver tests use on a device "
                         "(default: benches/sim.yaml)")


def pytest_configure(config):
    config.addinivalue_line("markers", "role(name): the bench role (device) a conformance test talks to")
    config.addinivalue_line("markers", "changes_outputs: changes an output or setting; on a device only with "
                                       "--device-writes")
    config.addinivalue_line("markers", "twin_only: checks behaviour only the twin can be made to show")


def given_devices(config) -> dict[str, Resource]:
    """The --device options as role -> parsed resource; a malformed option is a usage error naming it."""
    devices = {}
    for option in config.getoption("--device", default=[]):
        role, sep, text = option.partition("=")
        if not sep or not role or not text:
            raise pytest.UsageError(f"--device {option!r}: expected ROLE=RESOURCE, e.g. "
                                    "source=TCPIP0::192.0.2.10::2101::SOCKET")
        try:
            devices[role.strip()] = parse_resource(text.strip(), role.strip())
        except Exception as exc:  # noqa: BLE001 - the parser's message names the form expected
            raise pytest.UsageError(f"--device {option!r}: {exc}") from None
    return devices


@dataclass(frozen=True)
class Device:
    """What a conformance test talks to: `resource` (parsed, as the bench would give it), `on_twin` and whether
    it may change outputs. `host`/`port` for socket devices, `path` for a serial device or a pty."""

    role: str
    resource: Resource
    on_twin: bool
    writes_allowed: bool

    @property
    def host(self) -> str:
        return self.resource.host

    @property
    def port(self) -> int:
        if self.resource.port is None:
            raise AssertionError(f"{self.role}: {self.resource.text} names no port")
        return self.resource.port

    @property
    def path(self) -> str:
        return self.resource.path or self.resource.text


def pytest_collection_modifyitems(config, items):
    devices = given_devices(config)
    if not devices:
        return
    writes = config.getoption("--device-writes", default=False)
    for item in items:
        if "conformance" not in item.path.parts:
            continue
        marker = item.get_closest_marker("role")
        role = marker.args[0] if marker else None
        if role not in devices:
            item.add_marker(pytest.mark.skip(reason=f"no --device for role {role}; only {sorted(devices)} tested"))
        elif item.get_closest_marker("twin_only"):
            item.add_marker(pytest.mark.skip(reason="checks behaviour only the twin can be made to show"))
        elif item.get_closest_marker("changes_outputs") and not writes:
            item.add_marker(pytest.mark.skip(reason="changes the device's outputs: give --device-writes"))


class ConformanceTwin(TwinOnThread):
    """The sim bench's twin for one test module, on free loopback ports."""

    def __init__(self, folder: Path):
        self.truth_path = folder / "truth.jsonl"
        self.bench_file = load_bench(write_bench(folder))
        self.start_twin(self.bench_file, self.truth_path)


@pytest.fixture(scope="module")
def conformance_twin(request, tmp_path_factory):
    twin = ConformanceTwin(tmp_path_factory.mktemp("conformance-twin"))
    yield twin
    twin.stop_twin()


@pytest.fixture
def device(request) -> Device:
    """The device of the test's `role` marker: the one given with --device, else the module's twin."""
    marker = request.node.get_closest_marker("role")
    if marker is None:
        raise AssertionError(f"{request.node.nodeid}: a conformance test names its device with @pytest.mark.role")
    role = marker.args[0]
    devices = given_devices(request.config)
    if role in devices:
        writes = request.config.getoption("--device-writes", default=False)
        return Device(role, devices[role], on_twin=False, writes_allowed=writes)
    twin = request.getfixturevalue("conformance_twin")
    return Device(role, parse_resource(twin.resources[role], role), on_twin=True, writes_allowed=True)


@pytest.fixture
def twin_model(request, device):
    """The twin's physical model, to set up a state before an exchange; only on the twin."""
    if not device.on_twin:
        pytest.skip("needs the twin's model")
    return request.getfixturevalue("conformance_twin")
