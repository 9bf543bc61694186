"""Read endpoints for dashboards: rates over time, and CSV answers of the scores endpoints.

Grafana reads these over HTTP (Infinity data source): DuckDB has one writer process, so nothing
but the scoring service ever opens its file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from dvcpulse_common.rates import rate
from dvcpulse_common.registry import Registry
from dvcpulse_common.targets import set_in_force, unit_targets
from dvcpulse_shared.api import Counts, ErrorBody, Window
from dvcpulse_shared.targets import MetricTargets, TargetSet
from dvcpulse_shared.units import Unit
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from .domain import WindowError, resolve_window, select_units
from .store import ScoreStore

# A request may ask for at most this many points (about ten years of days).
MAX_POINTS = 3700

COUNT_FIELDS = tuple(Counts.model_fields)
METRICS = {
    # metric -> (numerator, denominator) count fields
    "online": ("online", "received"),
    "digitization": ("digitized", "received"),
    "online_payment": ("paid_online", "fee_required"),
}
CSV_PATHS = {"/api/v1/scores", "/api/v1/scores/levels"}


class Interval(StrEnum):
    day = "day"
    week = "week"


class MetricName(StrEnum):
    online = "online"
    digitization = "digitization"
    online_payment = "online_payment"


class SeriesResponse(BaseModel):
    window: Window
    target_set: str | None
    interval: Interval
    units: int = Field(description="How many registry units the series adds up.")
    metric: MetricName | None
    rows: list[dict[str, Any]] = Field(
        description="One row per interval, oldest first. Without `metric`: `time` (RFC 3339, "
        "local midnight of the interval's first day), the five counts and three rates of the "
        "interval, the same with a `cum_` prefix accumulated from the window's first day, and "
        "`target_online`, `target_digitization`, `target_online_payment`. With `metric`: `time`, "
        "`metric`, `numerator`, `denominator`, `rate`, `cum_numerator`, `cum_denominator`, "
        "`cum_rate`, `target`. Rates in percent, unrounded, null when the denominator is 0."
    )


def _buckets(first: date, last: date, interval: Interval) -> list[date]:
    if interval is Interval.week:
        first -= timedelta(days=first.weekday())  # ISO weeks start on Monday (DuckDB's too)
        step = timedelta(days=7)
    else:
        step = timedelta(days=1)
    out = []
    day = first
    while day <= last:
        out.append(day)
        day += step
    return out


def _targets_for(
    units: list[Unit], target_set: TargetSet | None, levels: set[str]
) -> MetricTargets | None:
    """The targets a series is judged by: one unit's (with overrides), one level's, else none
    (a mix of levels has no single target)."""
    if target_set is None:
        return None
    if len(units) == 1:
        return unit_targets(target_set, units[0].code, units[0].level)
    if len(levels) == 1:
        return target_set.levels.get(next(iter(levels)), MetricTargets())
    return None


def series_rows(
    points: list[tuple[Any, ...]],
    buckets: list[date],
    tz: ZoneInfo,
    targets_on: Callable[[date], MetricTargets | None],
    metric: MetricName | None,
) -> list[dict[str, Any]]:
    """Per-interval and cumulative rows for every bucket (empty buckets included), from counts."""
    by_bucket = {p[0]: Counts(**dict(zip(COUNT_FIELDS, p[1:], strict=True))) for p in points}
    cum = dict.fromkeys(COUNT_FIELDS, 0)
    rows: list[dict[str, Any]] = []
    for bucket in buckets:
        c = by_bucket.get(bucket, Counts()).model_dump()
        for k in COUNT_FIELDS:
            cum[k] += c[k]
        t = targets_on(bucket)
        when = datetime.combine(bucket, time(0), tz).isoformat()
        if metric is not None:
            num, den = METRICS[metric.value]
            target = getattr(t, metric.value) if t else None
            rows.append(
                {
                    "time": when,
                    "metric": metric.value,
                    "numerator": c[num],
                    "denominator": c[den],
                    "rate": rate(c[num], c[den]),
                    "cum_numerator": cum[num],
                    "cum_denominator": cum[den],
                    "cum_rate": rate(cum[num], cum[den]),
                    "target": None if target is None else float(target),
                }
            )
            continue
        row: dict[str, Any] = {"time": when, **c}
        for name, (num, den) in METRICS.items():
            row[f"{name}_rate"] = rate(c[num], c[den])
        row.update({f"cum_{k}": cum[k] for k in COUNT_FIELDS})
        for name, (num, den) in METRICS.items():
            row[f"cum_{name}_rate"] = rate(cum[num], cum[den])
        for name in METRICS:
            value = getattr(t, name) if t else None
            row[f"target_{name}"] = None if value is None else float(value)
        rows.append(row)
    return rows


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""  # null (no data / not applicable) stays empty, never 0
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # unrounded, as in the JSON answer
    return value


def rows_to_csv(body: dict[str, Any]) -> str:
    """Flatten `rows` of a scores answer: `targets.online` -> `target_online`,
    `status.online` -> `status_online`; the window id and target set on every row."""
    flat: list[dict[str, Any]] = []
    for row in body["rows"]:
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key == "targets":
                out.update({f"target_{k}": v for k, v in value.items()})
            elif key == "status":
                out.update({f"status_{k}": v for k, v in value.items()})
            else:
                out[key] = value
        out["window"] = body["window"]["id"]
        out["target_set"] = body.get("target_set")
        flat.append(out)
    buffer = io.StringIO()
    if flat:
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
        writer.writeheader()
        for row in flat:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return buffer.getvalue()


def wants_csv(request: Request) -> bool | None:
    """True for `?format=csv` or an Accept header preferring text/csv; None for a bad format."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        return {"csv": True, "json": False}.get(fmt.lower())
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept.split("text/csv")[0]


def register_series(
    app: FastAPI,
    *,
    settings: Any,
    registry: Registry,
    target_sets: list[TargetSet],
    store: ScoreStore,
    is_ready: Callable[[], bool],
    today: Callable[[], date],
) -> None:
    """Add `/api/v1/timeseries` and the CSV form of `/api/v1/scores[/levels]` to the app."""
    tz = ZoneInfo(settings.timezone)

    @app.middleware("http")
    async def csv_answers(request: Request, call_next):  # type: ignore[no-untyped-def]
        if request.url.path not in CSV_PATHS:
            return await call_next(request)
        as_csv = wants_csv(request)
        if as_csv is None:
            return JSONResponse(
                {"detail": "format must be 'csv' or 'json'", "field": "format"}, status_code=400
            )
        response = await call_next(request)
        if not as_csv or response.status_code != 200:
            return response  # errors stay JSON: they name the field at fault
        raw = b"".join([chunk async for chunk in response.body_iterator])
        text = rows_to_csv(json.loads(raw))
        return Response(text, media_type="text/csv; charset=utf-8")

    @app.get(
        "/api/v1/timeseries",
        response_model=SeriesResponse,
        responses={400: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    async def timeseries(
        date_from: Annotated[date | None, Query(alias="from")] = None,
        date_to: Annotated[date | None, Query(alias="to")] = None,
        window: Annotated[str | None, Query(description="'campaign' or a target-set id")] = None,
        unit: Annotated[str | None, Query(description="Unit codes, comma-separated")] = None,
        level: str | None = None,
        parent: str | None = None,
        metric: MetricName | None = None,
        interval: Interval = Interval.day,
    ) -> Any:
        """Rates over time for the selected units added up (all units when nothing is
        selected): per interval and cumulative from the window's first day, with the targets
        in force. Counts are summed, then divided — never averages of rates."""
        if not is_ready():
            return JSONResponse({"detail": "scoring is not ready"}, status_code=503)
        try:
            units = _select(registry, unit, level, parent)
            win, target_set = resolve_window(
                window, date_from, date_to, target_sets, today(), settings.campaign
            )
        except WindowError as exc:
            return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=400)
        codes = [u.code for u in units]
        points = await store.read(
            store.daily_series, codes, win.date_from, win.date_to, interval.value
        )
        first = win.date_from or (points[0][0] if points else None)
        last = win.date_to or (points[-1][0] if points else None)
        buckets = [] if first is None or last is None else _buckets(first, last, interval)
        if len(buckets) > MAX_POINTS:
            return JSONResponse(
                {"detail": f"more than {MAX_POINTS} points; narrow from/to", "field": "from"},
                status_code=400,
            )
        levels = {u.level for u in units}

        def targets_on(day: date) -> MetricTargets | None:
            # The window's own target set, else (all time) the set in force on that day.
            chosen = target_set or set_in_force(target_sets, max(day, first or day))
            return _targets_for(units, chosen, levels)

        rows = series_rows(points, buckets, tz, targets_on, metric)
        return SeriesResponse(
            window=win,
            target_set=target_set.id if target_set else None,
            interval=interval,
            units=len(units),
            metric=metric,
            rows=rows,
        )


def _select(registry: Registry, unit: str | None, level: str | None, parent: str | None):  # type: ignore[no-untyped-def]
    chosen = select_units(registry, level, parent, unit)
    if not chosen:
        raise WindowError("unit" if unit else "level", "selects no unit")
    return chosen
