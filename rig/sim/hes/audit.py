"""The twin HES's audit log: who did what to which meters, when, and with what outcome.

Every request that changes something (a command, a recharge, an adjustment, a clock or tariff change, an
approval) and every request refused for who sent it (401, 403) is one entry:
`{"seq", "local_time", "operator", "operator_role", "action", "method", "path", "accounts", "outcome", "status", ...}`.
`operator` is the name the token belongs to (null when the token was missing or unknown); a token is never
written. `outcome`: done (2xx), held (a group command awaiting a second approver), denied (401, 403), refused
(another 4xx), failed (5xx). GET /audit reads it, filtered by operator, action, account, outcome and since (seq).
"""

from __future__ import annotations

import itertools
from typing import Any


def outcome_of(status: int, held: bool = False) -> str:
    if status in (401, 403):
        return "denied"
    if status >= 500:
        return "failed"
    if status >= 400:
        return "refused"
    return "held" if held else "done"


class AuditLog:
    """Entries in the order the HES answered; read with filters."""

    FILTERS = ("operator", "action", "account", "outcome")

    def __init__(self):
        self.entries: list[dict] = []
        self._seq = itertools.count(1)

    def add(self, entry: dict[str, Any]) -> dict:
        entry = {"seq": next(self._seq), **entry}
        self.entries.append(entry)
        return entry

    def select(self, operator: str | None = None, action: str | None = None, account: str | None = None,
               outcome: str | None = None, since: int = 0) -> list[dict]:
        return [e for e in self.entries if e["seq"] > since
                and (operator is None or e["operator"] == operator)
                and (action is None or e["action"] == action)
                and (account is None or account in e["accounts"])
                and (outcome is None or e["outcome"] == outcome)]
