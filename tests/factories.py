"""Event builders for tests (plain dicts, as a one-stop system would send them)."""

from __future__ import annotations

import itertools
from typing import Any

_counter = itertools.count(1)


def received(
    unit: str = "CMU-S01",
    dossier: str | None = None,
    *,
    channel: str = "online",
    fee: bool = True,
    at: str = "2023-03-02T09:00:00+07:00",
    event_id: str | None = None,
) -> dict[str, Any]:
    n = next(_counter)
    dossier = dossier or f"HS-{n:08d}"
    return {
        "event_id": event_id or f"{dossier}:received:{n}",
        "type": "dossier.received",
        "dossier_id": dossier,
        "unit_code": unit,
        "occurred_at": at,
        "channel": channel,
        "fee_required": fee,
    }


def digitized(
    unit: str, dossier: str, *, at: str = "2023-03-02T10:00:00+07:00", event_id: str | None = None
) -> dict[str, Any]:
    n = next(_counter)
    return {
        "event_id": event_id or f"{dossier}:digitized:{n}",
        "type": "dossier.digitized",
        "dossier_id": dossier,
        "unit_code": unit,
        "occurred_at": at,
    }


def paid(
    unit: str,
    dossier: str,
    *,
    method: str = "online",
    at: str = "2023-03-02T11:00:00+07:00",
    event_id: str | None = None,
    amount: int | None = 50_000,
) -> dict[str, Any]:
    n = next(_counter)
    event = {
        "event_id": event_id or f"{dossier}:paid:{n}",
        "type": "dossier.paid",
        "dossier_id": dossier,
        "unit_code": unit,
        "occurred_at": at,
        "payment_method": method,
    }
    if amount is not None:
        event["amount_vnd"] = amount
    return event
