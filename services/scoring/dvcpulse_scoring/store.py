"""DuckDB adapter: the only writer of the scoring file. Every method is blocking: callers run
them on the store's own thread (see `ScoreStore.run`), never on the event loop."""

from __future__ import annotations

import asyncio
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from dvcpulse_shared.api import Counts

from .domain import DecodedBatch

T = TypeVar("T")

# Batches are small; the extra copy DuckDB warns about costs nothing measurable here.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_events (
    event_key UHUGEINT PRIMARY KEY            -- md5 of event_id: 16 bytes, whatever its length
);
CREATE TABLE IF NOT EXISTS dossiers (
    dossier_key UHUGEINT PRIMARY KEY,         -- md5 of dossier_id
    dossier_id VARCHAR NOT NULL,
    unit_code VARCHAR NOT NULL,               -- from the winning received event once known
    received_on DATE,                         -- cohort day; NULL while only orphan events exist
    online BOOLEAN,
    fee_required BOOLEAN,
    received_rank VARCHAR,                    -- (occurred_at UTC, event_id) of the winning received
    digitized BOOLEAN NOT NULL,
    paid_online BOOLEAN NOT NULL,
    -- the row as it was before the last write, read back with RETURNING so that unit_day moves
    -- by exactly (new contribution - old contribution)
    prev_unit_code VARCHAR,
    prev_received_on DATE,
    prev_online BOOLEAN,
    prev_fee_required BOOLEAN,
    prev_digitized BOOLEAN,
    prev_paid_online BOOLEAN
);
CREATE TABLE IF NOT EXISTS unit_day (
    unit_code VARCHAR NOT NULL,
    day DATE NOT NULL,
    received BIGINT NOT NULL,
    online BIGINT NOT NULL,
    digitized BIGINT NOT NULL,
    fee_required BIGINT NOT NULL,
    paid_online BIGINT NOT NULL,
    PRIMARY KEY (unit_code, day)
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
"""

BATCH_SCHEMA = pa.schema(
    [
        ("seq", pa.int32()),
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("dossier_id", pa.string()),
        ("unit_code", pa.string()),
        ("day", pa.date32()),
        ("channel", pa.string()),
        ("fee_required", pa.bool_()),
        ("paid_online", pa.bool_()),
        ("received_rank", pa.string()),
    ]
)

# One row per dossier touched by the batch's new events, merged into `dossiers`. The received
# event with the smallest rank fixes the dossier's unit, day, channel and fee, in whatever order
# events arrive; digitized and paid-online are facts that only ever become true.
_WINS = (
    "(excluded.received_rank IS NOT NULL AND "
    "(dossiers.received_rank IS NULL OR excluded.received_rank < dossiers.received_rank))"
)
UPSERT_DOSSIERS = f"""
INSERT INTO dossiers
SELECT
    md5_number(dossier_id),
    dossier_id,
    coalesce(arg_min(unit_code, received_rank) FILTER (type = 'dossier.received'), arg_min(unit_code, seq)),
    arg_min(day, received_rank) FILTER (type = 'dossier.received'),
    arg_min(channel = 'online', received_rank) FILTER (type = 'dossier.received'),
    arg_min(fee_required, received_rank) FILTER (type = 'dossier.received'),
    min(received_rank),
    bool_or(type = 'dossier.digitized'),
    bool_or(paid_online),
    NULL, NULL, NULL, NULL, NULL, NULL
FROM new_events
GROUP BY dossier_id
ON CONFLICT (dossier_key) DO UPDATE SET
    prev_unit_code = dossiers.unit_code,
    prev_received_on = dossiers.received_on,
    prev_online = dossiers.online,
    prev_fee_required = dossiers.fee_required,
    prev_digitized = dossiers.digitized,
    prev_paid_online = dossiers.paid_online,
    unit_code = CASE WHEN {_WINS} THEN excluded.unit_code ELSE dossiers.unit_code END,
    received_on = CASE WHEN {_WINS} THEN excluded.received_on ELSE dossiers.received_on END,
    online = CASE WHEN {_WINS} THEN excluded.online ELSE dossiers.online END,
    fee_required = CASE WHEN {_WINS} THEN excluded.fee_required ELSE dossiers.fee_required END,
    received_rank = CASE WHEN {_WINS} THEN excluded.received_rank ELSE dossiers.received_rank END,
    digitized = dossiers.digitized OR excluded.digitized,
    paid_online = dossiers.paid_online OR excluded.paid_online
RETURNING unit_code, received_on, online, fee_required, digitized, paid_online,
          prev_unit_code, prev_received_on, prev_online, prev_fee_required, prev_digitized,
          prev_paid_online
"""

# unit_day moves by the new contribution of each changed dossier minus its old one (a dossier
# counts in its cohort day once received; orphans count nothing yet).
UPSERT_UNIT_DAY = """
INSERT INTO unit_day
SELECT unit_code, day, sum(received), sum(online), sum(digitized), sum(fee_required), sum(paid_online)
FROM (
    SELECT unit_code, received_on AS day, 1 AS received, online::INT AS online,
           digitized::INT AS digitized, fee_required::INT AS fee_required,
           (fee_required AND paid_online)::INT AS paid_online
    FROM changed WHERE received_on IS NOT NULL
    UNION ALL
    SELECT prev_unit_code, prev_received_on, -1, -(prev_online::INT), -(prev_digitized::INT),
           -(prev_fee_required::INT), -((prev_fee_required AND prev_paid_online)::INT)
    FROM changed WHERE prev_received_on IS NOT NULL
)
GROUP BY unit_code, day
HAVING sum(received) <> 0 OR sum(online) <> 0 OR sum(digitized) <> 0
    OR sum(fee_required) <> 0 OR sum(paid_online) <> 0
ON CONFLICT (unit_code, day) DO UPDATE SET
    received = unit_day.received + excluded.received,
    online = unit_day.online + excluded.online,
    digitized = unit_day.digitized + excluded.digitized,
    fee_required = unit_day.fee_required + excluded.fee_required,
    paid_online = unit_day.paid_online + excluded.paid_online
"""

# The two 64-bit halves of a 128-bit md5 key ({k}: the key expression).
_KEY_HI = "({k} >> 64)::UBIGINT"
_KEY_LO = "({k} & 18446744073709551615::UHUGEINT)::UBIGINT"

COUNT_COLUMNS = "received, online, digitized, fee_required, paid_online"
SUM_COUNTS = (
    "sum(received)::BIGINT, sum(online)::BIGINT, sum(digitized)::BIGINT, "
    "sum(fee_required)::BIGINT, sum(paid_online)::BIGINT"
)


class WriterLocked(RuntimeError):
    """Another process holds the DuckDB file (DuckDB allows one writer process)."""


@dataclass
class ApplyResult:
    new_events: int
    duplicates: int
    # (unit_code, cohort day) pairs whose counts may have changed
    touched: set[tuple[str, date]]


def _cursor_rows(cursor: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return cursor.fetchall()


class ScoreStore:
    def __init__(
        self,
        path: Path,
        memory_limit: str = "1GB",
        threads: int = 2,
        checkpoint_threshold: str = "16MB",
    ) -> None:
        self.path = path
        self.memory_limit = memory_limit
        self.threads = threads
        # DuckDB's default (16MB). A larger WAL between checkpoints made a batch's upsert and
        # commit ~30% cheaper in isolation but raised peak RSS at 1 M dossiers toward the 1 GiB
        # budget (docs/performance.md), so it is a setting, not the default.
        self.checkpoint_threshold = checkpoint_threshold
        self._conn: duckdb.DuckDBPyConnection | None = None
        # One thread owns the connection: DuckDB work never blocks the event loop, and writes
        # are serialised by construction.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb")
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="duckdb-read")

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = duckdb.connect(
                str(self.path),
                config={
                    "memory_limit": self.memory_limit,
                    "threads": self.threads,
                    "checkpoint_threshold": self.checkpoint_threshold,
                },
            )
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise WriterLocked(
                    f"{self.path} is held by another scoring process; this one waits as standby"
                ) from exc
            raise
        conn.execute(SCHEMA)
        self._conn = conn

    def open_waiting(self, stop_after: float | None = None, every: float = 1.0) -> None:
        """Open, waiting while another process holds the file (standby)."""
        deadline = None if stop_after is None else time.monotonic() + stop_after
        while True:
            try:
                self.open()
                return
            except WriterLocked:
                if deadline is not None and time.monotonic() > deadline:
                    raise
                time.sleep(every)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._executor.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    async def run(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run a blocking write (or anything needing the main connection) on the store thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def read(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run a blocking read on a reader thread with its own cursor (MVCC snapshot)."""

        def with_cursor():  # type: ignore[no-untyped-def]
            cursor = self.conn.cursor()
            try:
                return fn(cursor, *args)
            finally:
                cursor.close()

        return await asyncio.get_running_loop().run_in_executor(self._readers, with_cursor)

    # -- writes ----------------------------------------------------------------------------
    def apply(self, batch: DecodedBatch) -> ApplyResult:
        """Count a batch of valid events exactly once, in one transaction."""
        if len(batch) == 0:
            return ApplyResult(0, 0, set())
        conn = self.conn
        table = pa.Table.from_pydict(batch.columns(), schema=BATCH_SCHEMA)
        conn.register("batch_in", table)
        try:
            conn.execute("BEGIN")
            # First occurrence in the batch, then only event ids never seen before.
            conn.execute(
                """
                CREATE OR REPLACE TEMP TABLE batch_first AS
                SELECT * FROM batch_in QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY seq) = 1
                """
            )
            # Arrow has no 128-bit integers: the new keys come back as two exact 64-bit halves
            # (RETURNING event_key::VARCHAR cost ~50 us a row, most of a batch; docs/performance.md).
            inserted = conn.execute(
                "INSERT OR IGNORE INTO seen_events SELECT md5_number(event_id) FROM batch_first "
                f"RETURNING {_KEY_HI.format(k='event_key')} AS hi, "
                f"{_KEY_LO.format(k='event_key')} AS lo"
            ).to_arrow_table()
            conn.register("inserted_keys", inserted)
            conn.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE new_events AS
                SELECT b.* EXCLUDE (k) FROM (
                    SELECT *, md5_number(event_id) AS k FROM batch_first
                ) b SEMI JOIN inserted_keys i
                ON {_KEY_HI.format(k="b.k")} = i.hi AND {_KEY_LO.format(k="b.k")} = i.lo
                """
            )
            changed = conn.execute(UPSERT_DOSSIERS).to_arrow_table()
            conn.register("changed", changed)
            conn.execute(UPSERT_UNIT_DAY)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            for name in ("batch_in", "inserted_keys", "changed"):
                try:
                    conn.unregister(name)
                except Exception:
                    pass
        new = inserted.num_rows
        touched: set[tuple[str, date]] = set()
        for unit_col, day_col in (
            ("unit_code", "received_on"),
            ("prev_unit_code", "prev_received_on"),
        ):
            units = changed.column(unit_col).to_pylist()
            days = changed.column(day_col).to_pylist()
            for unit, day in zip(units, days, strict=True):
                if day is not None:
                    touched.add((unit, day))
        for unit, day, kind in zip(batch.unit_code, batch.day, batch.type, strict=True):
            if kind == "dossier.received":  # redelivered batches still refresh their scores
                touched.add((unit, day))
        return ApplyResult(new_events=new, duplicates=len(batch) - new, touched=touched)

    # -- reads -----------------------------------------------------------------------------
    @staticmethod
    def unit_counts(
        cursor: duckdb.DuckDBPyConnection, date_from: date | None, date_to: date | None
    ) -> dict[str, Counts]:
        rows = cursor.execute(
            f"""
            SELECT unit_code, {SUM_COUNTS} FROM unit_day
            WHERE ($1::DATE IS NULL OR day >= $1) AND ($2::DATE IS NULL OR day <= $2)
            GROUP BY unit_code
            """,
            [date_from, date_to],
        ).fetchall()
        return {
            r[0]: Counts(
                received=r[1], online=r[2], digitized=r[3], fee_required=r[4], paid_online=r[5]
            )
            for r in rows
        }

    @staticmethod
    def window_counts(
        cursor: duckdb.DuckDBPyConnection, wanted: list[tuple[str, str, date, date]]
    ) -> dict[tuple[str, str], Counts]:
        """Counts for (window id, unit, from, to) tuples in one query."""
        if not wanted:
            return {}
        table = pa.table(
            {
                "window_id": [w[0] for w in wanted],
                "unit_code": [w[1] for w in wanted],
                "date_from": pa.array([w[2] for w in wanted], pa.date32()),
                "date_to": pa.array([w[3] for w in wanted], pa.date32()),
            }
        )
        cursor.register("wanted", table)
        try:
            rows = cursor.execute(
                """
                SELECT w.window_id, w.unit_code,
                    coalesce(sum(d.received), 0)::BIGINT, coalesce(sum(d.online), 0)::BIGINT,
                    coalesce(sum(d.digitized), 0)::BIGINT, coalesce(sum(d.fee_required), 0)::BIGINT,
                    coalesce(sum(d.paid_online), 0)::BIGINT
                FROM wanted w LEFT JOIN unit_day d
                  ON d.unit_code = w.unit_code AND d.day BETWEEN w.date_from AND w.date_to
                GROUP BY w.window_id, w.unit_code
                """
            ).fetchall()
        finally:
            cursor.unregister("wanted")
        return {
            (r[0], r[1]): Counts(
                received=r[2], online=r[3], digitized=r[4], fee_required=r[5], paid_online=r[6]
            )
            for r in rows
        }

    @staticmethod
    def last_received_on(cursor: duckdb.DuckDBPyConnection, units: list[str]) -> dict[str, date]:
        rows = cursor.execute(
            "SELECT unit_code, max(day) FROM unit_day WHERE unit_code IN (SELECT unnest($1::VARCHAR[])) "
            "AND received > 0 GROUP BY unit_code",
            [units],
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    @staticmethod
    def daily_series(
        cursor: duckdb.DuckDBPyConnection,
        units: list[str] | None,
        date_from: date | None,
        date_to: date | None,
        interval: str,
    ) -> list[tuple[Any, ...]]:
        bucket = "date_trunc('week', day)::DATE" if interval == "week" else "day"
        return cursor.execute(
            f"""
            SELECT {bucket} AS bucket, {SUM_COUNTS} FROM unit_day
            WHERE ($1::VARCHAR[] IS NULL OR list_contains($1, unit_code))
              AND ($2::DATE IS NULL OR day >= $2) AND ($3::DATE IS NULL OR day <= $3)
            GROUP BY bucket ORDER BY bucket
            """,
            [units, date_from, date_to],
        ).fetchall()

    @staticmethod
    def totals(cursor: duckdb.DuckDBPyConnection) -> dict[str, int]:
        row = cursor.execute(
            "SELECT (SELECT count(*) FROM seen_events), (SELECT count(*) FROM dossiers), "
            "(SELECT count(*) FROM dossiers WHERE received_on IS NULL)"
        ).fetchall()[0]
        return {"events": row[0], "dossiers": row[1], "orphan_dossiers": row[2]}
