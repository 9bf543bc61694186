"""Decode a batch of stream entries with Arrow: one C++ JSON parse for the batch and column-wise
checks, instead of one pydantic validation per event.

It is a fast path, never a second definition of a valid event: a row is taken here only when
the checks below prove pydantic would accept it (`dvcpulse_shared.events`) and read the same
values; every other row — and the whole batch when Arrow's parser refuses it — goes through
`domain.decode_entries`, the reference, which also writes the poison reasons. Both give the
same columns: tests/unit/test_vectorised.py compares them on valid, invalid and odd payloads.

Why each check is enough:
- Arrow's parser with an explicit schema refuses a wrong JSON type (a number for a string, a
  string for a bool, 1.0 for an int), an unknown field, a repeated field, bad UTF-8 or escapes:
  strict types and `extra="forbid"`, as in the models. It fails the whole batch; we fall back.
- It reads an absent field and `null` alike, and the models do not (a `null` field a type does
  not have is refused): rows whose bytes contain `null` anywhere take the reference path.
- Rows with a line break in their bytes take the reference path (one row a line, or none).
- Lengths in code points, enums, the registry, and the field set of each type are checked per
  row; `occurred_at` must match a strict RFC 3339 pattern with an offset and parse.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from dvcpulse_shared.events import DOSSIER_ID_MAX, EVENT_ID_MAX
from dvcpulse_shared.streams import DATA_FIELD

from .domain import (
    BATCH_SCHEMA,
    DIGITIZED_BIT,
    FEE_REQUIRED,
    ONLINE,
    PAID_ONLINE,
    QUARTER_HOUR_US,
    YEAR_ONE_US,
    DecodedBatch,
    LocalDays,
    data_field,
    decode_entries,
)

RAW_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("dossier_id", pa.string()),
        ("unit_code", pa.string()),
        ("occurred_at", pa.string()),
        ("channel", pa.string()),
        ("fee_required", pa.bool_()),
        ("procedure_code", pa.string()),
        ("payment_method", pa.string()),
        ("amount_vnd", pa.int64()),
    ]
)
_PARSE = pj.ParseOptions(explicit_schema=RAW_SCHEMA, unexpected_field_behavior="error")
# One thread: the batch is ~2 MB, and the decode already runs beside the event loop and the
# DuckDB writer on two cores; Arrow's own threads cost ~50% more CPU for the same parse.
_READ = pj.ReadOptions(use_threads=False, block_size=8 << 20)
# RFC 3339 with an offset, seconds 00-59, at most microseconds: what both parsers read alike.
_OCCURRED_AT = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_RECEIVED, _DIGITIZED, _PAID = "dossier.received", "dossier.digitized", "dossier.paid"


class VectorDecoder:
    """Decodes batches for one registry and time zone (the registry's codes as an Arrow set)."""

    def __init__(self, unit_codes: Collection[str], days: LocalDays) -> None:
        self.unit_codes = unit_codes
        self.code_set = pa.array(sorted(unit_codes), pa.string())
        self.days = days
        self.fast_rows = 0
        self.reference_rows = 0

    def decode(self, entries: Sequence[tuple[bytes, Any]]) -> DecodedBatch:
        raw = [
            f[1] if f.__class__ is list and len(f) == 2 and f[0] == DATA_FIELD else _data(f)
            for _, f in entries
        ]
        joined = _joined_if_plain(raw)
        if joined is not None:  # the common case, proven on the whole buffer at once
            slow, fast, payloads = [], list(range(len(raw))), raw
        else:
            column = pa.array(raw, pa.binary())
            # Rows the reference must read: no data, not a JSON object (also FastStream's binary
            # envelope, which the reference unwraps), a `null`, a line break.
            unusual = pc.fill_null(
                _any(
                    pc.invert(pc.starts_with(column, "{")),
                    pc.match_substring(column, "null"),
                    pc.match_substring(column, "\n"),
                    pc.match_substring(column, "\r"),
                ),
                True,
            )
            flags = unusual.to_numpy(zero_copy_only=False)
            slow = flags.nonzero()[0].tolist()
            fast = (~flags).nonzero()[0].tolist()
            payloads = [raw[i] for i in fast]
            joined = b"\n".join(payloads)  # type: ignore[arg-type]  # the None rows are slow
        out = DecodedBatch()
        if payloads:
            table = self._parse(joined, len(payloads))
            if table is None:  # Arrow refused the batch: every row takes the reference path
                slow = list(range(len(entries)))
            else:
                ok, columns = self._check(table)
                if not pc.all(ok).as_py():
                    rejected = pc.invert(ok).to_numpy(zero_copy_only=False).nonzero()[0]
                    slow = sorted(slow + [fast[j] for j in rejected])
                    columns = columns.filter(ok)
                out.tables.append(columns)
        if slow:
            reference = decode_entries([entries[i] for i in slow], self.unit_codes, self.days)
            out.extend(reference)
        self.fast_rows += sum(t.num_rows for t in out.tables)
        self.reference_rows += len(slow)
        return out

    @staticmethod
    def _parse(joined: bytes, rows: int) -> pa.Table | None:
        try:
            table = pj.read_json(io.BytesIO(joined), read_options=_READ, parse_options=_PARSE)
        except pa.ArrowInvalid:
            return None
        return table if table.num_rows == rows else None

    def _check(self, t: pa.Table) -> tuple[pa.Array, pa.Table]:
        def present(name: str) -> pa.Array:
            return pc.is_valid(t[name])

        def absent(name: str) -> pa.Array:
            return pc.is_null(t[name])

        def length_between(name: str, lo: int, hi: int) -> pa.Array:
            n = pc.utf8_length(t[name])
            return pc.and_kleene(pc.greater_equal(n, lo), pc.less_equal(n, hi))

        kind = t["type"]
        is_received = pc.equal(kind, _RECEIVED)
        is_digitized = pc.equal(kind, _DIGITIZED)
        is_paid = pc.equal(kind, _PAID)
        common = _all(
            length_between("event_id", 1, EVENT_ID_MAX),
            length_between("dossier_id", 1, DOSSIER_ID_MAX),
            pc.is_in(t["unit_code"], value_set=self.code_set),  # a miss: reference (NFC) path
            pc.match_substring_regex(t["occurred_at"], _OCCURRED_AT),
        )
        received_ok = _all(
            is_received,
            pc.is_in(t["channel"], value_set=pa.array(["online", "direct", "postal"])),
            present("fee_required"),
            pc.or_kleene(absent("procedure_code"), length_between("procedure_code", 1, 64)),
            absent("payment_method"),
            absent("amount_vnd"),
        )
        no_received_fields = _all(
            absent("channel"), absent("fee_required"), absent("procedure_code")
        )
        digitized_ok = _all(
            is_digitized, no_received_fields, absent("payment_method"), absent("amount_vnd")
        )
        paid_ok = _all(
            is_paid,
            no_received_fields,
            pc.is_in(t["payment_method"], value_set=pa.array(["online", "offline"])),
            pc.or_kleene(absent("amount_vnd"), pc.greater_equal(t["amount_vnd"], 0)),
        )
        ok = pc.fill_null(
            pc.and_kleene(common, pc.or_kleene(received_ok, pc.or_kleene(digitized_ok, paid_ok))),
            False,
        )
        # Times only where the pattern matched (others are not parsed, and not taken).
        text = pc.if_else(ok, t["occurred_at"], "1970-01-01T00:00:00Z")
        try:
            instants = pc.cast(text, pa.timestamp("us", tz="UTC"))
        except pa.ArrowInvalid:  # e.g. 30 February: let the reference path say so
            ok = pa.array([False] * t.num_rows)
            instants = pa.array([0] * t.num_rows, pa.timestamp("us", tz="UTC"))
        micros = pc.cast(instants, pa.int64())
        days = self._local_days(micros)
        # Before 1970 (integer division) or in a quarter-hour with two local dates: reference.
        ok = pc.and_kleene(ok, pc.and_kleene(pc.greater_equal(micros, 0), pc.is_valid(days)))
        flags = pc.if_else(
            is_received,
            pc.add(
                pc.if_else(pc.equal(t["channel"], "online"), ONLINE, 0),
                pc.if_else(pc.fill_null(t["fee_required"], False), FEE_REQUIRED, 0),
            ),
            pc.if_else(
                is_digitized,
                DIGITIZED_BIT,
                pc.if_else(pc.equal(t["payment_method"], "online"), PAID_ONLINE, 0),
            ),
        )
        flags = pc.cast(pc.fill_null(flags, 0), pa.uint8())
        rank = pc.binary_join_element_wise(
            pc.utf8_lpad(pc.cast(pc.add(micros, YEAR_ONE_US), pa.string()), 20, "0"),
            "|",
            t["event_id"],
            "\x01",
            pc.cast(flags, pa.string()),
            "",
        )
        null_text = pa.nulls(t.num_rows, pa.string())
        columns = pa.table(
            {
                "type": kind,
                "dossier_id": t["dossier_id"],
                "unit_code": t["unit_code"],
                "day": pc.if_else(is_received, days, pa.nulls(t.num_rows, pa.date32())),
                "flags": flags,
                "received_rank": pc.if_else(is_received, rank, null_text),
            },
            schema=BATCH_SCHEMA,
        )
        return ok, columns

    def _local_days(self, micros: pa.Array) -> pa.Array:
        """Local dates, one Python conversion per distinct UTC quarter-hour (see LocalDays);
        null where a quarter-hour has two local dates."""
        blocks = pc.divide(micros, QUARTER_HOUR_US)  # truncates: exact for micros >= 0
        distinct = pc.unique(blocks)
        days = [self.days.uniform(block) for block in distinct.to_pylist()]
        return pc.take(pa.array(days, pa.date32()), pc.index_in(blocks, value_set=distinct))


def _joined_if_plain(raw: list[bytes | None]) -> bytes | None:
    """The payloads joined by line breaks when every one is a plain JSON object candidate: data
    present, starts with '{', no `null` and no line break inside (checked on the joined bytes:
    as many line breaks as separators). None when some row needs the per-row checks."""
    try:
        joined = b"\n".join(raw)  # type: ignore[arg-type]
    except TypeError:  # an entry without data
        return None
    separators = len(raw) - 1
    if (
        joined.count(b"\n") != separators  # so every line break is a separator, and then:
        or joined.count(b"\n{") != separators  # every row after the first starts with '{'
        or not joined.startswith(b"{")
        or b"\r" in joined
        or b"null" in joined  # cannot span two rows: a separator is a line break
    ):
        return None
    return joined


def _data(fields: Any) -> bytes | None:
    return data_field(fields) if isinstance(fields, dict | list) else None


def _any(*masks: pa.Array) -> pa.Array:
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_(out, m)
    return out


def _all(*masks: pa.Array) -> pa.Array:
    out = masks[0]
    for m in masks[1:]:
        out = pc.and_kleene(out, m)
    return out
