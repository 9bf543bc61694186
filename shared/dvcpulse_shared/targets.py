"""Target sets: per-level targets for the three rates, valid between two dates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Metric(StrEnum):
    online = "online"
    digitization = "digitization"
    online_payment = "online_payment"


class MetricTargets(BaseModel):
    """Targets in percent; a missing metric has no target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    online: Decimal | None = Field(default=None, ge=0, le=100)
    digitization: Decimal | None = Field(default=None, ge=0, le=100)
    online_payment: Decimal | None = Field(default=None, ge=0, le=100)


class TargetSetKind(StrEnum):
    campaign = "campaign"
    annual = "annual"


class TargetSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    kind: TargetSetKind
    valid_from: date = Field(alias="from")
    valid_to: date = Field(alias="to")
    source: str | None = None
    levels: dict[str, MetricTargets] = Field(default_factory=dict)
    units: dict[str, MetricTargets] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _dates_in_order(self) -> TargetSet:
        if self.valid_to < self.valid_from:
            raise ValueError(f"target set {self.id!r}: 'to' is before 'from'")
        return self


class Baselines(BaseModel):
    """What a plan reports as already reached in a past year, per level and for the whole
    province (`total`), in percent: the reference of the report's "change since" column on each
    level's Tổng row. Each unit's own baseline is in the registry. These are the plan's printed
    figures, not derived from unit rates (a level's rate is never an average of rates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    year: int = Field(ge=2000, le=2100)
    source: str | None = None
    levels: dict[str, MetricTargets] = Field(default_factory=dict)


class TargetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target_sets: list[TargetSet]
    baselines: Baselines | None = None
