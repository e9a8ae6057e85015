"""Head-end system over HTTP/JSON (httpx): balances, recharges, alerts, commands, event log, clock.

API (resource = base URL, e.g. http://127.0.0.1:8080 or https://hes.example/api/v1): GET /version, /status,
/clock (PUT: local_time or offset_s), /tariff (PUT: per_kwh), /accounts, /accounts/{id} (PATCH: converted_at);
POST /accounts/{id}/read, /recharge, /adjustment, /emergency-credit, /disconnect, /connect; POST /group-commands,
GET /group-commands/{id}, /commands, /commands/{id}, /alerts, /events. An API token (secret `token`) is sent
as a bearer header and never transcripted.

Money (rig/money.py): the HES writes amounts as JSON strings with exactly two decimals ("12.30"; a number is
read too, exactly) and the tariff with two to four; they are read into `Decimal`, never float. Amounts are sent
as decimal strings in whole paise; an amount with more than two decimals, not finite or not positive where it
must be is refused before sending (the HES itself bounds recharges and balances by its policy).

Each request ends within the role's timeout_s however the HES answers (one deadline, see http_deadline); after a
request that went unanswered or garbled, the next one opens a fresh connection.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from drivers.http_deadline import DeadlineTransport, deadline
from rig import money
from rig.driver import Driver, Identity
from rig.errors import ConfigError, HeadEndError, InstrumentError, InstrumentTimeout, SetpointRefused
from rig.resources import Accepts
from rig.roles import Account, Alert, Command, Credited, EmergencyCredit, GroupCommand, HeadEnd


class HesRefused(SetpointRefused, ConfigError):
    """A request the client refuses before sending (a recharge or tariff that is not positive)."""


class HesHttpError(HeadEndError):
    """The HES answered 4xx or 5xx; carries the status and the response body."""


class HesAnswerError(InstrumentError):
    """An answer whose money is not a decimal amount."""


def money_of(value: Any, what: str) -> Decimal:
    """An amount the HES wrote ("12.30" or 12.3), exactly; HesAnswerError naming it otherwise."""
    try:
        return money.exact(value)
    except money.MoneyError as exc:
        raise HesAnswerError(f"HES answer: {what} {exc}") from None


def account_of(data: dict) -> Account:
    credit = data.get("emergency_credit") or {}
    return Account(id=str(data["account"]), balance=money_of(data["balance"], "balance"),
                   currency=str(data.get("currency", "")),
                   supply=str(data.get("supply", "")), pending_command=data.get("pending_command"),
                   emergency_credit=EmergencyCredit(str(credit.get("state", "none")),
                                                    money_of(credit.get("taken", "0.00"), "emergency_credit.taken")),
                   last_energy_wh=data.get("last_energy_wh"), disconnect_reason=data.get("disconnect_reason"),
                   raw=data)


def command_of(data: dict) -> Command:
    return Command(id=str(data["id"]), account=str(data["account"]), action=str(data["action"]),
                   origin=str(data.get("origin", "")), status=str(data["status"]),
                   attempts=int(data.get("attempts", 0)),
                   group=data.get("group"), error=data.get("error"), reason=data.get("reason"),
                   history=list(data.get("history") or []), raw=data)


def credited_of(data: dict) -> Credited:
    reconnect = data.get("reconnect")
    return Credited(account_of(data["account"]), command_of(reconnect) if reconnect else None, raw=data)


def alert_of(data: dict) -> Alert:
    return Alert(seq=int(data["seq"]), account=str(data["account"]), threshold_pct=float(data["threshold_pct"]),
                 balance=money_of(data["balance"], "alert balance"), local_time=str(data.get("local_time", "")),
                 raw=data)


class HesClient(Driver, HeadEnd):
    """A head-end system's HTTP/JSON API playing the role `hes`."""

    ACCEPTS = Accepts(("http",), "an HES resource is 'http://host:port[/prefix]'")  # no settings: the base model

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.token = self.secrets.get("token")
        if self.token:
            self.transcript.add_secret(self.token)
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
        t_sent = time.monotonic()
        try:
            with deadline(self.config.timeout_s):
                response = client.request(method, path, json=body, params=query or None)
        except httpx.TimeoutException:
            self._resync = True
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note="timeout")
            raise InstrumentTimeout(f"{self.role} ({self.address}): no answer within {self.config.timeout_s:g} s "
                                    f"to {sent!r}") from None
        except httpx.HTTPError as exc:
            self._resync = True
            self.transcript.record(self.role, sent, None, t_mono=t_sent, note=str(exc))
            raise InstrumentError(f"{self.role} ({self.address}): {sent!r} failed: {exc}") from None
        text = response.text
        self.transcript.record(self.role, sent, f"{response.status_code} {text}", t_mono=t_sent)
        if response.status_code >= 400:
            raise HesHttpError(f"{self.role} ({self.address}): {sent!r} answered {response.status_code}: {text}",
                               response.status_code, text)
        try:
            return response.json()
        except ValueError:
            self._resync = True
            raise InstrumentError(f"{self.role} ({self.address}): {sent!r} answered {response.status_code} "
                                  f"with a body that is not JSON: {text[:200]!r}") from None

    def identify(self) -> Identity:
        answer = self.request("GET", "/version")
        try:
            return Identity(str(answer["manufacturer"]), str(answer["product"]), str(answer["instance"]),
                            str(answer["version"]), raw=json.dumps(answer, sort_keys=True))
        except (KeyError, TypeError):
            raise InstrumentError(f"{self.role} ({self.address}): 'GET /version' expected manufacturer, product, "
                                  f"instance and version, got {answer!r}") from None

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
        return self.request("GET", "/status")

    def policy_name(self) -> str | None:
        """The policy GET /status names; None if the HES does not say (or has no /status)."""
        try:
            return self.status().get("policy") or None
        except HesHttpError as exc:
            if exc.status != 404:
                raise
            return None

    def accounts(self) -> list[Account]:
        return [account_of(a) for a in self.request("GET", "/accounts")]

    def account(self, account: str) -> Account:
        return account_of(self.request("GET", f"/accounts/{account}"))

    def balance(self, account: str) -> Decimal:
        return self.account(account).balance

    def read_now(self, account: str) -> Account:
        """On-demand read of the account's meter; the account as charged after it."""
        return account_of(self.request("POST", f"/accounts/{account}/read"))

    def recharge(self, account: str, amount: Decimal | int | float | str, reference: str | None = None
                 ) -> Credited:
        """Credit a recharge; the account and the reconnect it queued. Never re-sent."""
        body: dict[str, Any] = {"amount": self._money_to_send(f"recharge of account {account}:", amount)}
        if reference is not None:
            body["reference"] = reference
        return credited_of(self.request("POST", f"/accounts/{account}/recharge", body))

    def adjust_balance(self, account: str, amount: Decimal | int | float | str, reason: str) -> Account:
        """A balance adjustment outside recharges (credit > 0, debit < 0); the account after it. Never re-sent."""
        sent = self._money_to_send(f"adjustment of account {account}:", amount, positive=False)
        return account_of(self.request("POST", f"/accounts/{account}/adjustment", {"amount": sent, "reason": reason}))

    def request_emergency_credit(self, account: str) -> Credited:
        return credited_of(self.request("POST", f"/accounts/{account}/emergency-credit"))

    def set_conversion_date(self, account: str, converted_at: datetime | None) -> dict:
        """When the account was converted to prepaid (starts the policy's grace period); None: no grace."""
        value = converted_at.isoformat() if converted_at is not None else None
        return self.request("PATCH", f"/accounts/{account}", {"converted_at": value})

    def tariff(self) -> Decimal:
        return money_of(self.request("GET", "/tariff")["per_kwh"], "tariff per_kwh")

    def set_tariff(self, per_kwh: Decimal | int | float | str) -> None:
        """A new tariff: positive, at most four decimals (round a computed one with rig.money.rate_of)."""
        try:
            sent = money.rate_text(money.rate(per_kwh))
        except money.MoneyError as exc:
            raise HesRefused(f"{self.role} ({self.address}): tariff per kWh {per_kwh!r} refused: {exc}; "
                             f"nothing was sent") from None
        self.request("PUT", "/tariff", {"per_kwh": sent})

    def alerts(self, account: str | None = None) -> list[Alert]:
        return [alert_of(a) for a in self.request("GET", "/alerts", params={"account": account})]

    def events(self, since: int = 0, account: str | None = None) -> list[dict]:
        return self.request("GET", "/events", params={"since": since or None, "account": account})

    # -- commands ------------------------------------------------------------------------------------------

    def disconnect(self, account: str) -> Command:
        return command_of(self.request("POST", f"/accounts/{account}/disconnect"))

    def connect(self, account: str) -> Command:
        return command_of(self.request("POST", f"/accounts/{account}/connect"))

    def group_command(self, action: str, accounts: list[str], reason: str | None = None) -> GroupCommand:
        """A group disconnect or connect: the commands accepted and the accounts refused, with the reasons."""
        if action not in ("disconnect", "connect"):
            raise ConfigError(f"{self.role}: group action must be 'disconnect' or 'connect', got {action!r}")
        body: dict[str, Any] = {"action": action, "accounts": list(accounts)}
        if reason is not None:
            body["reason"] = reason
        return self._group_of(self.request("POST", "/group-commands", body))

    def group(self, group_id: str) -> GroupCommand:
        return self._group_of(self.request("GET", f"/group-commands/{group_id}"))

    @staticmethod
    def _group_of(data: dict) -> GroupCommand:
        return GroupCommand(str(data["id"]), [command_of(c) for c in data.get("commands", [])],
                            {r["account"]: r["reason"] for r in data.get("refused", [])}, raw=data)

    def command(self, command_id: str) -> Command:
        return command_of(self.request("GET", f"/commands/{command_id}"))

    def commands(self, account: str | None = None, group: str | None = None) -> list[Command]:
        return [command_of(c) for c in self.request("GET", "/commands", params={"account": account, "group": group})]

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
        return datetime.fromisoformat(self.request("GET", "/clock")["local_time"])

    def set_clock(self, local_time: datetime) -> datetime:
        """Set the HES clock (a naive time is taken in the HES's UTC offset); the clock as read back."""
        answer = self.request("PUT", "/clock", {"local_time": local_time.isoformat()})
        return datetime.fromisoformat(answer["local_time"])

    def set_clock_offset(self, offset_s: float) -> datetime:
        answer = self.request("PUT", "/clock", {"offset_s": offset_s})
        return datetime.fromisoformat(answer["local_time"])
