"""Alerts service: consumes score updates, keeps alert state in its own SQLite file, notifies
managers by email / signed webhook / log, and serves alerts, silences and the delivery log."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import redis.asyncio as aredis
import structlog
from dvcpulse_common.registry import Registry
from dvcpulse_common.settings import Settings
from dvcpulse_shared.targets import TargetSet
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .channels import Delivery, Dispatcher
from .clock import Clock, SystemClock
from .consumer import ScoresConsumer
from .domain import METRICS, Kind, Recipient, is_silenced
from .engine import AlertEngine, ResendRefused
from .grafana import GrafanaAnnotator
from .metrics import AlertsMetrics
from .recipients import RecipientsError, RecipientsSource
from .settings import AlertsSettings, alerts_settings
from .store import AlertStore, parse_ts, ts

log = structlog.get_logger("dvcpulse.alerts")


class AlertState(StrEnum):
    firing = "firing"
    resolved = "resolved"


class AlertOut(BaseModel):
    id: int
    state: AlertState
    unit_code: str
    unit_name: str
    level: str
    metric: str
    kind: Kind
    severity: str
    value: float | None = Field(description="Rate in percent (days without dossiers for silent)")
    target: float | None
    numerator: int
    denominator: int
    window: str
    window_name: str
    started_at: datetime
    resolved_at: datetime | None
    last_notified_at: datetime | None
    silenced: bool


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_code: str | None = Field(default=None, description="A unit code; empty = every unit")
    metric: str | None = Field(default=None, description=f"One of {', '.join(METRICS)}")
    kind: Kind | None = None
    starts_at: AwareDatetime | None = Field(default=None, description="Default: now")
    until: AwareDatetime = Field(description="End of the silence (RFC 3339 with an offset)")
    reason: str = Field(min_length=1, max_length=500)
    author: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _has_matcher(self) -> SilenceIn:
        if self.unit_code is None and self.metric is None and self.kind is None:
            raise ValueError("give at least one of unit_code, metric, kind")
        if self.metric is not None and self.metric not in METRICS:
            raise ValueError(
                f"metric: unknown metric {self.metric!r}; use one of {', '.join(METRICS)}"
            )
        return self


class SilenceOut(BaseModel):
    id: int
    unit_code: str | None
    metric: str | None
    kind: str | None
    starts_at: datetime
    until: datetime
    reason: str
    author: str
    created_at: datetime
    active: bool


class NotificationOut(BaseModel):
    id: int
    message_id: int
    type: str = Field(description="'alerts' (a grouped message) or 'digest'")
    recipient: str
    recipient_name: str | None
    channel: str
    address: str | None
    status: str = Field(description="pending (being retried), sent, failed or skipped")
    attempts: int
    error: str | None
    subject: str
    text: str | None = None
    created_at: datetime
    sent_at: datetime | None


# One row per delivery, with its message's type, subject and text.
DELIVERY_LOG = (
    "SELECT d.*, m.type, m.subject, m.text FROM deliveries d JOIN messages m ON m.id = d.message_id"
)


class RecipientOut(BaseModel):
    id: str
    name: str
    channels: list[str]
    digest: bool
    units: int = Field(description="Units whose alerts this recipient may receive")


class ReloadOut(BaseModel):
    file: str
    recipients: int


def _error(field: str, message: str, status: int = 422) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": ["body", field] if field else ["body"], "msg": message}]},
        status_code=status,
    )


def create_app(
    settings: Settings,
    registry: Registry,
    target_sets: list[TargetSet],
    *,
    recipients: list[Recipient] | None = None,
    clock: Clock | None = None,
    channels: dict[str, Delivery] | None = None,
    grafana_api: Any = None,
) -> FastAPI:
    s: AlertsSettings = alerts_settings(settings)
    clock = clock or SystemClock()
    store = AlertStore(s.alerts_db_path)
    metrics = AlertsMetrics()
    # Recipients given in code (tests) are fixed; from the file they follow its edits.
    source: RecipientsSource | None = None
    if recipients is None:
        source = RecipientsSource(s.recipients_file, registry)
        recipients = source.load()
    routed = recipients
    engine = AlertEngine(s, registry, target_sets, routed, store, clock, metrics)
    dispatcher = Dispatcher(s, store, clock, metrics, channels)
    annotator = GrafanaAnnotator(s, store, registry, grafana_api)
    tasks: list[asyncio.Task[None]] = []
    state: dict[str, Any] = {"ready": False}

    step_lock = asyncio.Lock()  # the ticker and the consumer both step; never at once

    def reload_recipients() -> list[Recipient]:
        """Read the recipients file again and route to it (RecipientsError when it is invalid:
        the recipients in force stay)."""
        assert source is not None
        try:
            loaded = source.load()
        except RecipientsError as exc:
            log.error("alerts.recipients_invalid", file=str(source.path), error=str(exc))
            raise
        engine.set_recipients(loaded)
        log.info("alerts.recipients_reloaded", file=str(source.path), recipients=len(loaded))
        return loaded

    async def step() -> None:
        """One scheduler step: state changes first (committed), then the sending."""
        async with step_lock:
            if source is not None and source.changed():
                with contextlib.suppress(RecipientsError):  # logged; the old list stays
                    reload_recipients()
            now = clock.now()
            engine.tick(now)
            dispatcher.kick()
            if annotator.enabled:
                await asyncio.to_thread(annotator.sync, now)
            state["ticked_at"] = now

    async def ticker() -> None:
        while state["ready"]:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("alerts.tick_failed", error=str(exc))
            await asyncio.sleep(s.tick_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await asyncio.to_thread(store.open)
        client = aredis.Redis.from_url(s.redis_url.get_secret_value())
        consumer = ScoresConsumer(
            client, engine, s.stream_prefix, s.scores_batch, s.block_ms, after_batch=step
        )
        app.state.consumer = consumer
        app.state.redis = client
        tasks.append(asyncio.create_task(consumer.run(), name="alerts-consumer"))
        tasks.append(asyncio.create_task(ticker(), name="alerts-ticker"))
        state["ready"] = True
        log.info("alerts.started", stream=consumer.stream, recipients=len(routed))
        try:
            yield
        finally:
            state["ready"] = False
            consumer.stopping = True
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(t, timeout=5)
            await dispatcher.close()
            await client.aclose()
            await asyncio.to_thread(store.close)
            log.info("alerts.stopped")

    app = FastAPI(
        title="dvcpulse alerts",
        version="1",
        description="Cảnh báo đơn vị có tỷ lệ 0% hoặc dưới chỉ tiêu; routing, silences, delivery log.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.dispatcher = dispatcher
    app.state.store = store
    app.state.clock = clock

    def alert_out(r: Any, silences: list) -> AlertOut:
        unit = registry.units.get(r["unit_code"])
        return AlertOut(
            id=r["id"],
            state=r["state"],
            unit_code=r["unit_code"],
            unit_name=unit.name if unit else r["unit_code"],
            level=unit.level if unit else "",
            metric=r["metric"],
            kind=r["kind"],
            severity=r["severity"],
            value=r["value"],
            target=r["target"],
            numerator=r["numerator"],
            denominator=r["denominator"],
            window=r["window_id"],
            window_name=r["window_name"],
            started_at=parse_ts(r["started_at"]),
            resolved_at=parse_ts(r["resolved_at"]),
            last_notified_at=parse_ts(r["last_notified_at"]),
            silenced=r["state"] == "firing"
            and is_silenced(silences, r["unit_code"], r["metric"], r["kind"], clock.now()),
        )

    @app.get("/api/v1/alerts", response_model=list[AlertOut])
    async def list_alerts(
        state: AlertState | None = None,
        kind: Kind | None = None,
        unit: Annotated[str | None, Query(description="A unit code")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Any:
        """Alerts, firing first, then the most recent."""
        if unit is not None and registry.resolve(unit) is None:
            return JSONResponse(
                {"detail": [{"loc": ["query", "unit"], "msg": f"unknown unit {unit!r}"}]},
                status_code=422,
            )
        sql, params = "SELECT * FROM alerts WHERE 1=1", []
        if state is not None:
            sql += " AND state = ?"
            params.append(state.value)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind.value)
        if unit is not None:
            sql += " AND unit_code = ?"
            params.append(registry.resolve(unit).code)  # type: ignore[union-attr]
        sql += (
            " ORDER BY state = 'resolved', severity = 'info', severity = 'warning', id DESC LIMIT ?"
        )
        params.append(limit)
        rows = store.query(sql, params)
        with store.transaction() as conn:
            silences = engine.silence_rules(conn)
        return [alert_out(r, silences) for r in rows]

    def silence_out(r: Any) -> SilenceOut:
        starts, ends = parse_ts(r["starts_at"]), parse_ts(r["ends_at"])
        now = clock.now()
        return SilenceOut(
            id=r["id"],
            unit_code=r["unit_code"],
            metric=r["metric"],
            kind=r["kind"],
            starts_at=starts,
            until=ends,
            reason=r["reason"],
            author=r["author"],
            created_at=parse_ts(r["created_at"]),
            active=starts <= now < ends,  # type: ignore[operator]
        )

    @app.post("/api/v1/silences", response_model=SilenceOut, status_code=201)
    async def create_silence(body: SilenceIn) -> Any:
        """Silenced alerts still show as firing but notify nobody until `until`."""
        now = clock.now()
        unit_code = None
        if body.unit_code is not None:
            unit = registry.resolve(body.unit_code)
            if unit is None:
                return _error("unit_code", f"unknown unit {body.unit_code!r}")
            unit_code = unit.code
        starts = body.starts_at or now
        if body.until <= now:
            return _error("until", "must be in the future")
        if body.until <= starts:
            return _error("until", "must be after starts_at")
        with store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO silences (unit_code, metric, kind, starts_at, ends_at, reason, "
                "author, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (
                    unit_code,
                    body.metric,
                    body.kind.value if body.kind else None,
                    ts(starts),
                    ts(body.until),
                    body.reason,
                    body.author,
                    ts(now),
                ),
            )
            row = conn.execute("SELECT * FROM silences WHERE id = ?", (cur.lastrowid,)).fetchone()
        log.info("alerts.silence_created", silence_id=row["id"], author=body.author)
        return silence_out(row)

    @app.get("/api/v1/silences", response_model=list[SilenceOut])
    async def list_silences(
        expired: Annotated[bool, Query(description="Also list expired silences")] = False,
    ) -> Any:
        now = ts(clock.now())
        rows = store.query("SELECT * FROM silences WHERE deleted_at IS NULL ORDER BY id")
        return [silence_out(r) for r in rows if expired or r["ends_at"] > now]

    @app.delete("/api/v1/silences/{silence_id}", status_code=204)
    async def delete_silence(silence_id: int) -> Response:
        with store.transaction() as conn:
            cur = conn.execute(
                "UPDATE silences SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (ts(clock.now()), silence_id),
            )
        if cur.rowcount == 0:
            return JSONResponse({"detail": f"no silence {silence_id}"}, status_code=404)
        log.info("alerts.silence_deleted", silence_id=silence_id)
        return Response(status_code=204)

    def notification_out(r: Any, full: bool = False) -> NotificationOut:
        return NotificationOut(
            id=r["id"],
            message_id=r["message_id"],
            type=r["type"],
            recipient=r["recipient_id"],
            recipient_name=engine.by_id[r["recipient_id"]].name
            if r["recipient_id"] in engine.by_id
            else None,
            channel=r["channel"],
            address=r["address"],
            status=r["status"],
            attempts=r["attempts"],
            error=r["error"],
            subject=r["subject"],
            text=r["text"] if full else None,
            created_at=parse_ts(r["created_at"]),
            sent_at=parse_ts(r["sent_at"]),
        )

    @app.get("/api/v1/notifications", response_model=list[NotificationOut])
    async def notifications(
        status: Annotated[str | None, Query(pattern="^(pending|sent|failed|skipped)$")] = None,
        recipient: str | None = None,
        type: Annotated[str | None, Query(pattern="^(alerts|digest)$")] = None,
        full: Annotated[bool, Query(description="Include the message text")] = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    ) -> Any:
        """The delivery log: one row per message and channel, newest first."""
        sql = f"{DELIVERY_LOG} WHERE 1=1"
        params: list[Any] = []
        for col, value in (("d.status", status), ("d.recipient_id", recipient), ("m.type", type)):
            if value is not None:
                sql += f" AND {col} = ?"
                params.append(value)
        sql += " ORDER BY d.id DESC LIMIT ?"
        params.append(limit)
        return [notification_out(r, full) for r in store.query(sql, params)]

    @app.post(
        "/api/v1/notifications/{delivery_id}/resend",
        response_model=NotificationOut,
        status_code=201,
        responses={404: {"description": "no such delivery"}, 409: {"description": "refused"}},
    )
    async def resend(delivery_id: int) -> Any:
        """Send a failed (or sent but not received) notification again on the same channel, to
        the recipient's address as configured now. A new delivery row; the old one is kept."""
        try:
            async with step_lock:  # never beside a step that queues or reloads
                new_id = engine.resend(delivery_id)  # one small SQLite transaction
        except LookupError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except ResendRefused as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        (row,) = store.query(f"{DELIVERY_LOG} WHERE d.id = ?", [new_id])
        dispatcher.kick()
        return notification_out(row)

    @app.get("/api/v1/recipients", response_model=list[RecipientOut])
    async def list_recipients() -> Any:
        """Who is notified now (after the last good reload of the recipients file)."""
        return [
            RecipientOut(
                id=r.id,
                name=r.name,
                channels=list(r.channels),
                digest=r.digest,
                units=len(r.units(registry)),
            )
            for r in engine.recipients
        ]

    @app.post(
        "/api/v1/recipients/reload",
        response_model=ReloadOut,
        responses={409: {"description": "recipients not from a file"}},
    )
    async def reload() -> Any:
        """Read the recipients file now (it is also read again within a tick of any change)."""
        if source is None:
            return JSONResponse({"detail": "recipients were given in code"}, status_code=409)
        try:
            async with step_lock:
                loaded = reload_recipients()
        except RecipientsError as exc:
            return _error("recipients_file", str(exc))
        return ReloadOut(file=str(source.path), recipients=len(loaded))

    @app.get("/health")
    async def health() -> JSONResponse:
        consumer_ok = bool(tasks) and not tasks[0].done()
        try:
            redis_ok = bool(await app.state.redis.ping())
        except Exception:
            redis_ok = False
        ok = state["ready"] and consumer_ok and redis_ok
        body: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "redis": redis_ok,
            "consumer": consumer_ok,
        }
        if state["ready"]:
            (firing,) = store.query("SELECT count(*) FROM alerts WHERE state='firing'")[0]
            (failed,) = store.query("SELECT count(*) FROM deliveries WHERE status='failed'")[0]
            ticked = state.get("ticked_at")
            body.update(
                firing=firing,
                failed_deliveries=failed,
                recipients=len(engine.recipients),
                recipients_error=source.error if source else None,
                window=engine.window().id,
                # The clock time the scheduler last looked at (tests wait for it to catch up).
                ticked_at=ticked.isoformat() if ticked else None,
            )
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
