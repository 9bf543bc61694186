"""The alerts service's own state in one SQLite file (never scoring's DuckDB): latest unit
counts, alerts, the notification outbox, messages and deliveries, silences, digests.

Every state change happens inside `transaction()`; the consumer XACKs only after it commits."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from dvcpulse_shared.api import Counts

SCHEMA = """
CREATE TABLE IF NOT EXISTS unit_scores (
    window_id TEXT NOT NULL,
    window_name TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    received INTEGER NOT NULL, online INTEGER NOT NULL, digitized INTEGER NOT NULL,
    fee_required INTEGER NOT NULL, paid_online INTEGER NOT NULL,
    computed_at TEXT NOT NULL,
    PRIMARY KEY (window_id, unit_code)
);
CREATE TABLE IF NOT EXISTS unit_activity (
    unit_code TEXT PRIMARY KEY,
    last_received_on TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    unit_code TEXT NOT NULL, metric TEXT NOT NULL, kind TEXT NOT NULL,
    window_id TEXT NOT NULL, window_name TEXT NOT NULL,
    severity TEXT NOT NULL, state TEXT NOT NULL,
    value REAL, target REAL, numerator INTEGER NOT NULL, denominator INTEGER NOT NULL,
    started_at TEXT NOT NULL, resolved_at TEXT, last_notified_at TEXT, updated_at TEXT NOT NULL
);
-- One firing alert per identity (unit, metric, kind, window); history keeps resolved ones.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_identity_firing
    ON alerts (unit_code, metric, kind, window_id) WHERE state = 'firing';
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    recipient_id TEXT NOT NULL, alert_id INTEGER NOT NULL, event TEXT NOT NULL,
    value REAL, target REAL, numerator INTEGER NOT NULL, denominator INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    message_id INTEGER
);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (recipient_id) WHERE message_id IS NULL;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    recipient_id TEXT NOT NULL, type TEXT NOT NULL,
    subject TEXT NOT NULL, text TEXT NOT NULL, payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL, recipient_id TEXT NOT NULL,
    channel TEXT NOT NULL, address TEXT,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, sent_at TEXT
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    unit_code TEXT, metric TEXT, kind TEXT,
    starts_at TEXT NOT NULL, ends_at TEXT NOT NULL,
    reason TEXT NOT NULL, author TEXT NOT NULL,
    created_at TEXT NOT NULL, deleted_at TEXT
);
CREATE TABLE IF NOT EXISTS digests (
    slot TEXT NOT NULL, recipient_id TEXT NOT NULL, message_id INTEGER,
    PRIMARY KEY (slot, recipient_id)
);
CREATE TABLE IF NOT EXISTS grafana_annotations (
    alert_id INTEGER PRIMARY KEY,
    annotation_id INTEGER,
    synced_state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS digest_snapshots (
    recipient_id TEXT NOT NULL, unit_code TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL, slot TEXT NOT NULL,
    PRIMARY KEY (recipient_id, unit_code, metric)
);
"""


def ts(moment: datetime) -> str:
    """One sortable text form for every instant: UTC, microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class AlertStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        # One connection shared by the event loop and delivery threads; sqlite3 objects are
        # not safe for concurrent use, so every access takes this lock.
        self._lock = threading.RLock()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed state change survives a crash
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        self._conn = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("alert store is not open")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    # -- unit counts ---------------------------------------------------------------------------
    @staticmethod
    def unit_score(conn: sqlite3.Connection, window_id: str, unit_code: str) -> sqlite3.Row | None:
        return conn.execute(
            "SELECT * FROM unit_scores WHERE window_id = ? AND unit_code = ?",
            (window_id, unit_code),
        ).fetchone()

    @staticmethod
    def save_unit_score(
        conn: sqlite3.Connection,
        window_id: str,
        window_name: str,
        unit_code: str,
        counts: Counts,
        computed_at: datetime,
    ) -> None:
        conn.execute(
            "INSERT INTO unit_scores VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (window_id, unit_code) "
            "DO UPDATE SET window_name=excluded.window_name, received=excluded.received, "
            "online=excluded.online, digitized=excluded.digitized, "
            "fee_required=excluded.fee_required, paid_online=excluded.paid_online, "
            "computed_at=excluded.computed_at",
            (
                window_id,
                window_name,
                unit_code,
                counts.received,
                counts.online,
                counts.digitized,
                counts.fee_required,
                counts.paid_online,
                ts(computed_at),
            ),
        )

    @staticmethod
    def note_activity(conn: sqlite3.Connection, unit_code: str, day: date) -> None:
        conn.execute(
            "INSERT INTO unit_activity VALUES (?, ?) ON CONFLICT (unit_code) DO UPDATE SET "
            "last_received_on = max(last_received_on, excluded.last_received_on)",
            (unit_code, day.isoformat()),
        )

    @staticmethod
    def activity(conn: sqlite3.Connection) -> dict[str, date]:
        return {
            r["unit_code"]: date.fromisoformat(r["last_received_on"])
            for r in conn.execute("SELECT * FROM unit_activity")
        }

    @staticmethod
    def window_scores(conn: sqlite3.Connection, window_id: str) -> dict[str, Counts]:
        return {
            r["unit_code"]: counts_of(r)
            for r in conn.execute("SELECT * FROM unit_scores WHERE window_id = ?", (window_id,))
        }

    # -- alerts --------------------------------------------------------------------------------
    @staticmethod
    def firing(
        conn: sqlite3.Connection, unit_code: str | None = None, window_id: str | None = None
    ) -> list[sqlite3.Row]:
        sql = "SELECT * FROM alerts WHERE state = 'firing'"
        params: list[Any] = []
        if unit_code is not None:
            sql += " AND unit_code = ?"
            params.append(unit_code)
        if window_id is not None:
            sql += " AND window_id = ?"
            params.append(window_id)
        return conn.execute(sql, params).fetchall()

    # -- silences ------------------------------------------------------------------------------
    @staticmethod
    def silences(conn: sqlite3.Connection, include_deleted: bool = False) -> list[sqlite3.Row]:
        sql = "SELECT * FROM silences"
        if not include_deleted:
            sql += " WHERE deleted_at IS NULL"
        return conn.execute(sql + " ORDER BY id").fetchall()

    # -- messages and deliveries ---------------------------------------------------------------
    @staticmethod
    def add_message(
        conn: sqlite3.Connection,
        recipient_id: str,
        type_: str,
        subject: str,
        text: str,
        payload: dict,
        now: datetime,
    ) -> int:
        cur = conn.execute(
            "INSERT INTO messages (recipient_id, type, subject, text, payload, created_at) "
            "VALUES (?,?,?,?,?,?)",
            (recipient_id, type_, subject, text, json.dumps(payload, ensure_ascii=False), ts(now)),
        )
        return int(cur.lastrowid or 0)

    @staticmethod
    def add_delivery(
        conn: sqlite3.Connection,
        message_id: int,
        recipient_id: str,
        channel: str,
        address: str | None,
        now: datetime,
        status: str = "pending",
        error: str | None = None,
    ) -> int:
        cur = conn.execute(
            "INSERT INTO deliveries (message_id, recipient_id, channel, address, status, error, "
            "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
            (message_id, recipient_id, channel, address, status, error, ts(now), ts(now)),
        )
        return int(cur.lastrowid or 0)

    def pending_deliveries(self) -> list[sqlite3.Row]:
        return self.query(
            "SELECT d.*, m.subject, m.text, m.payload FROM deliveries d "
            "JOIN messages m ON m.id = d.message_id WHERE d.status = 'pending' ORDER BY d.id"
        )

    def mark_delivery(
        self, delivery_id: int, status: str, attempts: int, error: str | None, now: datetime
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, error = ?, updated_at = ?, "
                "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ?",
                (status, attempts, error, ts(now), status, ts(now), delivery_id),
            )


def counts_of(row: sqlite3.Row) -> Counts:
    return Counts(
        received=row["received"],
        online=row["online"],
        digitized=row["digitized"],
        fee_required=row["fee_required"],
        paid_online=row["paid_online"],
    )
