"""HES HTTP/JSON API, with the standard library's http.client (not drivers/hes.py).

What is held to: HTTP semantics (RFC 9110: 405 with an Allow header, 15.5.6; 415 for a body in a format the
resource does not take, 15.5.16; 422 for well-formed content it cannot process, 15.5.21; 400 for a malformed
request, 15.5.1), JSON (RFC 8259: NaN and Infinity are not JSON numbers), and the money rules of the API
(rig/sim/hes/api.py): amounts are written as strings with exactly two decimals, a request's amount must be a
finite decimal in whole paise within its bounds, arithmetic is exact, and a refused request changes nothing.

Tests that post to an account are marked changes_outputs: on a real head end they run only with
--device-writes and move a test account's balance. Every request carries an administrator's bearer token:
environment variable RIG_HES_TOKEN, else the sim bench's operator's secret file (tests/conformance/test_hes_auth.py
holds the authentication itself to RFC 6750).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.role("hes")

AMOUNT = re.compile(r"^-?\d+\.\d{2}$")
TARIFF = re.compile(r"^\d+\.\d{2,4}$")


def call(device, method: str, path: str, body: bytes | str | dict | None = None,
         content_type: str | None = "application/json") -> tuple[int, http.client.HTTPMessage, object]:
    """One request on a fresh connection: (status, headers, the decoded JSON answer or its text)."""
    base = urlsplit(device.resource.url)
    connection_class = http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(base.hostname, base.port, timeout=10)
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    headers = {"Accept": "application/json", "Authorization": f"Bearer {hes_token()}"}
    if body is not None and content_type is not None:
        headers["Content-Type"] = content_type
    try:
        connection.request(method, base.path + path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = text
    return response.status, response.headers, answer


SIM_HES_TOKEN_FILE = Path(__file__).resolve().parents[2] / "benches" / "sim-hes-token-rig"


def hes_token() -> str:
    return os.environ.get("RIG_HES_TOKEN") or SIM_HES_TOKEN_FILE.read_text().strip()


def first_account(device) -> dict:
    status, _, accounts = call(device, "GET", "/accounts")
    assert status == 200 and isinstance(accounts, list) and accounts, accounts
    return accounts[0]


def balance(device, account_id: str) -> Decimal:
    status, _, account = call(device, "GET", f"/accounts/{account_id}")
    assert status == 200, account
    assert AMOUNT.match(account["balance"]), f"balance {account['balance']!r} is not a string with two decimals"
    return Decimal(account["balance"])


def reference() -> str:
    return f"conformance-{time.time_ns()}"


# -- reads ---------------------------------------------------------------------------------------------------


def test_version_names_the_head_end(device):
    status, headers, answer = call(device, "GET", "/version")
    assert status == 200 and headers.get_content_type() == "application/json"
    assert all(isinstance(answer[key], str) and answer[key] for key in ("manufacturer", "product", "instance",
                                                                         "version"))


def test_accounts_write_money_as_strings_with_two_decimals(device):
    account = first_account(device)
    assert AMOUNT.match(account["balance"]) and AMOUNT.match(account["last_recharge"])
    assert AMOUNT.match(account["arrears"]) and AMOUNT.match(account["emergency_credit"]["taken"])
    assert account["currency"] == "INR"
    status, _, same = call(device, "GET", f"/accounts/{account['account']}")
    assert status == 200 and same["account"] == account["account"]


def test_the_tariff_is_a_decimal_string(device):
    status, _, answer = call(device, "GET", "/tariff")
    assert status == 200 and TARIFF.match(answer["per_kwh"]) and Decimal(answer["per_kwh"]) > 0


def test_an_unknown_account_is_404_with_a_json_error(device):
    status, headers, answer = call(device, "GET", "/accounts/NO-SUCH-ACCOUNT")
    assert status == 404 and headers.get_content_type() == "application/json"
    assert "NO-SUCH-ACCOUNT" in answer["error"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/accounts/{id}", {"GET", "PATCH"}),
    ("GET", "/accounts/{id}/recharge", {"POST"}),
    ("PUT", "/accounts/{id}/recharge", {"POST"}),
    ("POST", "/tariff", {"GET", "PUT"}),
    ("DELETE", "/commands", {"GET"}),
])
def test_a_method_the_path_does_not_serve_is_405_with_an_allow_header(device, method, path, allowed):
    account_id = first_account(device)["account"]
    status, headers, answer = call(device, method, path.format(id=account_id))
    assert status == 405, answer
    allow = {m.strip() for m in (headers.get("Allow") or "").split(",") if m.strip()}
    assert allowed <= allow and method not in allow, f"Allow: {headers.get('Allow')!r}"


# -- request bodies ------------------------------------------------------------------------------------------


@pytest.mark.changes_outputs
@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-www-form-urlencoded", "amount=10.00"),  # curl -d
    ("text/plain", '{"amount": "10.00"}'),
    (None, '{"amount": "10.00"}'),
])
def test_a_body_that_is_not_json_is_415(device, content_type, body):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge", body, content_type=content_type)
    assert status == 415, answer
    assert balance(device, account_id) == before


@pytest.mark.changes_outputs
@pytest.mark.parametrize("body", ['{"amount": ', '{"amount": "1.00",}', "[1, 2", '{"amount": "1.00"} x',
                                  b'{"amount": "1.00", "reference": "\xff"}'])
def test_malformed_json_is_400(device, body):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge", body)
    assert status == 400 and "error" in answer, answer
    assert balance(device, account_id) == before


@pytest.mark.changes_outputs
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/accounts/{id}/recharge", {"amount": "1.00", "bonus": "5.00"}, "bonus"),
    ("/accounts/{id}/recharge", {"amount": "1.00", "Amount": "5.00"}, "Amount"),
    ("/accounts/{id}/adjustment", {"amount": "-1.00", "reason": "x", "force": True}, "force"),
    ("/accounts/{id}/connect", {"force": True}, "force"),
    ("/accounts/{id}/emergency-credit", {"amount": "50.00"}, "amount"),
    ("/group-commands", {"action": "connect", "accounts": ["{id}"], "priority": 1}, "priority"),
])
def test_an_unknown_field_is_422_naming_it(device, path, body, field):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    body = json.loads(json.dumps(body).replace("{id}", account_id))
    status, _, answer = call(device, "POST", path.format(id=account_id), body)
    assert status == 422, answer
    assert answer["field"] == field and field in answer["error"], answer
    assert balance(device, account_id) == before


@pytest.mark.changes_outputs
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/accounts/{id}/recharge", {"amount": "1.00", "reference": 5}, "reference"),
    ("/accounts/{id}/recharge", {"reference": "no amount"}, "amount"),
    ("/group-commands", {"action": "explode", "accounts": ["{id}"]}, "action"),
    ("/group-commands", {"action": "connect", "accounts": "{id}"}, "accounts"),
])
def test_a_field_of_the_wrong_type_or_missing_is_422_naming_it(device, path, body, field):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    body = json.loads(json.dumps(body).replace("{id}", account_id))
    status, _, answer = call(device, "POST", path.format(id=account_id), body)
    assert status == 422 and answer["field"] == field, answer
    assert balance(device, account_id) == before


@pytest.mark.changes_outputs
@pytest.mark.parametrize(("body", "field"), [
    ({"per_kwh": "abc"}, "per_kwh"), ({"per_kwh": -1}, "per_kwh"), ({"per_kwh": 0}, "per_kwh"),
    ('{"per_kwh": NaN}', "per_kwh"), ({"per_kwh": "6.50", "slab": 2}, "slab"),
])
def test_a_tariff_that_is_not_a_positive_decimal_is_422_and_the_tariff_stands(device, body, field):
    _, _, before = call(device, "GET", "/tariff")
    status, _, answer = call(device, "PUT", "/tariff", body)
    assert status == 422 and answer["field"] == field, answer
    assert call(device, "GET", "/tariff")[2] == before


@pytest.mark.changes_outputs
def test_a_clock_change_with_an_unknown_field_is_422(device):
    status, _, answer = call(device, "PUT", "/clock", {"offset_s": 0, "timezone": "UTC"})
    assert status == 422 and answer["field"] == "timezone", answer


@pytest.mark.changes_outputs
@pytest.mark.parametrize("body", [None, {}, {"offset_s": 0, "local_time": "2026-03-10T12:00:00"},
                                  {"offset_s": "0"}, '{"offset_s": NaN}', {"local_time": "noon"}])
def test_a_clock_change_needs_exactly_one_valid_field(device, body):
    status, _, answer = call(device, "PUT", "/clock", body)
    assert status == 422 and "error" in answer, answer


@pytest.mark.changes_outputs
def test_a_recharge_without_a_body_is_400(device):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge")
    assert status == 400 and "error" in answer, answer
    assert balance(device, account_id) == before


# -- money -----------------------------------------------------------------------------------------------


@pytest.mark.changes_outputs
@pytest.mark.parametrize("amount", ["1e300", "-1e300", "NaN", "Infinity", "-Infinity", "0.001", "-1", "0", "-0.00",
                                    '"abc"', '"1e300"', '"10.005"', "true", "null", "[10]", '{"value": 10}'])
def test_a_recharge_amount_that_is_not_a_positive_amount_in_paise_is_422_and_nothing_is_credited(device, amount):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    body = f'{{"amount": {amount}, "reference": "{reference()}"}}'
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge", body)
    assert status == 422, answer
    assert answer["field"] == "amount" and "amount" in answer["error"], answer
    assert balance(device, account_id) == before


@pytest.mark.changes_outputs
@pytest.mark.parametrize("amount", ["1e300", "-1e300", "NaN", "0.001", '"abc"', "0"])
def test_an_adjustment_that_is_not_a_bounded_amount_in_paise_is_422_and_the_balance_stands(device, amount):
    """The finding: +1e300 then -1e300 in binary floating point left 0, not the balance there was."""
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/adjustment",
                             f'{{"amount": {amount}, "reason": "conformance"}}')
    assert status == 422 and answer["field"] == "amount", answer
    assert balance(device, account_id) == before


@pytest.mark.changes_outputs
@pytest.mark.twin_only  # max_recharge is the policy's (uppcl.yaml: 100000 INR); a real HES has its own
def test_a_recharge_above_max_recharge_is_422_and_max_recharge_itself_is_taken(device):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge",
                             {"amount": "100000.01", "reference": reference()})
    assert status == 422 and answer["field"] == "amount" and "100000.00" in answer["error"], answer
    assert balance(device, account_id) == before
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge",
                             {"amount": "100000.00", "reference": reference()})
    assert status == 200 and answer["account"]["balance"] == f"{before + Decimal('100000.00'):.2f}"
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/adjustment",
                             {"amount": "-100000.00", "reason": "conformance: undo"})
    assert status == 200 and Decimal(answer["balance"]) == before


@pytest.mark.changes_outputs
def test_ten_paise_twenty_times_is_exactly_two_rupees(device):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    for _ in range(20):
        status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge", '{"amount": 0.10, '
                                 f'"reference": "{reference()}"}}')
        assert status == 200, answer
        assert AMOUNT.match(answer["account"]["balance"])
    assert balance(device, account_id) == before + Decimal("2.00")


@pytest.mark.changes_outputs
def test_point_one_plus_point_two_is_point_three_as_numbers_and_as_strings(device):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    for amount in ("0.1", "0.2", '"0.10"', '"0.20"'):
        status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge",
                                 f'{{"amount": {amount}, "reference": "{reference()}"}}')
        assert status == 200, answer
    after = balance(device, account_id)
    assert after - before == Decimal("0.60") and f"{after:.2f}" == call(
        device, "GET", f"/accounts/{account_id}")[2]["balance"]


@pytest.mark.changes_outputs
def test_a_recharge_answers_the_account_and_a_repeated_reference_is_409(device):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    ref = reference()
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge",
                             {"amount": "12.34", "reference": ref}, content_type="application/json; charset=utf-8")
    assert status == 200 and answer["account"]["balance"] == f"{before + Decimal('12.34'):.2f}", answer
    assert answer["account"]["last_recharge"] == "12.34"
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge", {"amount": "12.34", "reference": ref})
    assert status == 409, answer
    assert balance(device, account_id) == before + Decimal("12.34")


@pytest.mark.changes_outputs
def test_an_adjustment_moves_the_balance_exactly_both_ways(device):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/adjustment",
                             {"amount": "0.07", "reason": "conformance"})
    assert status == 200 and answer["balance"] == f"{before + Decimal('0.07'):.2f}", answer
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/adjustment",
                             {"amount": -0.07, "reason": "conformance: undo"})
    assert status == 200 and Decimal(answer["balance"]) == before, answer


# -- commands ------------------------------------------------------------------------------------------------


@pytest.mark.changes_outputs
def test_a_connect_is_accepted_as_a_command_that_can_be_followed(device):
    """202 with the command; it is then listed and readable with a known status (whether the meter executes it
    depends on the meter being reachable, which this test does not arrange)."""
    account_id = first_account(device)["account"]
    status, _, command = call(device, "POST", f"/accounts/{account_id}/connect")
    assert status == 202, command
    assert (command["account"], command["action"]) == (account_id, "connect") and command["id"]
    status, _, followed = call(device, "GET", f"/commands/{command['id']}")
    assert status == 200 and followed["id"] == command["id"]
    assert followed["status"] in ("queued", "sent", "retrying", "executed", "failed", "cancelled"), followed
    status, _, listed = call(device, "GET", "/commands")
    assert status == 200 and command["id"] in [c["id"] for c in listed]


def test_an_unknown_command_is_404(device):
    status, _, answer = call(device, "GET", "/commands/no-such-command")
    assert status == 404 and "no-such-command" in answer["error"]


@pytest.mark.changes_outputs
@pytest.mark.twin_only  # RFC 8259 section 4: names SHOULD be unique; the twin refuses a repeated one
def test_a_repeated_name_in_a_body_is_400_and_nothing_is_credited(device):
    account_id = first_account(device)["account"]
    before = balance(device, account_id)
    status, _, answer = call(device, "POST", f"/accounts/{account_id}/recharge",
                             '{"amount": "1.00", "amount": "99999.00"}')
    assert status == 400 and "'amount' appears twice" in answer["error"], answer
    assert balance(device, account_id) == before
