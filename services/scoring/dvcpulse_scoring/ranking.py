"""Ranking for the emulation movement (thi đua): per level, by each rate and by the improvement
since the 2022 baseline. `rank_units` is the pure rule; `register_ranking` adds
`GET /api/v1/ranking` to the scoring app.

Values are exact fractions from the counts (and the registry's decimal baselines), so two units
at 2/3 and 4/6 tie however floats would round. A unit without a value (no dossiers, payment not
applicable, no baseline) is never ranked as 0: it is listed last with no rank (N/A).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any

from dvcpulse_common.registry import Registry
from dvcpulse_shared.api import Counts, ErrorBody, Window
from dvcpulse_shared.targets import TargetSet
from dvcpulse_shared.units import Unit
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .domain import WindowError, resolve_window
from .store import ScoreStore


class RankBy(StrEnum):
    online_rate = "online_rate"
    digitization_rate = "digitization_rate"
    online_payment_rate = "online_payment_rate"
    online_improvement = "online_improvement"
    digitization_improvement = "digitization_improvement"
    online_payment_improvement = "online_payment_improvement"


RANK_LABELS = {
    RankBy.online_rate: "Tỷ lệ hồ sơ trực tuyến",
    RankBy.digitization_rate: "Tỷ lệ số hóa",
    RankBy.online_payment_rate: "Tỷ lệ thanh toán trực tuyến",
    RankBy.online_improvement: "Tăng tỷ lệ trực tuyến so với năm 2022 (điểm %)",
    RankBy.digitization_improvement: "Tăng tỷ lệ số hóa so với năm 2022 (điểm %)",
    RankBy.online_payment_improvement: "Tăng tỷ lệ thanh toán trực tuyến so với năm 2022 (điểm %)",
}

# metric -> (numerator, denominator, registry baseline field)
_METRIC = {
    "online": ("online", "received", "baseline_online_rate"),
    "digitization": ("digitized", "received", "baseline_digitization_rate"),
    "online_payment": ("paid_online", "fee_required", "baseline_online_payment_rate"),
}


def exact_rate(counts: Counts, metric: str, unit: Unit | None = None) -> Fraction | None:
    """The rate in percent as a fraction; None when its denominator is 0 or it does not apply."""
    numerator, denominator, _ = _METRIC[metric]
    if metric == "online_payment" and unit is not None and not unit.has_fee_procedures:
        return None
    den = getattr(counts, denominator)
    return None if den == 0 else Fraction(getattr(counts, numerator) * 100, den)


def baseline(unit: Unit, metric: str) -> Fraction | None:
    # The registry's baselines are decimals as printed in the plan (66.70): read them as such.
    value = getattr(unit, _METRIC[metric][2])
    return None if value is None else Fraction(str(value))


def metric_value(unit: Unit, counts: Counts, by: RankBy) -> Fraction | None:
    metric, _, basis = by.value.rpartition("_")
    current = exact_rate(counts, metric, unit)
    if basis == "rate" or current is None:
        return current
    base = baseline(unit, metric)
    return None if base is None else current - base


@dataclass(frozen=True)
class Ranked:
    rank: int | None  # None: N/A, listed last
    unit: Unit
    value: Fraction | None


def rank_units(entries: Iterable[tuple[Unit, Fraction | None]]) -> list[Ranked]:
    """Highest value first; equal values share a rank and the next rank skips (1, 2, 2, 4);
    ties keep the input (registry) order; units without a value come last, unranked."""
    items = list(entries)
    valued = sorted(
        (e for e in items if e[1] is not None),
        key=lambda e: e[1],  # type: ignore[arg-type,return-value]
        reverse=True,
    )
    # sorted() is stable with reverse=True too, so tied units keep the registry order.
    out: list[Ranked] = []
    for position, (unit, value) in enumerate(valued, start=1):
        rank = out[-1].rank if out and out[-1].value == value else position
        out.append(Ranked(rank, unit, value))
    out.extend(Ranked(None, unit, None) for unit, value in items if value is None)
    return out


def rank_level(units: Sequence[Unit], counts: dict[str, Counts], by: RankBy) -> list[Ranked]:
    return rank_units((u, metric_value(u, counts.get(u.code, Counts()), by)) for u in units)


# -- HTTP -----------------------------------------------------------------------------------


class RankingRow(BaseModel):
    rank: int | None = Field(description="1 = best; equal values share a rank; null = N/A.")
    unit_code: str
    unit_name: str
    value: float | None = Field(
        description="The rate in percent, or the change since 2022 in percentage points."
    )


class LevelRanking(BaseModel):
    level: str
    label: str
    by: RankBy
    title: str
    rows: list[RankingRow]


class RankingResponse(BaseModel):
    window: Window
    target_set: str | None
    rankings: list[LevelRanking]


From = Annotated[date | None, Query(alias="from", description="First local day (YYYY-MM-DD)")]
To = Annotated[date | None, Query(alias="to", description="Last local day, inclusive")]


def build_rankings(
    registry: Registry,
    counts: dict[str, Counts],
    levels: Sequence[str],
    bys: Sequence[RankBy],
) -> list[LevelRanking]:
    out = []
    for level in levels:
        units = [u for u in registry.units.values() if u.level == level]
        for by in bys:
            out.append(
                LevelRanking(
                    level=level,
                    label=registry.level_label(level),
                    by=by,
                    title=RANK_LABELS[by],
                    rows=[
                        RankingRow(
                            rank=r.rank,
                            unit_code=r.unit.code,
                            unit_name=r.unit.name,
                            value=None if r.value is None else float(r.value),
                        )
                        for r in rank_level(units, counts, by)
                    ],
                )
            )
    return out


def register_ranking(
    app: FastAPI,
    *,
    registry: Registry,
    target_sets: list[TargetSet],
    settings: Any,
    store: ScoreStore,
    is_ready: Callable[[], bool],
    today: Callable[[], date],
) -> None:
    @app.get(
        "/api/v1/ranking",
        response_model=RankingResponse,
        responses={400: {"model": ErrorBody}, 503: {"model": ErrorBody}},
        tags=["ranking"],
    )
    async def ranking(
        date_from: From = None,
        date_to: To = None,
        window: Annotated[
            str | None, Query(description="'campaign' (the active campaign) or a target-set id")
        ] = None,
        level: Annotated[str | None, Query(description="Only this level")] = None,
        by: Annotated[
            list[RankBy] | None, Query(description="Rankings wanted (default all)")
        ] = None,
    ) -> Any:
        """Emulation ranking (xếp hạng thi đua) per level: by each rate and by the change since
        the 2022 baseline. Equal values share a rank; units with no value are listed last with
        `rank: null` (N/A), never ranked as 0%."""
        if not is_ready():
            return JSONResponse({"detail": "scoring is not ready"}, status_code=503)
        known = [lv.code for lv in registry.levels]
        if level is not None and level not in known:
            return JSONResponse(
                {
                    "detail": f"unknown level {level!r}; use one of: {', '.join(known)}",
                    "field": "level",
                },
                status_code=400,
            )
        try:
            win, target_set = resolve_window(
                window, date_from, date_to, target_sets, today(), settings.campaign
            )
        except WindowError as exc:
            return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=400)
        counts = await store.read(store.unit_counts, win.date_from, win.date_to)
        return RankingResponse(
            window=win,
            target_set=target_set.id if target_set else None,
            rankings=build_rankings(
                registry, counts, [level] if level else known, by or list(RankBy)
            ),
        )
