"""The weekly report as data (pure): the plan's appendix layout built from counts.

STT, Đơn vị, the three rates, Ghi chú; one section per level (I. CẤP TỈNH, II. CẤP HUYỆN,
III. CẤP XÃ) closed by a Tổng row whose rates come from the summed counts, never from an
average of rates. Next to each rate: the target, the change since the previous week and the
change since the 2022 baseline, in percentage points. Rates are exact fractions from the
counts; printing cuts them to two decimals as the plan does (63,65%), so a unit shown at
80,00% is never below an 80% target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction

from dvcpulse_common.formatting import format_count, format_percent
from dvcpulse_common.rates import add_counts, statuses
from dvcpulse_common.registry import Registry
from dvcpulse_shared.api import Counts, Status
from dvcpulse_shared.targets import MetricTargets
from dvcpulse_shared.units import Unit

METRICS = ("online", "digitization", "online_payment")
METRIC_LABELS = {
    "online": "Tỷ lệ hồ sơ giải quyết trực tuyến",
    "digitization": "Tỷ lệ số hóa",
    "online_payment": "Tỷ lệ thanh toán trực tuyến",
}
SHORT_LABELS = {"online": "Trực tuyến", "digitization": "Số hóa", "online_payment": "TT trực tuyến"}
_PARTS = {
    "online": ("online", "received", "baseline_online_rate"),
    "digitization": ("digitized", "received", "baseline_digitization_rate"),
    "online_payment": ("paid_online", "fee_required", "baseline_online_payment_rate"),
}
NOTE_NO_FEE_PROCEDURES = "Không có TTHC yêu cầu thực hiện nghĩa vụ tài chính"
NOTE_NO_FEE_DOSSIERS = "Không có hồ sơ yêu cầu thực hiện nghĩa vụ tài chính trong kỳ"
NOTE_NO_DOSSIERS = "Chưa có hồ sơ trong kỳ"
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"]


@dataclass
class ReportRow:
    stt: int | None  # None on the Tổng row
    name: str
    unit_code: str | None
    counts: Counts
    rates: dict[str, Fraction | None]
    status: dict[str, Status]
    targets: dict[str, Decimal | None]
    change_week: dict[str, Fraction | None]
    change_baseline: dict[str, Fraction | None]
    note: str = ""

    @property
    def is_total(self) -> bool:
        return self.stt is None


@dataclass
class Section:
    level: str
    title: str  # "I. CẤP TỈNH"
    rows: list[ReportRow]
    total: ReportRow


@dataclass
class Report:
    window_name: str
    date_from: date
    as_of: date
    previous_to: date | None  # None when the window is under a week old
    target_set: str | None
    sections: list[Section] = field(default_factory=list)
    rankings: list = field(default_factory=list)  # ranking.LevelRanking, per level and basis

    @property
    def title(self) -> str:
        return "TỶ LỆ HỒ SƠ GIẢI QUYẾT TRỰC TUYẾN, SỐ HÓA, THANH TOÁN TRỰC TUYẾN"

    @property
    def subtitle(self) -> str:
        prev = (
            f"so sánh với số liệu đến ngày {self.previous_to:%d/%m/%Y}"
            if self.previous_to
            else "chưa có số liệu tuần trước"
        )
        return (
            f"{self.window_name}: số liệu từ {self.date_from:%d/%m/%Y} đến {self.as_of:%d/%m/%Y}"
            f" ({prev}); chỉ tiêu: {self.target_set or 'không có'}"
        )


def exact_rate(counts: Counts, metric: str) -> Fraction | None:
    num, den, _ = _PARTS[metric]
    d = getattr(counts, den)
    return None if d == 0 else Fraction(getattr(counts, num) * 100, d)


def _baseline(unit: Unit, metric: str) -> Fraction | None:
    # Registry baselines are the plan's printed decimals (66.70): read as exact decimals.
    value = getattr(unit, _PARTS[metric][2])
    return None if value is None else Fraction(str(value))


def _level_baseline(baseline: MetricTargets | None, metric: str) -> Fraction | None:
    value = None if baseline is None else getattr(baseline, metric)
    return None if value is None else Fraction(value)  # a Decimal: exact


def _diff(a: Fraction | None, b: Fraction | None) -> Fraction | None:
    return None if a is None or b is None else a - b


def _row(
    stt: int | None,
    name: str,
    unit: Unit | None,
    counts: Counts,
    previous: Counts | None,
    targets: MetricTargets,
    has_fee_procedures: bool,
    baseline: MetricTargets | None = None,
) -> ReportRow:
    status = statuses(counts, targets, has_fee_procedures=has_fee_procedures).model_dump()
    rates: dict[str, Fraction | None] = {m: exact_rate(counts, m) for m in METRICS}
    if status["online_payment"] == Status.not_applicable:
        rates["online_payment"] = None  # not applicable is N/A, never 0%
    prev_rates = {m: (exact_rate(previous, m) if previous is not None else None) for m in METRICS}
    if not has_fee_procedures:
        prev_rates["online_payment"] = None
    if counts.received == 0:
        note = NOTE_NO_DOSSIERS
    elif not has_fee_procedures:
        note = NOTE_NO_FEE_PROCEDURES
    elif counts.fee_required == 0:
        note = NOTE_NO_FEE_DOSSIERS
    else:
        note = ""
    return ReportRow(
        stt=stt,
        name=name,
        unit_code=unit.code if unit else None,
        counts=counts,
        rates=rates,
        status={m: Status(status[m]) for m in METRICS},
        targets={m: getattr(targets, m) for m in METRICS},
        change_week={m: _diff(rates[m], prev_rates[m]) for m in METRICS},
        change_baseline={
            m: _diff(
                rates[m],
                _baseline(unit, m) if unit is not None else _level_baseline(baseline, m),
            )
            for m in METRICS
        },
        note=note,
    )


def build_report(
    *,
    registry: Registry,
    window_name: str,
    date_from: date,
    as_of: date,
    previous_to: date | None,
    target_set: str | None,
    current: Mapping[str, Counts],
    previous: Mapping[str, Counts] | None,
    unit_targets: Mapping[str, MetricTargets],
    level_targets: Mapping[str, MetricTargets],
    rankings: Sequence = (),
    level_baselines: Mapping[str, MetricTargets] | None = None,
) -> Report:
    """`current`/`previous`: counts per unit code from the scoring API; `unit_targets` and
    `level_targets`: the targets the API reports for the window; `level_baselines`: each
    level's rates in the baseline year as the plan printed them (the Tổng rows' reference)."""
    report = Report(window_name, date_from, as_of, previous_to, target_set, rankings=list(rankings))
    for i, level in enumerate(registry.levels):
        units = [u for u in registry.units.values() if u.level == level.code]
        if not units:
            continue
        rows = []
        total, total_prev = Counts(), Counts()
        for stt, unit in enumerate(units, start=1):
            counts = current.get(unit.code, Counts())
            prev = None if previous is None else previous.get(unit.code, Counts())
            total = add_counts(total, counts)
            if prev is not None:
                total_prev = add_counts(total_prev, prev)
            rows.append(
                _row(
                    stt,
                    unit.name,
                    unit,
                    counts,
                    prev,
                    unit_targets.get(unit.code, MetricTargets()),
                    unit.has_fee_procedures,
                )
            )
        # The level has fee procedures if any of its units has; a level without any fee-bearing
        # dossier gets the N/A note like a unit.
        level_fees = any(u.has_fee_procedures for u in units)
        total_row = _row(
            None,
            "Tổng",
            None,
            total,
            None if previous is None else total_prev,
            level_targets.get(level.code, MetricTargets()),
            level_fees,
            baseline=(level_baselines or {}).get(level.code),
        )
        roman = ROMAN[i] if i < len(ROMAN) else str(i + 1)
        report.sections.append(
            Section(level.code, f"{roman}. {level.label.upper()}", rows, total_row)
        )
    return report


@dataclass
class RankingTable:
    level: str
    label: str
    by: str  # a ranking.RankBy value
    title: str
    rows: list  # ranking.Ranked: rank (None = N/A), unit, exact value

    @property
    def improvement(self) -> bool:
        return self.by.endswith("_improvement")


def report_rankings(registry: Registry, counts: Mapping[str, Counts]) -> list[RankingTable]:
    """Per level, by each rate and by the change since 2022: the same rule as
    GET /api/v1/ranking, kept exact here so printed digits never move."""
    from dvcpulse_scoring.ranking import RANK_LABELS, RankBy, rank_level

    out = []
    for level in registry.levels:
        units = [u for u in registry.units.values() if u.level == level.code]
        for by in RankBy:
            ranked = rank_level(units, dict(counts), by)
            out.append(RankingTable(level.code, level.label, by.value, RANK_LABELS[by], ranked))
    return out


# -- text forms -----------------------------------------------------------------------------


def hundredths(value: Fraction) -> int:
    """Cut toward zero to hundredths (as the plan prints rates): 63.655 -> 6365, -6.709 -> -670."""
    n = abs(value) * 100
    whole = n.numerator // n.denominator
    return whole if value >= 0 else -whole


def rate_text(value: Fraction | None) -> str:
    return format_percent(value)


def points_text(value: Fraction | None) -> str:
    """A change in percentage points: +3,21 / -6,70 / 0,00; N/A when either side is missing."""
    if value is None:
        return "N/A"
    h = hundredths(value)
    sign = "+" if h > 0 else ("-" if h < 0 else "")
    return f"{sign}{abs(h) // 100},{abs(h) % 100:02d}"


def target_text(value: Decimal | None) -> str:
    if value is None:
        return ""
    text = f"{value:f}".rstrip("0").rstrip(".") if "." in f"{value:f}" else f"{value:f}"
    return text.replace(".", ",") + "%"


def count_text(value: int) -> str:
    return format_count(value)
