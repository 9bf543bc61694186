"""Pure rules of alerting: what fires, who hears it, how numbers read in Vietnamese."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from dvcpulse_alerts.domain import (
    Event,
    Kind,
    Notice,
    collapse,
    digest_slot,
    evaluate_unit,
    evaluation_window,
    fmt_int,
    fmt_number,
    fmt_pct,
    fmt_rate,
    route,
    worst_first,
)
from dvcpulse_alerts.recipients import RecipientsError, parse_recipients
from dvcpulse_shared.api import Counts
from dvcpulse_shared.targets import MetricTargets

VN = ZoneInfo("Asia/Ho_Chi_Minh")
T = MetricTargets(online=Decimal(60), digitization=Decimal(65), online_payment=Decimal(30))


def test_numbers_read_as_in_vietnam():
    assert fmt_pct(24965 * 100 / 39219) == "63,65%"
    assert fmt_pct(0) == "0,00%"
    assert fmt_pct(None) == "không áp dụng"
    assert fmt_int(82015) == "82.015"
    assert fmt_number(29.0) == "29,00"
    assert fmt_rate(24965, 39219) == "63,65%"
    assert fmt_rate(0, 0) == "không áp dụng"


def test_zero_and_below_target(registry):
    commune = registry.units["CMU-H01-X01"]
    c = Counts(received=10, online=0, digitized=6, fee_required=4, paid_online=1)
    found = evaluate_unit(commune, c, T, None, date(2023, 3, 10))
    assert set(found) == {
        ("online", Kind.zero),
        ("digitization", Kind.below_target),
        ("online_payment", Kind.below_target),
    }
    z = found[("online", Kind.zero)]
    assert (z.value, z.target, z.numerator, z.denominator) == (0.0, 60.0, 0, 10)
    assert found[("online_payment", Kind.below_target)].value == 25.0


def test_exact_target_is_met_without_float_rounding(registry):
    unit = registry.units["CMU-H01-X01"]
    # 65/100 = 65% exactly; 2/3 = 66.67% >= 65.
    assert (
        evaluate_unit(
            unit, Counts(received=100, online=60, digitized=65), T, None, date(2023, 3, 1)
        )
        == {}
    )
    t = MetricTargets(online=Decimal("66.67"))
    found = evaluate_unit(
        unit, Counts(received=3, online=2, digitized=3), t, None, date(2023, 3, 1)
    )
    # 200/3 = 66.666..% < 66.67: below target, though a float rounded to 2 places says 66.67.
    assert ("online", Kind.below_target) in found


def test_no_data_and_not_applicable_never_alert(registry):
    unit = registry.units["CMU-H01-X01"]
    assert evaluate_unit(unit, Counts(), T, None, date(2023, 3, 1)) == {}
    # Dossiers but none fee-bearing: the payment rate does not apply, never 0%.
    c = Counts(received=5, online=5, digitized=5, fee_required=0, paid_online=0)
    assert evaluate_unit(unit, c, T, None, date(2023, 3, 1)) == {}
    no_fees = registry.units["CMU-S02"]
    assert not no_fees.has_fee_procedures
    c = Counts(received=5, online=5, digitized=5, fee_required=3, paid_online=0)
    assert evaluate_unit(no_fees, c, T, None, date(2023, 3, 1)) == {}


def test_min_dossiers_keeps_a_tiny_sample_from_being_called_zero(registry):
    unit = registry.units["CMU-H01-X01"]
    c = Counts(received=2, online=0, digitized=2)
    found = evaluate_unit(unit, c, T, None, date(2023, 3, 1), min_dossiers=3)
    assert set(found) == {("online", Kind.below_target)}
    found = evaluate_unit(unit, c, T, None, date(2023, 3, 1), min_dossiers=2)
    assert set(found) == {("online", Kind.zero)}


def test_silent_is_its_own_kind_not_zero(registry):
    unit = registry.units["CMU-H01-X01"]
    c = Counts(received=4, online=4, digitized=4, fee_required=1, paid_online=1)
    assert evaluate_unit(unit, c, T, date(2023, 3, 3), date(2023, 3, 9)) == {}
    found = evaluate_unit(unit, c, T, date(2023, 3, 3), date(2023, 3, 10))
    assert set(found) == {("received", Kind.silent)}
    assert found[("received", Kind.silent)].value == 7.0
    # Never received anything: not "normally receiving", so not silent either.
    assert evaluate_unit(unit, Counts(), T, None, date(2023, 3, 30)) == {}


def test_evaluation_window(target_sets):
    assert evaluation_window(target_sets, date(2023, 3, 15)).id == "campaign-2023"
    assert evaluation_window(target_sets, date(2023, 6, 1)).id == "annual-2023"
    w = evaluation_window(target_sets, date(2026, 11, 28))
    assert (w.id, w.target_set, w.date_from) == ("year-2026", None, date(2026, 1, 1))
    assert evaluation_window(target_sets, date(2026, 1, 1), "campaign-2023").id == "campaign-2023"
    with pytest.raises(ValueError, match="nope"):
        evaluation_window(target_sets, date(2026, 1, 1), "nope")


ROUTES = {
    "recipients": [
        {"id": "office", "name": "VP UBND tỉnh", "channels": ["log"], "all_units": True},
        {
            "id": "h01",
            "name": "Chủ tịch TP Cà Mau",
            "channels": ["log"],
            "match": [{"unit": "CMU-H01"}, {"parent": "CMU-H01"}],
        },
        {
            "id": "x01",
            "name": "Chủ tịch xã Hòa Thành",
            "channels": ["log"],
            "match": [{"unit": "CMU-H01-X01"}],
        },
        {
            "id": "x02",
            "name": "Chủ tịch xã Lý Văn Lâm",
            "channels": ["log"],
            "match": [{"unit": "CMU-H01-X02"}],
        },
        {"id": "chair", "name": "Chủ tịch tỉnh", "channels": ["log"], "match": [{"kind": "zero"}]},
        {
            "id": "communes",
            "name": "Sở Nội vụ",
            "channels": ["log"],
            "match": [{"level": "commune", "metric": "online"}],
        },
    ]
}


def test_routing_by_unit_parent_level_kind(registry):
    recipients = parse_recipients(ROUTES, registry)
    x01 = registry.units["CMU-H01-X01"]

    def ids(unit, kind, metric="online"):
        return [r.id for r in route(recipients, unit, kind, metric)]

    assert ids(x01, Kind.below_target) == ["office", "h01", "x01", "communes"]
    assert ids(x01, Kind.zero, "digitization") == ["office", "h01", "x01", "chair"]
    # A commune's head does not receive another commune's alert; another district's chairman
    # neither.
    other = registry.units["CMU-H02-X01"] if "CMU-H02-X01" in registry.units else None
    assert other is not None
    assert ids(other, Kind.below_target, "digitization") == ["office"]
    assert ids(registry.units["CMU-H01"], Kind.below_target, "digitization") == ["office", "h01"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"recipients": [{"id": "a", "name": "A", "channels": ["email"], "all_units": True}]},
            "needs an 'email'",
        ),
        (
            {"recipients": [{"id": "a", "name": "A", "channels": ["log"]}]},
            "'match' rules or 'all_units",
        ),
        (
            {
                "recipients": [
                    {"id": "a", "name": "A", "channels": ["log"], "match": [{"unit": "XX"}]}
                ]
            },
            "unknown unit code 'XX'",
        ),
        (
            {"recipients": [{"id": "a", "name": "A", "channels": ["fax"], "all_units": True}]},
            "recipients.0.channels.0",
        ),
        (
            {
                "recipients": [
                    {"id": "a", "name": "A", "channels": ["log"], "match": [{"level": "ward"}]}
                ]
            },
            "unknown level 'ward'",
        ),
        (
            {
                "recipients": [
                    {"id": "a", "name": "A", "channels": ["log"], "match": [{"metric": "speed"}]}
                ]
            },
            "unknown metric 'speed'",
        ),
    ],
)
def test_bad_recipients_file_names_field_and_reason(registry, spec, message):
    with pytest.raises(RecipientsError, match=message):
        parse_recipients(spec, registry)


def test_shipped_recipients_file_loads(registry, settings):
    from dvcpulse_alerts.recipients import load_recipients
    from dvcpulse_alerts.settings import AlertsSettings

    recipients = load_recipients(AlertsSettings().recipients_file, registry)
    office = next(r for r in recipients if r.id == "vp-ubnd-tinh")
    assert len(office.units(registry)) == len(registry.units)
    h01 = next(r for r in recipients if r.id == "chu-tich-h01")
    assert {u.code for u in h01.units(registry)} == {"CMU-H01", *registry.children["CMU-H01"]}


def _notice(i, unit, kind, value, target, event=Event.firing):
    now = datetime(2023, 3, 10, tzinfo=UTC)
    return Notice(
        i, event, unit, unit, "commune", "online", kind, value, target, 0, 10, "w", "W", now, None
    )


def test_worst_first_and_collapse():
    notices = [
        _notice(1, "A", Kind.below_target, 55.0, 60.0),
        _notice(2, "B", Kind.below_target, 20.0, 60.0),
        _notice(3, "C", Kind.silent, 9.0, 7.0),
        _notice(4, "D", Kind.zero, 0.0, 60.0),
        _notice(5, "E", Kind.below_target, 61.0, 60.0, Event.resolved),
    ]
    assert [n.unit_code for n in worst_first(notices)] == ["D", "B", "A", "C", "E"]
    flap = [
        _notice(7, "F", Kind.zero, 0.0, 60.0),
        _notice(7, "F", Kind.zero, 0.0, 60.0, Event.resolved),
    ]
    assert collapse(flap) == []


def test_digest_slot_is_last_friday_1500_local():
    fri = time(15, 0)
    # Friday 28/04/2023 14:59 local -> the previous Friday.
    assert digest_slot(datetime(2023, 4, 28, 14, 59, tzinfo=VN), 4, fri) == datetime(
        2023, 4, 21, 15, 0, tzinfo=VN
    )
    assert digest_slot(datetime(2023, 4, 28, 15, 0, tzinfo=VN), 4, fri) == datetime(
        2023, 4, 28, 15, 0, tzinfo=VN
    )
    assert digest_slot(datetime(2023, 5, 2, 9, 0, tzinfo=VN), 4, fri) == datetime(
        2023, 4, 28, 15, 0, tzinfo=VN
    )
