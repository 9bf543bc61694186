"""Load and index the unit registry (CSV or YAML)."""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from dvcpulse_shared.units import Level, Unit

_TRUE = {"yes", "true", "1", "có", "co", "y"}
_FALSE = {"no", "false", "0", "không", "khong", "n"}


class RegistryError(ValueError):
    pass


def _bool(raw: str, where: str) -> bool:
    value = unicodedata.normalize("NFC", raw.strip().lower())
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RegistryError(f"{where}: has_fee_procedures must be yes/no, got {raw!r}")


def _rate(raw: str | None) -> float | None:
    return None if raw is None or raw.strip() == "" else float(raw)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold().strip()


@dataclass(frozen=True)
class Registry:
    """Units by code, levels in reporting order, children by parent."""

    units: dict[str, Unit]
    levels: list[Level]
    root_code: str | None
    children: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, units: Iterable[Unit], level_labels: dict[str, str]) -> Registry:
        by_code: dict[str, Unit] = {}
        for unit in units:
            if unit.code in by_code:
                raise RegistryError(f"unit code {unit.code!r} appears twice")
            by_code[unit.code] = unit
        roots = [u.code for u in by_code.values() if u.parent_code is None]
        children: dict[str, list[str]] = {}
        for unit in by_code.values():
            if unit.parent_code is not None:
                if unit.parent_code not in by_code:
                    raise RegistryError(
                        f"unit {unit.code!r}: parent_code {unit.parent_code!r} is not in the registry"
                    )
                children.setdefault(unit.parent_code, []).append(unit.code)
        # Levels report in the order they first appear below the root.
        seen: list[str] = []
        for unit in by_code.values():
            if unit.parent_code is not None and unit.level not in seen:
                seen.append(unit.level)
        levels = [Level(code=c, label=level_labels.get(c, c)) for c in seen]
        return cls(
            units=by_code,
            levels=levels,
            root_code=roots[0] if len(roots) == 1 else None,
            children=children,
        )

    def resolve(self, key: str) -> Unit | None:
        """A unit by code, or by exact name (NFC/NFD and case folded) when the name is unique."""
        code = unicodedata.normalize("NFC", key).strip()
        if code in self.units:
            return self.units[code]
        matches = [u for u in self.units.values() if _fold(u.name) == _fold(key)]
        return matches[0] if len(matches) == 1 else None

    def level_label(self, level: str) -> str:
        for item in self.levels:
            if item.code == level:
                return item.label
        return level

    def descendants(self, code: str) -> list[str]:
        out: list[str] = []
        stack = list(self.children.get(code, []))
        while stack:
            child = stack.pop()
            out.append(child)
            stack.extend(self.children.get(child, []))
        return out


def load_registry(path: Path, level_labels: dict[str, str]) -> Registry:
    if path.suffix.lower() in {".yaml", ".yml"}:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw_units = data["units"] if isinstance(data, dict) else data
        labels = {
            **level_labels,
            **(data.get("level_labels", {}) if isinstance(data, dict) else {}),
        }
        return Registry.build((Unit.model_validate(u) for u in raw_units), labels)
    units = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            where = f"{path.name}:{line_no}"
            try:
                units.append(
                    Unit(
                        code=row["code"].strip(),
                        name=unicodedata.normalize("NFC", row["name"].strip()),
                        level=row["level"].strip(),
                        parent_code=(row.get("parent_code") or "").strip() or None,
                        has_fee_procedures=_bool(row.get("has_fee_procedures") or "", where),
                        baseline_online_rate=_rate(row.get("baseline_online_rate")),
                        baseline_digitization_rate=_rate(row.get("baseline_digitization_rate")),
                        baseline_online_payment_rate=_rate(row.get("baseline_online_payment_rate")),
                    )
                )
            except (KeyError, ValueError) as exc:
                raise RegistryError(f"{where}: {exc}") from exc
    return Registry.build(units, level_labels)
