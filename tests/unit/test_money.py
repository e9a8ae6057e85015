"""Money as decimal currency (rig/money.py): exact parsing, refusals, rounding, charging without drift."""

from decimal import Decimal as D

import pytest

from rig import money


@pytest.mark.parametrize(("given", "expected"), [
    ("10.10", D("10.10")), (D("1E+2"), D("100.00")), (0.1, D("0.10")), (500.0, D("500.00")), (7, D("7.00")),
    (" 2.5 ", D("2.50")), ("-0.07", D("-0.07")),
])
def test_amounts_are_parsed_exactly_to_the_paisa(given, expected):
    parsed = money.amount(given)
    assert parsed == expected and parsed.as_tuple().exponent == -2


@pytest.mark.parametrize(("given", "why"), [
    (D("1e300"), "must be between -10000000.00 and 10000000.00, got 1E+300"),
    ("1e300", "must be between -10000000.00 and 10000000.00"),
    (float("nan"), "must be a finite amount"), (float("inf"), "must be a finite amount"),
    (D("NaN"), "must be a finite amount"), ("Infinity", "must be a decimal amount"),
    (D("0.001"), "must have at most 2 decimals (whole paise), got 0.001"), (0.125, "at most 2 decimals"),
    ("abc", "must be a decimal amount, got 'abc'"), (True, "must be a decimal amount, got true"),
    (None, "must be a decimal amount, got null"), ([10], "must be a decimal amount, got [10]"),
    ("1,000.00", "must be a decimal amount"), ("0x10", "must be a decimal amount"),
])
def test_amounts_that_are_not_finite_paise_within_the_bound_are_refused(given, why):
    with pytest.raises(money.MoneyError) as info:
        money.amount(given)
    assert why in str(info.value)


def test_positive_and_nonzero_and_a_bound_of_ones_own():
    with pytest.raises(money.MoneyError, match="must be positive, got -1"):
        money.amount(-1, positive=True)
    with pytest.raises(money.MoneyError, match="must be positive, got 0"):
        money.amount("0.00", positive=True)
    with pytest.raises(money.MoneyError, match="must not be zero"):
        money.amount("-0.00", nonzero=True)
    assert money.amount("100000.00", high=D("100000.00")) == D("100000.00")
    with pytest.raises(money.MoneyError, match="between -100000.00 and 100000.00, got 100000.01"):
        money.amount("100000.01", high=D("100000.00"))


def test_ten_paise_twenty_times_is_two_rupees_and_a_huge_amount_cannot_swallow_a_balance():
    total = money.ZERO
    for _ in range(20):
        total += money.amount(0.1)
    assert total == D("2.00") and money.text(total) == "2.00"
    assert money.amount(0.1) + money.amount(0.2) == D("0.30")
    assert 1e300 + 123.45 - 1e300 == 0.0  # what binary floating point did to a balance
    with pytest.raises(money.MoneyError):
        money.amount(1e300)


def test_computed_amounts_are_rounded_half_up_to_the_paisa():
    assert money.paise(D("12.345")) == D("12.35")
    assert money.paise(D("12.344999")) == D("12.34")
    assert money.paise(D("-0.005")) == D("-0.01")
    assert money.paise(0.125) == D("0.13")  # the float's shortest text, not its binary value 0.12499999...
    assert money.rate_of(39130.434782608695) == D("39130.4348")


def test_texts_on_the_wire():
    assert [money.text(D(v)) for v in ("0", "12.3", "-0.5", "10000000")] == ["0.00", "12.30", "-0.50", "10000000.00"]
    assert [money.rate_text(D(v)) for v in ("6.5", "7.42", "1.234", "39130.4348", "10")] == \
           ["6.50", "7.42", "1.234", "39130.4348", "10.00"]


@pytest.mark.parametrize(("given", "why"), [
    (0, "must be positive"), (-6.5, "must be positive"), ("0.00001", "at most 4 decimals"),
    ("1000001", "must be at most 1000000"), ("abc", "must be a decimal amount"), (float("nan"), "finite"),
])
def test_tariffs_are_positive_with_at_most_four_decimals(given, why):
    with pytest.raises(money.MoneyError, match=why):
        money.rate(given)


def test_energy_is_charged_without_rounding_drift():
    charge = money.CumulativeCharge(D("1000.000"), D("10.00"))  # 10 INR/kWh: 1 Wh is one paisa
    costs = [charge.charge_to(D("1000.000") + D("0.4") * n) for n in range(1, 1001)]  # 0.4 Wh a read
    assert sum(costs) == D("4.00") and charge.charged == D("4.00")  # rounded per read, it would be 0.00
    assert set(costs) == {D("0.00"), D("0.01")}
    assert charge.charge_to(D("1400.000")) == D("0.00")  # the same reading again charges nothing


def test_energy_cost_of_an_exact_register_reading():
    register_wh = D(1234567).scaleb(-3)  # value 1234567, scaler -3: 1234.567 Wh
    assert money.energy_cost(register_wh, D("6.5")) == D("8.02")  # 8.0246855 INR
    assert money.energy_cost(D(10**12), D("1000000")) == D("1000000000000000.00")  # far beyond any bound, exact
