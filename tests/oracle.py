"""A plain-Python model of the counting rules, used as the oracle for large feeds.

Every event's effect on its dossier is idempotent and order-free: of a dossier's received
events, the earliest (then smallest event id, then content) fixes its unit, day, channel and
fee; digitized and paid-online are facts of the dossier whenever they arrive. So a re-sent
event changes nothing, and the order of the feed does not matter.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any


def expected_counts(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    received: dict[str, tuple[tuple[datetime, str, int], str, bool, bool]] = {}
    digitized: set[str] = set()
    paid_online: set[str] = set()
    for e in events:
        d = e["dossier_id"]
        if e["type"] == "dossier.received":
            # The earliest received event (ties: smallest event id, then content) wins.
            content = (e["channel"] == "online") + 2 * bool(e["fee_required"])
            rank = (
                datetime.fromisoformat(e["occurred_at"]).astimezone(UTC),
                e["event_id"],
                content,
            )
            if d not in received or rank < received[d][0]:
                received[d] = (rank, e["unit_code"], e["channel"] == "online", e["fee_required"])
        elif e["type"] == "dossier.digitized":
            digitized.add(d)
        elif e["payment_method"] == "online":
            paid_online.add(d)
    out: dict[str, dict[str, int]] = defaultdict(
        lambda: {"received": 0, "online": 0, "digitized": 0, "fee_required": 0, "paid_online": 0}
    )
    for d, (_, unit, online, fee) in received.items():
        c = out[unit]
        c["received"] += 1
        c["online"] += online
        c["digitized"] += d in digitized
        c["fee_required"] += fee
        c["paid_online"] += fee and d in paid_online
    return dict(out)


def messy_feed(units: list[str], dossiers: int, seed: int = 7) -> list[dict[str, Any]]:
    """Dossiers with digitized/paid events, shuffled (orphans), with duplicates and conflicting
    second received events (new ids) that must not count."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(dossiers):
        unit = units[i % len(units)]
        d = f"D{i}"
        at = f"2023-03-{1 + i % 28:02d}T{8 + i % 9:02d}:15:00+07:00"
        fee = rng.random() < 0.5
        events.append(
            {
                "event_id": f"{d}:r",
                "type": "dossier.received",
                "dossier_id": d,
                "unit_code": unit,
                "occurred_at": at,
                "channel": rng.choice(["online", "direct", "postal"]),
                "fee_required": fee,
            }
        )
        if rng.random() < 0.6:
            events.append(
                {
                    "event_id": f"{d}:d",
                    "type": "dossier.digitized",
                    "dossier_id": d,
                    "unit_code": unit,
                    "occurred_at": at,
                }
            )
        if rng.random() < 0.5:
            events.append(
                {
                    "event_id": f"{d}:p",
                    "type": "dossier.paid",
                    "dossier_id": d,
                    "unit_code": unit,
                    "occurred_at": at,
                    "payment_method": rng.choice(["online", "offline"]),
                }
            )
        if rng.random() < 0.04:  # a second received event with a new id: the earliest wins
            other_at = f"2023-02-{1 + i % 28:02d}T07:00:00+07:00" if rng.random() < 0.5 else at
            events.append(
                {
                    "event_id": f"{d}:r2",
                    "type": "dossier.received",
                    "dossier_id": d,
                    "unit_code": units[(i + 1) % len(units)],
                    "occurred_at": other_at,
                    "channel": "online",
                    "fee_required": not fee,
                }
            )
    rng.shuffle(events)
    events += rng.sample(events, len(events) // 50)  # 2% exact duplicates, late
    return events
