"""Scoring validates every stream entry again: other producers may write to the stream."""

from __future__ import annotations

import unicodedata
from zoneinfo import ZoneInfo

import orjson
from dvcpulse_scoring.domain import decode_entries, received_rank

from tests.factories import received

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def entry(i: int, payload: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    return (f"{i}-0".encode(), {b"__data__": payload})


def test_valid_poison_and_normalised_entries():
    code = "XÃ-1"
    nfd = unicodedata.normalize("NFD", code)
    entries = [
        entry(0, orjson.dumps(received(code, "A", at="2023-03-01T23:30:00+00:00"))),
        entry(1, orjson.dumps(received(nfd, "B"))),
        entry(2, b"{not json"),
        entry(3, orjson.dumps(received(code, "C", at="2023-03-01T23:30:00"))),
        entry(4, orjson.dumps({**received(code, "D"), "occurred_at": 1677722400})),
        entry(5, orjson.dumps(received("NOWHERE", "E"))),
        (b"6-0", {b"other": b"x"}),
    ]
    batch = decode_entries(entries, {code}, TZ)
    assert batch.dossier_id == ["A", "B"]
    assert batch.unit_code == [code, code]  # the NFD code is counted under its NFC unit
    # 23:30 UTC on 1 March is 06:30 on 2 March in Vietnam: the cohort day is local.
    assert str(batch.day[0]) == "2023-03-02"
    assert [p.entry_id for p in batch.poison] == [b"2-0", b"3-0", b"4-0", b"5-0", b"6-0"]
    reasons = [p.reason for p in batch.poison]
    assert "occurred_at" in reasons[1] and "occurred_at" in reasons[2]
    assert "unknown unit_code 'NOWHERE'" in reasons[3]
    assert "__data__" in reasons[4]


def test_received_rank_orders_by_utc_time_then_id():
    from datetime import datetime

    early = received_rank(datetime.fromisoformat("2023-03-02T08:00:00+07:00"), "z")
    late = received_rank(datetime.fromisoformat("2023-03-02T02:00:00+00:00"), "a")
    assert early < late
    assert received_rank(datetime.fromisoformat("2023-03-02T01:00:00+00:00"), "a") < received_rank(
        datetime.fromisoformat("2023-03-02T08:00:00+07:00"), "b"
    )


def test_memoised_local_days_equal_the_exact_conversion_in_odd_zones():
    import random
    from datetime import UTC, datetime, timedelta

    from dvcpulse_scoring.domain import LocalDays, local_day, utc_micros

    rng = random.Random(3)
    for zone in ("Asia/Ho_Chi_Minh", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"):
        tz = ZoneInfo(zone)
        days = LocalDays(tz)
        base = datetime(2023, 1, 1, tzinfo=UTC)
        moments = [base + timedelta(seconds=rng.randrange(0, 366 * 86400)) for _ in range(3000)]
        # and every minute around the DST changes and local midnights
        moments += [
            datetime(2023, 3, 12, 4, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(600)
        ]
        moments += [
            datetime(2023, 4, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(900)
        ]
        for m in moments + moments:  # twice: the second pass reads the memo
            assert days.of(m, utc_micros(m)) == local_day(m, tz), (zone, m)


def test_fields_as_the_flat_list_redis_sends_decode_like_dicts():
    payload = orjson.dumps(received("U-1", "A"))
    as_dict = decode_entries([entry(0, payload)], {"U-1"}, TZ)
    as_list = decode_entries(
        [
            (b"0-0", [b"__data__", payload]),
            (b"1-0", [b"source", b"x", b"__data__", payload]),
            (b"2-0", [b"source", b"x"]),
        ],
        {"U-1"},
        TZ,
    )
    assert as_list.dossier_id == ["A", "A"] and as_list.columns()["flags"] == as_dict.flags * 2
    assert [p.entry_id for p in as_list.poison] == [b"2-0"]
    assert "__data__" in as_list.poison[0].reason
