"""Dossier events: the contract between one-stop systems, ingest and scoring."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
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


# RFC 3339 strings only, with an offset: strict mode refuses numbers (unix times would hide a
# client bug) and the aware type refuses a time without offset. Both are checked inside
# pydantic-core, with no Python callback: validation is the hot path of ingest and scoring.
OccurredAt = Annotated[AwareDatetime, Strict()]
# Codes are compared after NFC normalisation by the registry lookups (ingest, scoring), not here.
UnitCode = Annotated[str, Field(min_length=1, max_length=64)]
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

# Built once; validating through it is the hot path of ingest and scoring. Validate JSON
# (`validate_json`): in Python mode the strict date-time would refuse a string.
EventAdapter: TypeAdapter[DossierReceived | DossierDigitized | DossierPaid] = TypeAdapter(
    DossierEvent
)
