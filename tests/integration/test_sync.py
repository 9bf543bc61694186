"""POST /api/v1/sync/dossiers over real servers, the real Redis and a real DuckDB file."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring
from pydantic import SecretStr

from tests.factories import received
from tests.helpers import ServerThread, free_port, wait_until

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"


def records() -> list[dict]:
    return json.loads((DATA / "dongbo_records.json").read_text(encoding="utf-8"))


@pytest.fixture
def stack(settings, registry, target_sets, tmp_path):
    mapping = tmp_path / "portal_units.yaml"
    mapping.write_text("units:\n  'Tân Thành': CMU-H01-X07\n", encoding="utf-8")
    ingest_settings = settings.model_copy(update={"sync_unit_map_file": mapping})
    with (
        ServerThread(create_ingest(ingest_settings, registry)) as ingest,
        ServerThread(create_scoring(settings, registry, target_sets)) as scoring,
    ):
        yield ingest, scoring


def counts(scoring_url: str, unit: str) -> tuple[int, ...]:
    row = httpx.get(f"{scoring_url}/api/v1/scores", params={"unit": unit}).json()["rows"][0]
    keys = ("received", "online", "digitized", "fee_required", "paid_online")
    return tuple(row[k] for k in keys)


def test_records_and_their_update_count_once(stack):
    ingest, scoring = stack
    url = f"{ingest.url}/api/v1/sync/dossiers"
    first = records()
    resp = httpx.post(url, json=first)
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": 3, "events": 6, "rejected": []}
    wait_until(lambda: counts(scoring.url, "CMU-H01-X07")[0] == 1, what="third record")
    assert counts(scoring.url, "CMU-S01") == (1, 1, 1, 1, 1)
    assert counts(scoring.url, "CMU-S02") == (1, 0, 0, 0, 0)
    assert counts(scoring.url, "CMU-H01-X07") == (1, 0, 1, 0, 0)

    # The same dossiers again after processing moved on: record 2 is now digitized and, with a
    # fee, paid online; wrapped as the portal's API does ({"data": [...]}).
    updated = [dict(r) for r in first]
    updated[1].update(
        TrangThaiHoSo="4",
        HoSoCoThanhPhanSoHoa=1,
        DanhSachLePhi=[{"Gia": 15000}],
        DuocThanhToanTrucTuyen="1",
    )
    resp = httpx.post(url, json={"data": updated})
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 3
    # A marker dossier posted after the update: once it is counted, the update has been too.
    marker = received("CMU-S02", "SYNC-MARKER", channel="direct", fee=False)
    assert httpx.post(f"{ingest.url}/api/v1/events", json=[marker]).status_code == 202
    wait_until(lambda: counts(scoring.url, "CMU-S02")[0] == 2, what="marker")
    # Received still once per dossier; the first received fixed fee_required=False, so the
    # late payment is kept but does not count as a fee-bearing payment; digitized counts once.
    assert counts(scoring.url, "CMU-S02") == (2, 0, 1, 0, 0)
    assert counts(scoring.url, "CMU-S01") == (1, 1, 1, 1, 1)
    assert counts(scoring.url, "CMU-H01-X07") == (1, 0, 1, 0, 0)


def test_bad_records_are_rejected_one_by_one(stack):
    ingest, scoring = stack
    good = records()[0]
    bad_unit = {**records()[1], "MaHoSo": "B-1", "DonViXuLy": "Sở Không Có"}
    bad_date = {**records()[1], "MaHoSo": "B-2", "NgayTiepNhan": "02/03/2023"}
    too_long = {**records()[1], "MaHoSo": "X" * 65}
    resp = httpx.post(
        f"{ingest.url}/api/v1/sync/dossiers", json=[bad_unit, good, bad_date, too_long, "x"]
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert (body["accepted"], body["events"]) == (1, 3)
    by_index = {r["index"]: r for r in body["rejected"]}
    assert set(by_index) == {0, 2, 3, 4}
    assert by_index[0]["MaHoSo"] == "B-1"
    assert by_index[0]["errors"][0]["field"] == "DonViXuLy"
    assert by_index[2]["errors"][0]["field"] == "NgayTiepNhan"
    assert {e["field"] for e in by_index[3]["errors"]} == {"MaHoSo"}
    assert by_index[4]["errors"] == [{"field": "", "message": "a record must be a JSON object"}]
    wait_until(lambda: counts(scoring.url, "CMU-S01") == (1, 1, 1, 1, 1), what="the good one")


def test_http_answers(stack, settings):
    ingest, _ = stack
    url = f"{ingest.url}/api/v1/sync/dossiers"
    headers = {"content-type": "application/json"}
    assert httpx.post(url, content=b"{nope", headers=headers).status_code == 400
    assert httpx.post(url, content=b'{"other": 1}', headers=headers).status_code == 400
    none_valid = httpx.post(url, json=[{"MaHoSo": "Z"}])
    assert none_valid.status_code == 422
    fields = {e["field"] for e in none_valid.json()["rejected"][0]["errors"]}
    assert fields == {"DonViXuLy", "NgayTiepNhan"}
    too_many = [records()[1]] * (settings.max_events_per_request + 1)
    assert httpx.post(url, json=too_many, timeout=60).status_code == 413
    big = b"[" + b" " * (settings.max_body_bytes + 10) + b"]"
    assert httpx.post(url, content=big, headers=headers, timeout=60).status_code == 413


def test_503_when_redis_cannot_take_them(settings, registry):
    dead = settings.model_copy(
        update={"redis_url": SecretStr(f"redis://127.0.0.1:{free_port()}/0")}
    )
    try:
        server = ServerThread(create_ingest(dead, registry))
        server.__enter__()
    except RuntimeError:
        pytest.skip("the broker refuses to start without Redis; 503 is covered by /events")
    try:
        resp = httpx.post(f"{server.url}/api/v1/sync/dossiers", json=records()[:1], timeout=30)
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "2"
    finally:
        server.__exit__(None, None, None)


def test_api_keys_and_unit_scopes_apply_to_sync(settings, registry):
    from dvcpulse_common.auth import ApiKey, hash_secret

    key = "dvp_test-sync-key-for-district-h01"
    secured = settings.model_copy(
        update={"api_keys": [ApiKey(name="motcua-h01", sha256=hash_secret(key), units=["CMU-H01"])]}
    )
    with ServerThread(create_ingest(secured, registry)) as ingest:
        url = f"{ingest.url}/api/v1/sync/dossiers"
        in_scope = {**records()[1], "MaHoSo": "K-1", "DonViXuLy": "CMU-H01-X07"}
        out_of_scope = {**records()[1], "MaHoSo": "K-2", "DonViXuLy": "CMU-S01"}
        assert httpx.post(url, json=[in_scope]).status_code == 401
        resp = httpx.post(url, json=[in_scope, out_of_scope], headers={"x-api-key": key})
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert body["accepted"] == 1
        (rejection,) = body["rejected"]
        assert rejection["index"] == 1 and rejection["errors"][0]["field"] == "DonViXuLy"
        assert "may not send events for unit 'CMU-S01'" in rejection["errors"][0]["message"]
