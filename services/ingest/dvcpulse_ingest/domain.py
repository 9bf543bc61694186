"""Pure rules of ingest: split a request body into events, validate each on its own."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson
from dvcpulse_shared.api import FieldError, Rejection
from dvcpulse_shared.events import EVENT_TYPES, EventAdapter
from pydantic import ValidationError

Event = Any  # DossierReceived | DossierDigitized | DossierPaid


class BodyError(ValueError):
    """The body as a whole is unusable (400)."""


class TooLarge(ValueError):
    """The body is over a limit (413)."""


@dataclass
class Validated:
    events: list[Event] = field(default_factory=list)
    # The JSON to append for each event: the bytes that were validated (so scoring validates
    # exactly what ingest did), re-encoded only when the unit code had to be normalised.
    payloads: list[bytes] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def _is_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def field_of(item: Any, name: str) -> str | None:
    """A string field of a raw item (dict or JSON bytes), for rejections and logs."""
    if isinstance(item, bytes):
        try:
            item = orjson.loads(item)
        except orjson.JSONDecodeError:
            return None
    value = item.get(name) if isinstance(item, dict) else None
    return value[:128] if isinstance(value, str) else None


def _raw_json(item: Any) -> tuple[bytes | None, str | None]:
    """The item as JSON bytes, or why it cannot be an event."""
    if isinstance(item, bytes):
        if item[:1] == b"{":
            return item, None
        return None, (
            "an event must be a JSON object" if _is_json(item) else "line is not valid JSON"
        )
    if not isinstance(item, dict):
        return None, "an event must be a JSON object"
    try:
        return orjson.dumps(item), None
    except (TypeError, orjson.JSONEncodeError) as exc:
        return None, f"not representable as JSON: {exc}"


def split_body(body: bytes, max_events: int) -> list[Any]:
    """A JSON array, a single JSON object, or NDJSON (one event per line).

    A line of NDJSON that is not JSON stays in the list as a marker so that it is rejected on
    its own, with its index, while the other lines still land.
    """
    text = body.strip()
    if not text:
        raise BodyError("the body is empty: send a JSON array of events or NDJSON")
    if text[:1] == b"[":
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BodyError(f"the body is not valid JSON: {exc}") from exc
        if not isinstance(items, list):
            raise BodyError("the body must be a JSON array of events or NDJSON")
    else:
        # NDJSON: each line stays as bytes, validated as JSON on its own (a broken line is
        # rejected with its index while the others land).
        items = [line for line in (raw.strip() for raw in text.split(b"\n")) if line]
        if not any(line[:1] == b"{" for line in items) and not any(
            _is_json(x) for x in items[:100]
        ):
            raise BodyError("the body is not valid JSON or NDJSON")
    if len(items) > max_events:
        raise TooLarge(f"too many events in one request: the limit is {max_events}")
    return items


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if loc and loc[0] in EVENT_TYPES:  # the union tag pydantic puts first
            loc = loc[1:]
        kind = err["type"]
        if kind in {"union_tag_invalid", "union_tag_not_found"}:
            field_name = "type"
            message = "must be one of " + ", ".join(EVENT_TYPES)
        else:
            field_name = ".".join(str(p) for p in loc)
            message = err["msg"]
            if kind == "extra_forbidden":
                message = "unknown field: not part of the event contract"
            elif kind == "timezone_aware":
                message = "date-time has no UTC offset; add one, e.g. +07:00 or Z"
            elif kind in {"datetime_type", "datetime_parsing", "datetime_from_date_parsing"}:
                message = (
                    "must be an RFC 3339 date-time string with an offset, "
                    "e.g. 2023-03-01T08:30:00+07:00"
                )
            elif kind == "json_invalid":
                message = "line is not valid JSON"
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
        errors.append(FieldError(field=field_name, message=message))
    return errors


def validate_events(
    items: list[Any],
    unit_codes: Collection[str],
    allowed_units: Collection[str] | None = None,
) -> Validated:
    """Validate every item on its own; an invalid one never costs the valid ones.

    Items are JSON bytes (NDJSON lines) or decoded JSON values (array elements, mapped sync
    records); either way the event is validated from JSON, as scoring will validate it again.
    """
    out = Validated()
    for index, item in enumerate(items):
        raw, problem = _raw_json(item)
        if raw is None:
            out.rejected.append(
                Rejection(index=index, errors=[FieldError(field="", message=problem or "")])
            )
            continue
        try:
            event = EventAdapter.validate_json(raw)
        except ValidationError as exc:
            out.rejected.append(
                Rejection(
                    index=index, event_id=field_of(item, "event_id"), errors=_field_errors(exc)
                )
            )
            continue
        code = event.unit_code
        if code not in unit_codes:
            # A code typed on a Vietnamese keyboard may arrive decomposed (NFD) or padded.
            nfc = unicodedata.normalize("NFC", code).strip()
            if nfc in unit_codes:
                event = event.model_copy(update={"unit_code": nfc})
                raw = EventAdapter.dump_json(event, exclude_none=True)
                code = nfc
        if code not in unit_codes:
            error = FieldError(field="unit_code", message=f"unknown unit {code!r}")
        elif allowed_units is not None and code not in allowed_units:
            error = FieldError(
                field="unit_code",
                message=f"this API key may not send events for unit {code!r}",
            )
        else:
            out.events.append(event)
            out.payloads.append(raw)
            continue
        out.rejected.append(Rejection(index=index, event_id=event.event_id, errors=[error]))
    return out
