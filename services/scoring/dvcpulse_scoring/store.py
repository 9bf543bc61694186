"""DuckDB adapter: the only writer of the scoring file. Every method is blocking: callers run
them on the store's own thread (see `ScoreStore.run`), never on the event loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from dvcpulse_shared.api import Counts

from .domain import DecodedBatch

SCHEMA_VERSION = "3"

SCHEMA = """
-- One row per dossier: all that is needed to know its contribution to unit_day. Events are not
-- kept: every event's effect on its dossier is idempotent (docs/performance.md), so a re-sent
-- or redelivered event changes nothing without a table of every event id ever seen.
-- No index: a primary key's ART index of every dossier must stay in memory and is rewritten
-- whole at each checkpoint, which made cost and memory grow with the table (docs/performance.md).
-- The one writer finds a batch's dossiers by a hash join (one scan of dossier_key) and inserts
-- only those it did not find, so a key is never stored twice.
CREATE TABLE IF NOT EXISTS dossiers (
    dossier_key UHUGEINT NOT NULL,            -- md5 of dossier_id
    unit_code VARCHAR NOT NULL,               -- from the winning received event once known
    received_on DATE,                         -- cohort day; NULL while only orphan events exist
    received_rank VARCHAR,                    -- sort key of the winning received event
    flags UTINYINT NOT NULL                   -- 1 online, 2 fee_required, 4 digitized, 8 paid online
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

# Older files are converted on open into `dossiers_next` (the current columns), then copied into
# the current table. Version 1 had a seen_events table and one column per flag; version 2 a
# primary key and the previous row's columns.
MIGRATE_FROM_V1 = """
CREATE TABLE dossiers_next AS
SELECT dossier_key, unit_code, received_on,
       -- version 1 ranked by the UTC instant as YYYYMMDDhhmmssffffff; now as 20 digits of
       -- microseconds from year 1 (see domain.received_rank)
       lpad((epoch_us(strptime(received_rank[1:20], '%Y%m%d%H%M%S%f'))
             + 62135596800000000)::VARCHAR, 20, '0') || received_rank[21:] || chr(1)
       || (coalesce(online, false)::INT + 2 * coalesce(fee_required, false)::INT)::VARCHAR
       AS received_rank,
       (coalesce(online, false)::UTINYINT + 2 * coalesce(fee_required, false)::UTINYINT
        + 4 * digitized::UTINYINT + 8 * paid_online::UTINYINT)::UTINYINT AS flags
FROM dossiers;
DROP TABLE dossiers;
DROP TABLE IF EXISTS seen_events;
"""
MIGRATE_FROM_V2 = """
CREATE TABLE dossiers_next AS
SELECT dossier_key, unit_code, received_on, received_rank, flags FROM dossiers;
DROP TABLE dossiers;
"""

# The batch's dossiers, each merged with its stored row (found by one hash join): the received
# event with the smallest rank fixes the dossier's unit, day, channel and fee, in whatever order
# events arrive; digitized and paid-online are facts that only ever become true. Applying any
# event twice, in any order, leaves the same row: that is what makes counting exactly once
# without an event log. Only rows that are new or differ come out, with the stored values as
# prev_* so that unit_day moves by exactly (new contribution - old contribution).
_WINS = (
    "(d.rid IS NULL OR (i.received_rank IS NOT NULL AND "
    "(d.received_rank IS NULL OR i.received_rank < d.received_rank)))"
)
MERGE_DOSSIERS = f"""
WITH incoming AS (
    SELECT
        md5_number(dossier_id) AS dossier_key,
        coalesce(arg_min(unit_code, received_rank), min(unit_code)) AS unit_code,
        arg_min(day, received_rank) AS received_on,
        min(received_rank) AS received_rank,
        (coalesce(arg_min(flags, received_rank), 0) | bit_or(flags & 12))::UTINYINT AS flags
    FROM new_events
    GROUP BY dossier_id
),
merged AS (
    SELECT
        i.dossier_key,
        d.rid,
        CASE WHEN {_WINS} THEN i.unit_code ELSE d.unit_code END AS unit_code,
        CASE WHEN {_WINS} THEN i.received_on ELSE d.received_on END AS received_on,
        CASE WHEN {_WINS} THEN i.received_rank ELSE d.received_rank END AS received_rank,
        ((CASE WHEN {_WINS} THEN i.flags ELSE d.flags END) & 3
         | ((coalesce(d.flags, 0) | i.flags) & 12))::UTINYINT AS flags,
        d.unit_code AS prev_unit_code,
        d.received_on AS prev_received_on,
        d.received_rank AS prev_received_rank,
        d.flags AS prev_flags
    FROM incoming i
    LEFT JOIN (SELECT rowid AS rid, * FROM dossiers) d USING (dossier_key)
)
SELECT dossier_key, rid, unit_code, received_on, received_rank, flags,
       prev_unit_code, prev_received_on, prev_flags
FROM merged
WHERE rid IS NULL
   OR (unit_code, received_on, received_rank, flags)
      IS DISTINCT FROM (prev_unit_code, prev_received_on, prev_received_rank, prev_flags)
"""
INSERT_DOSSIERS = """
INSERT INTO dossiers
SELECT dossier_key, unit_code, received_on, received_rank, flags FROM changed WHERE rid IS NULL
"""
# rowids are stable here: rows of `dossiers` are never deleted, and this one writer reads and
# updates them in the same transaction.
UPDATE_DOSSIERS = """
UPDATE dossiers SET unit_code = c.unit_code, received_on = c.received_on,
    received_rank = c.received_rank, flags = c.flags
FROM changed c WHERE c.rid IS NOT NULL AND dossiers.rowid = c.rid
"""

# unit_day moves by the new contribution of each changed dossier minus its old one (a dossier
# counts in its cohort day once received; orphans count nothing yet).
_CONTRIBUTION = """{sign} AS received, {sign} * ({f} & 1 <> 0)::INT AS online,
           {sign} * ({f} & 4 <> 0)::INT AS digitized, {sign} * ({f} & 2 <> 0)::INT AS fee_required,
           {sign} * ({f} & 10 = 10)::INT AS paid_online"""
UPSERT_UNIT_DAY = f"""
INSERT INTO unit_day
SELECT unit_code, day, sum(received), sum(online), sum(digitized), sum(fee_required), sum(paid_online)
FROM (
    SELECT unit_code, received_on AS day, {_CONTRIBUTION.format(sign=1, f="flags")}
    FROM changed WHERE received_on IS NOT NULL
    UNION ALL
    SELECT prev_unit_code, prev_received_on, {_CONTRIBUTION.format(sign=-1, f="prev_flags")}
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

# The (unit, cohort day) pairs whose score may have moved: where changed dossiers count now or
# counted before, and where the batch's received events point (a redelivered batch changes
# nothing but still refreshes its scores).
TOUCHED = """
SELECT day, list(DISTINCT unit_code) FROM (
    SELECT unit_code, received_on AS day FROM changed WHERE received_on IS NOT NULL
    UNION ALL SELECT prev_unit_code, prev_received_on FROM changed WHERE prev_received_on IS NOT NULL
    UNION ALL SELECT unit_code, day FROM new_events WHERE type = 'dossier.received'
) GROUP BY day
"""

COUNT_COLUMNS = "received, online, digitized, fee_required, paid_online"
SUM_COUNTS = (
    "sum(received)::BIGINT, sum(online)::BIGINT, sum(digitized)::BIGINT, "
    "sum(fee_required)::BIGINT, sum(paid_online)::BIGINT"
)


class WriterLocked(RuntimeError):
    """Another process holds the DuckDB file (DuckDB allows one writer process)."""


@dataclass
class ApplyResult:
    events: int  # valid events applied (a re-sent or redelivered one changes nothing)
    unit_days_moved: int  # (unit, day) rows whose counts changed: 0 when nothing was new
    # (unit_code, cohort day) pairs whose counts may have changed
    touched_by_day: dict[date, list[str]]  # units whose counts on that day may have changed

    @property
    def touched(self) -> set[tuple[str, date]]:
        return {(u, d) for d, units in self.touched_by_day.items() for u in units}


class ScoreStore:
    def __init__(
        self,
        path: Path,
        memory_limit: str = "256MB",
        threads: int = 2,
        checkpoint_threshold: str = "16MB",
    ) -> None:
        self.path = path
        self.memory_limit = memory_limit
        self.threads = threads
        # DuckDB's default (16MB). With no index on dossiers a checkpoint writes only what
        # changed, so a larger WAL between checkpoints buys little and holds more in memory.
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
        self._migrate(conn)
        conn.execute(SCHEMA)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        self._conn = conn

    @staticmethod
    def _migrate(conn: duckdb.DuckDBPyConnection) -> None:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'main' AND table_name = 'dossiers'"
            ).fetchall()
        }
        migration = (
            MIGRATE_FROM_V1
            if "online" in columns
            else MIGRATE_FROM_V2
            if "prev_flags" in columns
            else None
        )
        if migration is not None:  # same counts, fewer columns, no index
            conn.execute("BEGIN")
            conn.execute(migration)
            conn.execute(SCHEMA)
            conn.execute("INSERT INTO dossiers SELECT * FROM dossiers_next")
            conn.execute("DROP TABLE dossiers_next")
            conn.execute("COMMIT")
            conn.execute("CHECKPOINT")

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
        """Count a batch of valid events into `dossiers` and `unit_day`, in one transaction.

        Idempotent: applying the same events again, in any order or split, changes nothing.
        """
        if len(batch) == 0:
            return ApplyResult(0, 0, {})
        conn = self.conn
        conn.register("new_events", batch.to_arrow())
        try:
            conn.execute("BEGIN")
            # A temporary table, not Arrow: Arrow carries UHUGEINT as a signed decimal.
            conn.execute(f"CREATE OR REPLACE TEMP TABLE changed AS {MERGE_DOSSIERS}")
            conn.execute(INSERT_DOSSIERS)
            conn.execute(UPDATE_DOSSIERS)
            moved = conn.execute(UPSERT_UNIT_DAY).fetchall()[0][0]
            conn.execute("COMMIT")
            touched = dict(conn.execute(TOUCHED).fetchall())
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except duckdb.Error:
                pass  # the failure was the COMMIT itself, or TOUCHED after it
            raise
        finally:
            try:
                conn.unregister("new_events")
            except Exception:
                pass
        return ApplyResult(events=len(batch), unit_days_moved=moved, touched_by_day=touched)

    # -- reads -----------------------------------------------------------------------------
    @staticmethod
    def unit_counts(
        cursor: duckdb.DuckDBPyConnection, date_from: date | None, date_to: date | None
    ) -> dict[str, Counts]:
        return {
            unit: Counts(
                received=r[0], online=r[1], digitized=r[2], fee_required=r[3], paid_online=r[4]
            )
            for unit, r in ScoreStore.unit_count_tuples(cursor, date_from, date_to).items()
        }

    @staticmethod
    def unit_count_tuples(
        cursor: duckdb.DuckDBPyConnection, date_from: date | None, date_to: date | None
    ) -> dict[str, tuple[int, int, int, int, int]]:
        """Counts per unit over the dates, as (received, online, digitized, fee_required,
        paid_online) tuples: what /api/v1/scores needs for 10,000 units without a model each."""
        rows = cursor.execute(
            f"""
            SELECT unit_code, {SUM_COUNTS} FROM unit_day
            WHERE ($1::DATE IS NULL OR day >= $1) AND ($2::DATE IS NULL OR day <= $2)
            GROUP BY unit_code
            """,
            [date_from, date_to],
        ).fetchall()
        return {r[0]: r[1:] for r in rows}

    @staticmethod
    def window_counts(
        cursor: duckdb.DuckDBPyConnection, wanted: list[tuple[str, str, date, date]]
    ) -> dict[tuple[str, str], tuple[int, int, int, int, int]]:
        """Counts for (window id, unit, from, to) tuples in one query, as (received, online,
        digitized, fee_required, paid_online) tuples (no model each: thousands per flush)."""
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
        return {(r[0], r[1]): r[2:] for r in rows}

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
            "SELECT count(*), count(*) FILTER (received_on IS NULL) FROM dossiers"
        ).fetchall()[0]
        return {"dossiers": row[0], "orphan_dossiers": row[1]}
