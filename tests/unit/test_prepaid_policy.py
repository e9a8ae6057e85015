"""Prepaid policy: no-disconnection windows, grace, emergency credit, negative balance, alerts."""

import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal as D

import pytest

from rig.errors import ConfigError
from rig.prepaid import AccountState, DailyWindow, PrepaidPolicy, load_limits, load_policy

UPPCL = load_policy("uppcl")
BIHAR = load_policy("bihar")
TUESDAY = date(2026, 3, 10)  # no holiday in either list
SATURDAY = date(2026, 3, 14)
SUNDAY = date(2026, 3, 15)


def at(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss))


def exhausted(balance: str = "0.00", **fields) -> AccountState:
    return AccountState("SIM0001", D(balance), D("100.00"), **fields)


def charge(rules: PrepaidPolicy, account: AccountState, kwh: str | float) -> tuple[AccountState, D]:
    """Charge kwh at the policy's tariff; (new state, cost)."""
    cost = rules.cost(D(str(kwh)) * 1000)
    return rules.charge(account, cost), cost


def policy(**fields) -> PrepaidPolicy:
    data = {"name": "test", "tariff_per_kwh": 10.0, "meter_read_interval_s": 1.0, **fields}
    return load_policy(data)


# -- windows -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "inside"), [
    (time(17, 59, 59), False), (time(18, 0), True), (time(23, 59, 59), True), (time(0, 0), True),
    (time(7, 59, 59), True), (time(8, 0), False), (time(12, 0), False)])
def test_a_window_wrapping_midnight_holds_from_start_up_to_end(moment, inside):
    assert DailyWindow.model_validate("18:00-08:00").contains(moment) is inside


def test_a_window_within_one_day():
    window = DailyWindow(start=time(13, 0), end=time(14, 30))
    assert [window.contains(t) for t in (time(12, 59), time(13, 0), time(14, 29), time(14, 30))] == \
           [False, True, True, False]


def test_uppcl_hours_on_a_weekday():
    account = exhausted()
    assert UPPCL.disconnect_allowed(at(TUESDAY, 19), account) == (False, "no-disconnection hours 18:00-08:00")
    assert UPPCL.disconnect_allowed(at(TUESDAY, 7, 59, 59), account)[0] is False
    allowed, reason = UPPCL.disconnect_allowed(at(TUESDAY, 8), account)
    assert allowed and reason == "credit exhausted (balance 0.00 INR), no window applies"
    assert UPPCL.disconnect_allowed(at(TUESDAY, 17, 59, 59), account)[0] is True


def test_bihar_happy_hours_17_30_to_11_00():
    account = exhausted(-5.0)
    assert BIHAR.disconnect_allowed(at(TUESDAY, 17, 30), account) == (False, "no-disconnection hours 17:30-11:00")
    assert BIHAR.disconnect_allowed(at(TUESDAY, 10, 59), account)[0] is False
    assert BIHAR.disconnect_allowed(at(TUESDAY, 11, 0), account)[0] is True
    assert BIHAR.disconnect_allowed(at(TUESDAY, 17, 29, 59), account)[0] is True


def test_no_disconnection_all_sunday():
    assert UPPCL.disconnect_allowed(at(SUNDAY, 12), exhausted()) == (False, "no disconnection on Sundays")
    assert UPPCL.disconnect_allowed(at(SUNDAY, 20), exhausted()) == \
           (False, "no disconnection on Sundays; no-disconnection hours 18:00-08:00")
    assert UPPCL.disconnect_allowed(at(SATURDAY, 12), exhausted())[0] is True


def test_no_disconnection_on_a_listed_holiday():
    janmashtami = date(2026, 9, 4)  # a Friday
    assert UPPCL.disconnect_allowed(at(janmashtami, 12), exhausted()) == \
           (False, "public holiday 2026-09-04 (Janmashtami)")
    assert UPPCL.disconnect_allowed(at(janmashtami + timedelta(days=1), 12), exhausted())[0] is True


def test_holidays_are_lab_data_for_2026_and_2027():
    years = {h.date.year for h in UPPCL.no_disconnection.holidays}
    assert years == {2026, 2027}
    assert date(2026, 8, 15) in {h.date for h in UPPCL.no_disconnection.holidays}
    assert date(2026, 8, 15) in {h.date for h in BIHAR.no_disconnection.holidays}


def test_aware_times_are_taken_in_the_policy_offset():
    utc_13_00 = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)  # 18:30 IST
    assert UPPCL.local(utc_13_00) == at(TUESDAY, 18, 30)
    assert UPPCL.disconnect_allowed(utc_13_00, exhausted())[0] is False


def test_next_disconnect_time_skips_the_night_sundays_and_holidays():
    assert UPPCL.next_disconnect_time(at(TUESDAY, 19)) == at(TUESDAY + timedelta(days=1), 8)
    assert UPPCL.next_disconnect_time(at(TUESDAY, 9)) == at(TUESDAY, 9)
    assert UPPCL.next_disconnect_time(at(SATURDAY, 19)) == at(SUNDAY + timedelta(days=1), 8)
    assert UPPCL.next_disconnect_time(at(date(2026, 3, 3), 19)) == at(date(2026, 3, 5), 8)  # Holika Dahan, Holi
    assert BIHAR.next_disconnect_time(at(TUESDAY, 18)) == at(TUESDAY + timedelta(days=1), 11)


# -- grace, emergency credit, balance ---------------------------------------------------------------------


def test_positive_balance_is_never_disconnected():
    allowed, reason = UPPCL.disconnect_allowed(at(TUESDAY, 12), exhausted("0.01"))
    assert (allowed, reason) == (False, "balance 0.01 INR is positive")


def test_grace_period_after_conversion():
    converted = at(date(2026, 3, 5), 10)
    account = UPPCL.new_account("SIM0001", 0.0, converted)
    assert account.grace_until == at(date(2026, 4, 4), 10)
    assert UPPCL.disconnect_allowed(at(TUESDAY, 12), account) == (False, "grace period until 2026-04-04 10:00")
    assert UPPCL.disconnect_allowed(at(date(2026, 4, 4), 9, 59), account)[0] is False
    assert UPPCL.disconnect_allowed(at(date(2026, 4, 4), 10), account)[0] is True
    assert BIHAR.new_account("SIM0001", 0.0, converted).grace_until is None


def test_automatic_emergency_credit_holds_off_the_disconnect_until_spent():
    rules = policy(emergency_credit={"amount": 20, "automatic": True})
    account = rules.new_account("A", 10.0)
    account, cost = charge(rules, account, 1.5)  # 15 of 10 spent
    assert cost == D("15.00")
    assert (account.balance, account.emergency_credit, account.emergency_credit_taken) == (-5.0, "active", 20.0)
    assert rules.credit_exhausted(account) is False
    assert rules.disconnect_allowed(at(TUESDAY, 12), account) == (False, "emergency credit in use (15.00 INR left)")
    account, _ = charge(rules, account, 1.5)
    assert (account.balance, account.emergency_credit, account.arrears) == (-20.0, "used", 0.0)
    assert rules.credit_exhausted(account) is True
    assert rules.disconnect_allowed(at(TUESDAY, 12), account)[0] is True


def test_emergency_credit_on_request_once_per_recharge():
    account = UPPCL.new_account("A", 0.0)
    assert UPPCL.credit_exhausted(account)
    account = UPPCL.take_emergency_credit(account)
    assert (account.emergency_credit, account.emergency_credit_taken) == ("active", D("50.00"))
    assert not UPPCL.credit_exhausted(account)
    with pytest.raises(ValueError, match="already in use"):
        UPPCL.take_emergency_credit(account)
    account, _ = charge(UPPCL, account, 10.0)  # 65 INR: 50 of credit, 15 beyond
    assert (account.balance, account.arrears, account.emergency_credit) == (-50.0, 15.0, "used")
    with pytest.raises(ValueError, match="already used since the last recharge"):
        UPPCL.take_emergency_credit(account)
    account = UPPCL.recharge(account, 100.0)
    assert (account.balance, account.arrears, account.emergency_credit) == (35.0, 0.0, "available")
    with pytest.raises(ValueError, match="grants no emergency credit"):
        BIHAR.take_emergency_credit(BIHAR.new_account("A", 0.0))


def test_uppcl_balance_stops_at_zero_and_the_rest_is_arrears():
    account = UPPCL.new_account("A", 6.5)
    account, cost = charge(UPPCL, account, 3.0)  # 19.50 INR
    assert cost == D("19.50")
    assert account.balance == 0 and account.arrears == D("13.00")
    account = UPPCL.recharge(account, 10.0)
    assert account.balance == 0 and account.arrears == D("3.00")
    assert UPPCL.credit_exhausted(account)
    account = UPPCL.recharge(account, 100.0)
    assert account.balance == D("97.00") and account.arrears == 0


def test_bihar_balance_goes_negative_and_a_recharge_pays_it_back():
    account = BIHAR.new_account("A", 7.42)
    account, _ = charge(BIHAR, account, 3.0)
    assert account.balance == D("-14.84") and account.arrears == 0
    assert BIHAR.credit_exhausted(account)
    assert BIHAR.disconnect_allowed(at(TUESDAY, 19), account) == (False, "no-disconnection hours 17:30-11:00")
    assert BIHAR.disconnect_allowed(at(TUESDAY, 12), account)[0] is True
    account = BIHAR.recharge(account, 10.0)
    assert account.balance == D("-4.84") and BIHAR.credit_exhausted(account)
    account = BIHAR.recharge(account, 100.0)
    assert account.balance == D("95.16") and not BIHAR.credit_exhausted(account)


def test_adjustments_debit_and_credit_without_touching_the_alerts():
    account = replace(UPPCL.new_account("A", 100.0), alerts_sent=(30.0,))
    account = UPPCL.adjust(account, -110.0)
    assert (account.balance, account.arrears, account.last_recharge) == (0.0, 10.0, 100.0)
    account = UPPCL.adjust(account, 25.0)
    assert (account.balance, account.arrears, account.alerts_sent) == (15.0, 0.0, (30.0,))
    assert BIHAR.adjust(BIHAR.new_account("A", 5.0), -8.0).balance == D("-3.00")
    with pytest.raises(ValueError, match="an adjustment must not be zero"):
        UPPCL.adjust(account, 0.0)


@pytest.mark.parametrize(("amount", "why"), [
    (0.0, "must be positive"), (-5.0, "must be positive"), (float("nan"), "must be a finite amount"),
    (float("inf"), "must be a finite amount"), (D("1e300"), "must be at most 100000.00, got 1E+300"),
    ("100000.01", "must be at most 100000.00"), ("0.001", "must have at most 2 decimals"),
    ("abc", "must be a decimal amount"), (True, "must be a decimal amount")])
def test_a_recharge_must_be_a_positive_amount_in_paise_within_max_recharge(amount, why):
    with pytest.raises(ValueError, match=re.escape(f"a recharge {why}")):
        UPPCL.recharge(UPPCL.new_account("A", 0.0), amount)


def test_the_largest_recharge_is_accepted_and_no_balance_leaves_the_bound():
    account = UPPCL.recharge(UPPCL.new_account("A", "9900000.00"), "100000.00")
    assert account.balance == D("10000000.00") and UPPCL.max_balance == D("10000000.00")
    with pytest.raises(ValueError, match=r"would take the balance from 10000000\.00 to 10000000\.01, beyond"):
        UPPCL.recharge(account, "0.01")
    with pytest.raises(ValueError, match=r"would take the balance from -9999999\.00 to -10000000\.01"):
        BIHAR.adjust(BIHAR.new_account("A", "-9999999.00"), "-1.01")


def test_energy_to_charge_cannot_be_negative():
    with pytest.raises(ValueError, match="finite non-negative"):
        charge(UPPCL, UPPCL.new_account("A", 10.0), -0.1)
    with pytest.raises(ValueError, match="whole paise"):
        UPPCL.charge(UPPCL.new_account("A", 10.0), D("0.001"))


# -- alerts -----------------------------------------------------------------------------------------------


def test_alerts_at_30_10_and_0_percent_of_the_last_recharge_in_order():
    rules = policy()
    account = rules.new_account("A", 200.0)
    sent = []
    for kwh in (13.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 0.5):  # balance 70, 60, 50, 30, 20, 10, 0, 0 (arrears 5)
        account, _ = charge(rules, account, kwh)
        due = rules.due_alerts(account)
        sent.append(due)
        account = replace(account, alerts_sent=account.alerts_sent + tuple(due))
    assert sent == [[], [30.0], [], [], [10.0], [], [0.0], []]
    assert account.alerts_sent == (30.0, 10.0, 0.0)
    assert (account.balance, account.arrears) == (0.0, 5.0)


def test_alerts_crossed_at_once_come_highest_first_and_restart_after_a_recharge():
    rules = policy()
    account = rules.new_account("A", 100.0)
    account, _ = charge(rules, account, 10.0)
    assert rules.due_alerts(account) == [30.0, 10.0, 0.0]
    account = rules.recharge(replace(account, alerts_sent=(30.0, 10.0, 0.0)), 50.0)
    assert account.alerts_sent == () and account.last_recharge == 50.0
    assert rules.due_alerts(account) == []
    account, _ = charge(rules, account, 3.6)  # 14 of 50 left: 28 %
    assert rules.due_alerts(account) == [30.0]


def test_thresholds_are_sorted_highest_first():
    assert policy(alert_thresholds_pct=[0, 30, 10]).alert_thresholds_pct == [30.0, 10.0, 0.0]


# -- files ------------------------------------------------------------------------------------------------


def test_policy_files_carry_the_discom_rules():
    assert (UPPCL.name, UPPCL.grace_period_days, UPPCL.negative_balance_allowed) == ("UPPCL", 30.0, False)
    assert UPPCL.alert_thresholds_pct == [30.0, 10.0, 0.0]
    assert UPPCL.no_disconnection.weekdays == ["sunday"]
    assert (BIHAR.name, BIHAR.negative_balance_allowed) == ("Bihar", True)
    assert [w.label for w in BIHAR.no_disconnection.daily] == ["17:30-11:00"]


def test_an_unquoted_time_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ntariff_per_kwh: 5\nmeter_read_interval_s: 60\n"
                    "no_disconnection:\n  daily:\n    - {start: 18:00, end: '08:00'}\n")
    with pytest.raises(ConfigError, match=r"p\.yaml:6: no_disconnection\.daily\.0\.start: quote times in YAML"):
        load_policy(path)


def test_policy_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ntariff_per_kwh: 0\nmeter_read_interval_s: 60\n")
    with pytest.raises(ConfigError, match=r"p\.yaml:2: tariff_per_kwh: Input should be greater than 0"):
        load_policy(path)
    path.write_text("name: x\ntariff_per_kwh: 5\nmeter_read_interval_s: 60\nno_disconnection: {weekdays: [funday]}\n")
    with pytest.raises(ConfigError, match=r"no_disconnection\.weekdays\.0"):
        load_policy(path)
    with pytest.raises(ConfigError, match=r"start and end are both 08:00"):
        policy(no_disconnection={"daily": ["08:00-08:00"]})
    with pytest.raises(ConfigError, match=r"date 2026-01-26 appears twice"):
        policy(no_disconnection={"holidays": [{"date": "2026-01-26"}, {"date": "2026-01-26"}]})
    with pytest.raises(ConfigError, match=r"cannot read prepaid policy"):
        load_policy("no-such-discom")


def test_limits_profiles():
    twin = load_limits()
    assert twin.cutoff_after_exhaustion_max_s == 60.0
    assert load_limits("field").reconnect_after_recharge_max_s == 180.0
    with pytest.raises(ConfigError, match=r"no profile 'lab9' \(profiles: twin, field\)"):
        load_limits("lab9")
