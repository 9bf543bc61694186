"""API keys on ingest, read tokens on scoring: real servers over the real Redis."""

from __future__ import annotations

import httpx
import pytest
from dvcpulse_common.auth import ApiKey, hash_secret
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring

from tests.factories import received
from tests.helpers import ServerThread

pytestmark = pytest.mark.integration

MOTCUA_KEY = "dvp_test-key-for-the-whole-province"
DISTRICT_KEY = "dvp_test-key-for-district-h01-only"
READ_TOKEN = "dvp_test-read-token"


@pytest.fixture
def secured(settings):
    return settings.model_copy(
        update={
            "api_keys": [
                ApiKey(name="motcua-tinh", sha256=hash_secret(MOTCUA_KEY)),
                ApiKey(name="motcua-tp-camau", sha256=hash_secret(DISTRICT_KEY), units=["CMU-H01"]),
            ],
            "read_tokens": [hash_secret(READ_TOKEN)],
        }
    )


def test_ingest_requires_a_known_key(secured, registry, capfd):
    with ServerThread(create_ingest(secured, registry)) as ingest:
        url = f"{ingest.url}/api/v1/events"
        body = [received("CMU-S01")]
        assert httpx.post(url, json=body).status_code == 401
        wrong = httpx.post(url, json=body, headers={"x-api-key": "dvp_guess"})
        assert wrong.status_code == 401 and "dvp_guess" not in wrong.text
        assert httpx.post(url, json=body, headers={"x-api-key": MOTCUA_KEY}).status_code == 202
        bearer = httpx.post(url, json=body, headers={"authorization": f"Bearer {MOTCUA_KEY}"})
        assert bearer.status_code == 202
    logs = capfd.readouterr()
    assert MOTCUA_KEY not in logs.out + logs.err and "dvp_guess" not in logs.out + logs.err


def test_a_key_limited_to_a_district_covers_its_communes_only(secured, registry):
    with ServerThread(create_ingest(secured, registry)) as ingest:
        events = [
            received("CMU-H01"),
            received("CMU-H01-X07"),
            received("CMU-H02"),
            received("CMU-S01"),
        ]
        resp = httpx.post(
            f"{ingest.url}/api/v1/events", json=events, headers={"x-api-key": DISTRICT_KEY}
        )
        assert resp.status_code == 202
        body = resp.json()
        assert body["accepted"] == 2
        assert [(r["index"], r["errors"][0]["field"]) for r in body["rejected"]] == [
            (2, "unit_code"),
            (3, "unit_code"),
        ]
        assert (
            "may not send events for unit 'CMU-H02'" in body["rejected"][0]["errors"][0]["message"]
        )


def test_read_apis_require_a_token_when_configured(secured, registry, target_sets):
    with ServerThread(create_scoring(secured, registry, target_sets)) as scoring:
        assert httpx.get(f"{scoring.url}/api/v1/scores").status_code == 401
        assert (
            httpx.get(
                f"{scoring.url}/api/v1/scores", headers={"authorization": "Bearer nope"}
            ).status_code
            == 401
        )
        ok = httpx.get(
            f"{scoring.url}/api/v1/scores", headers={"authorization": f"Bearer {READ_TOKEN}"}
        )
        assert ok.status_code == 200 and len(ok.json()["rows"]) == 129
        cookie = httpx.get(f"{scoring.url}/api/v1/units", cookies={"dvcpulse_token": READ_TOKEN})
        assert cookie.status_code == 200
        assert httpx.get(f"{scoring.url}/health").status_code == 200  # probes stay open


def test_keys_new_prints_a_secret_whose_hash_admits_it(monkeypatch):
    import json
    import re

    from dvcpulse_cli.main import app
    from typer.testing import CliRunner

    out = (
        CliRunner()
        .invoke(app, ["keys", "new", "motcua-camau", "--units", "CMU-H01,CMU-S02"])
        .output
    )
    secret = re.search(r"(dvp_\S+)", out).group(1)
    entry = json.loads(out.split("DVCPULSE_API_KEYS:")[1].strip())
    assert entry["sha256"] == hash_secret(secret) and entry["units"] == ["CMU-H01", "CMU-S02"]
    assert ApiKey.model_validate(entry).name == "motcua-camau"
