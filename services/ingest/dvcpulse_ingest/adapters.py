"""Redis adapter of ingest: append validated events to the events stream."""

from __future__ import annotations

from collections.abc import Sequence

from dvcpulse_shared.streams import DATA_FIELD
from faststream.redis import RedisBroker


class StreamUnavailable(RuntimeError):
    """Redis did not take the events; nothing of this request is reported accepted."""


class EventStream:
    """Appends events to `{prefix}:events` through the FastStream broker's connection.

    One MULTI/EXEC pipeline per request: either every event of the request is in the stream or
    none is (a retry is then harmless, since scoring deduplicates by event_id). The entry's field
    is FastStream's own `__data__`, holding the event as JSON, which FastStream subscribers read
    as a raw JSON body; writing it through the pipeline directly, rather than one
    `broker.publish()` call per event, doubles ingest throughput (bench/bench_ingest.py).
    """

    def __init__(self, broker: RedisBroker, stream: str, maxlen: int | None = None) -> None:
        self._broker = broker
        self._stream = stream
        self._maxlen = maxlen

    async def append(self, payloads: Sequence[bytes]) -> None:
        if not payloads:
            return
        try:
            client = self._broker._connection  # the client FastStream documents as Context
            async with client.pipeline(transaction=True) as pipe:
                for payload in payloads:
                    pipe.xadd(self._stream, {DATA_FIELD: payload})
                await pipe.execute()
        except Exception as exc:  # connection refused, timeout, OOM, READONLY...
            raise StreamUnavailable(str(exc) or type(exc).__name__) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._broker._connection.ping())
        except Exception:
            return False
