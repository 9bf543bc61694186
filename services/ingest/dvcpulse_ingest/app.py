"""Ingest HTTP service: validate dossier events and append them to the events stream."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

import structlog
from dvcpulse_common.auth import allowed_units, match_hash, presented_secret
from dvcpulse_common.registry import Registry
from dvcpulse_common.settings import Settings
from dvcpulse_shared.api import ErrorBody, IngestResult
from dvcpulse_shared.events import DossierEvent, EventAdapter
from dvcpulse_shared.streams import StreamNames
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream.redis import RedisBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from .adapters import EventStream, StreamUnavailable
from .domain import BodyError, TooLarge, field_of, split_body, validate_events

log = structlog.get_logger("dvcpulse.ingest")
LOG_REJECTED_MAX = 100


def build_broker(settings: Settings) -> RedisBroker:
    return RedisBroker(
        settings.redis_url.get_secret_value(), logger=logging.getLogger("dvcpulse.faststream")
    )


def create_app(
    settings: Settings, registry: Registry, broker: RedisBroker | None = None
) -> FastAPI:
    broker = broker or build_broker(settings)
    streams = StreamNames(settings.stream_prefix)
    stream = EventStream(broker, streams.events)
    # Declared for the AsyncAPI document; events are written in bulk by EventStream.
    broker.publisher(
        stream=streams.events, title="events", description="Dossier events", schema=DossierEvent
    )
    unit_codes = frozenset(registry.units)
    key_hashes = [k.sha256 for k in settings.api_keys]
    key_scopes = [allowed_units(k, registry) for k in settings.api_keys]
    if not key_hashes:
        log.warning("ingest.open", reason="no DVCPULSE_API_KEYS configured: ingest accepts anyone")

    metrics = CollectorRegistry()
    events_in = Counter(
        "dvcpulse_ingest_events", "Events received, by outcome", ["outcome"], registry=metrics
    )
    requests_failed = Counter(
        "dvcpulse_ingest_requests_failed",
        "Requests refused, by reason",
        ["reason"],
        registry=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await broker.connect()
        log.info("ingest.started", stream=streams.events)
        try:
            yield
        finally:
            await broker.stop()

    app = FastAPI(
        title="dvcpulse ingest",
        version="1",
        description="Receives dossier events from one-stop systems (Bộ phận Một cửa).",
        lifespan=lifespan,
    )

    def error(status: int, detail: str, reason: str, headers: dict[str, str] | None = None):
        requests_failed.labels(reason).inc()
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    class Unauthorized(Exception):
        pass

    def authorize(request: Request) -> frozenset[str] | None:
        """The units the caller may send events for (None = all); raises when keys are
        configured and the request carries none of them."""
        if not key_hashes:
            return None
        index = match_hash(presented_secret(request.headers), key_hashes)
        if index is None:
            raise Unauthorized
        structlog.contextvars.bind_contextvars(source=settings.api_keys[index].name)
        return key_scopes[index]

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, __: Unauthorized) -> JSONResponse:
        return error(
            401,
            "missing or unknown API key: send it in the X-API-Key header",
            "unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )

    app.state.authorize = authorize  # shared with the other ingest routes (sync)

    @app.post(
        "/api/v1/events",
        status_code=202,
        response_model=IngestResult,
        responses={
            400: {"model": ErrorBody, "description": "The body is not JSON"},
            401: {"model": ErrorBody, "description": "Missing or unknown API key"},
            413: {"model": ErrorBody, "description": "Over 10,000 events or 10 MB"},
            422: {"model": IngestResult, "description": "No event in the body is valid"},
            503: {"model": ErrorBody, "description": "Redis cannot take events now; retry"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "maxItems": settings.max_events_per_request,
                            "items": {"$ref": "#/components/schemas/DossierEvent"},
                        }
                    },
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def post_events(request: Request) -> Any:
        """Validate each event on its own and append the valid ones to the events stream.

        Body: a JSON array of events or NDJSON. Answers 202 with the number accepted and, for
        each rejected event, its index and the field errors; 422 when none is valid.
        """
        scope = authorize(request)
        declared = request.headers.get("content-length")
        if (
            declared
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > settings.max_body_bytes
        ):
            return error(413, f"body over {settings.max_body_bytes} bytes", "too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                return error(413, f"body over {settings.max_body_bytes} bytes", "too_large")
        try:
            items = split_body(bytes(body), settings.max_events_per_request)
        except TooLarge as exc:
            return error(413, str(exc), "too_large")
        except BodyError as exc:
            return error(400, str(exc), "not_json")
        checked = validate_events(items, unit_codes, scope)
        events_in.labels("rejected").inc(len(checked.rejected))
        # One log line per rejected event (capped: a 10,000-event garbage body must not flood
        # the log), with the ids a one-stop operator searches for.
        for rejection in checked.rejected[:LOG_REJECTED_MAX]:
            log.warning(
                "ingest.event_rejected",
                index=rejection.index,
                event_id=rejection.event_id,
                dossier_id=field_of(items[rejection.index], "dossier_id"),
                errors=[f"{e.field}: {e.message}" for e in rejection.errors],
            )
        if not checked.events:
            requests_failed.labels("none_valid").inc()
            return JSONResponse(
                IngestResult(accepted=0, rejected=checked.rejected).model_dump(mode="json"),
                status_code=422,
            )
        payloads = checked.payloads
        try:
            await stream.append(payloads)
        except StreamUnavailable as exc:
            log.warning("ingest.redis_unavailable", error=str(exc), events=len(payloads))
            return error(
                503,
                "the event stream is unavailable; nothing was accepted, retry later",
                "redis_unavailable",
                headers={"Retry-After": "2"},
            )
        events_in.labels("accepted").inc(len(payloads))
        log.info("ingest.accepted", accepted=len(payloads), rejected=len(checked.rejected))
        return IngestResult(accepted=len(payloads), rejected=checked.rejected)

    # National-portal sync (DongBoHoSoMC records): same validation and stream path; sync.py.
    from .sync import sync_router

    app.include_router(sync_router(settings, registry, stream))

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = await stream.ping()
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "redis": ok}, status_code=200 if ok else 503
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        # The body is read raw (each event is validated on its own), so its schema is added here.
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            event_schema = EventAdapter.json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(event_schema.pop("$defs", {}))
            components["DossierEvent"] = event_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
