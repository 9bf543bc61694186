"""HTTP route of the national-portal sync: `POST /api/v1/sync/dossiers` (DongBoHoSoMC records).

Thin: the mapping is in dongbo.py; mapped events go through the same `validate_events` and
`EventStream.append` as `POST /api/v1/events`, with the same 202/422/400/413/503 answers.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import structlog
from dvcpulse_common.registry import Registry
from dvcpulse_common.settings import Settings
from dvcpulse_shared.api import ErrorBody, FieldError
from dvcpulse_shared.events import EventAdapter
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .adapters import EventStream, StreamUnavailable
from .domain import BodyError, TooLarge, validate_events
from .dongbo import load_unit_mapping, map_records, source_field, split_records

log = structlog.get_logger("dvcpulse.ingest.sync")


class SyncRejection(BaseModel):
    index: int = Field(description="0-based position of the record in the request.")
    MaHoSo: str | None = None
    errors: list[FieldError] = Field(description="Each names the DongBoHoSoMC field at fault.")


class SyncResult(BaseModel):
    accepted: int = Field(description="Records accepted (all of their events are in the stream).")
    events: int = Field(description="Events appended to the stream for the accepted records.")
    rejected: list[SyncRejection] = Field(default_factory=list)


_FLAG = {"type": ["integer", "string", "null"], "description": "1 = yes; 0 or empty = no"}
RECORD_SCHEMA = {
    "type": "object",
    "description": "A DongBoHoSoMC record; the fields read are listed, others are ignored.",
    "required": ["MaHoSo", "DonViXuLy", "NgayTiepNhan"],
    "properties": {
        "MaHoSo": {"type": "string", "maxLength": 64},
        "DonViXuLy": {"type": "string", "description": "Unit code, mapped code or unique name"},
        "NgayTiepNhan": {"type": "string", "pattern": "^[0-9]{14}$", "example": "20230302083000"},
        "KenhThucHien": {
            "type": ["integer", "string", "null"],
            "description": "1 or empty = direct, 2 = online, 3 = postal",
        },
        "HoSoCoThanhPhanSoHoa": _FLAG,
        "TaiLieuNop": {
            "type": "array",
            "items": {"type": "object", "properties": {"DuocSoHoa": _FLAG}},
        },
        "DanhSachLePhi": {
            "type": "array",
            "items": {"type": "object", "properties": {"Gia": {"type": ["number", "string"]}}},
        },
        "DuocThanhToanTrucTuyen": {
            "type": ["integer", "string", "null"],
            "description": "1 or 2 = paid online",
        },
        "MaTTHC": {"type": "string"},
    },
}
RECORDS_SCHEMA = {
    "oneOf": [
        {"type": "array", "items": RECORD_SCHEMA},
        {"type": "object", "properties": {"data": {"type": "array", "items": RECORD_SCHEMA}}},
    ]
}


def sync_router(settings: Settings, registry: Registry, stream: EventStream) -> APIRouter:
    """Built at app creation; the unit mapping file is read here so that a bad file stops the
    service at start-up with its line named, not every request."""
    unit_map = (
        load_unit_mapping(settings.sync_unit_map_file, registry)
        if settings.sync_unit_map_file
        else {}
    )
    unit_codes = frozenset(registry.units)
    tz = ZoneInfo(settings.timezone)
    router = APIRouter(tags=["sync"])

    @router.post(
        "/api/v1/sync/dossiers",
        status_code=202,
        response_model=SyncResult,
        responses={
            400: {"model": ErrorBody, "description": "The body is not JSON"},
            413: {"model": ErrorBody, "description": "Over 10,000 records or 10 MB"},
            422: {"model": SyncResult, "description": "No record in the body is valid"},
            503: {"model": ErrorBody, "description": "Redis cannot take events now; retry"},
        },
        # The body is read raw (each record is mapped and validated on its own).
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": RECORDS_SCHEMA}},
            }
        },
    )
    async def sync_dossiers(request: Request) -> Any:
        """Accept DongBoHoSoMC records as the national public-service portal receives them.

        Body: a JSON array of records or `{"data": [...]}`. Each record becomes a
        `dossier.received` event, plus `dossier.digitized` (HoSoCoThanhPhanSoHoa or a
        TaiLieuNop[].DuocSoHoa = 1) and `dossier.paid` online (DuocThanhToanTrucTuyen 1 or 2,
        on a fee-bearing dossier). Event ids come from MaHoSo, so sending a record again after
        an update never counts it twice. A record is accepted or rejected as a whole.
        """
        # The same API keys and unit scopes as /api/v1/events (app.py puts its check on the
        # app state; it raises the app's 401 when keys are configured and none is presented).
        authorize = getattr(request.app.state, "authorize", None)
        scope = authorize(request) if authorize is not None else None
        declared = request.headers.get("content-length")
        too_large = f"body over {settings.max_body_bytes} bytes"
        if (
            declared
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > settings.max_body_bytes
        ):
            return JSONResponse({"detail": too_large}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                return JSONResponse({"detail": too_large}, status_code=413)
        try:
            records = split_records(bytes(body), settings.max_events_per_request)
        except TooLarge as exc:
            return JSONResponse({"detail": str(exc)}, status_code=413)
        except BodyError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)

        mapped = map_records(records, registry, unit_map, tz)
        errors = dict(mapped.rejected)
        checked = validate_events(mapped.events, unit_codes, scope)
        for rejection in checked.rejected:
            record = mapped.origin[rejection.index]
            for err in rejection.errors:
                named = FieldError(field=source_field(err.field), message=err.message)
                if named not in errors.setdefault(record, []):
                    errors[record].append(named)
        # validate_events keeps the input order and skips the rejected, so the k-th valid event
        # is the k-th mapped event that was not rejected.
        failed = {r.index for r in checked.rejected}
        kept = [i for i in range(len(mapped.events)) if i not in failed]
        # All or nothing per record: a received event must not land without the digitized or
        # paid event of the same record (or the other way round) when one of them is invalid.
        good = [
            event
            for i, event in zip(kept, checked.events, strict=True)
            if mapped.origin[i] not in errors
        ]
        accepted_records = len({mapped.origin[i] for i in kept} - set(errors))
        rejected = [
            SyncRejection(index=i, MaHoSo=mapped.dossier_ids.get(i), errors=errs)
            for i, errs in sorted(errors.items())
        ]
        if not good:
            return JSONResponse(
                SyncResult(accepted=0, events=0, rejected=rejected).model_dump(mode="json"),
                status_code=422,
            )
        payloads = [EventAdapter.dump_json(e, exclude_none=True) for e in good]
        try:
            await stream.append(payloads)
        except StreamUnavailable as exc:
            log.warning("sync.redis_unavailable", error=str(exc), events=len(payloads))
            return JSONResponse(
                {"detail": "the event stream is unavailable; nothing was accepted, retry later"},
                status_code=503,
                headers={"Retry-After": "2"},
            )
        log.info("sync.accepted", records=accepted_records, events=len(payloads))
        return SyncResult(accepted=accepted_records, events=len(payloads), rejected=rejected)

    return router
