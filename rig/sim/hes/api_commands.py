"""The HES API's command routes: an operator's disconnect or connect of one account, group commands with their
two-person rule, and the commands' status.

A group command is judged account by account when it is asked for: an unknown account, one with a command
pending or (disconnect) one with a reason against disconnecting is refused at once, with the reason. A group
disconnect that names more of the HES's meters than `approval_above_meters` (its blast radius, as asked) sends
nothing: it is `awaiting_approval` until a second operator (another identity whose role may approve) approves it
(POST /group-commands/{id}/approve) or rejects it (.../reject); the operator who asked cannot approve their own.
On approval every held account (those not refused) is judged again (balance, no-disconnection window, emergency
credit, a command pending): one no longer eligible is skipped, with the reason, and the others' disconnects are
queued (each judged once more as it is sent, rig/sim/hes/commands.py). Group status: accepted (ran at once),
awaiting_approval, approved, rejected.
"""

from __future__ import annotations

import itertools

from aiohttp import web

from rig.sim.hes.api_base import AUDIT, OPERATOR, ApiError, GroupCommandBody, NoFields, account_of, body_of, json_answer
from rig.sim.hes.auth import Operator
from rig.sim.hes.commands import Command
from rig.sim.hes.engine import Account, PrepaidEngine


def operator_of(request: web.Request) -> Operator:
    return request[OPERATOR]


class CommandRoutes:
    """POST /accounts/{account}/disconnect and .../connect, POST /group-commands, GET /group-commands/{group},
    POST /group-commands/{group}/approve and .../reject, GET /commands (?account=, ?group=) and
    GET /commands/{command}."""

    def __init__(self, engine: PrepaidEngine):
        self.engine = engine
        self.groups: dict[str, dict] = {}
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/accounts/{account}/disconnect", self._disconnect),
                web.post("/accounts/{account}/connect", self._connect),
                web.post("/group-commands", self._group), web.get("/group-commands/{group}", self._get_group),
                web.post("/group-commands/{group}/approve", self._approve),
                web.post("/group-commands/{group}/reject", self._reject),
                web.get("/commands", self._commands), web.get("/commands/{command}", self._command)]

    def _single(self, account: Account, action: str, by: str) -> Command:
        if account.in_flight:
            raise ApiError(409, f"account {account.state.account_id}: command {account.in_flight} is still pending")
        if action == "disconnect":
            blockers = self.engine.blockers(account, group=False)
            if blockers:
                raise ApiError(409, f"account {account.state.account_id}: disconnect refused: "
                               + "; ".join(b.reason for b in blockers))
        return self.engine.queue(account, action, "operator", by=by)

    async def _disconnect(self, request: web.Request) -> web.Response:
        account = account_of(self.engine, request)
        await body_of(request, NoFields)
        command = self._single(account, "disconnect", operator_of(request).name)
        request[AUDIT].detail = {"commands": [command.id]}
        return json_answer(command.as_json(), status=202)

    async def _connect(self, request: web.Request) -> web.Response:
        account = account_of(self.engine, request)
        await body_of(request, NoFields)
        command = self._single(account, "connect", operator_of(request).name)
        request[AUDIT].detail = {"commands": [command.id]}
        return json_answer(command.as_json(), status=202)

    def _refusal(self, account_id: str, action: str) -> str | None:
        """Why the account is left out of a group command now (None: it is eligible)."""
        account = self.engine.accounts.get(account_id)
        if account is None:
            return "unknown account"
        if account.in_flight:
            return f"command {account.in_flight} is still pending"
        blockers = self.engine.blockers(account, group=True) if action == "disconnect" else []
        return "; ".join(b.reason for b in blockers) or None

    def _send(self, group: dict, accounts: list[str]) -> None:
        """Queue the group's commands for these (eligible) accounts."""
        by = group["approved_by"] or group["requested_by"]
        group["commands"] = [self.engine.queue(self.engine.accounts[a], group["action"], "group", group["id"], by).id
                             for a in accounts]

    async def _group(self, request: web.Request) -> web.Response:
        body = await body_of(request, GroupCommandBody)
        action, ids = body.action, list(body.accounts)
        operator = operator_of(request)
        group_id = f"grp-{next(self._ids)}"
        refused, eligible = [], []
        for account_id in ids:
            reason = self._refusal(account_id, action)
            if reason is None:
                eligible.append(account_id)
            else:
                refused.append({"account": account_id, "reason": reason})
        limit = self.engine.settings.approval_above_meters
        meters = len({a for a in ids if a in self.engine.accounts})
        held = action == "disconnect" and self.engine.hooks.needs_approval(meters, limit)
        group = {"id": group_id, "action": action, "reason": body.reason, "status": "awaiting_approval" if held
                 else "accepted", "requested_by": operator.name, "approved_by": None, "rejected_by": None,
                 "approval_above_meters": limit, "held": eligible if held else [], "commands": [], "refused": refused,
                 "skipped": []}
        self.groups[group_id] = group
        if not held:
            self._send(group, eligible)
        if action == "disconnect" and not held and meters > limit:
            self.engine.record("approval_skipped", truth_only=True, group=group_id, meters=meters,
                               approval_above_meters=limit, defect="skip_approval")
        self.engine.record("group_command", group=group_id, action=action, accounts=ids, commands=group["commands"],
                           refused=refused, reason=body.reason, status=group["status"], requested_by=operator.name,
                           held=group["held"])
        request[AUDIT].action = f"group_{action}"
        request[AUDIT].accounts = ids
        request[AUDIT].held = held
        request[AUDIT].detail = {"group": group_id, "commands": group["commands"], "refused": refused}
        return json_answer(self._group_json(group), status=202)

    def _awaiting(self, request: web.Request, verb: str) -> dict:
        """The group the path names, awaiting approval and asked for by someone else; 404, 409 or 403 otherwise."""
        group_id = request.match_info["group"]
        group = self.groups.get(group_id)
        if group is None:
            raise ApiError(404, f"unknown group command {group_id!r}")
        request[AUDIT].accounts = list(group["held"])
        if group["status"] != "awaiting_approval":
            raise ApiError(409, f"group command {group_id} is {group['status']}, not awaiting approval")
        operator = operator_of(request)
        if operator.name == group["requested_by"]:
            raise ApiError(403, f"operator {operator.name} asked for group command {group_id} and cannot {verb} it: "
                           f"a second operator must", group=group_id, operator=operator.name)
        return group

    async def _approve(self, request: web.Request) -> web.Response:
        await body_of(request, NoFields)
        group = self._awaiting(request, "approve")
        group["status"], group["approved_by"] = "approved", operator_of(request).name
        eligible = []
        for account_id in group["held"]:
            reason = self._refusal(account_id, group["action"])
            if reason is None:
                eligible.append(account_id)
            else:
                group["skipped"].append({"account": account_id, "reason": reason})
        self._send(group, eligible)
        self.engine.record("group_approved", group=group["id"], approved_by=group["approved_by"],
                           requested_by=group["requested_by"], commands=group["commands"], skipped=group["skipped"])
        request[AUDIT].detail = {"group": group["id"], "requested_by": group["requested_by"],
                                   "commands": group["commands"], "skipped": group["skipped"]}
        return json_answer(self._group_json(group))

    async def _reject(self, request: web.Request) -> web.Response:
        await body_of(request, NoFields)
        group = self._awaiting(request, "reject")
        group["status"], group["rejected_by"] = "rejected", operator_of(request).name
        self.engine.record("group_rejected", group=group["id"], rejected_by=group["rejected_by"],
                           requested_by=group["requested_by"])
        request[AUDIT].detail = {"group": group["id"], "requested_by": group["requested_by"]}
        return json_answer(self._group_json(group))

    def _group_json(self, group: dict) -> dict:
        return {**group, "commands": [self.engine.executor.commands[c].as_json() for c in group["commands"]]}

    async def _get_group(self, request: web.Request) -> web.Response:
        group = self.groups.get(request.match_info["group"])
        if group is None:
            raise ApiError(404, f"unknown group command {request.match_info['group']!r}")
        return json_answer(self._group_json(group))

    async def _commands(self, request: web.Request) -> web.Response:
        account, group = request.query.get("account"), request.query.get("group")
        return json_answer([c.as_json() for c in self.engine.executor.commands.values()
                            if (account is None or c.account == account) and (group is None or c.group == group)])

    async def _command(self, request: web.Request) -> web.Response:
        command = self.engine.executor.commands.get(request.match_info["command"])
        if command is None:
            raise ApiError(404, f"unknown command {request.match_info['command']!r}")
        return json_answer(command.as_json())
