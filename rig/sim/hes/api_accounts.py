"""The HES API's account routes: balances, the HES's view of supply, on-demand reads, recharges, adjustments,
emergency credit and the conversion date that starts a grace period."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp import web

from rig import money
from rig.sim.hes.api_base import (
    AUDIT,
    OPERATOR,
    Adjustment,
    ApiError,
    Conversion,
    NoFields,
    Recharge,
    account_of,
    body_of,
    field_error,
    iso_time,
    json_answer,
)
from rig.sim.hes.engine import MeterReadFailed, PrepaidEngine


def _outcome_seen(task: asyncio.Task) -> None:
    """Take a finished task's outcome, so that a read failing after its caller stopped waiting (a 'read_failed'
    event already) is not reported again as an exception nobody retrieved."""
    if not task.cancelled():
        task.exception()


class AccountRoutes:
    """GET /accounts, GET and PATCH /accounts/{account}, POST /accounts/{account}/read, .../recharge,
    .../adjustment and .../emergency-credit."""

    def __init__(self, engine: PrepaidEngine, read_deadline_s: float):
        self.engine = engine
        self.read_deadline_s = read_deadline_s

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/accounts", self._accounts), web.get("/accounts/{account}", self._account),
                web.patch("/accounts/{account}", self._patch_account),
                web.post("/accounts/{account}/read", self._read),
                web.post("/accounts/{account}/recharge", self._recharge),
                web.post("/accounts/{account}/adjustment", self._adjustment),
                web.post("/accounts/{account}/emergency-credit", self._emergency_credit)]

    async def _accounts(self, _request: web.Request) -> web.Response:
        return json_answer([self.engine.account_json(a) for a in self.engine.accounts.values()])

    async def _account(self, request: web.Request) -> web.Response:
        return json_answer(self.engine.account_json(account_of(self.engine, request)))

    async def _patch_account(self, request: web.Request) -> web.Response:
        account = account_of(self.engine, request)
        converted = (await body_of(request, Conversion)).converted_at
        when = iso_time("converted_at", converted) if converted is not None else None
        account.state = replace(account.state, grace_until=self.engine.policy.grace_until(when))
        self.engine.record("grace", account=account.state.account_id, converted_at=converted,
                           grace_until=self.engine.iso(account.state.grace_until))
        self.engine.evaluate(account)
        return json_answer(self.engine.account_json(account))

    async def _read(self, request: web.Request) -> web.Response:
        """200 with the account charged by a fresh reading; 502 when the meter could not be read, 504 when no
        reading came within read_deadline_s (the read goes on and charges the account if it comes)."""
        account = account_of(self.engine, request)
        await body_of(request, NoFields)
        account_id = account.state.account_id
        read = self.engine.spawn(self.engine.read_account(account))
        done, _ = await asyncio.wait({read}, timeout=self.read_deadline_s)
        if not done:
            read.add_done_callback(_outcome_seen)
            cause = f"no reading within {self.read_deadline_s:g} s"
            self.engine.record("read_timeout", account=account_id, deadline_s=self.read_deadline_s)
            raise ApiError(504, f"account {account_id}: the meter was not read: {cause}", account=account_id,
                           cause=cause)
        failure = read.exception()
        if isinstance(failure, MeterReadFailed):
            raise ApiError(502, f"account {account_id}: the meter was not read: {failure}", account=account_id,
                           cause=str(failure))
        if failure is not None:
            raise failure
        self.engine.evaluate(account)
        return json_answer(self.engine.account_json(account))

    async def _recharge(self, request: web.Request) -> web.Response:
        """A recharge in (0, max_recharge], whole paise; 422 naming 'amount' otherwise (nothing credited)."""
        account = account_of(self.engine, request)
        body = await body_of(request, Recharge)
        amount, reference = body.amount, body.reference
        try:
            credited = self.engine.policy.recharge(account.state, amount)
        except (money.MoneyError, ArithmeticError) as exc:  # an exponent beyond decimal arithmetic too
            raise field_error("amount", f"account {account.state.account_id}: {exc}") from None
        if reference is not None and reference in account.recharge_refs:
            raise ApiError(409, f"account {account.state.account_id}: recharge {reference!r} was already credited")
        if reference is not None:
            account.recharge_refs.add(reference)
        account.state = credited
        self.engine.record("recharge", account=account.state.account_id, amount=amount, reference=reference,
                           balance=account.state.balance, arrears=account.state.arrears,
                           by=request[OPERATOR].name)
        request[AUDIT].detail = {"amount": money.text(amount), "reference": reference,
                                   "balance": money.text(account.state.balance)}
        reconnect = None
        if account.state.balance > 0 and account.supply == "disconnected" and not account.in_flight:
            reconnect = self.engine.queue(account, "connect", "recharge")
        self.engine.evaluate(account)
        return json_answer({"account": self.engine.account_json(account),
                                  "reconnect": reconnect.as_json() if reconnect else None})

    async def _adjustment(self, request: web.Request) -> web.Response:
        account = account_of(self.engine, request)
        body = await body_of(request, Adjustment)
        amount = body.amount
        state = account.state
        try:
            account.state = self.engine.policy.adjust(state, amount)
        except (money.MoneyError, ArithmeticError) as exc:  # an exponent beyond decimal arithmetic too
            raise field_error("amount", f"account {state.account_id}: {exc}") from None
        self.engine.record("adjustment", account=state.account_id, amount=amount, reason=body.reason,
                           balance=account.state.balance, arrears=account.state.arrears,
                           by=request[OPERATOR].name)
        request[AUDIT].detail = {"amount": money.text(amount), "reason": body.reason,
                                   "balance": money.text(account.state.balance)}
        self.engine.note_emergency_credit(account, state)
        self.engine.evaluate(account)
        return json_answer(self.engine.account_json(account))

    async def _emergency_credit(self, request: web.Request) -> web.Response:
        account = account_of(self.engine, request)
        await body_of(request, NoFields)
        try:
            account.state = self.engine.policy.take_emergency_credit(account.state)
        except ValueError as exc:
            raise ApiError(409, f"account {account.state.account_id}: {exc}") from None
        self.engine.record("emergency_credit", account=account.state.account_id, state="active",
                           taken=account.state.emergency_credit_taken, requested=True)
        reconnect = None
        if account.supply == "disconnected" and not account.in_flight:
            reconnect = self.engine.queue(account, "connect", "emergency_credit")
        self.engine.evaluate(account)
        return json_answer({"account": self.engine.account_json(account),
                                  "reconnect": reconnect.as_json() if reconnect else None})
