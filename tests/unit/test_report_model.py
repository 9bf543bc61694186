"""The weekly report's model (pure): totals from counts, N/A notes, changes, Vietnamese numbers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

from dvcpulse_cli.report_model import (
    METRICS,
    NOTE_NO_DOSSIERS,
    NOTE_NO_FEE_DOSSIERS,
    NOTE_NO_FEE_PROCEDURES,
    build_report,
    hundredths,
    points_text,
    rate_text,
    target_text,
)
from dvcpulse_common.registry import Registry
from dvcpulse_shared.api import Counts, Status
from dvcpulse_shared.targets import MetricTargets
from dvcpulse_shared.units import Unit

REG = Registry.build(
    [
        Unit(code="P", name="Tỉnh", level="root"),
        Unit(code="S1", name="Sở A", level="province", parent_code="P", baseline_online_rate=66.7),
        Unit(code="S2", name="Sở B", level="province", parent_code="P", has_fee_procedures=False),
        Unit(code="S3", name="Sở C", level="province", parent_code="P"),
        Unit(code="S4", name="Sở D", level="province", parent_code="P"),
        Unit(code="X1", name="Xã E", level="commune", parent_code="P"),
    ],
    {"province": "Cấp tỉnh", "commune": "Cấp xã"},
)
T = MetricTargets(online=Decimal(80), digitization=Decimal(80), online_payment=Decimal(40))


def build(current, previous=None, level_baselines=None):
    return build_report(
        registry=REG,
        window_name="Chiến dịch",
        date_from=date(2023, 3, 1),
        as_of=date(2023, 3, 15),
        previous_to=date(2023, 3, 8) if previous is not None else None,
        target_set="campaign-2023",
        current=current,
        previous=previous,
        unit_targets={u: T for u in REG.units},
        level_targets={"province": T},
        level_baselines=level_baselines,
    )


def test_plan_figures_and_number_forms():
    assert rate_text(Fraction(24965 * 100, 39219)) == "63,65%"  # cut, as the plan prints it
    assert hundredths(Fraction(-67091, 10000)) == -670
    assert points_text(Fraction(-67, 10)) == "-6,70"
    assert points_text(Fraction(1, 3)) == "+0,33"
    assert points_text(Fraction(0)) == "0,00"
    assert points_text(None) == "N/A"
    assert target_text(Decimal(80)) == "80%" and target_text(Decimal("35.5")) == "35,5%"


def test_sections_totals_and_notes():
    current = {
        "S1": Counts(received=3, online=2, digitized=3, fee_required=2, paid_online=1),
        "S2": Counts(received=1, online=0, digitized=0),
        "S3": Counts(received=100, online=100, digitized=100, fee_required=0),
    }
    report = build(current)
    (province, commune) = report.sections
    assert (province.title, commune.title) == ("I. CẤP TỈNH", "II. CẤP XÃ")
    s1, s2, s3, s4 = province.rows
    assert [r.stt for r in province.rows] == [1, 2, 3, 4]
    assert s1.rates["online"] == Fraction(200, 3) and s1.status["online"] == Status.below_target
    assert s1.change_baseline["online"] == Fraction(200, 3) - Fraction("66.7")
    assert s1.change_week["online"] is None  # no previous week in this report
    assert s2.rates["online_payment"] is None and s2.note == NOTE_NO_FEE_PROCEDURES
    assert s2.status["online"] == Status.zero
    assert s3.rates["online_payment"] is None and s3.note == NOTE_NO_FEE_DOSSIERS
    assert s4.note == NOTE_NO_DOSSIERS and s4.rates["online"] is None
    assert s4.status["online"] == Status.no_data
    total = province.total
    assert total.is_total and total.name == "Tổng"
    # Sums of counts: 102 of 104 online (98.07%), not the mean of 66.67%, 0% and 100%.
    assert total.counts == Counts(
        received=104, online=102, digitized=103, fee_required=2, paid_online=1
    )
    assert total.rates["online"] == Fraction(10200, 104)
    assert total.rates["online_payment"] == 50
    assert total.targets["online"] == 80
    assert commune.total.note == NOTE_NO_DOSSIERS


def test_change_since_previous_week():
    before = {"S1": Counts(received=2, online=1, fee_required=1)}
    now = {"S1": Counts(received=4, online=3, fee_required=1, paid_online=1)}
    report = build(now, before)
    s1 = report.sections[0].rows[0]
    assert s1.change_week["online"] == 25  # 75% - 50%
    assert s1.change_week["online_payment"] == 100  # 100% - 0%
    assert report.sections[0].total.change_week["online"] == 25
    # A unit without dossiers a week ago has no change to show, not "+x from 0".
    assert report.sections[0].rows[2].change_week["online"] is None
    assert "so sánh với số liệu đến ngày 08/03/2023" in report.subtitle


def test_total_rows_change_against_the_plans_level_figures():
    current = {
        "S1": Counts(received=3, online=2, digitized=3, fee_required=2, paid_online=1),
        "S3": Counts(received=100, online=100, digitized=100, fee_required=0),
    }
    plan_2022 = MetricTargets(online=Decimal("63.65"), digitization=Decimal("51.72"))
    report = build(current, level_baselines={"province": plan_2022})
    province, commune = report.sections
    # 102 of 103 online, from summed counts, minus the plan's printed 63,65 — exactly.
    assert province.total.change_baseline["online"] == Fraction(10200, 103) - Fraction("63.65")
    assert province.total.change_baseline["digitization"] == 100 - Fraction("51.72")
    assert province.total.change_baseline["online_payment"] is None  # no 2022 figure given
    assert points_text(province.total.change_baseline["online"]) == "+35,37"
    assert commune.total.change_baseline == dict.fromkeys(METRICS)  # no figure for that level
    assert build(current).sections[0].total.change_baseline == dict.fromkeys(METRICS)
