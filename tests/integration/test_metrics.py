"""Operating signals: Prometheus metrics at /metrics and structured JSON logs, from real
services (processes for the logs, so the JSON is what an operator's collector would read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from dvcpulse_scoring.app import create_app as create_scoring
from dvcpulse_shared.streams import DATA_FIELD, SCORING_GROUP, StreamNames
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import received
from tests.helpers import ServiceProcess, free_port, services, wait_until

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer: (name, sorted labels) -> value."""
    resp = httpx.get(f"{url}/metrics", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return parse(resp.text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def json_logs(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))  # a structlog line that is not JSON fails here
    return out


@pytest.fixture
def stack(service_env, tmp_path):
    ingest = ServiceProcess(
        "ingest", {**service_env, "DVCPULSE_INGEST_PORT": str(p1 := free_port())}, p1, tmp_path
    )
    scoring = ServiceProcess(
        "scoring", {**service_env, "DVCPULSE_SCORING_PORT": str(p2 := free_port())}, p2, tmp_path
    )
    with services(ingest, scoring):
        yield ingest, scoring


def test_metrics_and_json_logs_of_ingest_and_scoring(stack, settings, sync_redis) -> None:
    ingest, scoring = stack
    valid = [received("CMU-S05", f"M-{i}") for i in range(3)]
    bad = received("NOPE-9", "D-bad", event_id="bad-1")
    body = [*valid, valid[0], {"type": "dossier.received"}, bad]  # a duplicate, two invalid
    resp = httpx.post(f"{ingest.url}/api/v1/events", json=body, timeout=10)
    assert resp.status_code == 202
    assert resp.json()["accepted"] == 4
    # Poison written by some other producer straight into the stream: scoring dead-letters it.
    stream = StreamNames(settings.stream_prefix).events
    poison = {**received("CMU-S05", "PD-1", event_id="poison-1"), "unit_code": "GONE-1"}
    sync_redis.xadd(stream, {DATA_FIELD: orjson.dumps(poison)})
    sync_redis.xadd(stream, {DATA_FIELD: b"not json at all"})

    def scoring_done() -> dict | None:
        s = scrape(scoring.url)
        dead = sample(s, "dvcpulse_scoring_events_total", outcome="dead_lettered")
        return s if dead == 2 else None

    s = wait_until(scoring_done, 20, 0.1, what="scoring to dead-letter the poison")
    # The re-sent event is applied too (it changes nothing): 3 + 1.
    assert sample(s, "dvcpulse_scoring_events_total", outcome="counted") == 4
    assert sample(s, "dvcpulse_scoring_batch_seconds_count") >= 1
    assert sample(s, "dvcpulse_scoring_batch_seconds_sum") > 0
    # Everything delivered and acknowledged: refreshed on the scrape itself.
    assert sample(s, "dvcpulse_scoring_pending") == 0
    assert sample(s, "dvcpulse_scoring_lag") == 0

    i = scrape(ingest.url)
    assert sample(i, "dvcpulse_ingest_events_total", outcome="accepted") == 4
    assert sample(i, "dvcpulse_ingest_events_total", outcome="rejected") == 2

    # Structured JSON logs with the ids an operator searches for.
    ingest_logs = json_logs(ingest.log_path)
    rejected = {e["index"]: e for e in ingest_logs if e.get("event") == "ingest.event_rejected"}
    assert set(rejected) == {4, 5}
    assert rejected[5]["event_id"] == "bad-1" and rejected[5]["dossier_id"] == "D-bad"
    assert rejected[5]["level"] == "warning" and "timestamp" in rejected[5]
    assert any("unit_code" in err for err in rejected[5]["errors"])
    assert rejected[4]["event_id"] is None  # no id to give: still logged, by index
    accepted = [e for e in ingest_logs if e.get("event") == "ingest.accepted"]
    assert accepted[-1]["accepted"] == 4 and accepted[-1]["rejected"] == 2

    def dead_letter_logs() -> list[dict[str, Any]]:
        return [e for e in json_logs(scoring.log_path) if e.get("event") == "scoring.dead_lettered"]

    dead = wait_until(lambda: len(dead_letter_logs()) == 2 and dead_letter_logs(), 10)
    by_reason = {("GONE-1" in e["reason"]): e for e in dead}
    assert by_reason[True]["event_id"] == "poison-1"
    assert by_reason[True]["dossier_id"] == "PD-1"
    assert "event_id" not in by_reason[False]  # not decodable: the entry id only
    assert all(e["entry_id"] for e in dead)


async def test_lag_and_pending_gauges_follow_the_group(
    settings, registry, target_sets, async_redis
) -> None:
    """Entries not yet delivered count as lag, delivered but unacknowledged ones as pending."""
    app = create_scoring(settings, registry, target_sets)
    consumer = app.state.consumer
    names = StreamNames(settings.stream_prefix)
    await consumer.broker.connect()
    try:
        await consumer.ensure_group()
        for n in range(5):
            await async_redis.xadd(
                names.events, {DATA_FIELD: orjson.dumps(received(dossier=f"L{n}"))}
            )
        # Another consumer of the group takes two and has not acknowledged them yet.
        await async_redis.xreadgroup(SCORING_GROUP, "other", {names.events: ">"}, count=2)
        await consumer.refresh_lag()
        text = generate_latest(consumer.metrics.registry).decode()
        samples = parse(text)
        assert sample(samples, "dvcpulse_scoring_pending") == 2
        assert sample(samples, "dvcpulse_scoring_lag") == 3
    finally:
        await consumer.broker.stop()
