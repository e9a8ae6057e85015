"""Head-end system twin: managed prepayment for the bench's positions, served as an HTTP/JSON API (aiohttp).

One account per position, its id the meter's serial. Every read interval the HES reads each meter's energy
register through a `MeterLink`, charges the energy at the tariff, sends the alerts the policy asks for, and
sends the disconnect when the credit is exhausted and no window, grace period or emergency credit forbids it;
a recharge reconnects (rig/sim/hes/engine.py, commands.py). The API is the one drivers/hes.py speaks: the routes
here (identity, status, clock, tariff, alerts, events, audit), api_accounts.py and api_commands.py.

Every request carries an operator's bearer token; the operator's role decides which routes they may use (the
permission table, the 401 and 403 answers and their WWW-Authenticate challenges: rig/sim/hes/auth.py). Every
command, change and refused attempt enters the audit log (rig/sim/hes/audit.py; GET /audit). A group disconnect
of more meters than `approval_above_meters` waits for a second operator's approval (api_commands.py).

Money (rig/money.py): every amount in an answer or event is a JSON string with exactly two decimals ("12.30",
INR), the tariff a string with two to four decimals ("6.50"). An amount in a request may be a JSON number or a
decimal string with at most two decimals (whole paise), read exactly; a recharge must lie in (0, max_recharge]
and no balance may leave +-max_balance (the policy's); NaN, Infinity, 1e300, 0.001, -1 or "abc" as an amount is
422 naming the field, and the account is unchanged. Request bodies (api_base.py): application/json or 415,
malformed 400, an unknown or mistyped field 422 naming it; a method the path does not serve is 405 with an
Allow header (RFC 9110 15.5.6); every error answer is {"error": message, ...}.

By default (`meter_link: dlms`) the HES reaches each twin DLMS meter as a DLMS/COSEM client over the position's
radio link (rig/sim/hes/dlms_link.py); each account is read by its own task. An on-demand read
(POST /accounts/{id}/read) answers 200 only with a fresh reading: 502 when the meter could not be read, 504 when
no reading came within `read_deadline_s`.

Fleet meters (rig/sim/hes/fleet.py, routes api_fleet.py) are registered over POST /fleet/meters beside the
positions, reached at their own endpoints, read by a scheduler that spreads the reads over the read interval, and
heard on the push listener (`push_port`, announced in GET /status).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from rig import money
from rig.config import position_of_role
from rig.errors import ConfigError
from rig.sim.dlms.meter import DlmsMeterSim
from rig.sim.hes.api_accounts import AccountRoutes
from rig.sim.hes.api_base import (
    AUDIT,
    MAX_CLOCK_OFFSET_S,
    OPERATOR,
    ApiError,
    AuditNote,
    ClockChange,
    TariffChange,
    body_of,
    field_error,
    iso_time,
    json_answer,
)
from rig.sim.hes.api_commands import CommandRoutes
from rig.sim.hes.api_fleet import FleetRoutes
from rig.sim.hes.audit import outcome_of
from rig.sim.hes.auth import ANONYMOUS, ROUTE_PERMISSIONS, AuthFailure, Operator, Operators
from rig.sim.hes.dlms_link import DlmsMeterLink
from rig.sim.hes.engine import HesSettings, PrepaidEngine
from rig.sim.hes.fleet import Fleet
from rig.sim.hes.hooks import hes_hooks
from rig.sim.hes.meter_link import MeterLink, ModelMeterLink
from rig.sim.model import PhysicalModel


class HesSim:
    """Managed-prepayment HES for every position of the bench (driver "hes_http", transport "http")."""

    transport = "http"

    def __init__(self, role: str, model: PhysicalModel, settings: dict):
        self.role = role
        self.model = model
        try:
            self.settings = HesSettings.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{role}: settings.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        self.model_link = ModelMeterLink(model, by=role, latency_s=self.settings.link_latency_s)
        link: MeterLink = self.model_link
        if self.settings.meter_link == "dlms":
            link = DlmsMeterLink(model, self.model_link, by=role, deadline_s=self.settings.dlms_deadline_s)
        self.engine = PrepaidEngine(role, model, self.settings, link, hes_hooks(model.defects.hes))
        self.fleet = self.engine.fleet = Fleet(self.engine, self.settings)
        tokens = {key: value for key, value in settings.items() if key.startswith("token_") and isinstance(value, str)}
        if self.settings.token is not None:
            tokens["token"] = self.settings.token
        self.operators = Operators(role, self.settings.operators, tokens, self.settings.auth_realm)
        if not self.operators.names:
            raise ConfigError(f"{role}: no operator can use this head end: give settings.operators (operator: role) "
                              f"and each operator's token as secrets.token_<operator>")
        self.account_routes = AccountRoutes(self.engine, self.settings.read_deadline_s)
        self.command_routes = CommandRoutes(self.engine)
        self.fleet_routes = FleetRoutes(self.engine, self.fleet)
        self._runner: web.AppRunner | None = None

    @property
    def link(self) -> MeterLink:
        """How the engine reaches the meters (replaceable, e.g. by a link that never answers)."""
        return self.engine.link

    @link.setter
    def link(self, link: MeterLink) -> None:
        self.engine.link = link

    def attach(self, instruments: dict[str, Any]) -> None:
        """Reach the positions' simulated meters where the twin has them: over DLMS and the radio link (meter_link
        dlms, DLMS meters), else through their disconnect control state machine."""
        for role, instrument in instruments.items():
            position = position_of_role(role)
            if position is None or not role.startswith("meter@"):
                continue
            if isinstance(self.link, DlmsMeterLink) and isinstance(instrument, DlmsMeterSim):
                self.link.add_meter(position, instrument)
            elif hasattr(instrument, "remote_disconnect"):
                self.model_link.meters[position] = instrument

    # -- HTTP ----------------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/version", self._version), web.get("/status", self._status),
                web.get("/clock", self._clock), web.put("/clock", self._put_clock),
                web.get("/tariff", self._tariff), web.put("/tariff", self._put_tariff),
                *self.account_routes.routes(), *self.command_routes.routes(), *self.fleet_routes.routes(),
                web.get("/alerts", self._alerts), web.get("/events", self._events), web.get("/audit", self._get_audit)]

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        """Latency, who sent the request and whether their role may, error answers as JSON, the audit log and the
        request log."""
        if self.settings.latency_s:
            await asyncio.sleep(self.settings.latency_s)
        operator = None
        request[AUDIT] = AuditNote()
        try:
            operator = self._operator_of(request)
            request[OPERATOR] = operator
            self._authorize(request, operator)
            response = await handler(request)
        except AuthFailure as exc:
            response = json_answer({"error": str(exc), **exc.fields}, status=exc.status,
                                   headers={"WWW-Authenticate": exc.challenge})
        except ApiError as exc:
            response = json_answer({"error": str(exc), **exc.fields}, status=exc.status)
        except web.HTTPException as exc:  # 404 no such path, 405 (with its Allow header), 413 too large
            headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
            message = exc.reason
            if isinstance(exc, web.HTTPMethodNotAllowed):
                message = (f"{request.method} is not allowed on {request.path}; allowed: "
                           f"{', '.join(sorted(exc.allowed_methods))}")
            response = json_answer({"error": message}, status=exc.status, headers=headers)
        await self._record_audit(request, operator, response)
        if self.settings.log_requests:
            self.model.truth.event("hes.request", role=self.role, method=request.method, path=request.path_qs,
                                   status=response.status, operator=operator.name if operator else None)
        return response

    @staticmethod
    def _rule(request: web.Request) -> tuple[str, str] | None:
        """(permission, action) of the route the request matched; None for no route (404, 405)."""
        resource = request.match_info.route.resource
        method = "GET" if request.method == "HEAD" else request.method
        return ROUTE_PERMISSIONS.get((method, resource.canonical)) if resource is not None else None

    def _operator_of(self, request: web.Request) -> Operator:
        """The request's operator; AuthFailure 401 without a valid bearer token."""
        header = request.headers.get("Authorization")
        if not self.engine.hooks.checks_operators():
            return self.operators.identify(header) or ANONYMOUS
        return self.operators.authenticate(header)

    def _authorize(self, request: web.Request, operator: Operator) -> None:
        """AuthFailure 403 unless the operator's role may use the route asked for."""
        rule = self._rule(request)
        if rule is not None and self.engine.hooks.checks_operators():
            self.operators.authorize(operator, *rule)

    async def _record_audit(self, request: web.Request, operator: Operator | None,
                            response: web.StreamResponse) -> None:
        """An audit entry for a request that changes something, and for every one refused for who sent it."""
        status, rule, note = response.status, self._rule(request), request[AUDIT]
        reads = request.method in ("GET", "HEAD") or (rule is not None and rule[0] == "read")
        if reads and status not in (401, 403):
            return
        accounts = note.accounts if note.accounts is not None else await _accounts_asked(request)
        entry = {"local_time": self.engine.iso(self.engine.local_now()),
                 "operator": operator.name if operator else None,
                 "operator_role": operator.role if operator else None,
                 "action": note.action or (rule[1] if rule else None), "method": request.method,
                 "path": request.path, "accounts": accounts, "outcome": outcome_of(status, held=note.held),
                 "status": status, **note.detail}
        if status >= 400:
            entry["error"] = _error_of(response)
        if not self.engine.hooks.audits():
            self.model.truth.event("hes.audit_dropped", role=self.role, defect="no_audit", **entry)
            return
        entry = self.engine.audit.add(entry)
        self.model.truth.event("hes.audit", role=self.role, **entry)

    async def start(self, host: str, port: int) -> int:
        """Serve the API on host:port (0: a free port) and start the read loop; return the bound port."""
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(f"{self.role}: cannot serve HTTP on {host}:{port}: {exc.strerror}") from None
        bound = self._runner.addresses[0][1]
        engine = self.engine
        reaches = getattr(self.link, "reaches", lambda _position: "model")
        engine.record("start", truth_only=True, policy=engine.policy.name, read_interval_s=engine.read_interval_s,
                      tariff_per_kwh=engine.tariff_per_kwh, defects=self.model.defects.hes.model_dump(),
                      meter_link={a.position: reaches(a.position) for a in engine.accounts.values()},
                      operators=dict(zip(self.operators.names, self.operators.roles, strict=True)),
                      approval_above_meters=self.settings.approval_above_meters,
                      accounts={a.state.account_id: money.text(a.state.balance) for a in engine.accounts.values()})
        engine.spawn(engine.read_loop())
        try:
            await self.fleet.start()
        except ConfigError:
            await self.stop()
            raise
        return bound

    async def stop(self) -> None:
        await self.engine.stop()
        await self.fleet.stop()
        if isinstance(self.link, DlmsMeterLink):
            await self.link.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _version(self, _request: web.Request) -> web.Response:
        s = self.settings
        return web.json_response({"manufacturer": s.manufacturer, "product": s.product, "instance": s.instance,
                                  "version": s.version})

    async def _status(self, _request: web.Request) -> web.Response:
        engine = self.engine
        return web.json_response({"local_time": engine.iso(engine.local_now()), "policy": engine.policy.name,
                                  "accounts": len(engine.accounts), "read_interval_s": engine.read_interval_s,
                                  "commands_pending": sum(1 for a in engine.accounts.values() if a.in_flight),
                                  "approval_above_meters": self.settings.approval_above_meters,
                                  "fleet_meters": len(self.fleet.meters), "push_port": self.fleet.push_port})

    async def _clock(self, _request: web.Request) -> web.Response:
        engine = self.engine
        return web.json_response({"local_time": engine.iso(engine.local_now()), "offset_s": engine.offset_s,
                                  "utc_offset": engine.policy.utc_offset})

    async def _put_clock(self, request: web.Request) -> web.Response:
        body = await body_of(request, ClockChange)
        request[AUDIT].detail = {"local_time": body.local_time, "offset_s": body.offset_s}
        if body.local_time is not None:
            offset_s = self.engine.offset_for(iso_time("local_time", body.local_time))
            if abs(offset_s) > MAX_CLOCK_OFFSET_S:
                raise field_error("local_time", f"{body.local_time!r} is more than {MAX_CLOCK_OFFSET_S:.0f} s "
                                                f"from the HES's own time")
            self.engine.set_offset(offset_s)
        else:
            self.engine.set_offset(body.offset_s)
        return await self._clock(request)

    async def _tariff(self, _request: web.Request) -> web.Response:
        """{"per_kwh": "6.50", "currency": "INR"}: the tariff as a decimal string."""
        return web.json_response({"per_kwh": money.rate_text(self.engine.tariff_per_kwh),
                                  "currency": self.engine.policy.currency})

    async def _put_tariff(self, request: web.Request) -> web.Response:
        body = await body_of(request, TariffChange)
        request[AUDIT].detail = {"per_kwh": money.rate_text(body.per_kwh)}
        self.engine.set_tariff(body.per_kwh)
        return await self._tariff(request)

    async def _alerts(self, request: web.Request) -> web.Response:
        account = request.query.get("account")
        return web.json_response([a for a in self.engine.alerts if account is None or a["account"] == account])

    async def _events(self, request: web.Request) -> web.Response:
        account = request.query.get("account")
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise ApiError(400, f"'since' must be an event number, got {request.query['since']!r}") from None
        return web.json_response([e for e in self.engine.events if e["seq"] > since
                                  and (account is None or e.get("account") == account)])

    async def _get_audit(self, request: web.Request) -> web.Response:
        """The audit log, filtered by ?operator=, ?action=, ?account=, ?outcome= and ?since= (an entry's seq)."""
        query = request.query
        try:
            since = int(query.get("since", "0"))
        except ValueError:
            raise ApiError(400, f"'since' must be an audit entry number, got {query['since']!r}") from None
        return json_answer(self.engine.audit.select(query.get("operator"), query.get("action"),
                                                    query.get("account"), query.get("outcome"), since))


async def _accounts_asked(request: web.Request) -> list[str]:
    """The accounts a request names: its path's, or a group command's list (read leniently: a refused request's
    body may be anything)."""
    account = request.match_info.get("account")
    if account is not None:
        return [account]
    if request.method != "POST" or request.path.rstrip("/") != "/group-commands":
        return []
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError, web.HTTPException):  # RecursionError: nested too deeply
        return []
    accounts = data.get("accounts") if isinstance(data, dict) else None
    return [a for a in accounts if isinstance(a, str)] if isinstance(accounts, list) else []


def _error_of(response: web.StreamResponse) -> str | None:
    try:
        return json.loads(response.text)["error"]
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
