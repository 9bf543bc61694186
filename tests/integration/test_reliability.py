"""Poison entries, reclaiming a crashed consumer's entries, retention: real Redis, real DuckDB."""

from __future__ import annotations

import httpx
import orjson
import pytest
from dvcpulse_scoring.app import create_app as create_scoring
from dvcpulse_shared.streams import DATA_FIELD, SCORING_GROUP, StreamNames
from typer.testing import CliRunner

from tests.factories import received
from tests.helpers import ServerThread, wait_until
from tests.oracle import expected_counts, messy_feed

pytestmark = pytest.mark.integration


def scores_by_unit(url: str) -> dict[str, dict]:
    rows = httpx.get(f"{url}/api/v1/scores", timeout=10).json()["rows"]
    return {r["unit_code"]: r for r in rows}


def counts_of(row: dict) -> dict[str, int]:
    return {k: row[k] for k in ("received", "online", "digitized", "fee_required", "paid_online")}


def add(sync_redis, stream: str, events: list[dict]) -> None:
    with sync_redis.pipeline(transaction=False) as pipe:
        for e in events:
            pipe.xadd(stream, {DATA_FIELD: orjson.dumps(e)})
        pipe.execute()


def test_poison_entries_go_to_the_dead_letter_stream_and_never_stall(
    settings, registry, target_sets, sync_redis, monkeypatch
):
    names = StreamNames(settings.stream_prefix)
    good = [received("CMU-S05", f"G{i}") for i in range(3)]
    sync_redis.xadd(names.events, {DATA_FIELD: b"not json at all"})
    sync_redis.xadd(names.events, {b"other": b"field"})
    add(
        sync_redis,
        names.events,
        [good[0], received("GHOST-UNIT", "X1"), {**good[1], "channel": "pigeon"}],
    )
    add(sync_redis, names.events, good[1:])
    with ServerThread(create_scoring(settings, registry, target_sets)) as scoring:
        wait_until(
            lambda: scores_by_unit(scoring.url)["CMU-S05"]["received"] == 3, what="valid events"
        )
        wait_until(lambda: sync_redis.xlen(names.events_dlq) == 4, what="4 dead letters")
        wait_until(
            lambda: sync_redis.xpending(names.events, SCORING_GROUP)["pending"] == 0,
            what="all acked",
        )
    reasons = [f[b"reason"].decode() for _, f in sync_redis.xrange(names.events_dlq)]
    assert "not valid JSON" in reasons[0] or "invalid event" in reasons[0]
    assert "__data__" in reasons[1]
    assert "unknown unit_code 'GHOST-UNIT'" in reasons[2]
    assert "channel" in reasons[3]
    first = sync_redis.xrange(names.events_dlq)[0][1]
    assert (
        first[DATA_FIELD] == b"not json at all" and first[b"source_stream"] == names.events.encode()
    )

    # The CLI lists them and replays one back onto the events stream.
    from dvcpulse_cli.main import app

    for key, value in {
        "DVCPULSE_REDIS_URL": settings.redis_url.get_secret_value(),
        "DVCPULSE_STREAM_PREFIX": settings.stream_prefix,
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    assert "GHOST-UNIT" in listed.output
    ghost_id = sync_redis.xrange(names.events_dlq)[2][0].decode()
    before = sync_redis.xlen(names.events)
    replayed = runner.invoke(app, ["dlq", "replay", ghost_id])
    assert replayed.exit_code == 0, replayed.output
    assert sync_redis.xlen(names.events_dlq) == 3
    assert sync_redis.xlen(names.events) == before + 1


def test_a_crashed_consumers_entries_are_reclaimed_and_counted_once(
    settings, registry, target_sets, sync_redis
):
    names = StreamNames(settings.stream_prefix)
    units = ["CMU-S01", "CMU-H02", "CMU-H05-X03"]
    feed = messy_feed(units, 300, seed=3)
    sync_redis.xgroup_create(names.events, SCORING_GROUP, id="0", mkstream=True)
    add(sync_redis, names.events, feed)
    # Another consumer reads half the stream and dies without acknowledging.
    sync_redis.xreadgroup(
        SCORING_GROUP, "crashed-consumer", {names.events: ">"}, count=len(feed) // 2
    )
    assert sync_redis.xpending(names.events, SCORING_GROUP)["pending"] == len(feed) // 2
    with ServerThread(create_scoring(settings, registry, target_sets)) as scoring:
        wait_until(
            lambda: sync_redis.xpending(names.events, SCORING_GROUP)["pending"] == 0,
            timeout=30,
            what="reclaim",
        )
        expected = expected_counts(feed)
        got = scores_by_unit(scoring.url)
        assert {u: counts_of(got[u]) for u in units} == {u: expected[u] for u in units}


def test_retention_trims_only_what_every_group_acknowledged(
    settings, registry, target_sets, sync_redis
):
    names = StreamNames(settings.stream_prefix)
    settings = settings.model_copy(update={"claim_idle_ms": 200})
    sync_redis.xgroup_create(names.events, "slow-reader", id="0", mkstream=True)
    events = [received("CMU-S07", f"T{i}") for i in range(50)]
    add(sync_redis, names.events, events)
    with ServerThread(create_scoring(settings, registry, target_sets)) as scoring:
        wait_until(lambda: scores_by_unit(scoring.url)["CMU-S07"]["received"] == 50, what="counted")
        consumer = scoring.server.config.app.state.consumer  # type: ignore[attr-defined]
        # The slow group has read nothing: nothing may go.
        wait_until(lambda: consumer.processed_batches > 0, what="a batch")
        assert sync_redis.xlen(names.events) == 50
        # Once it has read and acknowledged 20, those 20 (and only those) may go.
        read = sync_redis.xreadgroup("slow-reader", "r1", {names.events: ">"}, count=20)
        sync_redis.xack(names.events, "slow-reader", *[i for i, _ in read[0][1]])
        wait_until(lambda: sync_redis.xlen(names.events) <= 30, timeout=10, what="trim")
        assert sync_redis.xlen(names.events) == 30
        assert (
            sync_redis.xrange(names.events, count=1)[0][0] == sync_redis.xrange(names.events)[0][0]
        )
