"""The twin HES's operator table (rig/sim/hes/auth.py) and the HES driver's operator settings: tokens compared in
constant time, configuration errors that name the operator and never show a token."""

import hmac

import pytest

from drivers.hes import HesClient
from rig.config import RoleConfig
from rig.driver import SetpointLimits
from rig.errors import ConfigError
from rig.sim.hes import auth
from rig.sim.hes.auth import ROLE_PERMISSIONS, AuthFailure, Operator, Operators, bearer_token
from rig.transcript import Transcript

ROLES = {"alice": "administrator", "bob": "read_only", "carol": "disconnect"}
TOKENS = {"token_alice": "A" * 43, "token_bob": "b0b-token_value.~+/=", "token_carol": "c" * 40}


def test_every_known_token_is_compared_in_constant_time_whichever_matches(monkeypatch):
    operators = Operators("hes", ROLES, TOKENS)
    calls = []
    compare = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert operators.identify("Bearer " + "A" * 43) == Operator("alice", "administrator")
    assert len(calls) == 3  # no early exit on the first match
    calls.clear()
    assert operators.identify("Bearer wrong") is None
    assert len(calls) == 3


def test_the_scheme_is_case_insensitive_and_other_schemes_carry_no_token():
    assert bearer_token("bearer abc") == bearer_token("BEARER abc ") == "abc"
    assert bearer_token("Basic YWxhZGRpbjpvcGVu") is None
    assert bearer_token("Bearer") is None and bearer_token("") is None and bearer_token(None) is None


def test_401_and_403_carry_their_rfc_6750_challenges():
    operators = Operators("hes", ROLES, TOKENS, realm="lab-hes")
    with pytest.raises(AuthFailure) as missing:
        operators.authenticate(None)
    assert (missing.value.status, missing.value.challenge) == (401, 'Bearer realm="lab-hes"')
    with pytest.raises(AuthFailure) as wrong:
        operators.authenticate("Bearer nope")
    assert wrong.value.challenge == ('Bearer realm="lab-hes", error="invalid_token", '
                                     'error_description="the bearer token is not valid"')
    with pytest.raises(AuthFailure) as scope:
        operators.authorize(Operator("bob", "read_only"), "command", "disconnect")
    assert scope.value.status == 403 and 'error="insufficient_scope"' in scope.value.challenge
    operators.authorize(Operator("carol", "disconnect"), "approve", "approve")


def test_the_permission_table():
    assert {role: sorted(p) for role, p in ROLE_PERMISSIONS.items()} == {
        "read_only": ["read"], "auditor": ["audit", "read"], "recharge": ["read", "recharge"],
        "disconnect": ["approve", "command", "read"],
        "administrator": ["approve", "audit", "command", "configure", "read", "recharge"]}


@pytest.mark.parametrize(("roles", "tokens", "message"), [
    ({"dave": "administrator"}, {}, "hes: secrets.token_dave: operator 'dave' (administrator) has no token"),
    ({}, {"token_erin": "e" * 20}, "hes: secrets.token_erin: no operator 'erin' in settings.operators"),
    ({"bob": "read_only"}, {"token_bob": "has spaces in it"}, "hes: secrets.token_bob: a bearer token is letters"),
    ({"alice": "administrator", "bob": "read_only"}, {"token_alice": "same-token-1", "token_bob": "same-token-1"},
     "hes: secrets.token_bob: operator 'bob' has the same token as operator 'alice'"),
])
def test_operator_table_errors_name_the_operator_and_hide_the_token(roles, tokens, message):
    with pytest.raises(ConfigError) as info:
        Operators("hes", roles, tokens)
    assert str(info.value).startswith(message)
    assert not any(value in str(info.value) for value in tokens.values())


def test_a_lone_token_is_an_administrator():
    operators = Operators("hes", {}, {"token": "lone-token-1234"})
    assert operators.identify("Bearer lone-token-1234") == Operator("operator", "administrator")


def client(settings: dict, secrets: dict) -> HesClient:
    config = RoleConfig(driver="hes_http", resource="http://127.0.0.1:9", settings=settings)
    return HesClient("hes", config, SetpointLimits(), Transcript(None), secrets)


def test_the_driver_needs_a_token_for_every_operator_it_lists():
    with pytest.raises(ConfigError, match=r"^roles\.hes\.secrets\.token_bob: required: the token of operator 'bob'"):
        client({"operators": {"alice": "administrator", "bob": "read_only"}}, {"token_alice": "a" * 20})
    with pytest.raises(ConfigError, match=r"^roles\.hes\.settings\.operator: 'zed' is not in settings\.operators"):
        client({"operator": "zed", "operators": {"alice": "administrator"}}, {"token_alice": "a" * 20})
    with pytest.raises(ConfigError, match=r"roles\.hes\.settings\.operators\.bob: Input should be 'read_only'"):
        client({"operators": {"bob": "superuser"}}, {"token_bob": "b" * 20})
    acting = client({"operator": "alice", "operators": {"alice": "administrator"}}, {"token_alice": "a" * 20})
    assert (acting.operator, acting.token, acting.acting_as) == ("alice", "a" * 20, "as operator alice")
