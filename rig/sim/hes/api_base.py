"""What the HES API's routes share: the error answer, the request bodies and their parsing, the account a path
names, and the JSON answer (amounts as rig.money writes them).

A request body must be `application/json` (else 415), parse as one JSON object (else 400: malformed, duplicate
keys, not UTF-8) and match its route's body model: an unknown field, a missing one or a value of the wrong type
is 422 naming the field (`{"error": "amount: ...", "field": "amount", "errors": [...]}`). JSON numbers are read
exactly (as decimals, never binary floating point); NaN and Infinity are read as non-finite numbers and refused
by the field they are in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from rig import money
from rig.sim.hes.auth import Operator
from rig.sim.hes.engine import Account, PrepaidEngine

JSON_TYPES = ("application/json",)
MAX_CLOCK_OFFSET_S = 10 * 366 * 86400.0


@dataclass
class AuditNote:
    """What a route tells the audit log about its request (rig/sim/hes/audit.py)."""

    action: str | None = None  # default: the route's action (rig/sim/hes/auth.py)
    accounts: list[str] | None = None  # default: the account of the path
    held: bool = False  # a group command held for a second approver
    detail: dict[str, Any] = field(default_factory=dict)


OPERATOR = web.RequestKey("operator", Operator)  # who sent the request (the middleware's)
AUDIT = web.RequestKey("audit", AuditNote)


class ApiError(Exception):
    """An error answer: {"error": message, **fields} with this HTTP status."""

    def __init__(self, status: int, message: str, **fields: Any):
        super().__init__(message)
        self.status = status
        self.fields = fields


def field_error(field: str, message: str) -> ApiError:
    """422 naming the field: {"error": "field: message", "field": field}."""
    return ApiError(422, f"{field}: {message}", field=field, errors=[{"field": field, "message": message}])


# -- bodies --------------------------------------------------------------------------------------------------


def _number(value: Any) -> Any:
    """A JSON number (not a string, not true/false), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"must be a number, got {json.dumps(value)[:40]}")
    if not Decimal(value).is_finite():
        raise ValueError(f"must be a finite number, got {value}")
    return value


def _arithmetic_refused(convert: Callable[[Any], Decimal]) -> Callable[[Any], Decimal]:
    """convert, with an arithmetic error (a decimal's exponent beyond what decimal arithmetic holds) refused as a
    ValueError, so that the field is named (422) rather than the request failing."""
    def checked(value: Any) -> Decimal:
        try:
            return convert(value)
        except ArithmeticError as exc:
            raise ValueError(f"is not a number decimal arithmetic can hold ({type(exc).__name__})") from None
    return checked


Amount = Annotated[Decimal, BeforeValidator(_arithmetic_refused(money.in_paise))]  # bounded by the policy
Tariff = Annotated[Decimal, BeforeValidator(_arithmetic_refused(money.rate))]
Seconds = Annotated[float, BeforeValidator(_number), Field(ge=-MAX_CLOCK_OFFSET_S, le=MAX_CLOCK_OFFSET_S)]


class Body(BaseModel):
    """A request body: a JSON object with exactly the fields of its model."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


B = TypeVar("B", bound=Body)


class NoFields(Body):
    """A route that takes no body (an empty body or {})."""


class Recharge(Body):
    amount: Amount
    reference: str | None = None


class Adjustment(Body):
    amount: Amount
    reason: str | None = None


class Conversion(Body):
    converted_at: str | None  # ISO 8601, or null: no grace period


class TariffChange(Body):
    per_kwh: Tariff


class ClockChange(Body):
    local_time: str | None = None  # ISO 8601 (no offset: the HES's)
    offset_s: Seconds | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ClockChange:
        if (self.local_time is None) == (self.offset_s is None):
            raise ValueError("give exactly one of 'local_time' and 'offset_s'")
        return self


class GroupCommandBody(Body):
    action: Literal["disconnect", "connect"]
    accounts: Annotated[list[str], Field(min_length=1)]
    reason: str | None = None


def iso_time(field: str, value: str) -> datetime:
    """An ISO 8601 time a body holds; 422 naming the field otherwise."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise field_error(field, f"is not an ISO 8601 time: {value!r}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object whose names are unique (RFC 8259 section 4: they SHOULD be; a repeated one is refused)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"the key {key!r} appears twice")
        data[key] = value
    return data


def _json_object(raw: bytes) -> dict:
    """The body as one JSON object, numbers as exact decimals; 400 otherwise (also for a body nested deeper than
    the decoder recurses, and a number whose exponent decimal arithmetic cannot hold)."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=float,
                          object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON: nested too deeply to read") from None
    except ArithmeticError as exc:
        raise ApiError(400, f"the body is not valid JSON: a number beyond decimal arithmetic "
                            f"({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(data).__name__}")
    return data


def _check_content_type(request: web.Request) -> None:
    """415 unless the body is declared application/json (charset utf-8, if any)."""
    declared = request.headers.get("Content-Type")
    charset = (request.charset or "utf-8").lower()
    if declared is None or request.content_type not in JSON_TYPES or charset not in ("utf-8", "utf8"):
        raise ApiError(415, f"the body must be application/json (UTF-8), got {declared or 'no Content-Type'}",
                       accept="application/json")


async def body_of(request: web.Request, model: type[B]) -> B:
    """The request's body as `model`: 415, 400 or 422 (naming the field) as the module says. A route whose model
    has no fields also takes an empty body."""
    raw = await request.read()
    if not raw:
        if any(field.is_required() for field in model.model_fields.values()):
            raise ApiError(400, "the body is empty: expected a JSON object")
        data = {}
    else:
        _check_content_type(request)
        data = _json_object(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _validation_error(exc: ValidationError) -> ApiError:
    errors = []
    for error in exc.errors():
        field = ".".join(map(str, error["loc"])) or "body"
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field missing"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        errors.append({"field": field, "message": message})
    first = errors[0]
    return ApiError(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), field=first["field"],
                    errors=errors)


# -- answers -------------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return money.text(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def json_answer(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    """A JSON answer; a Decimal left in it is written as an amount ("12.30")."""
    return web.json_response(data, status=status, headers=headers,
                             dumps=lambda obj: json.dumps(obj, default=_json_default))


def account_of(engine: PrepaidEngine, request: web.Request) -> Account:
    """The account the request's path names; 404 when there is none."""
    account_id = request.match_info["account"]
    try:
        return engine.accounts[account_id]
    except KeyError:
        raise ApiError(404, f"unknown account {account_id!r}") from None
