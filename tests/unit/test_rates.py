"""Rate semantics: rates from counts, exact comparisons, N/A never 0%."""

from decimal import Decimal

import pytest
from dvcpulse_common.rates import metric_status, rate, rates, statuses
from dvcpulse_shared.api import Counts, Status
from dvcpulse_shared.targets import MetricTargets


def test_rate_is_unrounded_percent_and_none_without_denominator():
    assert rate(24_965, 39_219) == pytest.approx(63.6553711211)
    assert rate(0, 0) is None
    assert rate(0, 5) == 0.0


def test_status_compares_exactly_not_in_floating_point():
    # 4/5 = 80% exactly: met; 7999/10000 = 79.99%: below an 80% target.
    assert metric_status(4, 5, Decimal(80)) is Status.met
    assert metric_status(7999, 10_000, Decimal(80)) is Status.below_target
    # 1/3 = 33.333...% is below a 33.34% target and above 33.33%.
    assert metric_status(1, 3, Decimal("33.34")) is Status.below_target
    assert metric_status(1, 3, Decimal("33.33")) is Status.met
    assert metric_status(0, 3, Decimal(10)) is Status.zero
    assert metric_status(0, 0, Decimal(10)) is Status.no_data
    assert metric_status(3, 3, None) is Status.met


def test_payment_not_applicable_is_never_zero():
    no_fee = Counts(received=10, online=4, digitized=2, fee_required=0, paid_online=0)
    t = MetricTargets(online=Decimal(80), digitization=Decimal(80), online_payment=Decimal(40))
    s = statuses(no_fee, t)
    assert s.online_payment is Status.not_applicable
    assert rates(no_fee).online_payment_rate is None
    # A unit whose procedures carry no fee is N/A even with no data at all.
    assert statuses(Counts(), t, has_fee_procedures=False).online_payment is Status.not_applicable
    assert statuses(Counts(), t).online_payment is Status.no_data
    fee_unpaid = Counts(received=10, online=4, digitized=2, fee_required=3, paid_online=0)
    assert statuses(fee_unpaid, t).online_payment is Status.zero


def test_level_totals_are_sums_of_counts_not_averages_of_rates():
    # The plan's 2022 counts: averaging the three level rates would give 49.89%, not 52.23%.
    levels = [(24_965, 39_219), (7_113, 23_487), (10_761, 19_309)]
    online = sum(a for a, _ in levels)
    received = sum(b for _, b in levels)
    assert (online, received) == (42_839, 82_015)
    assert f"{rate(online, received):.2f}" == "52.23"
    assert [f"{rate(a, b):.2f}" for a, b in levels] == ["63.66", "30.28", "55.73"]


def random_rows(seed: int, n: int):  # type: ignore[no-untyped-def]
    """(unit, counts, target set or None) for random counts, units and targets."""
    import random

    from dvcpulse_shared.targets import TargetSet
    from dvcpulse_shared.units import Unit

    rng = random.Random(seed)
    target_set = TargetSet.model_validate(
        {
            "id": "t",
            "name": "t",
            "kind": "campaign",
            "from": "2023-03-01",
            "to": "2023-05-09",
            "levels": {
                "commune": {"online": "50", "digitization": "80.5", "online_payment": "33.3"}
            },
            "units": {"U-3": {"online_payment": "12.25"}},
        }
    )
    for i in range(n):
        received = rng.randrange(0, 50)
        fee = rng.randrange(0, received + 1)
        counts = Counts(
            received=received,
            online=rng.randrange(0, received + 1),
            digitized=rng.randrange(0, received + 1),
            fee_required=fee,
            paid_online=rng.randrange(0, fee + 1),
        )
        unit = Unit(
            code=f"U-{i % 7}",
            name=f"Xã {i}",
            level="commune",
            parent_code="H-1" if i % 3 else None,
            has_fee_procedures=rng.random() < 0.8,
        )
        yield unit, counts, (target_set if i % 2 else None)


def test_score_rows_built_without_validation_equal_validated_ones():
    from dvcpulse_common.rates import rates
    from dvcpulse_scoring.domain import score_row
    from dvcpulse_shared.api import ScoreRow

    for unit, c, target_set in random_rows(2, 300):
        built = score_row(unit, c, target_set)
        validated = ScoreRow.model_validate(built.model_dump())
        assert built.model_dump_json() == validated.model_dump_json()
        assert (built.online_rate, built.online_payment_rate) == (
            rates(c).online_rate,
            rates(c).online_payment_rate,
        )


def test_score_row_json_equals_the_models_json():
    import json

    import orjson
    from dvcpulse_scoring.domain import ScoreRowJson, score_row
    from dvcpulse_shared.api import ScoreRow

    builder = ScoreRowJson()
    for unit, c, target_set in random_rows(4, 400):
        model = ScoreRow.model_validate(score_row(unit, c, target_set).model_dump())
        got = orjson.loads(
            orjson.dumps(builder.row(unit, tuple(c.model_dump().values()), target_set))
        )
        assert got == json.loads(model.model_dump_json())
