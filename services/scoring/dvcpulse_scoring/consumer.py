"""The scoring consumer: events stream -> DuckDB -> scores stream, with recovery and a DLQ.

Order of effects for every batch: commit to DuckDB, dead-letter the poison entries, mark the
touched (unit, window) pairs due for a score update, then XACK. A crash anywhere before XACK
redelivers the batch, and deduplication by event_id makes the second pass change nothing. Score
updates are published by the flush loop every `score_flush_ms` (or before the XACK when it is
0); on start, every unit is republished for the windows in force, so an update a crash kept
from being published is never lost.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import hiredis
import orjson
import structlog
from dvcpulse_common.redis_scripts import XADD_MANY
from dvcpulse_common.registry import Registry
from dvcpulse_common.settings import Settings
from dvcpulse_common.targets import active_campaign
from dvcpulse_shared.api import DeadLetterEntry, ScoreUpdate, Window
from dvcpulse_shared.streams import DATA_FIELD, SCORING_GROUP, StreamNames
from dvcpulse_shared.targets import TargetSet
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.redis import RedisBroker, StreamSub
from redis.exceptions import ResponseError

from .domain import DecodedBatch, LocalDays
from .metrics import ScoringMetrics
from .store import ScoreStore
from .updates import UpdateBuilder, WindowKey
from .vectorised import VectorDecoder

log = structlog.get_logger("dvcpulse.scoring")

# (id, fields): fields as a dict, or as Redis's flat [field, value, ...] list (raw reads).
Entry = tuple[bytes, dict[bytes, bytes] | list[bytes]]
FLUSH_BACKOFF = 9
PUBLISH_CHUNK = 1000


@dataclass
class BatchOutcome:
    entries: int
    events: int  # valid events applied
    unit_days_moved: int  # (unit, day) counts changed; 0 when every event was already known
    poison: int
    score_updates: int


def _ids_of(payload: bytes) -> dict[str, str]:
    """event_id and dossier_id of a poison payload, when it is JSON that carries them."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k in ("event_id", "dossier_id") if isinstance(v := data.get(k), str)}


async def _keep_raw(msg: Any, _original: Any) -> StreamMessage[Any]:
    # Skip FastStream's per-entry envelope parse and JSON re-encode: the handler decodes the
    # whole batch once, itself.
    return StreamMessage(
        raw_message=msg, body=b"", headers={}, content_type=None, message_id="", correlation_id=""
    )


async def _raw_body(msg: StreamMessage[Any], _original: Any) -> Any:
    return msg.raw_message


def default_consumer_name() -> str:
    return f"scoring-{socket.gethostname()}"


class ScoringConsumer:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        target_sets: list[TargetSet],
        store: ScoreStore,
        broker: RedisBroker,
        metrics: ScoringMetrics,
        on_batch: Callable[[BatchOutcome], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.target_sets = target_sets
        self.store = store
        self.broker = broker
        self.metrics = metrics
        self.streams = StreamNames(settings.stream_prefix)
        self.consumer = settings.consumer_name or default_consumer_name()
        self.tz = ZoneInfo(settings.timezone)
        self.unit_codes = frozenset(registry.units)
        self.local_days = LocalDays(self.tz)
        self.decoder = VectorDecoder(self.unit_codes, self.local_days)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_batch = on_batch
        self.processed_batches = 0
        self.updates = UpdateBuilder(registry.units, target_sets)
        # (window id, unit) pairs whose score update is due: a flush publishes each once, however
        # many batches touched it since the last flush.
        self._dirty: dict[WindowKey, tuple[Window, TargetSet | None]] = {}
        self.published_updates = 0
        # Decoded batches waiting for the writer: see process_pipelined. Under a backlog they pile
        # up while a transaction commits and the next transaction takes them all.
        # (entries read, their packed XACK commands, the decoded batch)
        self._queue: asyncio.Queue[tuple[int, list[bytes], DecodedBatch]] = asyncio.Queue(
            maxsize=max(1, -(-settings.write_max_events // settings.batch_size))
        )
        self._writer: asyncio.Task[None] | None = None
        # Batches read, waiting for the decoder (entry ids, fields): two are enough for a read
        # never to wait for a decode to finish.
        self._to_decode: asyncio.Queue[tuple[list[bytes], list[Any]]] = asyncio.Queue(maxsize=2)
        self._decoder: asyncio.Task[None] | None = None
        self._xadd_many: Any = None  # the XADD_MANY script, once connected (prepare_connection)

    # -- wiring ----------------------------------------------------------------------------
    def register(self) -> None:
        sub = self.broker.subscriber(
            stream=StreamSub(
                self.streams.events,
                group=SCORING_GROUP,
                consumer=self.consumer,
                batch=True,
                max_records=self.settings.batch_size,
                polling_interval=self.settings.block_ms,
            ),
            parser=_keep_raw,
            decoder=_raw_body,
            ack_policy=AckPolicy.MANUAL,  # we XACK ourselves, after the DuckDB commit
            title="scoring",
            description="Counts dossier events into per-unit aggregates",
        )

        @sub
        async def on_events(batch: Any) -> None:
            try:
                await self.process_pipelined(batch["message_ids"], batch["data"])
            except Exception as exc:
                # Left pending: the claim loop retries these entries after claim_idle_ms.
                log.exception(
                    "scoring.batch_failed", entries=len(batch["message_ids"]), error=str(exc)
                )
                raise

        self.broker.publisher(
            stream=self.streams.scores,
            title="scores",
            description="Score updates per unit",
            schema=ScoreUpdate,
        )
        # Declared for the AsyncAPI document; entries are written by dead_letter() below.
        self.broker.publisher(
            stream=self.streams.events_dlq,
            title="events-dlq",
            description="Entries of the events stream that cannot be counted (not a valid event, "
            "unknown unit), with the reason; `dvcpulse dlq list|replay`",
            schema=DeadLetterEntry,
        )

    @property
    def redis(self):  # type: ignore[no-untyped-def]
        return self.broker._connection

    def prepare_connection(self) -> None:
        """Once connected: XREADGROUP replies keep each entry's fields as the flat list Redis
        sends, and the script that publishes score updates is registered.

        redis-py turns every entry's fields into a dict (`pairs_to_dict`): ~14% of the process's
        time on the read path, for a dict we read one key of. `decode_entries` takes either
        shape, FastStream's batch subscriber passes entries through untouched.
        """
        self.redis.set_response_callback("XREADGROUP", _xread_raw)
        self._xadd_many = self.redis.register_script(XADD_MANY)

    async def ensure_group(self) -> None:
        """Create the group at 0 so events already in the stream are counted (FastStream would
        create it at $, skipping them)."""
        try:
            await self.redis.xgroup_create(
                self.streams.events, SCORING_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def start_recovery(self) -> None:
        """Drain this consumer's own pending entries, then keep reclaiming stale ones."""
        today = datetime.now(self.tz).date()
        campaign = active_campaign(self.target_sets, today, self.settings.campaign)
        self.mark_all_units_dirty([today, *([campaign.valid_from] if campaign else [])])
        await self.drain_own_pending()
        await self.flush_scores()
        self._tasks.append(asyncio.create_task(self._claim_loop(), name="scoring-claim"))
        if self.settings.score_flush_ms > 0:
            self._tasks.append(asyncio.create_task(self._flush_loop(), name="scoring-scores"))

    async def stop(self, timeout: float = 60) -> None:
        try:
            # Bounded: a shutdown never hangs. Whatever is not acknowledged in time stays pending
            # and is counted (once) after the restart.
            await asyncio.wait_for(self.drain(), timeout)
            # A read cancelled by the shutdown may already have taken entries (they sit in this
            # consumer's pending list): count and acknowledge them now rather than at restart.
            await asyncio.wait_for(self.drain_own_pending(), timeout)
        except (TimeoutError, Exception) as exc:
            log.warning("scoring.pending_left", error=str(exc) or type(exc).__name__)
        for stage in (self._decoder, self._writer):
            if stage is not None:
                stage.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        # Wait for the batch in hand to finish (graceful shutdown), then publish what is due.
        async with self._lock:
            try:
                await self.flush_scores()
            except Exception as exc:
                log.warning("scoring.scores_not_published", error=str(exc), due=len(self._dirty))

    async def drain_own_pending(self) -> int:
        total = 0
        while True:
            reply = await self.redis.xreadgroup(
                SCORING_GROUP,
                self.consumer,
                {self.streams.events: "0"},
                count=self.settings.batch_size,
            )
            entries = [(i, f) for i, f in (reply[0][1] if reply else []) if f is not None]
            deleted = [i for i, f in (reply[0][1] if reply else []) if f is None]
            if deleted:  # trimmed away while pending: nothing left to count
                await self.redis.xack(self.streams.events, SCORING_GROUP, *deleted)
            if not entries:
                return total
            await self.process(entries)
            total += len(entries)

    async def claim_stale(self) -> int:
        """XAUTOCLAIM entries idle longer than claim_idle_ms (a crashed consumer's) and count them."""
        total = 0
        start = "0-0"
        while True:
            next_id, claimed, *rest = await self.redis.xautoclaim(
                self.streams.events,
                SCORING_GROUP,
                self.consumer,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=start,
                count=self.settings.batch_size,
            )
            entries = [(i, f) for i, f in claimed if f is not None]
            if rest and rest[0]:  # ids deleted from the stream (Redis 7+)
                await self.redis.xack(self.streams.events, SCORING_GROUP, *rest[0])
            if entries:
                log.warning("scoring.reclaimed", entries=len(entries))
                await self.process(entries)
                total += len(entries)
            start = next_id.decode() if isinstance(next_id, bytes) else next_id
            if start == "0-0":
                return total

    async def trim_acknowledged(self, stream: str, keep_without_group: int | None = None) -> int:
        """Trim entries that every consumer group has acknowledged, never one still unprocessed.

        A group's boundary is its oldest pending entry, or the entry after the last one it was
        given; entries below the lowest boundary of all groups are done with everywhere.
        """
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:  # no such stream yet
            return 0
        if not groups:
            if keep_without_group is None:
                return 0
            return int(await self.redis.xtrim(stream, maxlen=keep_without_group, approximate=True))
        boundaries = []
        for group in groups:
            name = group["name"]
            if group.get("pending"):
                oldest = (await self.redis.xpending(stream, name))["min"]
                if oldest is None:  # acknowledged in between: decide on the next beat
                    return 0
                boundaries.append(_parse_id(oldest))
            else:
                if group.get("last-delivered-id") is None:
                    return 0
                ms, seq = _parse_id(group["last-delivered-id"])
                boundaries.append((ms, seq + 1))
        ms, seq = min(boundaries)
        return int(await self.redis.xtrim(stream, minid=f"{ms}-{seq}", approximate=False))

    async def _claim_loop(self) -> None:
        every = max(self.settings.claim_idle_ms / 2000, 0.05)
        while True:
            await asyncio.sleep(every)
            try:
                await self.claim_stale()
                await self.refresh_lag()
                if self.settings.stream_retention:
                    await self.trim_acknowledged(self.streams.events)
                    await self.trim_acknowledged(self.streams.scores, self.settings.scores_maxlen)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("scoring.claim_failed", error=str(exc))

    async def refresh_lag(self) -> None:
        for group in await self.redis.xinfo_groups(self.streams.events):
            name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
            if name == SCORING_GROUP:
                self.metrics.pending.set(group.get("pending", 0) or 0)
                lag = group.get("lag")
                if lag is not None:
                    self.metrics.lag.set(lag)

    # -- the batch path --------------------------------------------------------------------
    def _decode(self, entries: list[Entry]) -> DecodedBatch:
        # Arrow column-wise for the rows it can prove valid, pydantic for the rest (vectorised.py)
        fast, reference = self.decoder.fast_rows, self.decoder.reference_rows
        decoded = self.decoder.decode(entries)
        self.metrics.decoded.labels("arrow").inc(self.decoder.fast_rows - fast)
        self.metrics.decoded.labels("reference").inc(self.decoder.reference_rows - reference)
        return decoded

    def _decode_for_writer(self, ids: list[bytes], fields: list[Any]) -> tuple[DecodedBatch, bytes]:
        """On the decoder's thread: the batch decoded and its XACK, packed by hiredis (C)."""
        return self._decode(list(zip(ids, fields, strict=True))), self._packed_xack(ids)

    def _packed_xack(self, ids: list[bytes]) -> bytes:
        # redis-py's asyncio client packs commands in Python: ~3x slower for 10,000 ids, on the
        # event loop.
        return hiredis.pack_command((b"XACK", self.streams.events, SCORING_GROUP, *ids))

    async def process(self, entries: list[Entry]) -> BatchOutcome:
        """Decode, count and acknowledge one batch, and return when it is done."""
        decoded = await asyncio.to_thread(self._decode, entries)
        ack = self._packed_xack([e[0] for e in entries])
        # Shielded: a shutdown (or a cancelled read) never interrupts a batch between its DuckDB
        # commit and its XACK; stop() waits for it through the lock.
        return await asyncio.shield(self._apply(decoded, len(entries), [ack]))

    async def process_pipelined(self, ids: list[bytes], fields: list[Any]) -> None:
        """The live read path: three stages that overlap, each on its own task. The event loop
        reads the next batch while a thread decodes this one (Arrow releases the GIL) and the
        store's thread writes the ones before (DuckDB releases it). Batches are decoded,
        written and acknowledged strictly in order, one at a time per stage."""
        if self._decoder is None or self._decoder.done():
            self._decoder = asyncio.create_task(self._decode_loop(), name="scoring-decoder")
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="scoring-writer")
        await self._to_decode.put((ids, fields))  # bounded: the read waits while decoding lags

    async def _decode_loop(self) -> None:
        while True:
            ids, fields = await self._to_decode.get()
            try:
                decoded, ack = await asyncio.to_thread(self._decode_for_writer, ids, fields)
                await self._queue.put((len(ids), [ack], decoded))  # bounded: waits for the writer
            except Exception as exc:
                # Left pending: the claim loop retries these entries after claim_idle_ms.
                log.exception("scoring.batch_failed", entries=len(ids), error=str(exc))
            finally:
                self._to_decode.task_done()

    async def _write_loop(self) -> None:
        while True:
            count, acks, decoded = await self._queue.get()
            taken = 1
            # Whatever else was decoded meanwhile goes into the same transaction.
            while not self._queue.empty() and count < self.settings.write_max_events:
                more_count, more_acks, more = self._queue.get_nowait()
                count += more_count
                acks += more_acks
                decoded.extend(more)
                taken += 1
            try:
                await self._apply(decoded, count, acks)
            except Exception as exc:
                # Left pending: the claim loop retries these entries after claim_idle_ms.
                log.exception("scoring.batch_failed", entries=count, error=str(exc))
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every batch read is decoded, written and acknowledged."""
        await self._to_decode.join()  # each batch is in the writer's queue before this returns
        await self._queue.join()

    async def _apply(self, decoded: DecodedBatch, entries: int, acks: list[bytes]) -> BatchOutcome:
        """Count, then acknowledge (`acks`: packed XACK commands of the `entries` read)."""
        async with self._lock:
            started = time.perf_counter()
            result = await self.store.run(self.store.apply, decoded)
            if decoded.poison:
                await self.dead_letter(decoded)
            self.updates.mark_by_day(result.touched_by_day, self._dirty)
            published = 0
            if self.settings.score_flush_ms == 0:  # one update per unit after every batch
                published = await self.flush_scores()
            await self._send_packed(acks)
            elapsed = time.perf_counter() - started
            self.metrics.batch_seconds.observe(elapsed)
            self.metrics.events.labels("counted").inc(result.events)
            self.metrics.events.labels("dead_lettered").inc(len(decoded.poison))
            self.processed_batches += 1
            outcome = BatchOutcome(
                entries,
                result.events,
                result.unit_days_moved,
                len(decoded.poison),
                published,
            )
            log.debug("scoring.batch", **outcome.__dict__, seconds=round(elapsed, 4))
        if self._on_batch is not None:
            await self._on_batch(outcome)
        return outcome

    async def _send_packed(self, commands: list[bytes]) -> list[Any]:
        """Send packed commands in one write on a pooled connection and read their replies."""
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(b"".join(commands))
            replies = [await conn.read_response() for _ in commands]
        except BaseException:
            await conn.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            await pool.release(conn)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def dead_letter(self, decoded: DecodedBatch) -> None:
        now = datetime.now(UTC).isoformat()
        async with self.redis.pipeline(transaction=True) as pipe:
            for p in decoded.poison:
                pipe.xadd(
                    self.streams.events_dlq,
                    {
                        b"reason": p.reason.encode(),
                        DATA_FIELD: p.payload,
                        b"source_stream": self.streams.events.encode(),
                        b"source_id": p.entry_id,
                        b"failed_at": now.encode(),
                    },
                )
            await pipe.execute()
        for p in decoded.poison:
            log.warning(
                "scoring.dead_lettered",
                entry_id=p.entry_id.decode(),
                reason=p.reason,
                **_ids_of(p.payload),
            )

    async def flush_scores(self) -> int:
        """Publish one score update per dirty (unit, window), from the committed counts."""
        if not self._dirty:
            return 0
        dirty, self._dirty = self._dirty, {}
        try:
            payloads = await self.score_updates(dirty)
            await self.publish_scores(payloads)
        except BaseException:
            for key, value in dirty.items():  # not lost: the next flush retries them
                self._dirty.setdefault(key, value)
            raise
        self.published_updates += len(payloads)
        return len(payloads)

    async def _flush_loop(self) -> None:
        every = self.settings.score_flush_ms / 1000
        delay = every
        while True:
            await asyncio.sleep(delay)
            started = time.perf_counter()
            try:
                await self.flush_scores()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("scoring.scores_publish_failed", error=str(exc), due=len(self._dirty))
            # A flush costs per (unit, window) due: on a national registry under a backlog
            # nearly every unit is due every time. Waiting FLUSH_BACKOFF times as long as the
            # last flush took keeps updates at most ~1/(1+FLUSH_BACKOFF) of the process's time
            # (10%: under a backlog a national flush takes ~0.2 s, so updates come every ~2 s);
            # at ordinary rates a flush takes milliseconds and the interval stays as set.
            delay = max(every, FLUSH_BACKOFF * (time.perf_counter() - started))

    def mark_all_units_dirty(self, days: list[date]) -> None:
        """On start, republish every unit for the windows in force: an update that a crash kept
        from being published is never lost, and a fresh alerts service starts complete."""
        self.updates.mark(((u, d) for u in self.registry.units for d in days), self._dirty)

    async def score_updates(
        self, windows: dict[WindowKey, tuple[Window, TargetSet | None]]
    ) -> list[bytes]:
        wanted = [(wid, unit, w.date_from, w.date_to) for (wid, unit), (w, _) in windows.items()]
        units = sorted({u for _, u in windows})

        def read(cursor):  # type: ignore[no-untyped-def]
            return (
                self.store.window_counts(cursor, wanted),
                self.store.last_received_on(cursor, units),
            )

        counts, last_days = await self.store.read(read)
        computed_at = datetime.now(UTC).isoformat()
        build = self.updates.build
        return [
            build(
                window,
                target_set,
                unit_code,
                counts[(wid, unit_code)],
                last_days.get(unit_code),
                computed_at,
            )
            for (wid, unit_code), (window, target_set) in sorted(windows.items())
        ]

    async def publish_scores(self, payloads: list[bytes]) -> None:
        # One XADD per update, run by a script a thousand at a time: a pipeline costs ~4x as
        # much client time per command, and a national flush publishes 20,000 of them.
        for i in range(0, len(payloads), PUBLISH_CHUNK):
            await self._xadd_many(keys=[self.streams.scores], args=payloads[i : i + PUBLISH_CHUNK])


def _xread_raw(response: Any, **_options: Any) -> list[list[Any]]:
    # RESP3 map {stream: [[id, [field, value, ...]], ...]} (a list of pairs on RESP2).
    if not response:
        return []
    items = response.items() if isinstance(response, dict) else response
    return [[name, entries] for name, entries in items]


def _parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
