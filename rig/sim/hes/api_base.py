"""What the HES API's routes share: the error answer and the parsing of a request's body and account."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from rig.sim.hes.engine import Account, PrepaidEngine


class ApiError(Exception):
    """An error answer: {"error": message, **fields} with this HTTP status."""

    def __init__(self, status: int, message: str, **fields: Any):
        super().__init__(message)
        self.status = status
        self.fields = fields


async def json_body(request: web.Request) -> dict:
    """The request's body, which must be a JSON object."""
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def number(body: dict, key: str) -> float:
    """A finite number the body holds under key."""
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"'{key}' must be a number, got {value!r}")
    return float(value)


def account_of(engine: PrepaidEngine, request: web.Request) -> Account:
    """The account the request's path names; 404 when there is none."""
    account_id = request.match_info["account"]
    try:
        return engine.accounts[account_id]
    except KeyError:
        raise ApiError(404, f"unknown account {account_id!r}") from None
