"""Who may use the twin HES's API: operators, their bearer tokens (RFC 6750) and what each role may do.

Every request carries `Authorization: Bearer <token>`. The HES knows each operator's token from the bench's
secrets of the `hes` role (`token_<operator>`, `{file: ...}` or `{env: ...}`) and each operator's role from
`settings.operators` (operator -> role); a lone `token` secret is an administrator named `operator`.
Tokens are compared in constant time (hmac.compare_digest, against every known token) and never written
anywhere: the audit log, the event log and the request log name the operator.

| role | read | recharge | command | approve | configure | audit |
|---|---|---|---|---|---|---|
| read_only | yes | | | | | |
| auditor | yes | | | | | yes |
| recharge | yes | yes | | | | |
| disconnect | yes | | yes | yes | | |
| administrator | yes | yes | yes | yes | yes | yes |

- read: GET /version, /status, /clock, /tariff, /accounts, /accounts/{id}, /alerts, /events, /commands,
  /commands/{id}, /group-commands/{id}, /fleet/meters, /fleet/metrics; POST /accounts/{id}/read (an on-demand
  meter read)
- recharge: POST /accounts/{id}/recharge, /accounts/{id}/emergency-credit
- command: POST /accounts/{id}/disconnect, /accounts/{id}/connect, /group-commands
- approve: POST /group-commands/{id}/approve, /group-commands/{id}/reject (never one's own request)
- configure: PUT /clock, PUT /tariff, PATCH /accounts/{id} (conversion date), POST /accounts/{id}/adjustment,
  POST /fleet/meters (registering fleet meters), POST /fleet/metrics/reset
- audit: GET /audit

Answers (RFC 6750 section 3): no credentials, or another scheme than Bearer: 401 with
`WWW-Authenticate: Bearer realm="<realm>"` (no error code: the client may not know that authentication is
needed); an unknown token: 401 with `error="invalid_token"`; a role without the right: 403 with
`error="insufficient_scope"` and the permission needed as `scope`.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Literal

from rig.errors import ConfigError

Role = Literal["read_only", "auditor", "recharge", "disconnect", "administrator"]
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "read_only": frozenset({"read"}),
    "auditor": frozenset({"read", "audit"}),
    "recharge": frozenset({"read", "recharge"}),
    "disconnect": frozenset({"read", "command", "approve"}),
    "administrator": frozenset({"read", "recharge", "command", "approve", "configure", "audit"}),
}
# (method, route pattern) -> (permission, action recorded in the audit log)
ROUTE_PERMISSIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/version"): ("read", "version"), ("GET", "/status"): ("read", "status"),
    ("GET", "/clock"): ("read", "clock"), ("GET", "/tariff"): ("read", "tariff"),
    ("GET", "/accounts"): ("read", "accounts"), ("GET", "/accounts/{account}"): ("read", "account"),
    ("GET", "/alerts"): ("read", "alerts"), ("GET", "/events"): ("read", "events"),
    ("GET", "/commands"): ("read", "commands"), ("GET", "/commands/{command}"): ("read", "command"),
    ("GET", "/group-commands/{group}"): ("read", "group"),
    ("POST", "/accounts/{account}/read"): ("read", "read"),
    ("POST", "/accounts/{account}/recharge"): ("recharge", "recharge"),
    ("POST", "/accounts/{account}/emergency-credit"): ("recharge", "emergency_credit"),
    ("POST", "/accounts/{account}/disconnect"): ("command", "disconnect"),
    ("POST", "/accounts/{account}/connect"): ("command", "connect"),
    ("POST", "/group-commands"): ("command", "group_command"),
    ("POST", "/group-commands/{group}/approve"): ("approve", "approve"),
    ("POST", "/group-commands/{group}/reject"): ("approve", "reject"),
    ("PUT", "/clock"): ("configure", "set_clock"), ("PUT", "/tariff"): ("configure", "set_tariff"),
    ("PATCH", "/accounts/{account}"): ("configure", "conversion"),
    ("POST", "/accounts/{account}/adjustment"): ("configure", "adjustment"),
    ("GET", "/audit"): ("audit", "audit"),
    ("GET", "/fleet/meters"): ("read", "fleet_meters"), ("GET", "/fleet/metrics"): ("read", "fleet_metrics"),
    ("POST", "/fleet/meters"): ("configure", "register_fleet_meters"),
    ("POST", "/fleet/metrics/reset"): ("configure", "reset_fleet_metrics"),
}
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 section 2.1
LONE_TOKEN_OPERATOR = "operator"


@dataclass(frozen=True)
class Operator:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


ANONYMOUS = Operator("anonymous", "administrator")  # who a request without a valid token is, where auth is off


class AuthFailure(Exception):
    """A request the HES does not serve for who sent it: 401 or 403, with its WWW-Authenticate challenge."""

    def __init__(self, status: int, message: str, challenge: str, **fields):
        super().__init__(message)
        self.status = status
        self.challenge = challenge
        self.fields = fields


def roles_with(permission: str) -> list[str]:
    return [role for role, permissions in ROLE_PERMISSIONS.items() if permission in permissions]


class Operators:
    """The operators the HES knows, by token; checks a request's Authorization header."""

    def __init__(self, where: str, roles: dict[str, str], secrets: dict[str, str], realm: str = "hes"):
        self.realm = realm
        self._tokens: list[tuple[bytes, Operator]] = []
        for name, role in roles.items():
            token = secrets.get(f"token_{name}")
            if token is None:
                raise ConfigError(f"{where}: secrets.token_{name}: operator {name!r} ({role}) has no token")
            self._add(where, f"token_{name}", token, Operator(name, role))
        if "token" in secrets:
            self._add(where, "token", secrets["token"], Operator(LONE_TOKEN_OPERATOR, "administrator"))
        strays = sorted(key for key in secrets if key.startswith("token_") and key[6:] not in roles)
        if strays:
            raise ConfigError(f"{where}: secrets.{strays[0]}: no operator {strays[0][6:]!r} in settings.operators "
                              f"(operators: {', '.join(roles) or 'none'})")

    def _add(self, where: str, secret: str, token: str, operator: Operator) -> None:
        if not B64TOKEN.fullmatch(token):
            raise ConfigError(f"{where}: secrets.{secret}: a bearer token is letters, digits and -._~+/ "
                              f"(RFC 6750 b64token); the value is not shown")
        encoded = token.encode()
        for known, other in self._tokens:
            if hmac.compare_digest(known, encoded):
                raise ConfigError(f"{where}: secrets.{secret}: operator {operator.name!r} has the same token as "
                                  f"operator {other.name!r}; each operator needs a token of their own")
        self._tokens.append((encoded, operator))

    @property
    def names(self) -> list[str]:
        return [operator.name for _, operator in self._tokens]

    @property
    def roles(self) -> list[str]:
        return [operator.role for _, operator in self._tokens]

    def challenge(self, error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
        """A WWW-Authenticate value (RFC 6750 section 3)."""
        params = [f'realm="{self.realm}"']
        if error:
            params.append(f'error="{error}"')
        if description:
            params.append(f'error_description="{description}"')
        if scope:
            params.append(f'scope="{scope}"')
        return "Bearer " + ", ".join(params)

    def identify(self, header: str | None) -> Operator | None:
        """The operator whose token the Authorization header carries; None when it carries none or an unknown one.
        Every known token is compared, in constant time, whichever matches."""
        token = bearer_token(header)
        if token is None:
            return None
        presented = token.encode()
        found = None
        for known, operator in self._tokens:
            if hmac.compare_digest(known, presented) and found is None:
                found = operator
        return found

    def authenticate(self, header: str | None) -> Operator:
        """The request's operator; AuthFailure 401 without a valid bearer token."""
        operator = self.identify(header)
        if operator is not None:
            return operator
        if bearer_token(header) is None:
            raise AuthFailure(401, "missing or wrong bearer token", self.challenge())
        raise AuthFailure(401, "missing or wrong bearer token",
                          self.challenge("invalid_token", "the bearer token is not valid"))

    def authorize(self, operator: Operator, permission: str, action: str) -> None:
        """AuthFailure 403 unless the operator's role grants the permission."""
        if not operator.may(permission):
            raise AuthFailure(403, f"operator {operator.name} ({operator.role}) may not {action}: it needs "
                              f"permission {permission!r} (roles: {', '.join(roles_with(permission))})",
                              self.challenge("insufficient_scope", f"permission {permission} needed", permission),
                              operator=operator.name, permission=permission)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 9110 11.1); None
    for no header, another scheme or an empty token."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
