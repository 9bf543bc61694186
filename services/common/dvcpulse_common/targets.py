"""Load the targets file and pick the target set in force for a window (pure rules)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml
from dvcpulse_shared.targets import Baselines, MetricTargets, TargetSet, TargetSetKind, TargetsFile


def _targets_file(path: Path) -> TargetsFile:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {"target_sets": []}
    return TargetsFile.model_validate(data)


def load_baselines(path: Path) -> Baselines | None:
    """The targets file's `baselines:` (the plan's figures of a past year per level), if any."""
    return _targets_file(path).baselines


def load_targets(path: Path) -> list[TargetSet]:
    sets = _targets_file(path).target_sets
    ids = [s.id for s in sets]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: target set ids must be unique")
    return sets


def active_campaign(
    sets: list[TargetSet], today: date, pinned: str | None = None
) -> TargetSet | None:
    """The pinned campaign, else the one in force today, else the one that started last."""
    campaigns = [s for s in sets if s.kind is TargetSetKind.campaign]
    if pinned:
        for s in sets:
            if s.id == pinned:
                return s
        raise ValueError(f"campaign {pinned!r} is not in the targets file")
    current = [s for s in campaigns if s.valid_from <= today <= s.valid_to]
    if current:
        return min(current, key=lambda s: s.valid_to - s.valid_from)
    started = [s for s in campaigns if s.valid_from <= today]
    return max(started, key=lambda s: s.valid_from) if started else None


def set_in_force(sets: list[TargetSet], on: date) -> TargetSet | None:
    """The narrowest target set whose dates include `on` (a campaign beats the annual plan)."""
    covering = [s for s in sets if s.valid_from <= on <= s.valid_to]
    return min(covering, key=lambda s: (s.valid_to - s.valid_from, s.id)) if covering else None


def sets_covering(sets: list[TargetSet], on: date) -> list[TargetSet]:
    return [s for s in sets if s.valid_from <= on <= s.valid_to]


def unit_targets(target_set: TargetSet | None, unit_code: str, level: str) -> MetricTargets:
    """Level targets with the unit's overrides applied field by field."""
    if target_set is None:
        return MetricTargets()
    base = target_set.levels.get(level, MetricTargets())
    override = target_set.units.get(unit_code)
    if override is None:
        return base
    return base.model_copy(update=override.model_dump(exclude_none=True))
