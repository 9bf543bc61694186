"""The scoreboard's server side without a browser: the page and its files, its config, and the
server-sent events that tell it to refetch (runs even where Chromium is not installed)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring

from tests.factories import received
from tests.helpers import ServerThread

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(settings, registry, target_sets):
    with (
        ServerThread(create_ingest(settings, registry)) as ingest,
        ServerThread(create_scoring(settings, registry, target_sets)) as scoring,
    ):
        yield ingest, scoring


def next_event(lines: Iterator[str]) -> tuple[str, dict]:
    """The next SSE event (name, data), skipping comments (keep-alives) and `retry`."""
    name, data = None, None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and name is not None:
            return name, data or {}
    raise AssertionError("the event stream ended")


def test_live_stream_announces_new_counts(stack) -> None:
    ingest, scoring = stack
    # The read timeout is the deadline: an update must arrive well before the 15 s keep-alive.
    with httpx.stream(
        "GET", f"{scoring.url}/api/v1/live", timeout=httpx.Timeout(10, read=8)
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        name, hello = next_event(lines)
        assert name == "hello" and hello["version"] == 0
        event = received("CMU-S04", "LIVE-1")
        assert httpx.post(f"{ingest.url}/api/v1/events", json=[event]).status_code == 202
        name, update = next_event(lines)
        assert name == "scores"
        assert update["boot"] == hello["boot"] and update["version"] == 1
        # The page refetches on this signal: the numbers are there by then.
        row = httpx.get(
            f"{scoring.url}/api/v1/scores", params={"unit": "CMU-S04", "window": "campaign"}
        ).json()["rows"][0]
        assert row["received"] == 1


def test_page_config_and_files(stack) -> None:
    _, scoring = stack
    page = httpx.get(f"{scoring.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="vi">' in page.text
    for asset, kind in (("scoreboard.js", "javascript"), ("scoreboard.css", "text/css")):
        resp = httpx.get(f"{scoring.url}/static/{asset}")
        assert resp.status_code == 200 and kind in resp.headers["content-type"]
    config = httpx.get(f"{scoring.url}/api/v1/scoreboard/config").json()
    assert [(lv["code"], lv["label"]) for lv in config["levels"]] == [
        ("province", "Cấp tỉnh"),
        ("district", "Cấp huyện"),
        ("commune", "Cấp xã"),
    ]
    # No campaign runs today, so the active one is the one that started last (2023).
    assert config["default_window"] == "campaign"
    campaign = config["windows"][0]
    assert campaign["id"] == "campaign" and campaign["date_from"] == "2023-03-01"
    assert config["levels"][0]["targets"] == {
        "online": "80",
        "digitization": "80",
        "online_payment": "40",
    }
    assert [w["id"] for w in config["windows"]][-1] == "all"
    assert config["no_fee_note"] == "Không có TTHC yêu cầu thực hiện nghĩa vụ tài chính"
