"""Head-end system over HTTP/JSON (httpx): balances, recharges, alerts, commands, event log, clock.

API (resource = base URL, e.g. http://127.0.0.1:8080 or https://hes.example/api/v1): GET /version, /status,
/clock (PUT: local_time or offset_s), /tariff (PUT: per_kwh), /accounts, /accounts/{id} (PATCH: converted_at);
POST /accounts/{id}/read, /recharge, /adjustment, /emergency-credit, /disconnect, /connect; POST /group-commands,
GET /group-commands/{id}, POST /group-commands/{id}/approve and /reject, GET /commands, /commands/{id}, /alerts,
/events, /audit; a fleet head end also POST and GET /fleet/meters (registered in batches of FLEET_BATCH, listed a
page at a time), GET /fleet/metrics, POST /fleet/metrics/reset, and names its push port in GET /status.

Authentication: every request carries the bearer token (RFC 6750) of the operator the rig acts as: setting
`operator` names it and its token is the secret `token_<operator>` (without `operator`: the secret `token`).
Setting `operators` (operator -> HES role: read_only, auditor, recharge, disconnect, administrator) lists every
operator the bench holds a token for; `as_operator(name)`, `as_role(role)`, `without_token()` and
`with_unknown_token()` give a client acting as another (a second approver, a read-only operator, a probe).
Tokens are never transcripted nor put in an error message; a 401 or 403 says which operator was refused.

Money (rig/money.py): the HES writes amounts as JSON strings with exactly two decimals ("12.30"; a number is
read too, exactly) and the tariff with two to four; they are read into `Decimal`, never float. Amounts are sent
as decimal strings in whole paise; an amount with more than two decimals, not finite or not positive where it
must be is refused before sending (the HES itself bounds recharges and balances by its policy).

Each request ends within the role's timeout_s however the HES answers (one deadline, see http_deadline); after a
request that went unanswered or garbled, the next one opens a fresh connection.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import httpx

from drivers.http_deadline import MAX_ANSWER_BYTES, DeadlineTransport, deadline
from rig import money
from rig.config import DriverSettings
from rig.driver import Driver, Identity
from rig.errors import ConfigError, HeadEndError, InstrumentError, InstrumentTimeout, SetpointRefused
from rig.resources import Accepts
from rig.roles import Account, Alert, AuditEntry, Command, Credited, EmergencyCredit, GroupCommand, HeadEnd
from rig.roles.headend import FleetMeterSpec


class HesRefused(SetpointRefused, ConfigError):
    """A request the client refuses before sending (a recharge or tariff that is not positive)."""


class HesHttpError(HeadEndError):
    """The HES answered 4xx or 5xx; carries the status and the response body."""


class HesAnswerError(InstrumentError):
    """An answer of the wrong shape: not JSON, a field missing or of the wrong type, money that is not a decimal
    amount. The message names the request, the field and what it held."""


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist, _SHOWN.maxdict = 2, 60, 60, 4, 4
_MISSING = object()
T = TypeVar("T")
_INTEGER_TEXT = re.compile(r"-?\d{1,18}")
FLEET_BATCH = 2000  # fleet meters per POST /fleet/meters
FLEET_PAGE = 1000  # fleet meters per GET /fleet/meters
LISTS_ANSWER_BYTES = 64 << 20  # answers that grow with a fleet: lists, group commands, fleet pages
LISTING_PATHS = ("/accounts", "/commands", "/group-commands", "/events", "/alerts", "/audit", "/fleet/")
SENT_SHOWN = 400  # characters of a request shown in an error message


def shown(value: Any) -> str:
    """A short repr of what an answer held (however long or deeply nested)."""
    return _SHOWN.repr(value)


def money_of(value: Any, what: str) -> Decimal:
    """An amount the HES wrote ("12.30" or 12.3), exactly; HesAnswerError naming it otherwise."""
    try:
        return money.exact(value)
    except money.MoneyError as exc:
        raise HesAnswerError(f"{what} {exc}") from None


def answer_json(content: bytes, what: str) -> Any:
    """The decoded JSON of an answer's body; HesAnswerError when it is not JSON or is nested deeper than the
    decoder recurses."""
    try:
        return json.loads(content)
    except ValueError:
        raise HesAnswerError(f"{what} with a body that is not JSON: {content[:200].decode('utf-8', 'replace')!r}"
                             ) from None
    except RecursionError:
        raise HesAnswerError(f"{what} with JSON nested too deeply to decode") from None


class AnswerFields:
    """One JSON object of an HES answer, read field by field; HesAnswerError naming the answer (`what`) and the
    field (`prefix` + name) when a field is missing or of the wrong type."""

    def __init__(self, data: Any, what: str, prefix: str = ""):
        if not isinstance(data, dict):
            place = f"{prefix.rstrip('.')} is" if prefix else "answered"
            raise HesAnswerError(f"{what}: {place} {shown(data)}, expected a JSON object")
        self.data, self.what, self.prefix = data, what, prefix

    def wrong(self, name: str, value: Any, expected: str) -> HesAnswerError:
        return HesAnswerError(f"{self.what}: {self.prefix}{name} is {shown(value)}, expected {expected}")

    def value(self, name: str, default: Any = _MISSING) -> Any:
        """The field; its default when absent or null (a required field has none)."""
        value = self.data.get(name)
        if value is not None:
            return value
        if default is _MISSING:
            raise HesAnswerError(f"{self.what}: {self.prefix}{name} is {'null' if name in self.data else 'missing'}")
        return default

    def text(self, name: str, default: Any = _MISSING) -> Any:
        """A string (an integer is taken as its digits); default (may be None) when absent or null."""
        value = self.value(name, default)
        if isinstance(value, str) or value is default:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise self.wrong(name, value, "a string")

    def integer(self, name: str, default: Any = _MISSING) -> int:
        """An integer (or its digits as a string); default (may be None) when absent or null."""
        value = self.value(name, default)
        if value is default or isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
            return int(value)
        raise self.wrong(name, value, "an integer")

    def number(self, name: str, default: Any = _MISSING) -> float | None:
        """A finite number (or its decimal text) as a float; default (may be None) when absent or null."""
        value = self.value(name, default)
        if value is default:
            return value
        try:
            number = float(money.exact(value))
        except (money.MoneyError, ArithmeticError):
            number = math.inf
        if not math.isfinite(number):
            raise self.wrong(name, value, "a finite number")
        return number

    def money(self, name: str, default: Any = _MISSING) -> Decimal:
        return money_of(self.value(name, default), f"{self.what}: {self.prefix}{name}")

    def items(self, name: str) -> list:
        """A list (absent or null: empty)."""
        value = self.value(name, [])
        if not isinstance(value, list):
            raise self.wrong(name, value, "a list")
        return value

    def texts(self, name: str) -> list[str]:
        values = self.items(name)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self.wrong(f"{name}[{index}]", value, "a string")
        return values

    def objects(self, name: str) -> list[AnswerFields]:
        return [AnswerFields(item, self.what, f"{self.prefix}{name}[{index}].")
                for index, item in enumerate(self.items(name))]

    def object(self, name: str) -> AnswerFields:
        return AnswerFields(self.value(name), self.what, f"{self.prefix}{name}.")

    def reasons(self, name: str) -> dict[str, str]:
        """{account: reason} of a list of {"account", "reason"} objects."""
        return {item.text("account"): item.text("reason") for item in self.objects(name)}


def listed(answer: Any, what: str) -> list:
    """An answer that must be a JSON array."""
    if not isinstance(answer, list):
        raise HesAnswerError(f"{what}: answered {shown(answer)}, expected a JSON array")
    return answer


def account_of(data: Any, what: str = "HES account", prefix: str = "") -> Account:
    fields = AnswerFields(data, what, prefix)
    credit = fields.object("emergency_credit") if fields.data.get("emergency_credit") else None
    return Account(id=fields.text("account"), balance=fields.money("balance"), currency=fields.text("currency", ""),
                   supply=fields.text("supply", ""), pending_command=fields.text("pending_command", None),
                   emergency_credit=EmergencyCredit(credit.text("state", "none") if credit else "none",
                                                    credit.money("taken", "0.00") if credit else money.ZERO),
                   last_energy_wh=fields.number("last_energy_wh", None),
                   disconnect_reason=fields.text("disconnect_reason", None), raw=data)


def command_of(data: Any, what: str = "HES command", prefix: str = "") -> Command:
    fields = AnswerFields(data, what, prefix)
    return Command(id=fields.text("id"), account=fields.text("account"), action=fields.text("action"),
                   origin=fields.text("origin", ""), status=fields.text("status"),
                   attempts=fields.integer("attempts", 0), group=fields.text("group", None),
                   error=fields.text("error", None), reason=fields.text("reason", None),
                   history=[entry.data for entry in fields.objects("history")], raw=data)


def credited_of(data: Any, what: str = "HES recharge", prefix: str = "") -> Credited:
    fields = AnswerFields(data, what, prefix)
    reconnect = fields.data.get("reconnect")
    return Credited(account_of(fields.value("account"), what, f"{prefix}account."),
                    command_of(reconnect, what, f"{prefix}reconnect.") if reconnect is not None else None, raw=data)


def alert_of(data: Any, what: str = "HES alert", prefix: str = "") -> Alert:
    fields = AnswerFields(data, what, prefix)
    return Alert(seq=fields.integer("seq"), account=fields.text("account"),
                 threshold_pct=fields.number("threshold_pct"), balance=fields.money("balance"),
                 local_time=fields.text("local_time", ""), raw=data)


HesRole = Literal["read_only", "auditor", "recharge", "disconnect", "administrator"]


class HesSettings(DriverSettings):
    operator: str | None = None  # the operator the rig acts as; its token is the secret token_<operator>
    operators: dict[str, HesRole] = {}  # every operator the bench holds a token for, with its HES role


def group_of(data: Any, what: str = "HES group command", prefix: str = "") -> GroupCommand:
    fields = AnswerFields(data, what, prefix)
    return GroupCommand(fields.text("id"),
                        [command_of(item, what, f"{prefix}commands[{index}].")
                         for index, item in enumerate(fields.items("commands"))],
                        fields.reasons("refused"), status=fields.text("status", "accepted"),
                        requested_by=fields.text("requested_by", None), approved_by=fields.text("approved_by", None),
                        held=fields.texts("held"), skipped=fields.reasons("skipped"), raw=data)


def audit_entry_of(data: Any, what: str = "HES audit entry", prefix: str = "") -> AuditEntry:
    fields = AnswerFields(data, what, prefix)
    return AuditEntry(seq=fields.integer("seq"), local_time=fields.text("local_time", ""),
                      operator=fields.text("operator", None), action=fields.text("action", ""),
                      accounts=fields.texts("accounts"), outcome=fields.text("outcome"),
                      status=fields.integer("status"), raw=data)


def each(parse: Callable[..., T]) -> Callable[[Any, str], list[T]]:
    """A parser of a JSON array whose items `parse` reads (their fields named by index: [2].balance)."""
    def parse_each(answer: Any, what: str) -> list[T]:
        return [parse(item, what, f"[{index}].") for index, item in enumerate(listed(answer, what))]
    return parse_each


def json_object(data: Any, what: str, prefix: str = "") -> dict:
    """An answer (or an item of one) that must be a JSON object, as it is."""
    return AnswerFields(data, what, prefix).data


def local_time_of(data: Any, what: str = "HES clock", prefix: str = "") -> datetime:
    """The local_time of a clock answer, as an ISO 8601 time."""
    fields = AnswerFields(data, what, prefix)
    value = fields.text("local_time")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise fields.wrong("local_time", value, "an ISO 8601 time") from None


class HesClient(Driver, HeadEnd):
    """A head-end system's HTTP/JSON API playing the role `hes`."""

    ACCEPTS = Accepts(("http",), "an HES resource is 'http://host:port[/prefix]'")
    SETTINGS_MODEL = HesSettings

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings: HesSettings = self.settings
        for name in settings.operators:
            if f"token_{name}" not in self.secrets:
                raise ConfigError(f"roles.{self.role}.secrets.token_{name}: required: the token of operator {name!r} "
                                  f"(settings.operators)")
        if settings.operator is not None and settings.operator not in settings.operators:
            raise ConfigError(f"roles.{self.role}.settings.operator: {settings.operator!r} is not in "
                              f"settings.operators ({', '.join(settings.operators) or 'none'})")
        self.operator = settings.operator
        self.token = self.secrets.get(f"token_{self.operator}" if self.operator else "token")
        self._tokens = [value for key, value in self.secrets.items() if key == "token" or key.startswith("token_")]
        for token in self._tokens:
            self.transcript.add_secret(token)
        self._acting_as: str | None = None
        self.client: httpx.Client | None = None
        self._resync = False  # the last request went unanswered or garbled: reconnect before the next
        self._exchange_lock = threading.RLock()

    def open(self) -> None:
        self.client = self._new_client()
        self._resync = False
        self.transcript.record(self.role, None, None, note=f"opened {self.address}")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _new_client(self) -> httpx.Client:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return httpx.Client(base_url=self.address, headers=headers, timeout=self.config.timeout_s,
                            transport=DeadlineTransport())

    def _reconnect(self) -> None:
        """A fresh client and connection: whatever the HES still sends on the old one is never read."""
        self.close()
        self.client = self._new_client()
        self._resync = False
        self.transcript.record(self.role, None, None,
                               note=f"reconnected to {self.address} after an unanswered or garbled exchange")

    def make_safe(self) -> list[str]:
        return ["hes: nothing physical to switch"]

    def __enter__(self) -> HesClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- operators -----------------------------------------------------------------------------------------

    @property
    def acting_as(self) -> str:
        """Who the requests are sent as, in words (never the token)."""
        if self._acting_as is not None:
            return self._acting_as
        if self.token is None:
            return "without a token"
        return f"as operator {self.operator}" if self.operator else "with the bench's token (secret token)"

    def _acting(self, operator: str | None, token: str | None, described: str | None = None) -> HesClient:
        """A client of the same head end sending `token` (opened; close it, or use it in a with block)."""
        client = type(self)(self.role, self.config, self.limits, self.transcript, self.secrets)
        client.operator, client.token, client._acting_as = operator, token, described
        if token is not None and token not in client._tokens:
            client._tokens.append(token)
            self.transcript.add_secret(token)
        client.open()
        return client

    def operators(self) -> dict[str, str]:
        return dict(self.settings.operators)

    def as_operator(self, name: str) -> HesClient:
        if name not in self.settings.operators:
            raise ConfigError(f"roles.{self.role}.settings.operators: no operator {name!r} (operators: "
                              f"{', '.join(self.settings.operators) or 'none'})")
        return self._acting(name, self.secrets[f"token_{name}"])

    def as_role(self, role: str, other_than: str | None = None) -> HesClient:
        for name, held in self.settings.operators.items():
            if held == role and name != other_than:
                return self.as_operator(name)
        others = f" other than {other_than}" if other_than else ""
        raise ConfigError(f"roles.{self.role}.settings.operators: no operator{others} with HES role {role!r} "
                          f"(operators: {self.settings.operators or 'none'})")

    def without_token(self) -> HesClient:
        return self._acting(None, None)

    def with_unknown_token(self) -> HesClient:
        return self._acting(None, secrets.token_urlsafe(32), "with a token the head end was not given")

    # -- exchanges -----------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
        """One request; the decoded JSON answer, or InstrumentError naming role, address and what was sent. Positions
        running together share the head end: requests go in parallel (httpx's pool), a reconnect one at a time."""
        with self._exchange_lock:
            if self.client is None:
                raise InstrumentError(f"{self.role} ({self.address}): not open")
            if self._resync:
                self._reconnect()
            client = self.client
        return self._request(client, method, path, body, params)

    def _request(self, client: httpx.Client, method: str, path: str, body: dict | None, params: dict | None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = path + (f"?{httpx.QueryParams(query)}" if query else "")
        sent = f"{method} {target}" + (f" {json.dumps(body, separators=(',', ':'))}" if body is not None else "")
        shown_sent = sent if len(sent) <= SENT_SHOWN else f"{sent[:SENT_SHOWN]}... ({len(sent)} characters)"
        t_sent = time.monotonic()
        try:
            cap = LISTS_ANSWER_BYTES if path.startswith(LISTING_PATHS) else MAX_ANSWER_BYTES
            with deadline(self.config.timeout_s, cap):
                response = client.request(method, path, json=body, params=query or None)
        except httpx.TimeoutException:
            self._resync = True
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note="timeout")
            raise InstrumentTimeout(f"{self.role} ({self.address}): no answer within {self.config.timeout_s:g} s "
                                    f"to {shown_sent!r}") from None
        except httpx.HTTPError as exc:
            self._resync = True
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note=str(exc))
            raise InstrumentError(f"{self.role} ({self.address}): {shown_sent!r} failed: {exc}") from None
        text = response.text
        self.transcript.record(self.role, sent, f"{response.status_code} {text}", t_mono=t_sent)
        if response.status_code >= 400:
            raise self._refusal(shown_sent, response.status_code, self._redacted(text))
        try:
            return answer_json(response.content, f"{self.role} ({self.address}): {shown_sent!r} answered "
                                                 f"{response.status_code}")
        except HesAnswerError as exc:
            self._resync = True
            raise HesAnswerError(self._redacted(str(exc))) from None

    def _ask(self, parse: Callable[[Any, str], T], method: str, path: str, body: dict | None = None,
             params: dict | None = None) -> T:
        """One request and its answer as `parse` reads it; an answer of the wrong shape is a HesAnswerError naming
        role, address, request and field (never a token)."""
        answer = self.request(method, path, body, params)
        try:
            return parse(answer, f"{self.role} ({self.address}): {method} {path} answer")
        except HesAnswerError as exc:
            raise HesAnswerError(self._redacted(str(exc))) from None

    def _redacted(self, text: str) -> str:
        for token in self._tokens:
            text = text.replace(token, "***")
        return text

    def _refusal(self, sent: str, status: int, text: str) -> HesHttpError:
        """The error for a 4xx or 5xx answer; a 401 or 403 says who was refused (never the token)."""
        why = {401: f"not authenticated {self.acting_as}", 403: f"not allowed {self.acting_as}"}.get(status)
        said = f" ({why})" if why else ""
        return HesHttpError(f"{self.role} ({self.address}): {sent!r} answered {status}{said}: {text}", status, text)

    def identify(self) -> Identity:
        def identity(answer: Any, what: str) -> Identity:
            fields = AnswerFields(answer, what)
            names = ("manufacturer", "product", "instance", "version")
            try:
                raw = json.dumps(answer, sort_keys=True)
            except RecursionError:
                raise HesAnswerError(f"{what}: nested too deeply to write back") from None
            return Identity(*(fields.text(name) for name in names), raw=raw)
        return self._ask(identity, "GET", "/version")

    def _money_to_send(self, what: str, value: Any, positive: bool = True) -> str:
        """An amount as sent ("12.30"); HesRefused (nothing sent) unless finite, in whole paise and positive
        (non-zero when not `positive`)."""
        try:
            return money.text(money.amount(value, positive=positive, nonzero=True))
        except money.MoneyError as exc:
            raise HesRefused(f"{self.role} ({self.address}): {what} {value!r} refused: {exc}; nothing was sent"
                             ) from None

    # -- accounts and money --------------------------------------------------------------------------------

    def status(self) -> dict:
        return self._ask(json_object, "GET", "/status")

    def policy_name(self) -> str | None:
        """The policy GET /status names; None if the HES does not say (or has no /status)."""
        try:
            return self._ask(lambda answer, what: AnswerFields(answer, what).text("policy", None) or None,
                             "GET", "/status")
        except HesHttpError as exc:
            if exc.status != 404:
                raise
            return None

    def accounts(self) -> list[Account]:
        return self._ask(each(account_of), "GET", "/accounts")

    def account(self, account: str) -> Account:
        return self._ask(account_of, "GET", f"/accounts/{account}")

    def balance(self, account: str) -> Decimal:
        return self.account(account).balance

    def read_now(self, account: str) -> Account:
        """On-demand read of the account's meter; the account as charged after it."""
        return self._ask(account_of, "POST", f"/accounts/{account}/read")

    def recharge(self, account: str, amount: Decimal | int | float | str, reference: str | None = None
                 ) -> Credited:
        """Credit a recharge; the account and the reconnect it queued. Never re-sent."""
        body: dict[str, Any] = {"amount": self._money_to_send(f"recharge of account {account}:", amount)}
        if reference is not None:
            body["reference"] = reference
        return self._ask(credited_of, "POST", f"/accounts/{account}/recharge", body)

    def adjust_balance(self, account: str, amount: Decimal | int | float | str, reason: str) -> Account:
        """A balance adjustment outside recharges (credit > 0, debit < 0); the account after it. Never re-sent."""
        sent = self._money_to_send(f"adjustment of account {account}:", amount, positive=False)
        return self._ask(account_of, "POST", f"/accounts/{account}/adjustment", {"amount": sent, "reason": reason})

    def request_emergency_credit(self, account: str) -> Credited:
        return self._ask(credited_of, "POST", f"/accounts/{account}/emergency-credit")

    def set_conversion_date(self, account: str, converted_at: datetime | None) -> dict:
        """When the account was converted to prepaid (starts the policy's grace period); None: no grace."""
        value = converted_at.isoformat() if converted_at is not None else None
        return self._ask(json_object, "PATCH", f"/accounts/{account}", {"converted_at": value})

    def tariff(self) -> Decimal:
        return self._ask(lambda answer, what: AnswerFields(answer, what).money("per_kwh"), "GET", "/tariff")

    def set_tariff(self, per_kwh: Decimal | int | float | str) -> None:
        """A new tariff: positive, at most four decimals (round a computed one with rig.money.rate_of)."""
        try:
            sent = money.rate_text(money.rate(per_kwh))
        except money.MoneyError as exc:
            raise HesRefused(f"{self.role} ({self.address}): tariff per kWh {per_kwh!r} refused: {exc}; "
                             f"nothing was sent") from None
        self.request("PUT", "/tariff", {"per_kwh": sent})

    def alerts(self, account: str | None = None) -> list[Alert]:
        return self._ask(each(alert_of), "GET", "/alerts", params={"account": account})

    def events(self, since: int = 0, account: str | None = None) -> list[dict]:
        return self._ask(each(json_object), "GET", "/events",
                         params={"since": since or None, "account": account})

    # -- commands ------------------------------------------------------------------------------------------

    def disconnect(self, account: str) -> Command:
        return self._ask(command_of, "POST", f"/accounts/{account}/disconnect")

    def connect(self, account: str) -> Command:
        return self._ask(command_of, "POST", f"/accounts/{account}/connect")

    def group_command(self, action: str, accounts: list[str], reason: str | None = None) -> GroupCommand:
        """A group disconnect or connect: the commands accepted and the accounts refused, with the reasons."""
        if action not in ("disconnect", "connect"):
            raise ConfigError(f"{self.role}: group action must be 'disconnect' or 'connect', got {action!r}")
        body: dict[str, Any] = {"action": action, "accounts": list(accounts)}
        if reason is not None:
            body["reason"] = reason
        return self._ask(group_of, "POST", "/group-commands", body)

    def group(self, group_id: str) -> GroupCommand:
        return self._ask(group_of, "GET", f"/group-commands/{group_id}")

    def approve_group(self, group_id: str) -> GroupCommand:
        """Approve a group command awaiting a second operator (as this client's operator); never re-sent."""
        return self._ask(group_of, "POST", f"/group-commands/{group_id}/approve")

    def reject_group(self, group_id: str) -> GroupCommand:
        return self._ask(group_of, "POST", f"/group-commands/{group_id}/reject")

    def approval_above_meters(self) -> int | None:
        """The largest group disconnect the head end runs without a second approver, if it says (GET /status)."""
        return self._ask(lambda answer, what: AnswerFields(answer, what).integer("approval_above_meters", None),
                         "GET", "/status")

    def audit(self, operator: str | None = None, action: str | None = None, account: str | None = None,
              outcome: str | None = None, since: int = 0) -> list[AuditEntry]:
        params = {"operator": operator, "action": action, "account": account, "outcome": outcome,
                  "since": since or None}
        return self._ask(each(audit_entry_of), "GET", "/audit", params=params)

    def command(self, command_id: str) -> Command:
        return self._ask(command_of, "GET", f"/commands/{command_id}")

    def commands(self, account: str | None = None, group: str | None = None) -> list[Command]:
        return self._ask(each(command_of), "GET", "/commands", params={"account": account, "group": group})

    def wait_for_command(self, command_id: str, timeout_s: float, poll_s: float = 0.1) -> Command:
        """Poll until the command is executed, failed or cancelled; InstrumentTimeout says what was last seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            command = self.command(command_id)
            if command.settled:
                return command
            if time.monotonic() >= deadline:
                raise InstrumentTimeout(f"{self.role} ({self.address}): command {command_id} not settled "
                                        f"within {timeout_s:g} s; last status {command.status!r}")
            time.sleep(poll_s)

    # -- clock ---------------------------------------------------------------------------------------------

    def clock(self) -> datetime:
        return self._ask(local_time_of, "GET", "/clock")

    def set_clock(self, local_time: datetime) -> datetime:
        """Set the HES clock (a naive time is taken in the HES's UTC offset); the clock as read back."""
        return self._ask(local_time_of, "PUT", "/clock", {"local_time": local_time.isoformat()})

    def set_clock_offset(self, offset_s: float) -> datetime:
        return self._ask(local_time_of, "PUT", "/clock", {"offset_s": offset_s})

    # -- fleet ---------------------------------------------------------------------------------------------

    def register_fleet_meters(self, meters: list[FleetMeterSpec]) -> int:
        """Register fleet meters in batches of FLEET_BATCH; how many were registered. A batch the head end refuses
        raises (those before it stay registered). Never re-sent."""
        registered = 0
        for start in range(0, len(meters), FLEET_BATCH):
            body = {"meters": [self._fleet_meter_body(meter) for meter in meters[start:start + FLEET_BATCH]]}
            registered += self._ask(lambda answer, what: AnswerFields(answer, what).integer("registered"),
                                    "POST", "/fleet/meters", body)
        return registered

    def _fleet_meter_body(self, meter: FleetMeterSpec) -> dict:
        body: dict[str, Any] = {"serial": meter.serial, "endpoint": meter.endpoint}
        if meter.balance is not None:
            try:
                body["balance"] = money.text(money.amount(meter.balance))
            except money.MoneyError as exc:
                raise HesRefused(f"{self.role} ({self.address}): opening balance of fleet meter {meter.serial} "
                                 f"{meter.balance!r} refused: {exc}; nothing was sent") from None
        body.update({key: value for key, value in (("group", meter.group), ("feeder", meter.feeder)) if value})
        return body

    def fleet_meters(self, group: str | None = None, feeder: str | None = None,
                     reachable: bool | None = None) -> list[dict]:
        """Every fleet meter the head end holds (filtered), read a page at a time."""
        params: dict[str, Any] = {"group": group, "feeder": feeder, "limit": FLEET_PAGE,
                                  "reachable": None if reachable is None else str(reachable).lower()}
        meters: list[dict] = []
        while True:
            page = self._ask(json_object, "GET", "/fleet/meters", params={**params, "offset": len(meters)})
            fields = AnswerFields(page, f"{self.role} ({self.address}): GET /fleet/meters answer")
            items = [json_object(item, fields.what, f"meters[{index}].")
                     for index, item in enumerate(fields.items("meters"))]
            meters += items
            if not items or len(meters) >= fields.integer("total"):
                return meters

    def fleet_metrics(self) -> dict:
        return self._ask(json_object, "GET", "/fleet/metrics")

    def reset_fleet_metrics(self) -> dict:
        return self._ask(json_object, "POST", "/fleet/metrics/reset")

    def push_endpoint(self) -> tuple[str, int] | None:
        """(host, port) of the head end's push listener, from GET /status push_port and this client's host."""
        port = self._ask(lambda answer, what: AnswerFields(answer, what).integer("push_port", None), "GET", "/status")
        return (httpx.URL(self.address).host, port) if port is not None else None

