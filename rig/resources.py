"""Resource addresses: where an instrument is reached, parsed when a driver is made, before anything opens.

Forms: a VISA resource name ('TCPIP0::192.0.2.10::5025::SOCKET', 'GPIB0::12::INSTR', 'ASRL/dev/ttyUSB0::INSTR'),
'tcp://host[:port]', 'http(s)://host[:port][/prefix]', 'telnet://host[:port]' and a serial device path
('/dev/ttyUSB0', 'COM3'). A resource is of one or more kinds: 'visa' (any VISA name), 'socket' (a VISA TCPIP
socket), 'serial' (a device path or a VISA ASRL name), 'tcp', 'http' (http or https) and 'telnet'. A driver
declares the kinds it accepts (`Accepts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pyvisa.rname import InvalidResourceName, parse_resource_name

from rig.errors import ConfigError

URL_KINDS = {"tcp": "tcp", "http": "http", "https": "http", "telnet": "telnet"}
WELL_KNOWN_PORTS = {"http": 80, "https": 443, "telnet": 23}
WINDOWS_PORT = re.compile(r"^COM\d+$", re.IGNORECASE)


class UnknownForm(ConfigError):
    """A resource of none of the forms (as against a malformed one)."""


@dataclass(frozen=True)
class Resource:
    """A parsed resource: `scheme` is 'visa', 'tcp', 'http', 'https', 'telnet' or 'serial'; `path` holds a URL's
    prefix or a serial device; `interface` and `resource_class` a VISA name's ('TCPIP', 'SOCKET')."""

    text: str
    scheme: str
    kinds: frozenset[str]
    host: str = ""
    port: int | None = None
    path: str = ""
    interface: str = ""
    resource_class: str = ""

    @property
    def url(self) -> str:
        """The base URL of an http(s) resource, without a trailing '/'."""
        return self.text.rstrip("/")


@dataclass(frozen=True)
class Accepts:
    """The resource kinds a driver accepts, how to say so in an error, and the port when none is given."""

    kinds: tuple[str, ...]
    says: str  # "a Modbus TCP resource is 'tcp://host:port'"
    default_port: int | None = None  # of tcp:// (http and telnet have theirs)

    def parse(self, text: str, role: str) -> Resource:
        """The role's resource, or ConfigError 'roles.<role>.resource: ...' naming what is accepted."""
        try:
            resource = parse_resource(text, role, self.default_port)
        except UnknownForm:
            resource = None
        if resource is None or not resource.kinds & set(self.kinds):
            raise ConfigError(f"roles.{role}.resource: {self.says}, got {text!r}")
        return resource


ANY_RESOURCE = Accepts(("visa", "tcp", "http", "telnet", "serial"), "a resource is a VISA name, tcp://, http(s)://, "
                                                                    "telnet:// or a serial device path")


def parse_resource(text: str, role: str, default_port: int | None = None) -> Resource:
    """Parse any resource form; ConfigError 'roles.<role>.resource: ...' if it is none or is malformed."""
    if "://" in text:
        return _url(text, role, default_port)
    if "::" in text:
        return _visa(text, role)
    if text.startswith("/") or WINDOWS_PORT.match(text):
        return Resource(text, "serial", frozenset({"serial"}), path=text)
    raise UnknownForm(f"roles.{role}.resource: {text!r} is not a VISA resource name, a tcp://, http(s):// or "
                      f"telnet:// address, nor a serial device path")


def _visa(text: str, role: str) -> Resource:
    try:
        name = parse_resource_name(text)
    except InvalidResourceName as exc:
        raise ConfigError(f"roles.{role}.resource: {exc}") from None
    interface, resource_class = str(name.interface_type).upper(), str(name.resource_class).upper()
    kinds, host, port, path = {"visa"}, getattr(name, "host_address", ""), None, ""
    if (interface, resource_class) == ("TCPIP", "SOCKET"):
        port = _port(name.port, text, role)
        kinds.add("socket")
    elif (interface, resource_class) == ("ASRL", "INSTR"):
        path = name.board
        kinds.add("serial")
    return Resource(text, "visa", frozenset(kinds), host, port, path, interface, resource_class)


def _url(text: str, role: str, default_port: int | None) -> Resource:
    scheme = text.partition("://")[0].lower()
    if scheme not in URL_KINDS:
        raise UnknownForm(f"roles.{role}.resource: scheme {scheme!r} of {text!r} is not one of "
                          f"{', '.join(URL_KINDS)}")
    parts = urlsplit(text)
    _host, colon, port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2].rpartition(":")
    port = _port(port_text, text, role) if colon else WELL_KNOWN_PORTS.get(scheme, default_port)
    if not parts.hostname:
        raise ConfigError(f"roles.{role}.resource: no host in {text!r}")
    path = parts.path.rstrip("/")
    if path and URL_KINDS[scheme] != "http":
        raise ConfigError(f"roles.{role}.resource: a {scheme}:// address is 'host[:port]', without a path; "
                          f"got {text!r}")
    return Resource(text, scheme, frozenset({URL_KINDS[scheme]}), parts.hostname, port, path)


def _port(port: str, text: str, role: str) -> int:
    if not port.isdigit():
        raise ConfigError(f"roles.{role}.resource: port {port!r} in {text!r} is not a number")
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"roles.{role}.resource: port {port} in {text!r} is outside 0..65535")
    return int(port)
