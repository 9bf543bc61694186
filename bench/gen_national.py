"""A deterministic national-size registry and dossier feed, with the counts it must produce.

Registry: a root (`VN`), 63 provinces (level `province`), 696 districts (`district`) and 9,240
communes (`commune`): 10,000 units in 3 levels below the root, the level names of the shipped
targets file so the 2023 campaign targets apply.

Feed: `dossiers` dossiers spread over `days` days from `start`, each with a `received` event and,
by chance, `digitized` and `paid` events; some timestamps are in UTC (`Z`) so the cohort day is
the local (Asia/Ho_Chi_Minh) one; events are shuffled within a window (orphans: digitized/paid
before received); a share is re-sent with the same event_id (duplicates) and a share gets a
second digitized event with a new id (counts once per dossier). The expected counts per unit
(all time, and over the campaign window) are accumulated while generating, so a benchmark can
check that what the pipeline counted equals what was sent.

    uv run python -m bench.gen_national --units-out /tmp/national.csv --dossiers 1000 --sample 3
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson

VN = timezone(timedelta(hours=7))
UTC = timezone.utc  # noqa: UP017
COUNT_FIELDS = ("received", "online", "digitized", "fee_required", "paid_online")
CAMPAIGN_2023 = (date(2023, 3, 1), date(2023, 5, 9))  # campaign-2023 in config/ca_mau/targets.yaml

PROVINCES = 63
DISTRICTS = 696
COMMUNES = 9_240
# Relative dossier volume of one unit, by level (a province office takes far more than a commune).
VOLUME = {"province": 40.0, "district": 8.0, "commune": 1.0}


@dataclass(frozen=True)
class NationalUnit:
    code: str
    name: str
    level: str
    parent_code: str | None
    has_fee_procedures: bool
    online: float  # probability a dossier is received online
    digitized: float
    paid_online: float


def national_units(seed: int = 2023) -> list[NationalUnit]:
    """The 10,000-unit registry (root included), the same for the same seed."""
    rng = random.Random(seed)

    def rates() -> tuple[float, float, float]:
        return rng.uniform(0.05, 0.95), rng.uniform(0.2, 0.95), rng.uniform(0.0, 0.6)

    units = [NationalUnit("VN", "Cả nước", "root", None, True, 0, 0, 0)]
    provinces = [f"P{i:02d}" for i in range(1, PROVINCES + 1)]
    for code in provinces:
        units.append(NationalUnit(code, f"Tỉnh {code}", "province", "VN", True, *rates()))
    # Districts per province: at least 5, the rest spread at random (deterministic).
    per_province = [5] * PROVINCES
    for _ in range(DISTRICTS - 5 * PROVINCES):
        per_province[rng.randrange(PROVINCES)] += 1
    districts: list[str] = []
    for p, n in zip(provinces, per_province, strict=True):
        for j in range(1, n + 1):
            code = f"{p}-H{j:02d}"
            districts.append(code)
            units.append(NationalUnit(code, f"Huyện {j} {p}", "district", p, True, *rates()))
    per_district = [8] * DISTRICTS
    for _ in range(COMMUNES - 8 * DISTRICTS):
        per_district[rng.randrange(DISTRICTS)] += 1
    for d, n in zip(districts, per_district, strict=True):
        for j in range(1, n + 1):
            code = f"{d}-X{j:02d}"
            fee = rng.random() < 0.9
            units.append(NationalUnit(code, f"Xã {j} {d}", "commune", d, fee, *rates()))
    return units


def write_registry(path: Path, seed: int = 2023) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["code", "name", "level", "parent_code", "has_fee_procedures"])
        for u in national_units(seed):
            out.writerow(
                [
                    u.code,
                    u.name,
                    u.level,
                    u.parent_code or "",
                    "yes" if u.has_fee_procedures else "no",
                ]
            )
    return path


def registry_units(units_csv: Path) -> list[NationalUnit]:
    """The units of a shipped registry (e.g. config/ca_mau/units.csv) for the same feed, with
    each unit's 2022 baseline rates as its probabilities (a middle value where it has none)."""
    out = []
    with units_csv.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):

            def rate(key: str, default: float, row: dict[str, str] = row) -> float:
                raw = (row.get(key) or "").strip()
                return float(raw) / 100 if raw else default

            out.append(
                NationalUnit(
                    code=row["code"].strip(),
                    name=row["name"].strip(),
                    level=row["level"].strip(),
                    parent_code=(row.get("parent_code") or "").strip() or None,
                    has_fee_procedures=(row.get("has_fee_procedures") or "yes").strip().lower()
                    not in {"no", "false", "0", "không", "khong", "n"},
                    online=rate("baseline_online_rate", 0.5),
                    digitized=rate("baseline_digitization_rate", 0.5),
                    paid_online=rate("baseline_online_payment_rate", 0.2),
                )
            )
    return out


@dataclass
class Expected:
    """What the pipeline must count: per unit, all time and over the campaign window."""

    all_time: dict[str, list[int]] = field(default_factory=dict)
    campaign: dict[str, list[int]] = field(default_factory=dict)
    dossiers: int = 0
    events: int = 0  # stream entries sent, duplicates included
    duplicates: int = 0  # entries re-sent with an event_id already sent

    def add(self, unit: str, day: date, counts: tuple[int, int, int, int, int]) -> None:
        for target, on in ((self.all_time, True), (self.campaign, _in_campaign(day))):
            if not on:
                continue
            row = target.get(unit)
            if row is None:
                row = target[unit] = [0, 0, 0, 0, 0]
            for i, c in enumerate(counts):
                row[i] += c

    @property
    def distinct_events(self) -> int:
        return self.events - self.duplicates

    def totals(self, which: str = "all_time") -> dict[str, int]:
        rows = self.all_time if which == "all_time" else self.campaign
        return {k: sum(r[i] for r in rows.values()) for i, k in enumerate(COUNT_FIELDS)}


def _in_campaign(day: date) -> bool:
    return CAMPAIGN_2023[0] <= day <= CAMPAIGN_2023[1]


@dataclass
class FeedPlan:
    dossiers: int
    seed: int = 7
    start: date = date(2023, 2, 1)
    days: int = 98  # 2023-02-01 .. 2023-05-09: a month before the campaign, then the campaign
    shuffle_window: int = 5_000  # events are shuffled within windows of this size (orphans)
    duplicate_rate: float = 0.005
    second_digitized_rate: float = 0.01
    utc_rate: float = 0.1  # share of timestamps written in UTC ('Z')


class Feed:
    """Yields chunks of stream payloads (JSON bytes, one event each) and fills `expected`."""

    def __init__(self, units: list[NationalUnit], plan: FeedPlan) -> None:
        self.plan = plan
        self.units = [u for u in units if u.parent_code is not None]
        self.expected = Expected()
        cum = 0.0
        self._cum: list[float] = []
        for u in self.units:
            cum += VOLUME.get(u.level, 1.0)
            self._cum.append(cum)

    def chunks(self, events_per_chunk: int = 50_000) -> Iterator[list[bytes]]:
        plan = self.plan
        rng = random.Random(plan.seed)
        exp = self.expected
        units, cum = self.units, self._cum
        total_weight = cum[-1]
        window: list[bytes] = []
        out: list[bytes] = []
        recent: list[bytes] = []
        dumps = orjson.dumps
        import bisect

        for n in range(plan.dossiers):
            unit = units[bisect.bisect_left(cum, rng.random() * total_weight)]
            day = plan.start + timedelta(days=rng.randrange(plan.days))
            minute = rng.randrange(0, 24 * 60 - 240)
            at = datetime(day.year, day.month, day.day, tzinfo=VN) + timedelta(minutes=minute)
            dossier = f"{unit.code}:{n:09d}"
            online = rng.random() < unit.online
            channel = "online" if online else ("postal" if rng.random() < 0.03 else "direct")
            fee = unit.has_fee_procedures and rng.random() < 0.5
            digit = rng.random() < unit.digitized
            paid_online = fee and rng.random() < unit.paid_online

            def stamp(moment: datetime) -> str:
                if rng.random() < plan.utc_rate:
                    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
                return moment.isoformat()

            window.append(
                dumps(
                    {
                        "event_id": f"{dossier}:r",
                        "type": "dossier.received",
                        "dossier_id": dossier,
                        "unit_code": unit.code,
                        "occurred_at": stamp(at),
                        "channel": channel,
                        "fee_required": fee,
                    }
                )
            )
            if digit:
                window.append(
                    dumps(
                        {
                            "event_id": f"{dossier}:d",
                            "type": "dossier.digitized",
                            "dossier_id": dossier,
                            "unit_code": unit.code,
                            "occurred_at": stamp(at + timedelta(hours=2)),
                        }
                    )
                )
                if rng.random() < plan.second_digitized_rate:
                    window.append(
                        dumps(
                            {
                                "event_id": f"{dossier}:d2",
                                "type": "dossier.digitized",
                                "dossier_id": dossier,
                                "unit_code": unit.code,
                                "occurred_at": stamp(at + timedelta(hours=3)),
                            }
                        )
                    )
            if fee:
                window.append(
                    dumps(
                        {
                            "event_id": f"{dossier}:p",
                            "type": "dossier.paid",
                            "dossier_id": dossier,
                            "unit_code": unit.code,
                            "occurred_at": stamp(at + timedelta(minutes=30)),
                            "payment_method": "online" if paid_online else "offline",
                            "amount_vnd": 50_000,
                        }
                    )
                )
            exp.add(unit.code, day, (1, int(online), int(digit), int(fee), int(paid_online)))
            exp.dossiers += 1
            if len(window) >= plan.shuffle_window:
                out.extend(self._flush(rng, window, recent))
                window = []
                if len(out) >= events_per_chunk:
                    yield out
                    out = []
        out.extend(self._flush(rng, window, recent))
        if out:
            yield out

    def _flush(self, rng: random.Random, window: list[bytes], recent: list[bytes]) -> list[bytes]:
        rng.shuffle(window)
        # Duplicates: events of this window or the previous one re-sent (a client retry).
        pool = recent + window
        dupes = [rng.choice(pool) for _ in range(int(len(window) * self.plan.duplicate_rate))]
        recent[:] = window[-500:]
        self.expected.events += len(window) + len(dupes)
        self.expected.duplicates += len(dupes)
        merged = window + dupes
        # Each duplicate lands at a random later position of the window.
        for i in range(len(window), len(merged)):
            j = rng.randrange(len(window) // 2, i + 1)
            merged[i], merged[j] = merged[j], merged[i]
        return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units-out", type=Path, default=Path("bench/results/national_units.csv"))
    parser.add_argument("--dossiers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample", type=int, default=0, help="print this many events")
    args = parser.parse_args()
    path = write_registry(args.units_out)
    feed = Feed(national_units(), FeedPlan(dossiers=args.dossiers, seed=args.seed))
    shown = 0
    for chunk in feed.chunks():
        for payload in chunk[: max(args.sample - shown, 0)]:
            print(payload.decode())
            shown += 1
    exp = feed.expected
    print(f"registry: {path} ({len(national_units())} units)")
    print(
        f"dossiers {exp.dossiers:,}  events {exp.events:,} (duplicates {exp.duplicates:,})  "
        f"all time {exp.totals()}  campaign {exp.totals('campaign')}"
    )


if __name__ == "__main__":
    main()
