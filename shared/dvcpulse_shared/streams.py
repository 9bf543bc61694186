"""Redis stream and consumer-group names. Every name is derived from one prefix."""

from __future__ import annotations

from dataclasses import dataclass

SCORING_GROUP = "scoring"
ALERTS_GROUP = "alerts"
# The field of a stream entry that holds the event (FastStream's own field name).
DATA_FIELD = b"__data__"


@dataclass(frozen=True, slots=True)
class StreamNames:
    prefix: str = "dvcpulse"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def scores(self) -> str:
        return f"{self.prefix}:scores"

    @property
    def events_dlq(self) -> str:
        return f"{self.prefix}:events:dlq"

    @property
    def scoring_lock(self) -> str:
        return f"{self.prefix}:scoring:writer"
