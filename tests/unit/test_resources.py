"""The one parser of resource addresses, and what each driver accepts, refused with the role named."""

import pytest

from rig.config import RoleConfig
from rig.driver import SetpointLimits, driver_class
from rig.errors import ConfigError
from rig.resources import Accepts, parse_resource
from rig.transcript import Transcript


@pytest.mark.parametrize("text, scheme, kinds, host, port, path", [
    ("TCPIP0::192.0.2.10::5025::SOCKET", "visa", {"visa", "socket"}, "192.0.2.10", 5025, ""),
    ("TCPIP::192.0.2.10::INSTR", "visa", {"visa"}, "192.0.2.10", None, ""),
    ("GPIB0::12::INSTR", "visa", {"visa"}, "", None, ""),
    ("ASRL/dev/ttyUSB0::INSTR", "visa", {"visa", "serial"}, "", None, "/dev/ttyUSB0"),
    ("tcp://192.0.2.30:502", "tcp", {"tcp"}, "192.0.2.30", 502, ""),
    ("tcp://[::1]:4059", "tcp", {"tcp"}, "::1", 4059, ""),
    ("http://127.0.0.1:8080/api/v1/", "http", {"http"}, "127.0.0.1", 8080, "/api/v1"),
    ("https://hes.example/api", "https", {"http"}, "hes.example", 443, "/api"),
    ("telnet://192.0.2.40", "telnet", {"telnet"}, "192.0.2.40", 23, ""),
    ("/dev/ttyUSB2", "serial", {"serial"}, "", None, "/dev/ttyUSB2"),
    ("COM3", "serial", {"serial"}, "", None, "COM3"),
])
def test_every_form_parses_to_its_parts(text, scheme, kinds, host, port, path):
    resource = parse_resource(text, "r")
    assert (resource.scheme, resource.kinds, resource.host, resource.port, resource.path) == (
        scheme, kinds, host, port, path)


def test_a_tcp_address_without_a_port_takes_the_drivers_default():
    assert parse_resource("tcp://192.0.2.30", "r", default_port=502).port == 502
    assert parse_resource("http://127.0.0.1/", "r").url == "http://127.0.0.1"


@pytest.mark.parametrize("text, message", [
    ("TCPIP0::127.0.0.1::x::SOCKET", "roles.r.resource: port 'x' in 'TCPIP0::127.0.0.1::x::SOCKET' is not a number"),
    ("tcp://127.0.0.1:70000", "roles.r.resource: port 70000 in 'tcp://127.0.0.1:70000' is outside 0..65535"),
    ("FOO0::1::INSTR", "roles.r.resource: Could not parse FOO0::1::INSTR: unknown interface type"),
    ("http://:8080", "roles.r.resource: no host in 'http://:8080'"),
    ("telnet://127.0.0.1:23/x", "roles.r.resource: a telnet:// address is 'host[:port]', without a path"),
    ("ftp://127.0.0.1", "roles.r.resource: scheme 'ftp' of 'ftp://127.0.0.1' is not one of tcp, http, https, telnet"),
    ("ttyUSB0", "roles.r.resource: 'ttyUSB0' is not a VISA resource name"),
])
def test_a_malformed_address_names_the_role_and_what_is_wrong(text, message):
    with pytest.raises(ConfigError) as info:
        parse_resource(text, "r")
    assert str(info.value).startswith(message)


def test_a_driver_refuses_a_kind_it_does_not_reach_naming_what_it_does():
    accepts = Accepts(("tcp",), "a Modbus TCP resource is 'tcp://host:port'", default_port=502)
    assert accepts.parse("tcp://192.0.2.30", "counter").port == 502
    for text in ("TCPIP0::192.0.2.30::502::SOCKET", "ftp://192.0.2.30"):
        with pytest.raises(ConfigError) as info:
            accepts.parse(text, "counter")
        assert str(info.value) == f"roles.counter.resource: a Modbus TCP resource is 'tcp://host:port', got {text!r}"


@pytest.mark.parametrize("driver, resource, message", [
    ("chroma61500", "tcp://127.0.0.1:5025", "roles.probe.resource: a SCPI instrument is reached at a VISA resource"),
    ("scpi_reference_meter", "TCPIP0::127.0.0.1::5025::SOKET", "roles.probe.resource: Could not parse"),
    ("adam6051", "tcp://127.0.0.1:x", "roles.probe.resource: port 'x' in 'tcp://127.0.0.1:x' is not a number"),
    ("hes_http", "ftp://127.0.0.1", "roles.probe.resource: an HES resource is 'http://host:port[/prefix]'"),
    ("dlms_meter", "http://127.0.0.1", "roles.probe.resource: a DLMS meter is reached at 'tcp://host:port'"),
    ("at_modem", "tcp://127.0.0.1:1", "roles.probe.resource: a modem's AT port is a serial device path"),
])
def test_each_driver_refuses_a_malformed_address_before_opening(driver, resource, message):
    config = RoleConfig(driver=driver, resource=resource, safe={})
    with pytest.raises(ConfigError) as info:
        driver_class(driver)("probe", config, SetpointLimits(), Transcript(None))
    assert str(info.value).startswith(message)
