"""Pure rules for score updates: which (unit, window) pairs a batch touched, and the update of
each as the JSON the scores stream carries. Built with plain integers and dicts because on a
national registry a batch touches thousands of units: the same rules as
`dvcpulse_common.rates`, checked against them in tests/unit/test_updates.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

import orjson
from dvcpulse_common.targets import unit_targets
from dvcpulse_shared.api import Window
from dvcpulse_shared.targets import TargetSet
from dvcpulse_shared.units import Unit

from .domain import windows_for_day

WindowKey = tuple[str, str]  # (window id, unit code)
CountTuple = tuple[
    int, int, int, int, int
]  # received, online, digitized, fee_required, paid_online


class _Static(NamedTuple):
    json: bytes  # unit_code, level, window and targets as one JSON object
    exact_targets: tuple[Fraction | None, Fraction | None, Fraction | None]  # as METRICS
    has_fee_procedures: bool


METRICS = ("online", "digitization", "online_payment")


class UpdateBuilder:
    def __init__(self, units: dict[str, Unit], target_sets: list[TargetSet]) -> None:
        self.units = units
        self.target_sets = target_sets
        self._windows = lru_cache(maxsize=4096)(self._windows_uncached)
        self._statics: dict[tuple[Window, str | None, str], _Static] = {}

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
        """`mark` for units grouped by day (what a batch returns). Days in the same windows are
        merged first: a national batch touches ~50,000 (unit, day) pairs but ~10,000 units."""
        by_windows: dict[
            tuple[str, ...], tuple[tuple[tuple[Window, TargetSet | None], ...], set[str]]
        ] = {}
        for day, units in touched.items():
            windows = self._windows(day)
            key = tuple(w.id for w, _ in windows)
            by_windows.setdefault(key, (windows, set()))[1].update(units)
        for windows, units in by_windows.values():
            for window, target_set in windows:
                value = (window, target_set)
                into.update(dict.fromkeys([(window.id, u) for u in units], value))

    def _static(self, window: Window, target_set: TargetSet | None, unit_code: str) -> _Static:
        """What an update of this (window, unit) always says, its JSON encoded once."""
        key = (window, target_set.id if target_set else None, unit_code)
        cached = self._statics.get(key)
        if cached is None:
            unit = self.units[unit_code]
            t = unit_targets(target_set, unit.code, unit.level)
            window_json = {
                "id": window.id,
                "name": window.name,
                "date_from": window.date_from.isoformat() if window.date_from else None,
                "date_to": window.date_to.isoformat() if window.date_to else None,
            }
            targets = {
                m: (None if getattr(t, m) is None else float(getattr(t, m))) for m in METRICS
            }
            exact = (_exact(t.online), _exact(t.digitization), _exact(t.online_payment))
            fixed = orjson.dumps(
                {
                    "unit_code": unit_code,
                    "level": unit.level,
                    "window": window_json,
                    "targets": targets,
                }
            )
            cached = self._statics[key] = _Static(fixed, exact, unit.has_fee_procedures)
        return cached

    def build(
        self,
        window: Window,
        target_set: TargetSet | None,
        unit_code: str,
        c: CountTuple,
        last_received_on: date | None,
        computed_at: str,
    ) -> bytes:
        """The ScoreUpdate JSON of one (window, unit): `c` is (received, online, digitized,
        fee_required, paid_online), `computed_at` an ISO 8601 instant. Under a backlog on a
        national registry this runs for every unit several times a second: the parts that never
        change are encoded once (`_static`) and spliced in."""
        fixed, (t_online, t_digitization, t_payment), has_fee = self._static(
            window, target_set, unit_code
        )
        received, online, digitized, fee_required, paid_online = c
        if received == 0:
            payment = "no_data" if has_fee else "not_applicable"
        elif not has_fee or fee_required == 0:
            payment = "not_applicable"
        else:
            payment = status(paid_online, fee_required, t_payment)
        varying = orjson.dumps(
            {
                "received": received,
                "online": online,
                "digitized": digitized,
                "fee_required": fee_required,
                "paid_online": paid_online,
                "online_rate": _rate(online, received),
                "digitization_rate": _rate(digitized, received),
                "online_payment_rate": _rate(paid_online, fee_required),
                "status": {
                    "online": status(online, received, t_online),
                    "digitization": status(digitized, received, t_digitization),
                    "online_payment": payment,
                },
                "last_received_on": last_received_on.isoformat() if last_received_on else None,
                "computed_at": computed_at,
            }
        )
        # Two JSON objects with disjoint keys -> one: drop the first's '}' and the second's '{'.
        return varying[:-1] + b"," + fixed[1:]


def _exact(target: Decimal | None) -> Fraction | None:
    return None if target is None else Fraction(target)


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
