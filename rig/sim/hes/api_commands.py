"""The HES API's command routes: an operator's disconnect or connect of one account, group commands, and the
commands' status."""

from __future__ import annotations

import itertools

from aiohttp import web

from rig.sim.hes.api_base import ApiError, GroupCommandBody, NoFields, account_of, body_of, json_answer
from rig.sim.hes.commands import Command
from rig.sim.hes.engine import Account, PrepaidEngine


class CommandRoutes:
    """POST /accounts/{account}/disconnect and .../connect, POST /group-commands, GET /group-commands/{group},
    GET /commands (?account=, ?group=) and GET /commands/{command}."""

    def __init__(self, engine: PrepaidEngine):
        self.engine = engine
        self.groups: dict[str, dict] = {}
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/accounts/{account}/disconnect", self._disconnect),
                web.post("/accounts/{account}/connect", self._connect),
                web.post("/group-commands", self._group), web.get("/group-commands/{group}", self._get_group),
                web.get("/commands", self._commands), web.get("/commands/{command}", self._command)]

    def _single(self, account: Account, action: str) -> Command:
        if account.in_flight:
            raise ApiError(409, f"account {account.state.account_id}: command {account.in_flight} is still pending")
        if action == "disconnect":
            blockers = self.engine.blockers(account, group=False)
            if blockers:
                raise ApiError(409, f"account {account.state.account_id}: disconnect refused: "
                               + "; ".join(b.reason for b in blockers))
        return self.engine.queue(account, action, "operator")

    async def _disconnect(self, request: web.Request) -> web.Response:
        account = account_of(self.engine, request)
        await body_of(request, NoFields)
        return json_answer(self._single(account, "disconnect").as_json(), status=202)

    async def _connect(self, request: web.Request) -> web.Response:
        account = account_of(self.engine, request)
        await body_of(request, NoFields)
        return json_answer(self._single(account, "connect").as_json(), status=202)

    async def _group(self, request: web.Request) -> web.Response:
        body = await body_of(request, GroupCommandBody)
        action, ids = body.action, list(body.accounts)
        group_id = f"grp-{next(self._ids)}"
        accepted, refused = [], []
        for account_id in ids:
            account = self.engine.accounts.get(account_id)
            if account is None:
                refused.append({"account": account_id, "reason": "unknown account"})
                continue
            if account.in_flight:
                refused.append({"account": account_id, "reason": f"command {account.in_flight} is still pending"})
                continue
            blockers = self.engine.blockers(account, group=True) if action == "disconnect" else []
            if blockers:
                refused.append({"account": account_id, "reason": "; ".join(b.reason for b in blockers)})
                continue
            accepted.append(self.engine.queue(account, action, "group", group_id).id)
        group = {"id": group_id, "action": action, "reason": body.reason, "commands": accepted,
                 "refused": refused}
        self.groups[group_id] = group
        self.engine.record("group_command", group=group_id, action=action, accounts=ids, commands=accepted,
                           refused=refused, reason=body.reason)
        return json_answer(self._group_json(group), status=202)

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
