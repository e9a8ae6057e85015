"""Money as decimal currency: amounts in rupees to the paisa (0.01 INR), tariffs to 0.0001 INR per kWh.

Amounts are `decimal.Decimal`, never binary floating point, so 0.10 added twenty times is 2.00 exactly and
adding and removing a large amount gives back the balance there was. An amount given from outside (an API
request, a plan's data) is parsed exactly and refused, never rounded, when it has more than two decimals, is not
finite or lies beyond its bound. An amount the rig computes (energy times tariff, a share of a recharge) is
rounded to the paisa once, half up (ROUND_HALF_UP: 0.005 INR becomes 0.01 INR).

Energy is charged without rounding drift (`CumulativeCharge`): the charge due is the energy since the tariff
took effect times the tariff, rounded once; each meter read charges what that total adds, so a thousand reads
of 0.4 paise each charge 4.00 INR, not 0.

On the wire (the HES API, its events) an amount is a JSON string with exactly two decimals ("12.30"), a tariff
a string with two to four decimals ("6.50", "39130.4348").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

PAISA = Decimal("0.01")
RATE_STEP = Decimal("0.0001")  # tariff resolution, INR per kWh
ROUNDING = ROUND_HALF_UP
ZERO = Decimal("0.00")
MAX_BALANCE = Decimal("10000000.00")  # default bound of any balance (1 crore INR); a policy may set its own
MAX_TARIFF = Decimal("1000000")  # INR per kWh
_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_PRECISION = 60  # digits of every intermediate result: far beyond any bounded amount times any bounded energy


class MoneyError(ValueError):
    """An amount or tariff refused; the message says why (the caller names the field)."""


def exact(value: Any) -> Decimal:
    """The exact decimal value of a JSON number or a decimal string; a float by its shortest text (0.1 is 0.1).
    MoneyError for anything else (bools, other text, lists) and for values that are not finite."""
    if isinstance(value, bool) or value is None:
        raise MoneyError(f"must be a decimal amount, got {_shown(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MoneyError(f"must be a finite amount, got {value!r}")
        value = repr(value)
    if isinstance(value, str):
        if not _DECIMAL_TEXT.match(value.strip()):
            raise MoneyError(f"must be a decimal amount, got {value!r}")
        value = value.strip()
    if not isinstance(value, Decimal | int | str):
        raise MoneyError(f"must be a decimal amount, got {_shown(value)}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise MoneyError(f"must be a decimal amount, got {value!r}") from None
    if not number.is_finite():
        raise MoneyError(f"must be a finite amount, got {value}")
    return number


def in_paise(value: Any) -> Decimal:
    """The exact value of an amount given from outside, with at most two decimals (not yet bounded)."""
    number = exact(value)
    if number.as_tuple().exponent < -2:
        raise MoneyError(f"must have at most 2 decimals (whole paise), got {_compact(number)}")
    return number


def amount(value: Any, *, high: Decimal = MAX_BALANCE, positive: bool = False, nonzero: bool = False) -> Decimal:
    """An amount given from outside, in paise: at most two decimals, |amount| <= high (and > 0 if positive,
    != 0 if nonzero); MoneyError saying why otherwise."""
    number = in_paise(value)
    if positive and number <= 0:
        raise MoneyError(f"must be positive, got {_compact(number)}")
    if nonzero and number == 0:
        raise MoneyError("must not be zero")
    if abs(number) > high:
        bound = f"at most {text(high)}" if positive else f"between -{text(high)} and {text(high)}"
        raise MoneyError(f"must be {bound}, got {_compact(number)}")
    return number.quantize(PAISA)


def rate(value: Any, *, high: Decimal = MAX_TARIFF) -> Decimal:
    """A tariff given from outside (per kWh): positive, at most four decimals, at most high."""
    number = exact(value)
    if number <= 0:
        raise MoneyError(f"must be positive, got {_compact(number)}")
    if number > high:
        raise MoneyError(f"must be at most {high}, got {_compact(number)}")
    if number.as_tuple().exponent < -4:
        raise MoneyError(f"must have at most 4 decimals, got {_compact(number)}")
    return number.quantize(RATE_STEP)


def paise(value: Decimal | int | float | str) -> Decimal:
    """An amount the rig computed, rounded to the paisa (half up); a float by its shortest text."""
    return _round(exact(value), PAISA)


def rate_of(value: Decimal | int | float | str) -> Decimal:
    """A tariff the rig computed, rounded to 0.0001 per kWh (half up)."""
    return _round(exact(value), RATE_STEP)


def text(value: Decimal) -> str:
    """An amount as the API writes it: exactly two decimals ("12.30", "-0.50")."""
    return f"{value.quantize(PAISA, rounding=ROUNDING):.2f}"


def rate_text(value: Decimal) -> str:
    """A tariff as the API writes it: two to four decimals ("6.50", "39130.4348")."""
    digits = f"{value.quantize(RATE_STEP, rounding=ROUNDING):.4f}"
    return digits[:-2] + digits[-2:].rstrip("0") if digits.endswith("0") else digits


def energy_cost(energy_wh: Decimal, tariff_per_kwh: Decimal) -> Decimal:
    """energy_wh at tariff_per_kwh, rounded to the paisa once."""
    with localcontext(prec=_PRECISION):
        return _round(energy_wh * tariff_per_kwh / 1000, PAISA)


@dataclass
class CumulativeCharge:
    """What a register's energy costs since `start_wh` at one tariff, charged without rounding drift: each
    reading charges the rounded cost of all the energy since start_wh less what was charged before."""

    start_wh: Decimal
    tariff_per_kwh: Decimal
    charged: Decimal = ZERO

    def charge_to(self, energy_wh: Decimal) -> Decimal:
        """The amount to debit for the register reaching energy_wh (never below start_wh)."""
        due = energy_cost(energy_wh - self.start_wh, self.tariff_per_kwh)
        cost, self.charged = due - self.charged, due
        return cost


def _round(number: Decimal, step: Decimal) -> Decimal:
    with localcontext(prec=_PRECISION):
        return number.quantize(step, rounding=ROUNDING)


def _compact(number: Decimal) -> str:
    """A refused number as given, short (1E+300 rather than three hundred digits)."""
    return str(number) if len(str(number)) <= 24 else f"{number:.6E}"


def _shown(value: Any) -> str:
    shown = "null" if value is None else ("true" if value is True else "false" if value is False else repr(value))
    return shown if len(shown) <= 40 else shown[:37] + "..."
