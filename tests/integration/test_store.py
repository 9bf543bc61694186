"""The scoring store on a real DuckDB file: counts equal the oracle's whatever the order, split,
repetition or redelivery of the events, and files written by earlier schemas are converted."""

from __future__ import annotations

import random
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import orjson
import pytest
from dvcpulse_scoring.domain import decode_entries
from dvcpulse_scoring.store import ScoreStore
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.factories import digitized, paid, received
from tests.oracle import expected_counts, messy_feed

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
UNITS = ["CMU-S01", "CMU-H01", "CMU-H01-X01", "CMU-H02-X03"]
FIELDS = ("received", "online", "digitized", "fee_required", "paid_online")


def apply_all(store: ScoreStore, events: list[dict], cuts: list[int]) -> None:
    """Apply `events` in batches ending at `cuts` (sorted positions)."""
    entries = [(f"{i}-0".encode(), {b"__data__": orjson.dumps(e)}) for i, e in enumerate(events)]
    start = 0
    for end in [*cuts, len(entries)]:
        batch = decode_entries(entries[start:end], set(UNITS), TZ)
        assert not batch.poison
        store.apply(batch)
        start = end


def stored_counts(store: ScoreStore) -> dict[str, dict[str, int]]:
    rows = store.conn.execute(
        "SELECT unit_code, sum(received), sum(online), sum(digitized), sum(fee_required), "
        "sum(paid_online) FROM unit_day GROUP BY unit_code"
    ).fetchall()
    out = {r[0]: dict(zip(FIELDS, map(int, r[1:]), strict=True)) for r in rows}
    return {u: c for u, c in out.items() if any(c.values())}


@pytest.fixture
def store(tmp_path: Path):
    s = ScoreStore(tmp_path / "scoring.duckdb")
    s.open()
    yield s
    s.close()


@hsettings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), splits=st.integers(0, 6), replay=st.booleans())
def test_counts_equal_the_oracle_whatever_the_order_and_split(
    tmp_path_factory, seed, splits, replay
):
    events = messy_feed(UNITS, 120, seed=seed)
    rng = random.Random(seed)
    store = ScoreStore(tmp_path_factory.mktemp("store") / "scoring.duckdb")
    store.open()
    try:
        apply_all(store, events, sorted(rng.sample(range(1, len(events)), splits)))
        if replay:  # a redelivery of everything, in another order, changes nothing
            again = events[:]
            rng.shuffle(again)
            apply_all(store, again, sorted(rng.sample(range(1, len(again)), splits)))
        assert stored_counts(store) == expected_counts(events)
        # The dossier table has no key constraint: the writer itself keeps one row per dossier.
        rows, keys = store.conn.execute(
            "SELECT count(*), count(DISTINCT dossier_key) FROM dossiers"
        ).fetchall()[0]
        assert rows == keys == len({e["dossier_id"] for e in events})
    finally:
        store.close()


def test_one_event_id_with_two_contents_counts_the_same_in_either_order(tmp_path):
    a = received("CMU-S01", "X1", channel="online", fee=True, event_id="same")
    b = received("CMU-S01", "X1", channel="direct", fee=False, event_id="same")
    results = []
    for order in ([a, b], [b, a]):
        for cuts in ([], [1]):
            store = ScoreStore(tmp_path / f"s{len(results)}.duckdb")
            store.open()
            apply_all(store, order, cuts)
            results.append(stored_counts(store))
            store.close()
    assert all(r == results[0] for r in results)
    # The smaller content wins the tie (direct, no fee): deterministic, documented.
    assert results[0] == {
        "CMU-S01": {"received": 1, "online": 0, "digitized": 0, "fee_required": 0, "paid_online": 0}
    }


def test_later_winner_moves_the_dossier_between_units_and_days(store):
    late = received("CMU-S01", "M1", channel="online", fee=True, at="2023-03-05T09:00:00+07:00")
    events = [late, digitized("CMU-S01", "M1"), paid("CMU-S01", "M1", method="online")]
    apply_all(store, events, [])
    assert stored_counts(store)["CMU-S01"] == {
        "received": 1,
        "online": 1,
        "digitized": 1,
        "fee_required": 1,
        "paid_online": 1,
    }
    early = received("CMU-H01", "M1", channel="direct", fee=True, at="2023-03-01T09:00:00+07:00")
    result = store.apply(
        decode_entries([(b"9-0", {b"__data__": orjson.dumps(early)})], set(UNITS), TZ)
    )
    assert stored_counts(store) == {
        "CMU-H01": {"received": 1, "online": 0, "digitized": 1, "fee_required": 1, "paid_online": 1}
    }
    days = store.conn.execute(
        "SELECT unit_code, day::VARCHAR, received FROM unit_day ORDER BY 1"
    ).fetchall()
    assert ("CMU-H01", "2023-03-01", 1) in days and ("CMU-S01", "2023-03-05", 0) in days
    assert result.unit_days_moved == 2
    assert {("CMU-H01", "2023-03-01"), ("CMU-S01", "2023-03-05")} <= {
        (u, d.isoformat()) for u, d in result.touched
    }
    # Applying it again moves nothing.
    again = store.apply(
        decode_entries([(b"9-0", {b"__data__": orjson.dumps(early)})], set(UNITS), TZ)
    )
    assert again.unit_days_moved == 0


V1_SCHEMA = """
CREATE TABLE seen_events (event_key UHUGEINT PRIMARY KEY);
CREATE TABLE dossiers (
    dossier_key UHUGEINT PRIMARY KEY, dossier_id VARCHAR NOT NULL, unit_code VARCHAR NOT NULL,
    received_on DATE, online BOOLEAN, fee_required BOOLEAN, received_rank VARCHAR,
    digitized BOOLEAN NOT NULL, paid_online BOOLEAN NOT NULL, prev_unit_code VARCHAR,
    prev_received_on DATE, prev_online BOOLEAN, prev_fee_required BOOLEAN,
    prev_digitized BOOLEAN, prev_paid_online BOOLEAN);
CREATE TABLE unit_day (unit_code VARCHAR NOT NULL, day DATE NOT NULL, received BIGINT NOT NULL,
    online BIGINT NOT NULL, digitized BIGINT NOT NULL, fee_required BIGINT NOT NULL,
    paid_online BIGINT NOT NULL, PRIMARY KEY (unit_code, day));
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT INTO seen_events VALUES (md5_number('D1:r'));
INSERT INTO dossiers VALUES
  (md5_number('D1'), 'D1', 'CMU-S01', DATE '2023-03-02', true, true,
   '20230302020000000000|D1:r', true, false, NULL, NULL, NULL, NULL, NULL, NULL),
  (md5_number('D2'), 'D2', 'CMU-S01', NULL, NULL, NULL, NULL, true, false,
   NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO unit_day VALUES ('CMU-S01', DATE '2023-03-02', 1, 1, 1, 1, 0);
"""


# Version 2: a primary key on dossier_key and the previous row's columns.
V2_SCHEMA = """
CREATE TABLE dossiers (
    dossier_key UHUGEINT PRIMARY KEY, unit_code VARCHAR NOT NULL, received_on DATE,
    received_rank VARCHAR, flags UTINYINT NOT NULL, prev_unit_code VARCHAR,
    prev_received_on DATE, prev_flags UTINYINT);
CREATE TABLE unit_day (unit_code VARCHAR NOT NULL, day DATE NOT NULL, received BIGINT NOT NULL,
    online BIGINT NOT NULL, digitized BIGINT NOT NULL, fee_required BIGINT NOT NULL,
    paid_online BIGINT NOT NULL, PRIMARY KEY (unit_code, day));
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT INTO meta VALUES ('schema_version', '2');
INSERT INTO dossiers VALUES
  -- D1: received online with a fee at 2023-03-02 02:00 UTC, digitized
  (md5_number('D1'), 'CMU-S01', DATE '2023-03-02',
   lpad((epoch_us(TIMESTAMP '2023-03-02 02:00:00') + 62135596800000000)::VARCHAR, 20, '0')
   || '|D1:r' || chr(1) || '3', 7, 'CMU-S01', DATE '2023-03-02', 3),
  -- D2: an orphan digitized event
  (md5_number('D2'), 'CMU-S01', NULL, NULL, 4, NULL, NULL, NULL);
INSERT INTO unit_day VALUES ('CMU-S01', DATE '2023-03-02', 1, 1, 1, 1, 0);
"""


@pytest.mark.parametrize(
    ("old_schema", "cuts"), [(V1_SCHEMA, []), (V2_SCHEMA, [2])], ids=["version-1", "version-2"]
)
def test_a_file_of_an_earlier_schema_is_converted_and_keeps_counting(tmp_path, old_schema, cuts):
    # Both files hold the same: D1 received online with a fee on 2023-03-02 (09:00 local) in
    # CMU-S01 and digitized; D2 only an orphan digitized event.
    path = tmp_path / "scoring.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(old_schema)
    store = ScoreStore(path)
    store.open()
    try:
        tables = {r[0] for r in store.conn.execute("SHOW TABLES").fetchall()}
        assert tables == {"dossiers", "unit_day", "meta"}
        columns = [
            r[0]
            for r in store.conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'dossiers' ORDER BY ordinal_position"
            ).fetchall()
        ]
        assert columns == ["dossier_key", "unit_code", "received_on", "received_rank", "flags"]
        assert store.conn.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'dossiers' "
            "AND constraint_type = 'PRIMARY KEY'"
        ).fetchall() == [(0,)]
        # D1 gets paid online (counts now); D2, the orphan, is received.
        apply_all(
            store,
            [
                paid("CMU-S01", "D1", method="online"),
                received("CMU-S01", "D2", channel="direct", fee=False),
                digitized("CMU-S01", "D1"),  # already known: changes nothing
                # later than D1's converted rank (09:00 local): loses, D1 stays in CMU-S01
                received("CMU-H01", "D1", channel="direct", at="2023-03-02T10:00:00+07:00"),
            ],
            cuts,
        )
        assert stored_counts(store) == {
            "CMU-S01": {
                "received": 2,
                "online": 1,
                "digitized": 2,
                "fee_required": 1,
                "paid_online": 1,
            }
        }
        assert store.conn.execute("SELECT count(*) FROM dossiers").fetchall() == [(2,)]
        version = store.conn.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchall()
        assert version == [("3",)]
    finally:
        store.close()
