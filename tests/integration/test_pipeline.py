"""Ingest and scoring as real HTTP servers over the real Redis and a real DuckDB file."""

from __future__ import annotations

import httpx
import pytest
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring

from tests.factories import digitized, paid, received
from tests.helpers import ServerThread, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(settings, registry, target_sets):
    with (
        ServerThread(create_ingest(settings, registry)) as ingest,
        ServerThread(create_scoring(settings, registry, target_sets)) as scoring,
    ):
        yield ingest, scoring


def unit_row(scoring_url: str, unit: str, **params) -> dict:
    body = httpx.get(f"{scoring_url}/api/v1/scores", params={"unit": unit, **params}).json()
    return body["rows"][0]


def test_events_flow_to_rates(stack):
    ingest, scoring = stack
    events = [
        received("CMU-S01", "D1", channel="online", fee=True),
        received("CMU-S01", "D2", channel="direct", fee=True),
        received("CMU-S01", "D3", channel="postal", fee=False),
        digitized("CMU-S01", "D1"),
        paid("CMU-S01", "D1", method="online"),
        paid("CMU-S01", "D2", method="offline"),
    ]
    resp = httpx.post(f"{ingest.url}/api/v1/events", json=events)
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": 6, "rejected": []}

    row = wait_until(
        lambda: (
            (r := unit_row(scoring.url, "CMU-S01"))
            and r["received"] == 3
            and r["paid_online"] == 1
            and r
        ),
        what="counts",
    )
    assert (
        row["received"],
        row["online"],
        row["digitized"],
        row["fee_required"],
        row["paid_online"],
    ) == (3, 1, 1, 2, 1)
    assert row["online_rate"] == pytest.approx(100 / 3)
    assert row["digitization_rate"] == pytest.approx(100 / 3)
    assert row["online_payment_rate"] == 50.0


def test_duplicates_orphans_and_out_of_order_count_once(stack):
    ingest, scoring = stack
    r = received("CMU-H01-X07", "P1", channel="online", fee=True)
    d = digitized("CMU-H01-X07", "P1")
    p = paid("CMU-H01-X07", "P1", method="online")
    # Orphans first (digitized and paid before the dossier is received), then the dossier,
    # then every event again, and a second digitized event with a new id.
    for batch in ([d, p], [r], [r, d, p], [digitized("CMU-H01-X07", "P1")]):
        assert httpx.post(f"{ingest.url}/api/v1/events", json=batch).status_code == 202
    marker = received("CMU-H01-X07", "P2", channel="direct", fee=False)
    assert httpx.post(f"{ingest.url}/api/v1/events", json=[marker]).status_code == 202
    row = wait_until(
        lambda: (x := unit_row(scoring.url, "CMU-H01-X07")) and x["received"] == 2 and x, what="P2"
    )
    assert (
        row["received"],
        row["online"],
        row["digitized"],
        row["fee_required"],
        row["paid_online"],
    ) == (2, 1, 1, 1, 1)
    # "phường Tân Thành" and "xã Tân Thành" share a name, never a count.
    other = unit_row(scoring.url, "CMU-H01-X17")
    assert other["received"] == 0 and other["status"]["online"] == "no_data"


def test_batch_mixing_valid_and_invalid_events(stack):
    ingest, scoring = stack
    good = received("CMU-H02", "M1")
    naive = received("CMU-H02", "M2", at="2023-03-02T09:00:00")
    unknown = received("NOPE-1", "M3")
    extra = {**received("CMU-H02", "M4"), "colour": "red"}
    bad_channel = {**received("CMU-H02", "M5"), "channel": "fax"}
    resp = httpx.post(
        f"{ingest.url}/api/v1/events", json=[good, naive, unknown, extra, bad_channel]
    )
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == 1
    by_index = {r["index"]: r for r in body["rejected"]}
    assert set(by_index) == {1, 2, 3, 4}
    assert by_index[1]["errors"][0]["field"] == "occurred_at"
    assert "offset" in by_index[1]["errors"][0]["message"]
    assert by_index[2]["errors"] == [{"field": "unit_code", "message": "unknown unit 'NOPE-1'"}]
    assert by_index[3]["errors"][0]["field"] == "colour"
    assert by_index[4]["errors"][0]["field"] == "channel"
    assert by_index[2]["event_id"] == unknown["event_id"]
    wait_until(lambda: unit_row(scoring.url, "CMU-H02")["received"] == 1, what="the valid event")


def test_http_errors(stack):
    ingest, _ = stack
    url = f"{ingest.url}/api/v1/events"
    assert (
        httpx.post(
            url, content=b"[{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        httpx.post(url, content=b"", headers={"content-type": "application/json"}).status_code
        == 400
    )
    none_valid = httpx.post(url, json=[{"type": "dossier.received"}])
    assert none_valid.status_code == 422
    fields = {e["field"] for e in none_valid.json()["rejected"][0]["errors"]}
    assert {
        "event_id",
        "dossier_id",
        "unit_code",
        "occurred_at",
        "channel",
        "fee_required",
    } <= fields
    too_many = [received("CMU-S02")] * 10_001
    assert httpx.post(url, json=too_many, timeout=60).status_code == 413
    big = b"[" + b" " * (10 * 1024 * 1024 + 10) + b"]"
    assert (
        httpx.post(
            url, content=big, headers={"content-type": "application/json"}, timeout=60
        ).status_code
        == 413
    )
    bad_type = httpx.post(url, json=[{**received("CMU-S02"), "type": "dossier.lost"}])
    assert bad_type.status_code == 422
    assert bad_type.json()["rejected"][0]["errors"][0]["field"] == "type"


def test_ndjson_with_a_broken_line(stack):
    ingest, scoring = stack
    import orjson

    lines = [
        orjson.dumps(received("CMU-S03", "N1")),
        b"{broken",
        orjson.dumps(received("CMU-S03", "N2")),
    ]
    resp = httpx.post(
        f"{ingest.url}/api/v1/events",
        content=b"\n".join(lines),
        headers={"content-type": "application/x-ndjson"},
    )
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 2
    assert resp.json()["rejected"][0]["index"] == 1
    wait_until(lambda: unit_row(scoring.url, "CMU-S03")["received"] == 2, what="ndjson events")
