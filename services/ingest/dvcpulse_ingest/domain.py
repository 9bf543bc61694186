"""Pure rules of ingest: split a request body into events, validate each on its own."""

from __future__ import annotations

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
    rejected: list[Rejection] = field(default_factory=list)


_NOT_JSON = object()


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
        items = []
        for line in text.split(b"\n"):
            line = line.strip()
            if not line:
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                items.append(_NOT_JSON)
            if len(items) > max_events:
                break
        if items and all(item is _NOT_JSON for item in items):
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
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
        errors.append(FieldError(field=field_name, message=message))
    return errors


def _event_id_of(item: Any) -> str | None:
    if isinstance(item, dict):
        value = item.get("event_id")
        if isinstance(value, str):
            return value[:128]
    return None


def validate_events(
    items: list[Any],
    unit_codes: Collection[str],
    allowed_units: Collection[str] | None = None,
) -> Validated:
    """Validate every item on its own; an invalid one never costs the valid ones."""
    out = Validated()
    for index, item in enumerate(items):
        if item is _NOT_JSON:
            out.rejected.append(
                Rejection(
                    index=index, errors=[FieldError(field="", message="line is not valid JSON")]
                )
            )
            continue
        if not isinstance(item, dict):
            out.rejected.append(
                Rejection(
                    index=index,
                    errors=[FieldError(field="", message="an event must be a JSON object")],
                )
            )
            continue
        try:
            event = EventAdapter.validate_python(item)
        except ValidationError as exc:
            out.rejected.append(
                Rejection(index=index, event_id=_event_id_of(item), errors=_field_errors(exc))
            )
            continue
        if event.unit_code not in unit_codes:
            error = FieldError(field="unit_code", message=f"unknown unit {event.unit_code!r}")
        elif allowed_units is not None and event.unit_code not in allowed_units:
            error = FieldError(
                field="unit_code",
                message=f"this API key may not send events for unit {event.unit_code!r}",
            )
        else:
            out.events.append(event)
            continue
        out.rejected.append(Rejection(index=index, event_id=event.event_id, errors=[error]))
    return out
