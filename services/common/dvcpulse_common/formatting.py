"""Numbers as a Vietnamese reader writes them: 63,65% and 42.839.

The plan's appendix prints rates cut (not rounded) to two decimals: 24,965 of 39,219 is
63.6553...% and is printed 63,65%. Reports and pages follow the same rule, computed from the
counts so that no floating-point error can move a digit.
"""

from __future__ import annotations

from fractions import Fraction

NOT_APPLICABLE = "N/A"


def rate_hundredths(numerator: int, denominator: int) -> int | None:
    """The rate in hundredths of a percent, cut toward zero: 24965/39219 -> 6365."""
    if denominator == 0:
        return None
    return (numerator * 10_000) // denominator


def format_rate(numerator: int, denominator: int, na: str = NOT_APPLICABLE) -> str:
    hundredths = rate_hundredths(numerator, denominator)
    if hundredths is None:
        return na
    return f"{hundredths // 100},{hundredths % 100:02d}%"


def format_percent(value: float | Fraction | None, na: str = NOT_APPLICABLE) -> str:
    """A percentage given as a number (e.g. a baseline from the registry), cut to 2 decimals."""
    if value is None:
        return na
    exact = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    sign = "-" if exact < 0 else ""
    hundredths = int(abs(exact) * 100)
    return f"{sign}{hundredths // 100},{hundredths % 100:02d}%"


def format_count(value: int) -> str:
    return f"{value:,}".replace(",", ".")
