"""Reads `{prefix}:scores` in consumer group `alerts`; XACKs a batch only after the engine has
committed what it changed, so a crash redelivers it and the engine's dedupe makes that a no-op."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import orjson
import redis.asyncio as aredis
import structlog
from dvcpulse_shared.api import ScoreUpdate
from dvcpulse_shared.streams import ALERTS_GROUP, DATA_FIELD, StreamNames
from pydantic import ValidationError
from redis.exceptions import ResponseError

from .engine import AlertEngine

log = structlog.get_logger("dvcpulse.alerts")

# FastStream's binary envelope, in case another producer wrote the scores with FastStream.
_FASTSTREAM_MAGIC = b"\x89BIN\r\n\x1a\n"

Entry = tuple[bytes, dict[bytes, bytes]]


def decode_update(fields: dict[bytes, bytes]) -> ScoreUpdate:
    data = fields.get(DATA_FIELD)
    if data is None:
        raise ValueError(f"entry has no {DATA_FIELD.decode()!r} field")
    if data.startswith(_FASTSTREAM_MAGIC):
        from faststream.redis.parser.binary import BinaryMessageFormatV1

        data, _ = BinaryMessageFormatV1.parse(data)
    return ScoreUpdate.model_validate(orjson.loads(data))


class ScoresConsumer:
    def __init__(
        self,
        redis: aredis.Redis,
        engine: AlertEngine,
        prefix: str,
        batch: int = 500,
        block_ms: int = 200,
        consumer: str | None = None,
        after_batch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.stream = StreamNames(prefix).scores
        self.batch = batch
        self.block_ms = block_ms
        self.consumer = consumer or f"alerts-{socket.gethostname()}"
        self.after_batch = after_batch
        self.batches = 0
        self.bad_entries = 0
        # Set before the task is cancelled: redis-py may turn a cancellation into a connection
        # error, which the retry loop below must not mistake for a reason to go on.
        self.stopping = False

    async def ensure_group(self) -> None:
        """At 0, not $: score updates published before alerts first started still count."""
        try:
            await self.redis.xgroup_create(self.stream, ALERTS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        await self.ensure_group()
        # First what this consumer read but never acknowledged (a crash before XACK).
        while await self.read_once("0"):
            pass
        while not self.stopping:
            try:
                await self.read_once(">")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    return
                # Redis away or the store failing: nothing acked, so nothing lost; try again.
                log.error("alerts.consume_failed", error=str(exc))
                await asyncio.sleep(1.0)
                if "NOGROUP" in str(exc):  # the stream or group was deleted: start again at 0
                    await self.ensure_group()

    async def read_once(self, start: str) -> int:
        reply = await self.redis.xreadgroup(
            ALERTS_GROUP,
            self.consumer,
            {self.stream: start},
            count=self.batch,
            block=None if start == "0" else self.block_ms,
        )
        entries: list[Entry] = reply[0][1] if reply else []
        if not entries:
            return 0
        await self.handle(entries)
        return len(entries)

    async def handle(self, entries: list[Entry]) -> None:
        updates: list[ScoreUpdate] = []
        for entry_id, fields in entries:
            if fields is None:  # trimmed while pending
                continue
            try:
                updates.append(decode_update(fields))
            except (ValueError, ValidationError) as exc:
                # A malformed update cannot become valid by retrying: log it loudly and move on.
                self.bad_entries += 1
                log.error(
                    "alerts.bad_score_update", entry_id=entry_id.decode(), error=str(exc)[:500]
                )
        if updates:
            self.engine.apply_updates(updates)  # one committed transaction
        await self.redis.xack(self.stream, ALERTS_GROUP, *[e[0] for e in entries])
        self.batches += 1
        if self.after_batch is not None:
            await self.after_batch()
