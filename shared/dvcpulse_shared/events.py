"""Dossier events: the contract between one-stop systems, ingest and scoring."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
)

EVENT_ID_MAX = 128
DOSSIER_ID_MAX = 64


class Channel(StrEnum):
    online = "online"
    direct = "direct"
    postal = "postal"


class PaymentMethod(StrEnum):
    online = "online"
    offline = "offline"


def _rfc3339(value: Any) -> Any:
    # JSON gives strings; numbers (unix times) are not RFC 3339 and would hide a client bug.
    if isinstance(value, datetime | str):
        return value
    raise ValueError(
        "must be an RFC 3339 date-time string with an offset, e.g. 2023-03-01T08:30:00+07:00"
    )


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("date-time has no UTC offset; add one, e.g. +07:00 or Z")
    return value


def _nfc(value: str) -> str:
    # A code typed on a Vietnamese keyboard may arrive decomposed (NFD); compare in NFC.
    return unicodedata.normalize("NFC", value).strip()


OccurredAt = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_aware)]
UnitCode = Annotated[str, AfterValidator(_nfc), Field(min_length=1, max_length=64)]
EventId = Annotated[str, Field(min_length=1, max_length=EVENT_ID_MAX)]
DossierId = Annotated[str, Field(min_length=1, max_length=DOSSIER_ID_MAX)]


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    event_id: EventId
    dossier_id: DossierId
    unit_code: UnitCode
    occurred_at: OccurredAt


class DossierReceived(_EventBase):
    """A dossier was received by a one-stop office, through one channel."""

    type: Literal["dossier.received"]
    channel: Channel
    fee_required: StrictBool = Field(
        description="The procedure carries a fee or charge and this dossier is not exempt."
    )
    procedure_code: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class DossierDigitized(_EventBase):
    """The dossier's components or result were digitized."""

    type: Literal["dossier.digitized"]


class DossierPaid(_EventBase):
    """The dossier's fee was paid, online or at the counter."""

    type: Literal["dossier.paid"]
    payment_method: PaymentMethod
    amount_vnd: Annotated[StrictInt, Field(ge=0)] | None = None


DossierEvent = Annotated[
    DossierReceived | DossierDigitized | DossierPaid, Field(discriminator="type")
]
EVENT_TYPES = ("dossier.received", "dossier.digitized", "dossier.paid")

# Built once; validating through it is the hot path of ingest and scoring.
EventAdapter: TypeAdapter[DossierReceived | DossierDigitized | DossierPaid] = TypeAdapter(
    DossierEvent
)
