"""The unit registry: every office that receives dossiers, with its level and parent."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

UnitCodeStr = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class Unit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: UnitCodeStr = Field(description="Stable, unique ASCII code; never the name.")
    name: str = Field(min_length=1)
    level: str = Field(min_length=1, description="A level named in the registry's level list.")
    parent_code: UnitCodeStr | None = None
    has_fee_procedures: bool = True
    # 2022 baseline rates in percent, where the registry carries them (None = not applicable).
    baseline_online_rate: float | None = None
    baseline_digitization_rate: float | None = None
    baseline_online_payment_rate: float | None = None


class Level(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    label: str
