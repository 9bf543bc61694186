"""Pure rules for score updates: which (unit, window) pairs a batch touched, and the update of
each as the JSON the scores stream carries. Built with plain integers and dicts because on a
national registry a batch touches thousands of units: the same rules as
`dvcpulse_common.rates`, checked against them in tests/unit/test_updates.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from fractions import Fraction
from functools import lru_cache
from typing import Any

from dvcpulse_common.targets import unit_targets
from dvcpulse_shared.api import Counts, Window
from dvcpulse_shared.targets import TargetSet
from dvcpulse_shared.units import Unit

from .domain import windows_for_day

WindowKey = tuple[str, str]  # (window id, unit code)
METRICS = ("online", "digitization", "online_payment")


class UpdateBuilder:
    def __init__(self, units: dict[str, Unit], target_sets: list[TargetSet]) -> None:
        self.units = units
        self.target_sets = target_sets
        self._windows = lru_cache(maxsize=4096)(self._windows_uncached)
        self._targets: dict[
            tuple[str | None, str], tuple[dict[str, Any], dict[str, Fraction | None]]
        ] = {}

    def _windows_uncached(self, day: date) -> tuple[tuple[Window, TargetSet | None], ...]:
        return tuple(windows_for_day(day, self.target_sets))

    def mark(
        self,
        touched: Iterable[tuple[str, date]],
        into: dict[WindowKey, tuple[Window, TargetSet | None]],
    ) -> None:
        for unit, day in touched:
            for window, target_set in self._windows(day):
                into[(window.id, unit)] = (window, target_set)

    def mark_by_day(
        self,
        touched: dict[date, list[str]],
        into: dict[WindowKey, tuple[Window, TargetSet | None]],
    ) -> None:
        """`mark` for units grouped by day (what a batch returns): one window lookup a day."""
        for day, units in touched.items():
            for window, target_set in self._windows(day):
                value = (window, target_set)
                into.update(dict.fromkeys([(window.id, u) for u in units], value))

    def targets_of(self, target_set: TargetSet | None, unit: Unit):  # type: ignore[no-untyped-def]
        key = (target_set.id if target_set else None, unit.code)
        cached = self._targets.get(key)
        if cached is None:
            t = unit_targets(target_set, unit.code, unit.level)
            as_json = {
                m: (None if getattr(t, m) is None else float(getattr(t, m))) for m in METRICS
            }
            exact = {
                m: (None if getattr(t, m) is None else Fraction(getattr(t, m))) for m in METRICS
            }
            cached = self._targets[key] = (as_json, exact)
        return cached

    def build(
        self,
        window: Window,
        target_set: TargetSet | None,
        unit_code: str,
        c: Counts,
        last_received_on: date | None,
        computed_at: datetime,
    ) -> dict[str, Any]:
        unit = self.units[unit_code]
        targets, exact = self.targets_of(target_set, unit)
        payment_applicable = unit.has_fee_procedures and (c.received == 0 or c.fee_required > 0)
        if c.received == 0:
            payment = "no_data" if unit.has_fee_procedures else "not_applicable"
        elif not payment_applicable:
            payment = "not_applicable"
        else:
            payment = status(c.paid_online, c.fee_required, exact["online_payment"])
        return {
            "received": c.received,
            "online": c.online,
            "digitized": c.digitized,
            "fee_required": c.fee_required,
            "paid_online": c.paid_online,
            "online_rate": _rate(c.online, c.received),
            "digitization_rate": _rate(c.digitized, c.received),
            "online_payment_rate": _rate(c.paid_online, c.fee_required),
            "unit_code": unit_code,
            "level": unit.level,
            "window": {
                "id": window.id,
                "name": window.name,
                "date_from": window.date_from.isoformat() if window.date_from else None,
                "date_to": window.date_to.isoformat() if window.date_to else None,
            },
            "targets": targets,
            "status": {
                "online": status(c.online, c.received, exact["online"]),
                "digitization": status(c.digitized, c.received, exact["digitization"]),
                "online_payment": payment,
            },
            "last_received_on": last_received_on.isoformat() if last_received_on else None,
            "computed_at": computed_at.isoformat(),
        }


def _rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator * 100 / denominator


def status(numerator: int, denominator: int, target: Fraction | None) -> str:
    if denominator == 0:
        return "no_data"
    if numerator == 0:
        return "zero"
    # numerator/denominator*100 < p/q, in integers
    if target is not None and numerator * 100 * target.denominator < target.numerator * denominator:
        return "below_target"
    return "met"
