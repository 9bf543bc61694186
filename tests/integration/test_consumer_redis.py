"""The scoring consumer's own Redis commands against the real server: XACKs packed by hiredis and
sent raw, and score updates published by the XADD script."""

from __future__ import annotations

import hiredis
import orjson
import pytest
from dvcpulse_scoring.consumer import PUBLISH_CHUNK, ScoringConsumer
from dvcpulse_scoring.metrics import ScoringMetrics
from dvcpulse_scoring.store import ScoreStore
from dvcpulse_shared.streams import DATA_FIELD, SCORING_GROUP
from faststream.redis import RedisBroker
from redis.exceptions import ResponseError

pytestmark = pytest.mark.integration


@pytest.fixture
async def consumer(settings, registry, target_sets):
    broker = RedisBroker(settings.redis_url.get_secret_value())
    store = ScoreStore(settings.duckdb_path)
    consumer = ScoringConsumer(settings, registry, target_sets, store, broker, ScoringMetrics())
    consumer.register()
    await broker.connect()
    consumer.prepare_connection()
    await consumer.ensure_group()
    yield consumer
    await broker.stop()
    store.close()


async def test_packed_xacks_acknowledge_every_id(consumer, sync_redis):
    stream = consumer.streams.events
    ids = [sync_redis.xadd(stream, {DATA_FIELD: b"{}"}) for _ in range(25)]
    sync_redis.xreadgroup(SCORING_GROUP, "c1", {stream: ">"}, count=100)
    assert sync_redis.xpending(stream, SCORING_GROUP)["pending"] == 25

    replies = await consumer._send_packed(
        [consumer._packed_xack(ids[:10]), consumer._packed_xack(ids[10:])]
    )

    assert replies == [10, 15]
    assert sync_redis.xpending(stream, SCORING_GROUP)["pending"] == 0


async def test_an_error_reply_raises_and_the_client_stays_usable(consumer, sync_redis):
    wrong_type = f"{consumer.streams.prefix}:a-string"
    sync_redis.set(wrong_type, "x")
    stream = consumer.streams.events
    entry = sync_redis.xadd(stream, {DATA_FIELD: b"{}"})
    sync_redis.xreadgroup(SCORING_GROUP, "c1", {stream: ">"}, count=10)

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await consumer._send_packed(
            [hiredis.pack_command((b"XACK", wrong_type, SCORING_GROUP, entry))]
        )

    # The connection that saw the error is not handed out with a reply left unread.
    assert await consumer._send_packed([consumer._packed_xack([entry])]) == [1]
    assert await consumer.redis.ping() is True


async def test_score_updates_are_published_in_order_one_entry_each(consumer, sync_redis):
    payloads = [orjson.dumps({"n": i, "unit_code": f"U{i}"}) for i in range(PUBLISH_CHUNK * 2 + 7)]

    await consumer.publish_scores(payloads)

    entries = sync_redis.xrange(consumer.streams.scores)
    assert [fields for _, fields in entries] == [{DATA_FIELD: p} for p in payloads]
