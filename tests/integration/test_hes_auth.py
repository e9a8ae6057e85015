"""The twin HES's authentication (RFC 6750 bearer tokens), its operators' roles, the audit log and the two-person
rule on a large group disconnect, over HTTP: raw requests with http.client, and the rig's own HES role.

The sim bench's HES role and tokens (benches/sim-hes-token-*), served in process with only the source and the
HES; the HES reaches the model's meters (meter_link: model) and reads them once at start (read_interval_s 3600),
so a test can give an account no credit without the HES disconnecting it on its own.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import replace
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from plan_runner import SIM_BENCH
from twin_thread import OpenBenchOnTwin, starter_fixture

from drivers.hes import HesHttpError
from rig.errors import ConfigError
from rig.sim.hes.auth import ROUTE_PERMISSIONS
from rig.sim.truth import read_truth

ACCOUNTS = ["SIM0001", "SIM0002", "SIM0003"]
REALM = 'Bearer realm="hes"'


def token(operator: str) -> str:
    return (SIM_BENCH.parent / f"sim-hes-token-{operator}").read_text().strip()


class HesOnTwin(OpenBenchOnTwin):
    def __init__(self, folder, **hes_settings):
        folder.mkdir(parents=True, exist_ok=True)

        def edit(data):
            data["twin"]["instruments"]["hes"].update({"meter_link": "model", "read_interval_s": 3600,
                                                       "log_requests": True, **hes_settings})

        super().__init__(folder, only_roles=("source", "hes"), edit=edit)
        self.folder = folder
        self.hes = self.bench["hes"]
        self.sim = self.twin.instruments["hes"]
        self.url = urlsplit(self.resources["hes"])

    def http(self, method: str, path: str, operator: str | None = None, body: dict | None = None,
             authorization: str | None = None) -> tuple[int, http.client.HTTPMessage, object]:
        headers = {"Accept": "application/json"}
        if operator is not None:
            headers["Authorization"] = f"Bearer {token(operator)}"
        if authorization is not None:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        connection = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=5)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        return response.status, response.headers, json.loads(text) if text else None

    def no_credit(self, *accounts: str) -> None:
        """Balance 0 without the HES judging it at once (its next read is an hour away)."""
        def spend():
            for account in accounts:
                entry = self.sim.engine.accounts[account]
                entry.state = replace(entry.state, balance=Decimal("0.00"))
        self.call(spend)

    def relay_opened(self) -> list[int]:
        return [e["position"] for e in read_truth(self.truth_path) if e["event"] == "relay" and not e["closed"]]


start_hes = starter_fixture(HesOnTwin)


@pytest.fixture
def twin(start_hes):
    return start_hes()


# -- authentication (RFC 6750 section 3) -----------------------------------------------------------------------


def test_a_request_without_credentials_is_401_with_a_bare_bearer_challenge(twin):
    status, headers, answer = twin.http("POST", "/accounts/SIM0001/recharge", body={"amount": "50.00"})
    assert (status, headers["WWW-Authenticate"], answer) == (401, REALM, {"error": "missing or wrong bearer token"})
    status, headers, _ = twin.http("GET", "/accounts", authorization=f"Basic {token('rig')}")
    assert (status, headers["WWW-Authenticate"]) == (401, REALM)
    assert twin.hes.balance("SIM0001") == Decimal("1000.00")


def test_an_unknown_token_is_401_invalid_token(twin):
    for authorization in ("Bearer not-a-token-the-hes-issued", "bearer " + token("rig") + "x"):
        status, headers, answer = twin.http("GET", "/accounts", authorization=authorization)
        assert status == 401
        assert headers["WWW-Authenticate"] == ('Bearer realm="hes", error="invalid_token", '
                                               'error_description="the bearer token is not valid"')
    status, _, _ = twin.http("GET", "/accounts", authorization="bearer " + token("rig"))  # the scheme's case
    assert status == 200


def test_an_unknown_path_without_a_token_is_401_not_404(twin):
    assert twin.http("GET", "/no-such-path")[0] == 401
    assert twin.http("GET", "/no-such-path", "viewer")[0] == 404


def test_a_read_only_operator_may_read_and_not_disconnect(twin):
    assert twin.http("GET", "/accounts/SIM0001", "viewer")[0] == 200
    status, headers, answer = twin.http("POST", "/accounts/SIM0001/disconnect", "viewer")
    assert status == 403
    assert headers["WWW-Authenticate"] == ('Bearer realm="hes", error="insufficient_scope", '
                                           'error_description="permission command needed", scope="command"')
    assert answer == {"error": "operator viewer (read_only) may not disconnect: it needs permission 'command' "
                               "(roles: disconnect, administrator)", "operator": "viewer", "permission": "command"}
    assert twin.hes.commands(account="SIM0001") == [] and twin.relay_opened() == []


PERMISSIONS = [  # (operator, method, path, body, expected status)
    ("viewer", "GET", "/audit", None, 403), ("auditor", "GET", "/audit", None, 200),
    ("rig", "GET", "/audit", None, 200),
    ("viewer", "POST", "/accounts/SIM0001/recharge", {"amount": "1.00"}, 403),
    ("lineman", "POST", "/accounts/SIM0001/recharge", {"amount": "1.00"}, 403),
    ("cashier", "POST", "/accounts/SIM0001/recharge", {"amount": "1.00"}, 200),
    ("cashier", "PUT", "/tariff", {"per_kwh": "7.00"}, 403), ("lineman", "PUT", "/tariff", {"per_kwh": "7.00"}, 403),
    ("rig", "PUT", "/tariff", {"per_kwh": "7.00"}, 200),
    ("cashier", "POST", "/accounts/SIM0001/adjustment", {"amount": "-1.00"}, 403),
    ("supervisor", "POST", "/accounts/SIM0001/adjustment", {"amount": "-1.00"}, 200),
    ("auditor", "PUT", "/clock", {"offset_s": 0}, 403), ("rig", "PUT", "/clock", {"offset_s": 0}, 200),
    ("cashier", "POST", "/group-commands", {"action": "connect", "accounts": ["SIM0001"]}, 403),
    ("lineman", "POST", "/group-commands", {"action": "connect", "accounts": ["SIM0001"]}, 202),
    ("auditor", "POST", "/accounts/SIM0001/read", None, 200),
]


@pytest.mark.parametrize(("operator", "method", "path", "body", "expected"), PERMISSIONS,
                         ids=[f"{o}-{m}-{p}" for o, m, p, _b, _e in PERMISSIONS])
def test_each_role_may_use_only_its_routes(twin, operator, method, path, body, expected):
    status, _, answer = twin.http(method, path, operator, body)
    assert status == expected, answer


def test_every_route_the_hes_serves_has_a_permission(twin):
    served = {(route.method, route.path) for route in twin.sim.routes()}
    assert served == set(ROUTE_PERMISSIONS)


# -- the audit log ---------------------------------------------------------------------------------------------


def test_the_audit_log_names_the_operator_and_never_the_token(twin):
    twin.http("POST", "/accounts/SIM0002/recharge", "cashier", {"amount": "25.00", "reference": "desk-7"})
    twin.http("POST", "/accounts/SIM0002/disconnect", "viewer")
    twin.http("POST", "/accounts/SIM0002/recharge", body={"amount": "25.00"})
    twin.http("PUT", "/tariff", "rig", {"per_kwh": "6.75"})
    status, _, entries = twin.http("GET", "/audit", "auditor")
    assert status == 200
    assert [(e["seq"], e["operator"], e["operator_role"], e["action"], e["accounts"], e["outcome"], e["status"])
            for e in entries] == [
        (1, "cashier", "recharge", "recharge", ["SIM0002"], "done", 200),
        (2, "viewer", "read_only", "disconnect", ["SIM0002"], "denied", 403),
        (3, None, None, "recharge", ["SIM0002"], "denied", 401),
        (4, "rig", "administrator", "set_tariff", [], "done", 200)]
    assert (entries[0]["amount"], entries[0]["reference"], entries[0]["balance"]) == ("25.00", "desk-7", "1025.00")
    assert entries[0]["local_time"].startswith("2026-03-10T12:00") and entries[3]["per_kwh"] == "6.75"
    assert twin.http("GET", "/audit?outcome=denied&account=SIM0002", "rig")[2] == entries[1:3]
    assert twin.http("GET", "/audit?operator=cashier", "rig")[2] == entries[:1]
    assert twin.http("GET", "/audit?action=set_tariff&since=3", "rig")[2] == entries[3:]
    assert [e.operator for e in twin.hes.audit(outcome="denied")] == ["viewer", None]
    twin.transcript.flush()
    for operator in ("rig", "cashier", "viewer", "auditor"):
        for path in (twin.truth_path, twin.folder / "transcript.jsonl"):
            assert token(operator) not in path.read_text(), f"{operator}'s token in {path.name}"


# -- the two-person rule ---------------------------------------------------------------------------------------


def test_a_group_disconnect_above_the_radius_waits_for_a_second_operator(twin):
    twin.no_credit(*ACCOUNTS)
    with twin.hes.as_operator("lineman") as lineman, twin.hes.as_operator("viewer") as viewer, \
            twin.hes.as_operator("cashier") as cashier, twin.hes.as_operator("supervisor") as supervisor:
        group = lineman.group_command("disconnect", ACCOUNTS, reason="feeder F-12 arrears")
        assert (group.status, group.held, group.commands, group.refused, group.requested_by) == (
            "awaiting_approval", ACCOUNTS, [], {}, "lineman")
        assert twin.hes.commands() == [] and twin.relay_opened() == []
        with pytest.raises(HesHttpError) as own:
            lineman.approve_group(group.id)
        assert own.value.status == 403 and "cannot approve it: a second operator must" in own.value.body
        with pytest.raises(HesHttpError) as scope:
            viewer.approve_group(group.id)
        assert scope.value.status == 403 and "permission 'approve'" in scope.value.body
        cashier.recharge("SIM0002", 40, reference="paid before the approval")
        approved = supervisor.approve_group(group.id)
        assert (approved.status, approved.approved_by) == ("approved", "supervisor")
        assert approved.skipped == {"SIM0002": "balance 40.00 INR is positive"}
        assert [(c.account, c.origin, c.raw["requested_by"]) for c in approved.commands] == [
            ("SIM0001", "group", "supervisor"), ("SIM0003", "group", "supervisor")]
        for command in approved.commands:
            assert twin.hes.wait_for_command(command.id, timeout_s=5).status == "executed"
        with pytest.raises(HesHttpError) as again:
            supervisor.approve_group(group.id)
        assert again.value.status == 409
    assert sorted(twin.relay_opened()) == [1, 3]
    audit = [(e.operator, e.action, e.outcome, e.status) for e in twin.hes.audit()]
    assert audit == [("lineman", "group_disconnect", "held", 202), ("lineman", "approve", "denied", 403),
                     ("viewer", "approve", "denied", 403), ("cashier", "recharge", "done", 200),
                     ("supervisor", "approve", "done", 200), ("supervisor", "approve", "refused", 409)]
    approval = twin.hes.audit(action="approve", outcome="done")[0]
    assert approval.accounts == ACCOUNTS and approval["skipped"] == [
        {"account": "SIM0002", "reason": "balance 40.00 INR is positive"}]


def test_the_approval_rechecks_the_no_disconnection_window(twin):
    twin.no_credit(*ACCOUNTS)
    with twin.hes.as_operator("lineman") as lineman:
        group = lineman.group_command("disconnect", ACCOUNTS)
    twin.hes.set_clock(twin.hes.clock().replace(hour=20, minute=0))  # UPPCL: no disconnection 18:00-08:00
    approved = twin.hes.approve_group(group.id)
    assert approved.commands == [] and sorted(approved.skipped) == ACCOUNTS
    assert all("no-disconnection hours" in reason for reason in approved.skipped.values())
    assert twin.relay_opened() == []


def test_a_rejected_group_sends_nothing_and_a_small_one_runs_at_once(twin):
    twin.no_credit(*ACCOUNTS)
    with twin.hes.as_operator("lineman") as lineman:
        group = lineman.group_command("disconnect", ACCOUNTS)
        rejected = twin.hes.reject_group(group.id)
        assert (rejected.status, rejected.raw["rejected_by"], rejected.commands) == ("rejected", "rig", [])
        small = lineman.group_command("disconnect", ACCOUNTS[:2])  # approval_above_meters: 2
    assert (small.status, [c.account for c in small.commands]) == ("accepted", ACCOUNTS[:2])
    assert twin.hes.approval_above_meters() == 2


# -- the rig's HES role ----------------------------------------------------------------------------------------


def test_the_role_says_who_was_refused_and_never_the_token(twin):
    with twin.hes.as_role("read_only") as viewer:
        with pytest.raises(HesHttpError) as denied:
            viewer.disconnect("SIM0001")
    assert denied.value.status == 403 and "answered 403 (not allowed as operator viewer)" in str(denied.value)
    with twin.hes.with_unknown_token() as stranger, pytest.raises(HesHttpError) as unknown:
        stranger.balance("SIM0001")
    assert "answered 401 (not authenticated with a token the head end was not given)" in str(unknown.value)
    with twin.hes.without_token() as anonymous, pytest.raises(HesHttpError) as missing:
        anonymous.balance("SIM0001")
    assert "answered 401 (not authenticated without a token)" in str(missing.value)
    for error in (denied.value, unknown.value, missing.value):
        assert not any(token(o) in str(error) for o in ("rig", "viewer")) and "Bearer" not in str(error)
    with pytest.raises(ConfigError, match=r"roles\.hes\.settings\.operators: no operator 'nobody'"):
        twin.hes.as_operator("nobody")
    with twin.hes.as_role("administrator", other_than="rig") as second:
        assert second.operator == "supervisor"
    with pytest.raises(ConfigError, match=r"no operator other than auditor with HES role 'auditor'"):
        twin.hes.as_role("auditor", other_than="auditor")
