"""Redis adapter of ingest: append validated events to the events stream."""

from __future__ import annotations

from collections.abc import Sequence

from dvcpulse_common.redis_scripts import XADD_MANY
from faststream.redis import RedisBroker

# Every event of one request is appended by one script call: all or nothing (XADD_MANY).


class StreamUnavailable(RuntimeError):
    """Redis did not take the events; nothing of this request is reported accepted."""


class EventStream:
    """Appends events to `{prefix}:events` through the FastStream broker's connection.

    All or nothing per request (a retry after a failure is harmless: scoring deduplicates by
    event_id). The entry's field is FastStream's own `__data__`, holding the event as JSON, which
    FastStream subscribers read as a raw JSON body. Writing in one script call rather than one
    `broker.publish()` per event is what lets ingest keep up (bench/ingest.py).
    """

    def __init__(self, broker: RedisBroker, stream: str) -> None:
        self._broker = broker
        self._stream = stream

    async def append(self, payloads: Sequence[bytes]) -> None:
        if not payloads:
            return
        try:
            client = self._broker._connection  # the client FastStream documents as Context
            script = client.register_script(XADD_MANY)  # EVALSHA, then EVAL on NOSCRIPT
            await script(keys=[self._stream], args=list(payloads))
        except Exception as exc:  # connection refused, timeout, OOM, READONLY...
            raise StreamUnavailable(str(exc) or type(exc).__name__) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._broker._connection.ping())
        except Exception:
            return False
