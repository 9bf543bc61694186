"""Pure rules of scoring: decode a batch of stream entries, choose windows, build score rows."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
from dvcpulse_common.rates import metric_status, rate, statuses
from dvcpulse_common.registry import Registry
from dvcpulse_common.targets import sets_covering, unit_targets
from dvcpulse_shared.api import Counts, ScoreRow, Status, Window
from dvcpulse_shared.events import DossierPaid, DossierReceived, EventAdapter
from dvcpulse_shared.streams import DATA_FIELD
from dvcpulse_shared.targets import MetricTargets, TargetSet
from dvcpulse_shared.units import Unit
from pydantic import ValidationError

# FastStream's binary envelope starts with this; entries written by other producers may not.
_FASTSTREAM_MAGIC = b"\x89BIN\r\n\x1a\n"

RECEIVED, DIGITIZED, PAID = "dossier.received", "dossier.digitized", "dossier.paid"


@dataclass
class Poison:
    entry_id: bytes
    reason: str
    payload: bytes


# Bits of a dossier's state (the `flags` column of scoring's store).
ONLINE, FEE_REQUIRED, DIGITIZED_BIT, PAID_ONLINE = 1, 2, 4, 8


# The columns of a decoded batch, as the store reads them.
BATCH_SCHEMA = pa.schema(
    [
        ("type", pa.string()),
        ("dossier_id", pa.string()),
        ("unit_code", pa.string()),
        ("day", pa.date32()),
        ("flags", pa.uint8()),
        ("received_rank", pa.string()),
    ]
)


@dataclass
class DecodedBatch:
    """Valid events as columns (ready for one Arrow write) and the poison entries. Rows decoded
    one by one (`decode_entries`) are in the lists, rows decoded column-wise (vectorised.py) in
    `tables`; the store takes both as one Arrow table. Row order carries no meaning."""

    type: list[str] = field(default_factory=list)
    dossier_id: list[str] = field(default_factory=list)
    unit_code: list[str] = field(default_factory=list)
    # local date of occurred_at, for received events (the cohort day); None for the others
    day: list[date | None] = field(default_factory=list)
    # received: ONLINE | FEE_REQUIRED as sent; digitized: DIGITIZED_BIT; paid online: PAID_ONLINE
    flags: list[int] = field(default_factory=list)
    # Orders competing received events of one dossier (see received_rank); None for the others.
    received_rank: list[str | None] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.type) + sum(t.num_rows for t in self.tables)

    def columns(self) -> dict[str, list]:
        """The rows decoded one by one."""
        return {
            "type": self.type,
            "dossier_id": self.dossier_id,
            "unit_code": self.unit_code,
            "day": self.day,
            "flags": self.flags,
            "received_rank": self.received_rank,
        }

    def to_arrow(self) -> pa.Table:
        parts = [*self.tables]
        if self.type:
            parts.append(pa.Table.from_pydict(self.columns(), schema=BATCH_SCHEMA))
        if not parts:
            return BATCH_SCHEMA.empty_table()
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def extend(self, other: DecodedBatch) -> None:
        """Append another batch (the writer applies queued batches in one transaction)."""
        for name in (*self.columns(), "tables", "poison"):
            getattr(self, name).extend(getattr(other, name))


def data_field(fields: dict[bytes, bytes] | list[bytes]) -> bytes | None:
    """The `__data__` value of a stream entry: fields come as a dict, or as the flat
    [field, value, ...] list Redis sends (raw reads)."""
    if isinstance(fields, dict):
        return fields.get(DATA_FIELD)
    if len(fields) >= 2 and fields[0] == DATA_FIELD:
        return fields[1]
    return dict(zip(fields[::2], fields[1::2], strict=False)).get(DATA_FIELD)


def unwrap(fields: dict[bytes, bytes] | list[bytes]) -> bytes:
    """The event bytes of a stream entry, with or without FastStream's binary envelope."""
    data = data_field(fields)
    if data is None:
        raise ValueError(f"entry has no {DATA_FIELD.decode()!r} field")
    if data.startswith(_FASTSTREAM_MAGIC):
        from faststream.redis.parser.binary import BinaryMessageFormatV1

        data, _headers = BinaryMessageFormatV1.parse(data)
    return data


# Microseconds from 0001-01-01 UTC to the Unix epoch: ranks count from year 1, so they are never
# negative and sort as text.
YEAR_ONE_US = 62_135_596_800_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
QUARTER_HOUR_US = 15 * 60 * 1_000_000


def utc_micros(occurred_at: datetime) -> int:
    """Exact microseconds since the Unix epoch of an aware datetime."""
    return (occurred_at - _EPOCH) // _ONE_US


def received_rank(occurred_at: datetime, event_id: str, flags: int = 0) -> str:
    """Sort key of a received event. When one dossier has several received events, the earliest
    wins, ties broken by event id (then by content, for one id sent twice with different
    content) — so the result never depends on the order in which events arrive or are
    redelivered. Text: the instant as 20 digits, then the id, then the content."""
    return rank_text(utc_micros(occurred_at), event_id, flags)


def rank_text(micros: int, event_id: str, flags: int) -> str:
    """received_rank from the instant's microseconds (vectorised.py builds the same text)."""
    return f"{micros + YEAR_ONE_US:020d}|{event_id}\x01{flags}"


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


class LocalDays:
    """Local dates of instants, memoised per UTC quarter-hour: the local date only changes at
    local midnight, which falls on a quarter-hour boundary in every time zone in use. A block
    whose first and last microsecond have different local dates is never memoised."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._days: dict[int, date] = {}

    def uniform(self, block: int) -> date | None:
        """The local date of every instant of a UTC quarter-hour block, or None if it has two."""
        day = self._days.get(block)
        if day is None:
            start = _EPOCH + timedelta(microseconds=block * QUARTER_HOUR_US)
            day = self.of(start, block * QUARTER_HOUR_US)
            if block not in self._days:
                return None
        return day

    def of(self, moment: datetime, micros: int) -> date:
        block = micros // QUARTER_HOUR_US
        day = self._days.get(block)
        if day is None:
            day = local_day(moment, self.tz)
            start = _EPOCH + timedelta(microseconds=block * QUARTER_HOUR_US)
            end = start + timedelta(microseconds=QUARTER_HOUR_US - 1)
            if local_day(start, self.tz) == local_day(end, self.tz) == day:
                if len(self._days) > 100_000:
                    self._days.clear()
                self._days[block] = day
        return day


def decode_entries(
    entries: Iterable[tuple[bytes, dict[bytes, bytes] | list[bytes]]],
    unit_codes: Collection[str],
    tz: ZoneInfo | LocalDays,
) -> DecodedBatch:
    """Validate every entry again: the stream may hold entries from producers other than ingest."""
    days = tz if isinstance(tz, LocalDays) else LocalDays(tz)
    out = DecodedBatch()
    for entry_id, fields in entries:
        raw = (data_field(fields) if isinstance(fields, dict | list) else None) or b""
        try:
            raw = unwrap(fields)
            event = EventAdapter.validate_json(raw)
        except (ValueError, ValidationError) as exc:
            reason = (
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            out.poison.append(Poison(entry_id, f"invalid event: {reason}"[:2000], raw))
            continue
        unit_code = event.unit_code
        if unit_code not in unit_codes:
            # Another producer may have written the code decomposed (NFD) or padded.
            unit_code = unicodedata.normalize("NFC", unit_code).strip()
            if unit_code not in unit_codes:
                out.poison.append(Poison(entry_id, f"unknown unit_code {event.unit_code!r}", raw))
                continue
        out.type.append(event.type)
        out.dossier_id.append(event.dossier_id)
        out.unit_code.append(unit_code)
        if isinstance(event, DossierReceived):
            flags = (ONLINE if event.channel.value == "online" else 0) | (
                FEE_REQUIRED if event.fee_required else 0
            )
            micros = utc_micros(event.occurred_at)
            out.day.append(days.of(event.occurred_at, micros))
            out.flags.append(flags)
            out.received_rank.append(rank_text(micros, event.event_id, flags))
        else:
            out.day.append(None)  # only the received event fixes the cohort day
            out.received_rank.append(None)
            if isinstance(event, DossierPaid):
                out.flags.append(PAID_ONLINE if event.payment_method.value == "online" else 0)
            else:
                out.flags.append(DIGITIZED_BIT)
    return out


def year_window(year: int) -> Window:
    return Window(
        id=f"year-{year}",
        name=f"Năm {year}",
        date_from=date(year, 1, 1),
        date_to=date(year, 12, 31),
    )


def set_window(target_set: TargetSet) -> Window:
    return Window(
        id=target_set.id,
        name=target_set.name,
        date_from=target_set.valid_from,
        date_to=target_set.valid_to,
    )


def windows_for_day(
    day: date, target_sets: list[TargetSet]
) -> list[tuple[Window, TargetSet | None]]:
    """The windows a dossier received on `day` counts in: every target set covering the day,
    or its calendar year when no set does (so alerts still see 0% and silent units)."""
    covering = sets_covering(target_sets, day)
    if covering:
        return [(set_window(s), s) for s in covering]
    return [(year_window(day.year), None)]


def score_row(unit: Unit, counts: Counts, target_set: TargetSet | None) -> ScoreRow:
    targets = unit_targets(target_set, unit.code, unit.level)
    # Every value below is built by our own rules from validated models: constructing without
    # a second validation makes /api/v1/scores for 10,000 units ~3x cheaper
    # (tests/unit/test_rates.py checks the rows equal validated ones).
    return ScoreRow.model_construct(
        unit_code=unit.code,
        unit_name=unit.name,
        level=unit.level,
        parent_code=unit.parent_code,
        received=counts.received,
        online=counts.online,
        digitized=counts.digitized,
        fee_required=counts.fee_required,
        paid_online=counts.paid_online,
        online_rate=rate(counts.online, counts.received),
        digitization_rate=rate(counts.digitized, counts.received),
        online_payment_rate=rate(counts.paid_online, counts.fee_required),
        targets=targets,
        status=statuses(counts, targets, has_fee_procedures=unit.has_fee_procedures),
    )


class ScoreRowJson:
    """`score_row` as the JSON-ready dict of a ScoreRow, for /api/v1/scores over thousands of
    units: no model per row (tests/unit/test_rates.py checks it equals the model's JSON)."""

    def __init__(self) -> None:
        self._targets: dict[tuple[str | None, str], tuple[MetricTargets, dict[str, Any]]] = {}

    def targets(self, target_set: TargetSet | None, unit: Unit) -> tuple[MetricTargets, dict]:
        key = (target_set.id if target_set else None, unit.code)
        cached = self._targets.get(key)
        if cached is None:
            model = unit_targets(target_set, unit.code, unit.level)
            cached = self._targets[key] = (model, model.model_dump(mode="json"))
        return cached

    def row(
        self, unit: Unit, counts: tuple[int, int, int, int, int], target_set: TargetSet | None
    ) -> dict[str, Any]:
        received, online, digitized, fee_required, paid_online = counts
        targets, targets_json = self.targets(target_set, unit)
        payment_applicable = unit.has_fee_procedures and (received == 0 or fee_required > 0)
        if received == 0:
            payment = Status.no_data if unit.has_fee_procedures else Status.not_applicable
        else:
            payment = metric_status(
                paid_online, fee_required, targets.online_payment, applicable=payment_applicable
            )
        return {
            "received": received,
            "online": online,
            "digitized": digitized,
            "fee_required": fee_required,
            "paid_online": paid_online,
            "online_rate": rate(online, received),
            "digitization_rate": rate(digitized, received),
            "online_payment_rate": rate(paid_online, fee_required),
            "unit_code": unit.code,
            "unit_name": unit.name,
            "level": unit.level,
            "parent_code": unit.parent_code,
            "targets": targets_json,
            "status": {
                "online": metric_status(online, received, targets.online).value,
                "digitization": metric_status(digitized, received, targets.digitization).value,
                "online_payment": payment.value,
            },
        }


class WindowError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def resolve_window(
    window: str | None,
    date_from: date | None,
    date_to: date | None,
    target_sets: list[TargetSet],
    today: date,
    pinned_campaign: str | None = None,
) -> tuple[Window, TargetSet | None]:
    """The dates asked for and the target set to judge them by.

    `window=campaign` is the active campaign; `window=<target-set id>` that set; explicit dates
    a custom window judged by the narrowest set covering both ends; nothing at all is all time,
    with no targets.
    """
    from dvcpulse_common.targets import active_campaign

    if window:
        if window == "campaign":
            chosen = active_campaign(target_sets, today, pinned_campaign)
            if chosen is None:
                raise WindowError("window", "no campaign in the targets file")
        else:
            chosen = next((s for s in target_sets if s.id == window), None)
            if chosen is None:
                ids = ", ".join(["campaign", *(s.id for s in target_sets)])
                raise WindowError("window", f"unknown window {window!r}; use one of: {ids}")
        return set_window(chosen), chosen
    if date_from and date_to and date_to < date_from:
        raise WindowError("to", "is before 'from'")
    if date_from is None and date_to is None:
        return Window(id="all", name="Toàn bộ thời gian"), None
    covering = [
        s
        for s in target_sets
        if (date_from is None or s.valid_from <= date_from)
        and (date_to is None or date_to <= s.valid_to)
        and date_from is not None
        and date_to is not None
    ]
    chosen = min(covering, key=lambda s: (s.valid_to - s.valid_from, s.id)) if covering else None
    name = (
        f"{date_from.isoformat() if date_from else '…'} – {date_to.isoformat() if date_to else '…'}"
    )
    return Window(id="custom", name=name, date_from=date_from, date_to=date_to), chosen


def select_units(
    registry: Registry, level: str | None, parent: str | None, unit: str | None
) -> list[Unit]:
    """The units a query asks for: `unit` (codes or unique names, comma-separated), the direct
    children of `parent`, units of `level` — all given filters at once."""
    wanted: set[str] | None = None
    if unit:
        wanted = set()
        for key in unit.split(","):
            found = registry.resolve(key)
            if found is None:
                raise WindowError("unit", f"unknown unit {key!r}")
            wanted.add(found.code)
    parent_code = None
    if parent:
        found = registry.resolve(parent)
        if found is None:
            raise WindowError("parent", f"unknown unit {parent!r}")
        parent_code = found.code
    if level and level not in {u.level for u in registry.units.values()}:
        raise WindowError("level", f"unknown level {level!r}")
    return [
        u
        for u in registry.units.values()
        if (wanted is None or u.code in wanted)
        and (level is None or u.level == level)
        and (parent_code is None or u.parent_code == parent_code)
    ]
