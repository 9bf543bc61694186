"""Scoring service: owns the DuckDB file, consumes the events stream, serves the rates API."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
import structlog
from dvcpulse_common.http import ReadTokenMiddleware
from dvcpulse_common.rates import add_counts, rates, statuses
from dvcpulse_common.registry import Registry
from dvcpulse_common.settings import Settings
from dvcpulse_shared.api import (
    Counts,
    ErrorBody,
    LevelRow,
    LevelsResponse,
    ScoreRow,
    ScoresResponse,
)
from dvcpulse_shared.targets import Baselines, MetricTargets, TargetSet
from dvcpulse_shared.units import Unit
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from faststream.redis import RedisBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from .consumer import ScoringConsumer
from .domain import ScoreRowJson, WindowError, resolve_window, score_row
from .domain import select_units as select_units_in
from .metrics import ScoringMetrics
from .series import register_series
from .store import ScoreStore, WriterLocked
from .web import LiveFeed, install_scoreboard

log = structlog.get_logger("dvcpulse.scoring")


From = Annotated[date | None, Query(alias="from", description="First local day (YYYY-MM-DD)")]
To = Annotated[date | None, Query(alias="to", description="Last local day, inclusive")]
WindowQ = Annotated[
    str | None, Query(description="'campaign' (the active campaign) or a target-set id")
]


class ScoringState:
    """What the HTTP handlers read; `ready` turns true once this process holds the writer."""

    def __init__(self) -> None:
        self.ready = False
        self.role = "starting"


def create_app(
    settings: Settings,
    registry: Registry,
    target_sets: list[TargetSet],
    broker: RedisBroker | None = None,
    baselines: Baselines | None = None,
) -> FastAPI:
    broker = broker or RedisBroker(
        settings.redis_url.get_secret_value(),
        logger=logging.getLogger("dvcpulse.faststream"),
        graceful_timeout=30,  # SIGTERM: let the batch in hand finish
    )
    store = ScoreStore(
        settings.duckdb_path,
        settings.duckdb_memory_limit,
        settings.duckdb_threads,
        settings.duckdb_checkpoint_threshold,
    )
    metrics = ScoringMetrics()
    live = LiveFeed()  # the scoreboard page's server-sent events wait on it; see web.py
    consumer = ScoringConsumer(
        settings, registry, target_sets, store, broker, metrics, on_batch=live.on_batch
    )
    consumer.register()
    state = ScoringState()
    row_json = ScoreRowJson()
    tz = ZoneInfo(settings.timezone)

    async def open_store() -> None:
        state.role = "standby"
        while True:
            try:
                await asyncio.to_thread(store.open)
                break
            except WriterLocked as exc:
                log.warning("scoring.standby", reason=str(exc))
                await asyncio.sleep(1.0)
        state.role = "writer"

    async def become_writer() -> None:
        await open_store()
        await broker.connect()
        consumer.prepare_connection()
        async for attempt in AsyncRetrying(  # Redis may be down at start: wait for it
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                await consumer.ensure_group()
        await consumer.start_recovery()
        await broker.start()
        state.ready = True
        log.info("scoring.started", stream=consumer.streams.events, consumer=consumer.consumer)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # Start-up runs as a task so that a standby (or a wait for Redis) still answers /health
        # and still stops on SIGTERM; a normal start is awaited before serving.
        starting = asyncio.create_task(become_writer(), name="scoring-start")
        try:
            await asyncio.wait_for(asyncio.shield(starting), timeout=5)
        except TimeoutError:
            log.warning("scoring.waiting", role=state.role)
        try:
            yield
        finally:
            state.ready = False
            if not starting.done():
                starting.cancel()
                try:
                    await starting
                except (asyncio.CancelledError, Exception):
                    pass
            # Stop reading first (the batch in hand finishes), then the consumer's own loops and
            # its last score updates, and only then close the connection they all use.
            for subscriber in broker.subscribers:
                await subscriber.stop()
            await consumer.stop()
            await broker.stop()
            await asyncio.to_thread(store.close)
            log.info("scoring.stopped")

    app = FastAPI(
        title="dvcpulse scoring",
        version="1",
        description="Per-unit online, digitization and online-payment rates (tỷ lệ trực tuyến, "
        "số hóa, thanh toán trực tuyến).",
        lifespan=lifespan,
    )
    app.add_middleware(ReadTokenMiddleware, token_hashes=settings.read_tokens)
    app.state.consumer = consumer
    app.state.store = store
    app.state.scoring = state

    def bad_request(exc: WindowError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=400)

    def today() -> date:
        return datetime.now(tz).date()

    # Dashboard reads (timeseries, CSV answers of the scores endpoints): see series.py.
    register_series(
        app,
        settings=settings,
        registry=registry,
        target_sets=target_sets,
        store=store,
        is_ready=lambda: state.ready,
        today=today,
    )

    # Emulation ranking (thi đua) per level, by rate and by change since 2022: ranking.py.
    from .ranking import register_ranking

    register_ranking(
        app,
        registry=registry,
        target_sets=target_sets,
        settings=settings,
        store=store,
        is_ready=lambda: state.ready,
        today=today,
    )

    def select_units(level: str | None, parent: str | None, unit: str | None) -> list[Unit]:
        return select_units_in(registry, level, parent, unit)

    async def window_rows(
        window: str | None, date_from: date | None, date_to: date | None, units: list[Unit]
    ) -> tuple[Any, TargetSet | None, list[ScoreRow]]:
        win, target_set = resolve_window(
            window, date_from, date_to, target_sets, today(), settings.campaign
        )
        counts = await store.read(store.unit_counts, win.date_from, win.date_to)
        rows = [score_row(u, counts.get(u.code, Counts()), target_set) for u in units]
        return win, target_set, rows

    @app.get("/api/v1/units", response_model=list[Unit])
    async def units(level: str | None = None, parent: str | None = None) -> Any:
        try:
            return select_units(level, parent, None)
        except WindowError as exc:
            return bad_request(exc)

    @app.get(
        "/api/v1/scores",
        response_model=ScoresResponse,
        responses={400: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    async def scores(
        date_from: From = None,
        date_to: To = None,
        window: WindowQ = None,
        level: str | None = None,
        parent: str | None = None,
        unit: str | None = None,
    ) -> Any:
        """One row per unit: the five counts, the three rates (percent, unrounded; null when the
        denominator is 0), the targets in force and a status per metric."""
        if not state.ready:
            return JSONResponse({"detail": f"scoring is {state.role}"}, status_code=503)
        try:
            chosen = select_units(level, parent, unit)
            win, target_set = resolve_window(
                window, date_from, date_to, target_sets, today(), settings.campaign
            )
        except WindowError as exc:
            return bad_request(exc)
        counts = await store.read(store.unit_count_tuples, win.date_from, win.date_to)
        # Dicts and one orjson call: a 10,000-unit answer without 10,000 models (response_model
        # stays for the OpenAPI document; ScoreRowJson is tested against the model).
        zero = (0, 0, 0, 0, 0)
        body = {
            "window": win.model_dump(mode="json"),
            "target_set": target_set.id if target_set else None,
            "rows": [row_json.row(u, counts.get(u.code, zero), target_set) for u in chosen],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    def baseline_of(level_code: str, whole: bool) -> dict[str, Any]:
        """The plan's figures of the baseline year for a level, on rows covering all of it."""
        if baselines is None or not whole or level_code not in baselines.levels:
            return {}
        return {"baseline": baselines.levels[level_code], "baseline_year": baselines.year}

    @app.get(
        "/api/v1/scores/levels",
        response_model=LevelsResponse,
        responses={400: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    async def levels(
        date_from: From = None,
        date_to: To = None,
        window: WindowQ = None,
        level: str | None = None,
        parent: str | None = None,
        unit: str | None = None,
    ) -> Any:
        """One row per level and a `total` row. Totals are sums of counts, then divided."""
        if not state.ready:
            return JSONResponse({"detail": f"scoring is {state.role}"}, status_code=503)
        try:
            chosen = select_units(level, parent, unit)
            win, target_set = resolve_window(
                window, date_from, date_to, target_sets, today(), settings.campaign
            )
        except WindowError as exc:
            return bad_request(exc)
        counts = await store.read(store.unit_counts, win.date_from, win.date_to)
        whole = parent is None and unit is None  # every unit of a level: its baseline applies
        # Sums of counts per level (no per-unit rows are built: 10,000 units cost ~1 ms here).
        sums: dict[str, list[int]] = {}
        unit_count: dict[str, int] = {}
        fields = list(Counts.model_fields)
        for u in chosen:
            acc = sums.setdefault(u.level, [0] * len(fields))
            unit_count[u.level] = unit_count.get(u.level, 0) + 1
            c = counts.get(u.code)
            if c is not None:
                for i, name in enumerate(fields):
                    acc[i] += getattr(c, name)
        by_level = {lv: Counts(**dict(zip(fields, acc, strict=True))) for lv, acc in sums.items()}
        out: list[LevelRow] = []
        order = [lv.code for lv in registry.levels]
        for code in [*order, *sorted(set(by_level) - set(order))]:
            if code not in by_level:
                continue
            if code not in order and by_level[code].received == 0:
                continue  # e.g. the province root, which receives nothing itself
            c = by_level[code]
            t = target_set.levels.get(code, MetricTargets()) if target_set else MetricTargets()
            out.append(
                LevelRow(
                    level=code,
                    label=registry.level_label(code),
                    units=unit_count[code],
                    **c.model_dump(),
                    **rates(c).model_dump(),
                    targets=t,
                    status=statuses(c, t),
                    **baseline_of(code, whole),
                )
            )
        total = Counts()
        for row in out:  # the total is the sum of the shown levels' counts, never of their rates
            total = add_counts(total, by_level[row.level])
        out.append(
            LevelRow(
                level="total",
                label="Toàn tỉnh",
                units=sum(r.units for r in out),
                **total.model_dump(),
                **rates(total).model_dump(),
                targets=MetricTargets(),
                status=statuses(total, MetricTargets()),
                **baseline_of("total", whole and level is None),
            )
        )
        return LevelsResponse(
            window=win, target_set=target_set.id if target_set else None, rows=out
        )

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            redis_ok = bool(await broker._connection.ping())
        except Exception:
            redis_ok = False
        ok = state.ready and redis_ok
        body = {"status": "ok" if ok else "degraded", "role": state.role, "redis": redis_ok}
        if state.ready:
            body.update(await store.read(store.totals))
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        if state.ready:
            try:  # fresh lag and pending on every scrape, not only on the claim loop's beat
                await consumer.refresh_lag()
            except Exception as exc:
                log.warning("scoring.lag_unavailable", error=str(exc))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # The live scoreboard at `/` (page, static files, config, SSE): see web.py.
    install_scoreboard(app, live, settings, registry, target_sets)
    return app
