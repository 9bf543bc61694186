"""HTTP API and scores-stream models shared by the services and their clients."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .targets import MetricTargets


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field at fault ('' for the whole event).")
    message: str


class Rejection(BaseModel):
    index: int = Field(description="0-based position of the event in the request body.")
    event_id: str | None = None
    errors: list[FieldError]


class IngestResult(BaseModel):
    accepted: int
    rejected: list[Rejection] = Field(default_factory=list)


class ErrorBody(BaseModel):
    detail: str


class Status(StrEnum):
    met = "met"
    below_target = "below_target"
    zero = "zero"
    no_data = "no_data"
    not_applicable = "not_applicable"


class Counts(BaseModel):
    model_config = ConfigDict(frozen=True)

    received: int = 0
    online: int = 0
    digitized: int = 0
    fee_required: int = 0
    paid_online: int = 0


class Rates(BaseModel):
    """Rates in percent, unrounded; None when the denominator is 0."""

    online_rate: float | None
    digitization_rate: float | None
    online_payment_rate: float | None


class MetricStatus(BaseModel):
    online: Status
    digitization: Status
    online_payment: Status


class Window(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Target-set id, 'all', 'year-YYYY' or 'custom'.")
    name: str
    date_from: date | None = None
    date_to: date | None = None


class ScoreRow(Counts, Rates):
    unit_code: str
    unit_name: str
    level: str
    parent_code: str | None
    targets: MetricTargets
    status: MetricStatus


class LevelRow(Counts, Rates):
    level: str = Field(description="A level code, or 'total' for the whole registry.")
    label: str
    units: int
    targets: MetricTargets
    status: MetricStatus
    baseline: MetricTargets | None = Field(
        default=None,
        description="The level's rates in the baseline year as the plan reported them "
        "(percent; `baselines:` of the targets file); absent when units are filtered",
    )
    baseline_year: int | None = None


class ScoresResponse(BaseModel):
    window: Window
    target_set: str | None
    rows: list[ScoreRow]


class LevelsResponse(BaseModel):
    window: Window
    target_set: str | None
    rows: list[LevelRow]


class ScoreUpdate(Counts, Rates):
    """Published on `{prefix}:scores` after each batch, one per affected unit and window."""

    unit_code: str
    level: str
    window: Window
    targets: MetricTargets
    status: MetricStatus
    last_received_on: date | None = None
    computed_at: datetime


class DeadLetterEntry(BaseModel):
    """The fields of one entry of `{prefix}:events:dlq` (stream fields, not a JSON body)."""

    reason: str = Field(description="Why the entry could not be counted")
    data: str = Field(alias="__data__", description="The original entry's bytes, unchanged")
    source_stream: str
    source_id: str = Field(description="Entry id in the source stream")
    failed_at: datetime
