"""The HES API's fleet routes: registering fleet meters in bulk, listing them a page at a time, the fleet's metrics.

POST /fleet/meters (configure) `{"meters": [{"serial", "endpoint": "tcp://127.x.y.z:port", "balance"?, "group"?,
"feeder"?, "converted_at"?}, ...]}` registers up to MAX_REGISTRATION meters at once, each with a prepaid account
(opening balance `balance`, default the HES's `opening_balance`; `converted_at` starts the policy's grace
period). All or nothing: a field that is wrong is 422 naming it (`meters.3.endpoint`); a serial given twice, or
already an account of this HES, is 409 listing them; nothing is registered then. Answer 201:
`{"registered": n, "total": <fleet meters now>, "first": <serial>, "last": <serial>}`.

GET /fleet/meters (read): `{"total", "offset", "limit", "meters": [account and fleet fields, ...]}` in
registration order; ?offset= (default 0), ?limit= (default 1000, at most 10000), ?group=, ?feeder=, ?reachable=
(true/false) filter before paging.

GET /fleet/metrics (read): rig/sim/hes/fleet.py metrics_json; POST /fleet/metrics/reset (configure) starts them
again (the peak of concurrent exchanges from the exchanges in flight now).
"""

from __future__ import annotations

import re
from typing import Annotated

from aiohttp import web
from pydantic import Field

from rig import money
from rig.errors import ConfigError
from rig.sim.hes.api_base import AUDIT, Amount, ApiError, Body, NoFields, body_of, field_error, iso_time, json_answer
from rig.sim.hes.engine import PrepaidEngine
from rig.sim.hes.fleet import Fleet

MAX_REGISTRATION = 5000  # meters in one POST /fleet/meters (a body of well under the HES's 1 MiB)
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
ENDPOINT = re.compile(r"tcp://(?P<host>[A-Za-z0-9.\-]{1,253}):(?P<port>\d{1,5})")
SERIAL = r"^[A-Za-z0-9._\-]{1,32}$"
TAG = r"^[^\x00-\x1f]{1,64}$"


class FleetMeterBody(Body):
    serial: Annotated[str, Field(pattern=SERIAL)]
    endpoint: str
    balance: Amount | None = None
    group: Annotated[str, Field(pattern=TAG)] | None = None
    feeder: Annotated[str, Field(pattern=TAG)] | None = None
    converted_at: str | None = None  # ISO 8601


class FleetRegistration(Body):
    meters: Annotated[list[FleetMeterBody], Field(min_length=1, max_length=MAX_REGISTRATION)]


def endpoint_of(index: int, text: str) -> tuple[str, int]:
    """(host, port) of 'tcp://host:port'; 422 naming meters.<index>.endpoint otherwise."""
    match = ENDPOINT.fullmatch(text)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise field_error(f"meters.{index}.endpoint", f"{text[:80]!r} is not tcp://host:port (port 1..65535)")
    return match["host"], int(match["port"])


class FleetRoutes:
    """POST and GET /fleet/meters, GET /fleet/metrics, POST /fleet/metrics/reset."""

    def __init__(self, engine: PrepaidEngine, fleet: Fleet):
        self.engine = engine
        self.fleet = fleet

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/fleet/meters", self._register), web.get("/fleet/meters", self._meters),
                web.get("/fleet/metrics", self._metrics), web.post("/fleet/metrics/reset", self._reset)]

    async def _register(self, request: web.Request) -> web.Response:
        body = await body_of(request, FleetRegistration)
        try:
            self.fleet.secret()
        except ConfigError as exc:
            raise ApiError(409, f"fleet meters cannot be registered: {exc}") from None
        seen: set[str] = set()
        clashes = []
        for meter in body.meters:
            if meter.serial in seen or meter.serial in self.engine.accounts:
                clashes.append(meter.serial)
            seen.add(meter.serial)
        if clashes:
            raise ApiError(409, f"{len(clashes)} serial(s) given twice or already an account of this HES: "
                                f"{', '.join(clashes[:20])}{' ...' if len(clashes) > 20 else ''}", serials=clashes)
        prepared = [self._prepared(index, meter) for index, meter in enumerate(body.meters)]
        accounts = [self.fleet.register(meter.serial, host, port, state, meter.group, meter.feeder)
                    for meter, (host, port, state) in zip(body.meters, prepared, strict=True)]
        self.engine.record("fleet_registered", meters=len(accounts), total=len(self.fleet.meters),
                           first=accounts[0].state.account_id, last=accounts[-1].state.account_id)
        request[AUDIT].accounts = []
        request[AUDIT].detail = {"registered": len(accounts), "first": accounts[0].state.account_id,
                                 "last": accounts[-1].state.account_id}
        return json_answer({"registered": len(accounts), "total": len(self.fleet.meters),
                            "first": accounts[0].state.account_id, "last": accounts[-1].state.account_id},
                           status=201)

    def _prepared(self, index: int, meter: FleetMeterBody):
        """(host, port, opening account state) of the meter; 422 naming its field when one is wrong."""
        host, port = endpoint_of(index, meter.endpoint)
        when = iso_time(f"meters.{index}.converted_at", meter.converted_at) if meter.converted_at else None
        opening = meter.balance if meter.balance is not None else self.engine.settings.opening_balance
        try:
            state = self.engine.policy.new_account(meter.serial, opening, when)
        except (money.MoneyError, ArithmeticError) as exc:
            raise field_error(f"meters.{index}.balance", f"{meter.serial}: {exc}") from None
        return host, port, state

    async def _meters(self, request: web.Request) -> web.Response:
        query = request.query
        offset, limit = _count(query, "offset", 0, None), _count(query, "limit", DEFAULT_PAGE, MAX_PAGE)
        reachable = query.get("reachable")
        if reachable not in (None, "true", "false"):
            raise ApiError(400, f"'reachable' must be true or false, got {reachable!r}")
        chosen = [self.fleet.meters[serial] for serial in self.fleet.order]
        if "group" in query:
            chosen = [m for m in chosen if m.group == query["group"]]
        if "feeder" in query:
            chosen = [m for m in chosen if m.feeder == query["feeder"]]
        if reachable is not None:
            chosen = [m for m in chosen if m.endpoint.reachable == (reachable == "true")]
        page = chosen[offset:offset + limit]
        return json_answer({"total": len(chosen), "offset": offset, "limit": limit,
                            "meters": [self.engine.account_json(self.engine.accounts[m.serial]) for m in page]})

    async def _metrics(self, _request: web.Request) -> web.Response:
        return json_answer(self.fleet.metrics_json())

    async def _reset(self, request: web.Request) -> web.Response:
        await body_of(request, NoFields)
        self.fleet.reset_metrics()
        return json_answer(self.fleet.metrics_json())


def _count(query, name: str, default: int, most: int | None) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or (most is not None and not 1 <= int(text) <= most):
        bound = f"1..{most}" if most is not None else "0 or more"
        raise ApiError(400, f"{name!r} must be a whole number {bound}, got {text[:20]!r}")
    return int(text)
