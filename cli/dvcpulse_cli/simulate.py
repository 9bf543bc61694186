"""A realistic demo feed for a registry: dossiers day by day, rates drawn around each unit's 2022
baseline and improving through the campaign toward (and for some units short of) the targets."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
from dvcpulse_common.registry import Registry
from dvcpulse_common.targets import set_in_force, unit_targets
from dvcpulse_shared.targets import TargetSet

VN = timezone(timedelta(hours=7))
# Mean dossiers a day per unit, by level, before --scale (2022 volumes: 39,219 at 18
# departments, 23,487 at 9 districts, 19,309 at 101 communes a year).
DAILY_VOLUME = {"province": 6.0, "district": 7.0, "commune": 1.0}


@dataclass
class Plan:
    start: date
    days: int
    scale: float = 1.0
    seed: int = 2023
    duplicate_rate: float = 0.005


def _clamp(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method is fine for the small means used here.
    if mean <= 0:
        return 0
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def generate(
    registry: Registry, target_sets: list[TargetSet], plan: Plan
) -> Iterator[list[dict[str, Any]]]:
    """Yield one list of events per simulated day (shuffled: some arrive before their dossier)."""
    rng = random.Random(plan.seed)
    units = [u for u in registry.units.values() if u.parent_code is not None]
    # Each unit improves at its own pace; a few lag behind and stay under target.
    pace = {u.code: rng.choice([0.2, 0.5, 0.8, 1.0, 1.1, 1.3]) for u in units}
    serial = 0
    for day_index in range(plan.days):
        day = plan.start + timedelta(days=day_index)
        progress = day_index / max(plan.days - 1, 1)
        target_set = set_in_force(target_sets, day)
        events: list[dict[str, Any]] = []
        for unit in units:
            targets = unit_targets(target_set, unit.code, unit.level)
            k = pace[unit.code]

            def prob(
                baseline: float | None, target: Any, progress: float = progress, k: float = k
            ) -> float:
                b = (baseline or 0.0) / 100
                goal = float(target) / 100 + 0.05 if target is not None else b + 0.1
                if b == 0.0 and progress < 0.3:  # units at 0% wake up a third of the way in
                    return 0.0
                return _clamp(b + (goal - b) * min(progress * k, 1.2))

            p_online = prob(unit.baseline_online_rate, targets.online)
            p_digit = prob(unit.baseline_digitization_rate, targets.digitization)
            p_pay = prob(unit.baseline_online_payment_rate, targets.online_payment)
            volume = DAILY_VOLUME.get(unit.level, 2.0) * plan.scale
            for _ in range(_poisson(rng, volume)):
                serial += 1
                dossier = f"{unit.code}-{day:%Y%m%d}-{serial:07d}"
                at = datetime(day.year, day.month, day.day, 8, 0, tzinfo=VN) + timedelta(
                    minutes=rng.randrange(0, 9 * 60)
                )
                online = rng.random() < p_online
                channel = "online" if online else ("postal" if rng.random() < 0.03 else "direct")
                fee = unit.has_fee_procedures and rng.random() < 0.5
                events.append(
                    {
                        "event_id": f"{dossier}:r",
                        "type": "dossier.received",
                        "dossier_id": dossier,
                        "unit_code": unit.code,
                        "occurred_at": at.isoformat(),
                        "channel": channel,
                        "fee_required": fee,
                    }
                )
                if rng.random() < p_digit:
                    events.append(
                        {
                            "event_id": f"{dossier}:d",
                            "type": "dossier.digitized",
                            "dossier_id": dossier,
                            "unit_code": unit.code,
                            "occurred_at": (at + timedelta(hours=2)).isoformat(),
                        }
                    )
                if fee:
                    method = "online" if rng.random() < p_pay else "offline"
                    events.append(
                        {
                            "event_id": f"{dossier}:p",
                            "type": "dossier.paid",
                            "dossier_id": dossier,
                            "unit_code": unit.code,
                            "occurred_at": (at + timedelta(minutes=30)).isoformat(),
                            "payment_method": method,
                            "amount_vnd": rng.choice([20_000, 50_000, 100_000, 250_000]),
                        }
                    )
        rng.shuffle(events)  # orphans: digitized/paid may come before received
        dupes = [e for e in events if rng.random() < plan.duplicate_rate]
        yield events + dupes


async def post_feed(
    url: str,
    days: Iterator[list[dict[str, Any]]],
    *,
    rate: float,
    batch: int = 500,
    api_key: str | None = None,
    on_progress: Any = None,
) -> dict[str, int]:
    """POST the feed as NDJSON batches at about `rate` events/s; retry on 503 as told."""
    headers = {"content-type": "application/x-ndjson"}
    if api_key:
        headers["x-api-key"] = api_key
    sent = accepted = rejected = 0
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for day_events in days:
            for i in range(0, len(day_events), batch):
                chunk = day_events[i : i + batch]
                body = b"\n".join(orjson.dumps(e) for e in chunk)
                while True:
                    try:
                        resp = await client.post("/api/v1/events", content=body, headers=headers)
                    except httpx.TransportError:
                        await asyncio.sleep(1)
                        continue
                    if resp.status_code == 503:
                        await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
                        continue
                    break
                if resp.status_code in (202, 422):
                    data = resp.json()
                    accepted += data["accepted"]
                    rejected += len(data["rejected"])
                else:
                    raise RuntimeError(f"ingest answered {resp.status_code}: {resp.text[:300]}")
                sent += len(chunk)
                if on_progress:
                    on_progress(len(chunk))
                if rate > 0:  # keep to the rate limit
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
    return {"sent": sent, "accepted": accepted, "rejected": rejected}
