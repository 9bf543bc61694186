"""Pure rules of alerting: which alerts a unit's counts raise, who hears about them, what the
message says. No I/O here: the engine feeds these functions and stores what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from dvcpulse_common.formatting import format_count, format_percent, format_rate
from dvcpulse_common.registry import Registry
from dvcpulse_common.targets import unit_targets
from dvcpulse_shared.api import Counts
from dvcpulse_shared.targets import MetricTargets, TargetSet, TargetSetKind
from dvcpulse_shared.units import Unit


class Kind(StrEnum):
    zero = "zero"
    below_target = "below_target"
    silent = "silent"


class Severity(StrEnum):
    critical = "critical"
    warning = "warning"
    info = "info"


SEVERITY = {
    Kind.zero: Severity.critical,
    Kind.below_target: Severity.warning,
    Kind.silent: Severity.info,
}
# Worst first: critical before warning before info.
SEVERITY_RANK = {Severity.critical: 0, Severity.warning: 1, Severity.info: 2}

# The metric a `silent` alert is about: the dossiers received, not a rate.
RECEIVED = "received"
RATE_METRICS = ("online", "digitization", "online_payment")
METRICS = (*RATE_METRICS, RECEIVED)

METRIC_LABEL = {
    "online": "Tỷ lệ hồ sơ trực tuyến",
    "digitization": "Tỷ lệ số hóa hồ sơ",
    "online_payment": "Tỷ lệ thanh toán trực tuyến",
    RECEIVED: "Hồ sơ tiếp nhận",
}
KIND_LABEL = {
    Kind.zero: "Tỷ lệ 0%",
    Kind.below_target: "Dưới chỉ tiêu",
    Kind.silent: "Không phát sinh hồ sơ",
}


class Event(StrEnum):
    """Why a recipient is told about an alert."""

    firing = "firing"
    reminder = "reminder"
    resolved = "resolved"


# -- numbers as a reader in Vietnam writes them --------------------------------------------------
def fmt_number(value: float | Decimal | Fraction | None) -> str:
    """Cut (not rounded) to two decimals, as the plan prints: 63.6553 -> '63,65'. Floats are
    read through their shortest repr, so 29.0 never becomes 28,99."""
    if value is None:
        return "—"
    return format_percent(value if isinstance(value, Fraction) else Fraction(str(value)))[:-1]


def fmt_pct(value: float | Decimal | Fraction | None) -> str:
    return "không áp dụng" if value is None else f"{fmt_number(value)}%"


def fmt_rate(numerator: int, denominator: int) -> str:
    """A rate from its counts, exactly: 24965/39219 -> '63,65%'."""
    return format_rate(numerator, denominator, na="không áp dụng")


def fmt_int(value: int) -> str:
    return format_count(value)


def exact_gap(target: float | Decimal | None, numerator: int, denominator: int) -> Fraction | None:
    """Percentage points missing to reach the target, exact (positive = under target)."""
    if target is None or denominator == 0:
        return None
    return Fraction(str(target)) - Fraction(numerator * 100, denominator)


def fmt_date(day: date | None) -> str:
    return "—" if day is None else day.strftime("%d/%m/%Y")


# -- the window alerts are judged over -----------------------------------------------------------
@dataclass(frozen=True)
class EvalWindow:
    id: str
    name: str
    date_from: date
    date_to: date
    target_set: TargetSet | None


def evaluation_window(
    target_sets: list[TargetSet], today: date, pinned: str | None = None
) -> EvalWindow:
    """The pinned campaign, else the campaign in force today, else the current year (the annual
    set covering today, or the calendar year without targets). Ids match scoring's windows."""
    chosen: TargetSet | None = None
    if pinned:
        chosen = next((s for s in target_sets if s.id == pinned), None)
        if chosen is None:
            raise ValueError(f"campaign {pinned!r} is not in the targets file")
    else:
        current = [s for s in target_sets if s.valid_from <= today <= s.valid_to]
        campaigns = [s for s in current if s.kind is TargetSetKind.campaign]
        pool = campaigns or current
        if pool:
            chosen = min(pool, key=lambda s: (s.valid_to - s.valid_from, s.id))
    if chosen is not None:
        return EvalWindow(chosen.id, chosen.name, chosen.valid_from, chosen.valid_to, chosen)
    y = today.year
    return EvalWindow(f"year-{y}", f"Năm {y}", date(y, 1, 1), date(y, 12, 31), None)


# -- which alerts a unit's counts raise ----------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    metric: str
    kind: Kind
    value: float | None
    target: float | None
    numerator: int
    denominator: int

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]


@dataclass(frozen=True)
class UnitScore:
    """The latest counts of one unit in one window, as the scores stream last told us."""

    unit_code: str
    window_id: str
    counts: Counts
    last_received_on: date | None


def _rate_parts(metric: str, c: Counts) -> tuple[int, int]:
    return {
        "online": (c.online, c.received),
        "digitization": (c.digitized, c.received),
        "online_payment": (c.paid_online, c.fee_required),
    }[metric]


def evaluate_unit(
    unit: Unit,
    counts: Counts,
    targets: MetricTargets,
    last_received_on: date | None,
    reference_day: date,
    *,
    min_dossiers: int = 1,
    silent_days: int = 7,
) -> dict[tuple[str, Kind], Finding]:
    """The alerts that should be firing for this unit now, keyed by (metric, kind).

    - zero: at least `min_dossiers` in the metric's denominator and a numerator of exactly 0;
    - below_target: a rate under its target (compared as exact fractions, never rounded floats);
      a 0% on fewer than `min_dossiers` dossiers is only below target;
    - a denominator of 0 is no data or not applicable: never an alert, never 0%;
    - silent: a unit that has received dossiers before (so it normally does) and none for
      `silent_days` up to `reference_day`.
    """
    out: dict[tuple[str, Kind], Finding] = {}
    for metric in RATE_METRICS:
        if metric == "online_payment" and not unit.has_fee_procedures:
            continue  # not applicable for this unit at all
        num, den = _rate_parts(metric, counts)
        if den == 0:
            continue
        target = getattr(targets, metric)
        value = num * 100 / den
        tgt = float(target) if target is not None else None
        if num == 0 and den >= min_dossiers:
            out[(metric, Kind.zero)] = Finding(metric, Kind.zero, value, tgt, num, den)
        elif target is not None and Fraction(num * 100, den) < Fraction(target):
            out[(metric, Kind.below_target)] = Finding(
                metric, Kind.below_target, value, tgt, num, den
            )
    if last_received_on is not None:
        idle = (reference_day - last_received_on).days
        if idle >= silent_days:
            out[(RECEIVED, Kind.silent)] = Finding(
                RECEIVED, Kind.silent, float(idle), float(silent_days), counts.received, 0
            )
    return out


def targets_for(unit: Unit, window: EvalWindow) -> MetricTargets:
    return unit_targets(window.target_set, unit.code, unit.level)


def silent_reference_day(today: date, window: EvalWindow) -> date:
    # A window that ended (a pinned past campaign) is judged at its last day, not today.
    return min(today, window.date_to)


# -- routing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Matcher:
    """All fields given must match (AND); each field lists alternatives (OR)."""

    units: frozenset[str] = frozenset()
    parents: frozenset[str] = frozenset()
    levels: frozenset[str] = frozenset()
    kinds: frozenset[Kind] = frozenset()
    metrics: frozenset[str] = frozenset()

    def matches(self, unit: Unit, kind: Kind | None = None, metric: str | None = None) -> bool:
        if self.units and unit.code not in self.units:
            return False
        if self.parents and unit.parent_code not in self.parents:
            return False
        if self.levels and unit.level not in self.levels:
            return False
        if kind is not None and self.kinds and kind not in self.kinds:
            return False
        return not (metric is not None and self.metrics and metric not in self.metrics)

    def covers_unit(self, unit: Unit) -> bool:
        """For the digest: the unit is this recipient's, whatever the alert kind."""
        return self.matches(unit)


@dataclass(frozen=True)
class Recipient:
    id: str
    name: str
    channels: tuple[str, ...]
    email: str | None = None
    webhook_url: str | None = None
    matchers: tuple[Matcher, ...] = ()
    digest: bool = True

    def wants(self, unit: Unit, kind: Kind, metric: str) -> bool:
        return any(m.matches(unit, kind, metric) for m in self.matchers)

    def units(self, registry: Registry) -> list[Unit]:
        return [u for u in registry.units.values() if any(m.covers_unit(u) for m in self.matchers)]


def route(recipients: list[Recipient], unit: Unit, kind: Kind, metric: str) -> list[Recipient]:
    return [r for r in recipients if r.wants(unit, kind, metric)]


# -- silences ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SilenceRule:
    id: int
    unit_code: str | None
    metric: str | None
    kind: str | None
    starts_at: datetime
    ends_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, unit_code: str, metric: str, kind: str) -> bool:
        return (
            (self.unit_code is None or self.unit_code == unit_code)
            and (self.metric is None or self.metric == metric)
            and (self.kind is None or self.kind == kind)
        )


def is_silenced(
    rules: list[SilenceRule], unit_code: str, metric: str, kind: str, now: datetime
) -> bool:
    return any(r.active(now) and r.matches(unit_code, metric, kind) for r in rules)


# -- grouped messages ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Notice:
    """One alert in a recipient's grouped message, with the numbers at the time it was queued."""

    alert_id: int
    event: Event
    unit_code: str
    unit_name: str
    level: str
    metric: str
    kind: Kind
    value: float | None
    target: float | None
    numerator: int
    denominator: int
    window_id: str
    window_name: str
    started_at: datetime
    resolved_at: datetime | None

    @property
    def gap(self) -> float | None:
        """Percentage points missing to reach the target (positive = under target)."""
        if self.value is None or self.target is None or self.kind is Kind.silent:
            return None
        return self.target - self.value


def worst_first(notices: list[Notice]) -> list[Notice]:
    """Firing before resolved; critical before warning before info; the biggest gap first."""

    def key(n: Notice) -> tuple:
        return (
            n.event is Event.resolved,
            SEVERITY_RANK[SEVERITY[n.kind]],
            -(n.gap if n.gap is not None else (n.value or 0) if n.kind is Kind.silent else 0),
            n.unit_code,
            n.metric,
        )

    return sorted(notices, key=key)


def collapse(notices: list[Notice]) -> list[Notice]:
    """One line per alert: the latest event wins; an alert that fired and resolved within the
    same group was never told, so nothing is said about it."""
    by_alert: dict[int, list[Notice]] = {}
    for n in notices:
        by_alert.setdefault(n.alert_id, []).append(n)
    out = []
    for items in by_alert.values():
        last = items[-1]
        if last.event is Event.resolved and any(i.event is Event.firing for i in items):
            continue
        out.append(last)
    return out


def describe(n: Notice) -> str:
    where = f"{n.unit_name} ({n.unit_code})"
    if n.kind is Kind.silent:
        days = int(n.value or 0)
        if n.event is Event.resolved:
            return f"{where}: đã tiếp nhận hồ sơ trở lại."
        return f"{where}: không tiếp nhận hồ sơ nào trong {days} ngày (tổng {fmt_int(n.numerator)} hồ sơ trong kỳ)."
    label = METRIC_LABEL[n.metric]
    counts = f"{fmt_int(n.numerator)}/{fmt_int(n.denominator)} hồ sơ"
    rate = fmt_rate(n.numerator, n.denominator)
    target = f"chỉ tiêu {fmt_pct(n.target)}" if n.target is not None else "chưa giao chỉ tiêu"
    if n.event is Event.resolved:
        return f"{where} — {label}: {rate} ({counts}), {target}: đã khắc phục."
    gap = exact_gap(n.target, n.numerator, n.denominator)
    missing = f"; thiếu {fmt_number(gap)} điểm %" if gap is not None and gap > 0 else ""
    return f"{where} — {label}: {rate} ({counts}); {target}{missing}."


@dataclass
class Message:
    subject: str
    text: str
    payload: dict = field(default_factory=dict)


SECTION = {
    Event.firing: "CẢNH BÁO MỚI",
    Event.reminder: "VẪN CHƯA KHẮC PHỤC (nhắc lại)",
    Event.resolved: "ĐÃ KHẮC PHỤC",
}


def render_alerts(
    recipient: Recipient, notices: list[Notice], now: datetime, tz: tzinfo | None = None
) -> Message:
    """One message for one recipient: every affected unit, worst first."""
    ordered = worst_first(notices)
    firing = [n for n in ordered if n.event is not Event.resolved]
    resolved = [n for n in ordered if n.event is Event.resolved]
    zero = sum(1 for n in firing if n.kind is Kind.zero)
    below = sum(1 for n in firing if n.kind is Kind.below_target)
    silent = sum(1 for n in firing if n.kind is Kind.silent)
    parts = []
    if zero:
        parts.append(f"{zero} chỉ số 0%")
    if below:
        parts.append(f"{below} dưới chỉ tiêu")
    if silent:
        parts.append(f"{silent} đơn vị không phát sinh hồ sơ")
    if resolved:
        parts.append(f"{len(resolved)} đã khắc phục")
    subject = "[dvcpulse] " + ", ".join(parts)
    windows = sorted({n.window_name for n in ordered})
    lines = [
        f"Kính gửi {recipient.name},",
        "",
        f"Kết quả dịch vụ công trực tuyến ({'; '.join(windows)}), cập nhật lúc "
        f"{now.astimezone(tz).strftime('%H:%M ngày %d/%m/%Y')}:",
    ]
    i = 0
    for event in (Event.firing, Event.reminder, Event.resolved):
        section = [n for n in ordered if n.event is event]
        if not section:
            continue
        lines += ["", SECTION[event]]
        for n in section:
            i += 1
            tag = KIND_LABEL[n.kind]
            lines.append(f"{i}. [{tag}] {describe(n)}")
    lines += ["", "Tin nhắn tự động của hệ thống dvcpulse. Không trả lời thư này."]
    payload = {
        "type": "alerts",
        "recipient": {"id": recipient.id, "name": recipient.name},
        "sent_at": now.isoformat(),
        "alerts": [notice_json(n) for n in ordered],
        "subject": subject,
        "text": "\n".join(lines),
    }
    return Message(subject, "\n".join(lines), payload)


def notice_json(n: Notice) -> dict:
    return {
        "alert_id": n.alert_id,
        "event": n.event.value,
        "status": "resolved" if n.event is Event.resolved else "firing",
        "unit_code": n.unit_code,
        "unit_name": n.unit_name,
        "level": n.level,
        "metric": n.metric,
        "kind": n.kind.value,
        "severity": SEVERITY[n.kind].value,
        "value": n.value,
        "target": n.target,
        "gap": n.gap,
        "numerator": n.numerator,
        "denominator": n.denominator,
        "window": n.window_id,
        "started_at": n.started_at.isoformat(),
        "resolved_at": n.resolved_at.isoformat() if n.resolved_at else None,
    }


# -- weekly digest -------------------------------------------------------------------------------
def digest_slot(now_local: datetime, weekday: int, at: time) -> datetime:
    """The latest scheduled digest moment at or before `now_local` (same tz as now_local)."""
    days_back = (now_local.weekday() - weekday) % 7
    day = now_local.date() - timedelta(days=days_back)
    slot = datetime.combine(day, at, tzinfo=now_local.tzinfo)
    if slot > now_local:
        slot -= timedelta(days=7)
    return slot


@dataclass(frozen=True)
class DigestRow:
    unit: Unit
    counts: Counts
    targets: MetricTargets
    previous: dict[str, float | None]  # metric -> rate at the previous digest (absent = none)

    def rate(self, metric: str) -> float | None:
        num, den = _rate_parts(metric, self.counts)
        if metric == "online_payment" and not self.unit.has_fee_procedures:
            return None
        return None if den == 0 else num * 100 / den


def _change(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return ""
    delta = now - before
    sign = "+" if delta >= 0 else "−"
    return f" ({sign}{fmt_number(abs(delta))} điểm so với tuần trước)"


def render_digest(
    recipient: Recipient,
    window: EvalWindow,
    rows: list[DigestRow],
    findings: dict[str, dict[tuple[str, Kind], Finding]],
    slot: datetime,
    level_label: dict[str, str],
) -> Message:
    """The Friday report: window-to-date rates of the recipient's units vs targets, units at 0%,
    units below target, and the change since the previous digest."""
    total = Counts()
    for r in rows:
        c = r.counts
        total = Counts(
            received=total.received + c.received,
            online=total.online + c.online,
            digitized=total.digitized + c.digitized,
            fee_required=total.fee_required + c.fee_required,
            paid_online=total.paid_online + c.paid_online,
        )
    lines = [
        f"Kính gửi {recipient.name},",
        "",
        f"BÁO CÁO TUẦN — {window.name} ({fmt_date(window.date_from)}–{fmt_date(window.date_to)}), "
        f"số liệu lũy kế đến {slot.strftime('%H:%M %d/%m/%Y')}.",
        f"Đơn vị theo dõi: {len(rows)}; hồ sơ tiếp nhận: {fmt_int(total.received)}.",
        "",
        "TỔNG HỢP (tổng số hồ sơ rồi mới chia, không lấy trung bình các tỷ lệ):",
    ]
    for metric in RATE_METRICS:
        num, den = _rate_parts(metric, total)
        lines.append(
            f"- {METRIC_LABEL[metric]}: {fmt_rate(num, den) if den else 'chưa có dữ liệu'}"
            f" ({fmt_int(num)}/{fmt_int(den)})"
        )
    zero_lines, below_lines, silent_lines = [], [], []
    for r in sorted(rows, key=lambda r: r.unit.code):
        f = findings.get(r.unit.code, {})
        for (metric, kind), finding in sorted(f.items(), key=lambda kv: kv[0]):
            label = f"{r.unit.name} ({r.unit.code}) — {METRIC_LABEL[metric]}"
            change = (
                _change(r.rate(metric), r.previous.get(metric)) if metric in RATE_METRICS else ""
            )
            if kind is Kind.zero:
                zero_lines.append(
                    f"- {label}: 0,00% (0/{fmt_int(finding.denominator)} hồ sơ){change}"
                )
            elif kind is Kind.below_target:
                below_lines.append(
                    f"- {label}: {fmt_rate(finding.numerator, finding.denominator)}, "
                    f"chỉ tiêu {fmt_pct(finding.target)}, thiếu "
                    f"{fmt_number(exact_gap(finding.target, finding.numerator, finding.denominator))}"
                    f" điểm{change}"
                )
            else:
                silent_lines.append(
                    f"- {r.unit.name} ({r.unit.code}): {int(finding.value or 0)} ngày"
                )
    lines += ["", f"ĐƠN VỊ CÓ TỶ LỆ 0% ({len(zero_lines)}):", *(zero_lines or ["- Không có."])]
    lines += ["", f"ĐƠN VỊ DƯỚI CHỈ TIÊU ({len(below_lines)}):", *(below_lines or ["- Không có."])]
    if silent_lines:
        lines += ["", f"ĐƠN VỊ KHÔNG PHÁT SINH HỒ SƠ ({len(silent_lines)}):", *silent_lines]
    lines += ["", "CHI TIẾT THEO ĐƠN VỊ (trực tuyến / số hóa / thanh toán trực tuyến):"]
    for r in sorted(rows, key=lambda r: (r.unit.level, r.unit.code)):
        if r.counts.received == 0:
            lines.append(f"- {r.unit.name} ({r.unit.code}): chưa có hồ sơ trong kỳ")
            continue
        cells = []
        for metric in RATE_METRICS:
            value = r.rate(metric)
            target = getattr(r.targets, metric)
            num, den = _rate_parts(metric, r.counts)
            cell = fmt_rate(num, den) if value is not None else "không áp dụng"
            if target is not None and value is not None:
                cell += f" (CT {fmt_pct(target)})"
            cell += _change(value, r.previous.get(metric))
            cells.append(cell)
        lines.append(
            f"- {r.unit.name} ({r.unit.code}, {level_label.get(r.unit.level, r.unit.level)}): "
            + " / ".join(cells)
        )
    lines += ["", "Tin nhắn tự động của hệ thống dvcpulse."]
    subject = (
        f"[dvcpulse] Báo cáo tuần {fmt_date(slot.date())}: {len(zero_lines)} chỉ số 0%, "
        f"{len(below_lines)} dưới chỉ tiêu"
    )
    payload = {
        "type": "digest",
        "recipient": {"id": recipient.id, "name": recipient.name},
        "window": window.id,
        "slot": slot.isoformat(),
        "zero": len(zero_lines),
        "below_target": len(below_lines),
        "units": [
            {
                "unit_code": r.unit.code,
                **{f"{m}_rate": r.rate(m) for m in RATE_METRICS},
                **{f"{m}_previous": r.previous.get(m) for m in RATE_METRICS},
            }
            for r in rows
        ],
        "subject": subject,
        "text": "\n".join(lines),
    }
    return Message(subject, "\n".join(lines), payload)
