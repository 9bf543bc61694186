"""Load the recipients file (YAML): managers, their channels and the units they answer for."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from dvcpulse_common.registry import Registry
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .domain import METRICS, Kind, Matcher, Recipient

Channel = Literal["email", "webhook", "log"]


def _as_list(value: object) -> object:
    # `unit: CMU-H01` and `unit: [CMU-H01, CMU-H02]` both read naturally in YAML.
    return [value] if isinstance(value, str) else value


class MatcherSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: list[str] = Field(default_factory=list, description="Unit codes (the unit's own head)")
    parent: list[str] = Field(
        default_factory=list, description="Units whose parent is one of these"
    )
    level: list[str] = Field(default_factory=list)
    kind: list[Kind] = Field(default_factory=list)
    metric: list[str] = Field(default_factory=list)

    _lists = field_validator("unit", "parent", "level", "kind", "metric", mode="before")(
        classmethod(lambda cls, v: _as_list(v))
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; use one of {', '.join(METRICS)}")
        return v


class RecipientSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    name: str = Field(min_length=1)
    channels: list[Channel] = Field(min_length=1)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    webhook_url: str | None = None
    digest: bool = True
    all_units: bool = Field(default=False, description="The provincial office: every unit")
    match: list[MatcherSpec] = Field(default_factory=list)


class RecipientsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipients: list[RecipientSpec]


class RecipientsError(ValueError):
    pass


def parse_recipients(
    data: object, registry: Registry, where: str = "recipients"
) -> list[Recipient]:
    try:
        spec = RecipientsFile.model_validate(data)
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RecipientsError(f"{where}: {msgs}") from exc
    out: list[Recipient] = []
    seen: set[str] = set()
    levels = {u.level for u in registry.units.values()}
    for i, r in enumerate(spec.recipients):
        at = f"{where}: recipients.{i} ({r.id})"
        if r.id in seen:
            raise RecipientsError(f"{at}: id appears twice")
        seen.add(r.id)
        if "email" in r.channels and not r.email:
            raise RecipientsError(f"{at}: channel 'email' needs an 'email' address")
        if not r.all_units and not r.match:
            raise RecipientsError(f"{at}: give 'match' rules or 'all_units: true'")
        matchers = []
        for j, m in enumerate(r.match):
            for code in [*m.unit, *m.parent]:
                if code not in registry.units:
                    raise RecipientsError(f"{at}.match.{j}: unknown unit code {code!r}")
            for lv in m.level:
                if lv not in levels:
                    raise RecipientsError(f"{at}.match.{j}: unknown level {lv!r}")
            matchers.append(
                Matcher(
                    units=frozenset(m.unit),
                    parents=frozenset(m.parent),
                    levels=frozenset(m.level),
                    kinds=frozenset(m.kind),
                    metrics=frozenset(m.metric),
                )
            )
        if r.all_units:
            matchers.append(Matcher())
        out.append(
            Recipient(
                id=r.id,
                name=r.name,
                channels=tuple(dict.fromkeys(r.channels)),
                email=r.email,
                webhook_url=r.webhook_url,
                matchers=tuple(matchers),
                digest=r.digest,
            )
        )
    return out


def load_recipients(path: Path, registry: Registry) -> list[Recipient]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {"recipients": []}
    return parse_recipients(data, registry, where=str(path))


class RecipientsSource:
    """The recipients file, read again when it changes on disk, so that the IT team can edit it
    without restarting alerts. A file that no longer validates is refused as a whole: the
    recipients in force stay, and `error` says what is wrong (field and reason)."""

    def __init__(self, path: Path, registry: Registry) -> None:
        self.path = path
        self.registry = registry
        self.error: str | None = None
        self._seen: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def changed(self) -> bool:
        return self._stamp() != self._seen

    def load(self) -> list[Recipient]:
        """Read and validate the file; raises RecipientsError, and remembers it in `error`."""
        stamp = self._stamp()
        self._seen = stamp  # a broken file is reported once, not at every look
        try:
            recipients = load_recipients(self.path, self.registry)
        except RecipientsError as exc:
            self.error = str(exc)
            raise
        except (OSError, yaml.YAMLError) as exc:  # unreadable, or not YAML at all
            self.error = f"{self.path}: {exc}"
            raise RecipientsError(self.error) from exc
        self.error = None
        return recipients
