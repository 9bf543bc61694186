"""The fast score-update builder agrees with the contract rules, and its JSON is a ScoreUpdate."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
from dvcpulse_common.rates import rates, statuses
from dvcpulse_common.settings import Settings
from dvcpulse_common.targets import load_targets, unit_targets
from dvcpulse_scoring.domain import set_window
from dvcpulse_scoring.updates import UpdateBuilder
from dvcpulse_shared.api import Counts, ScoreUpdate
from dvcpulse_shared.targets import MetricTargets, TargetSet
from dvcpulse_shared.units import Unit
from hypothesis import given
from hypothesis import strategies as st

SETS = load_targets(Settings().targets_file)
CAMPAIGN = next(s for s in SETS if s.id == "campaign-2023")


@st.composite
def counts(draw):
    received = draw(st.integers(0, 50))
    fee = draw(st.integers(0, received))
    return Counts(
        received=received,
        online=draw(st.integers(0, received)),
        digitized=draw(st.integers(0, received)),
        fee_required=fee,
        paid_online=draw(st.integers(0, fee)),
    )


targets = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)


@given(c=counts(), online=targets, digit=targets, pay=targets, has_fee=st.booleans())
def test_builder_matches_the_contract_rules(c, online, digit, pay, has_fee):
    unit = Unit(code="U1", name="Xã", level="commune", parent_code=None, has_fee_procedures=has_fee)
    target_set = TargetSet.model_validate(
        {
            "id": "t",
            "name": "t",
            "kind": "campaign",
            "from": date(2023, 1, 1),
            "to": date(2023, 12, 31),
            "levels": {"commune": {"online": online, "digitization": digit, "online_payment": pay}},
        }
    )
    builder = UpdateBuilder({"U1": unit}, [target_set])
    now = datetime(2023, 3, 2, tzinfo=UTC)
    as_tuple = (c.received, c.online, c.digitized, c.fee_required, c.paid_online)
    built = builder.build(
        set_window(target_set), target_set, "U1", as_tuple, date(2023, 3, 2), now.isoformat()
    )
    # The spliced JSON is one object with exactly the fields of the contract, each once.
    pairs = orjson.loads(built)
    assert sorted(pairs) == sorted(ScoreUpdate.model_fields)
    assert built.count(b'"received"') == 1
    update = ScoreUpdate.model_validate_json(built)
    assert (update.received, update.online, update.digitized) == as_tuple[:3]
    assert (update.fee_required, update.paid_online, update.computed_at) == (*as_tuple[3:], now)
    assert update.window == set_window(target_set) and update.level == "commune"
    t = unit_targets(target_set, "U1", "commune")
    assert update.status == statuses(c, t, has_fee_procedures=has_fee)
    assert (update.online_rate, update.digitization_rate, update.online_payment_rate) == tuple(
        rates(c).model_dump().values()
    )
    assert update.targets == MetricTargets(online=online, digitization=digit, online_payment=pay)


def test_marking_coalesces_units_and_windows():
    unit = Unit(code="U1", name="Xã", level="commune")
    builder = UpdateBuilder({"U1": unit}, SETS)
    dirty: dict = {}
    builder.mark(
        [("U1", date(2023, 3, 2)), ("U1", date(2023, 3, 3)), ("U1", date(2024, 1, 1))], dirty
    )
    assert sorted(dirty) == [("annual-2023", "U1"), ("campaign-2023", "U1"), ("year-2024", "U1")]
    assert Decimal(80) == CAMPAIGN.levels["province"].online


def test_marking_by_day_equals_marking_each_pair():
    units = {c: Unit(code=c, name=c, level="commune") for c in ("U1", "U2", "U3")}
    builder = UpdateBuilder(units, SETS)
    touched = {
        date(2023, 3, 2): ["U1", "U2"],
        date(2023, 3, 9): ["U2", "U3"],  # same windows as 2 March: merged
        date(2023, 12, 30): ["U3"],  # the annual set only
        date(2024, 1, 1): ["U1"],  # no set: the calendar year
    }
    by_day: dict = {}
    builder.mark_by_day(touched, by_day)
    each: dict = {}
    builder.mark([(u, d) for d, us in touched.items() for u in us], each)
    assert by_day == each
    assert sorted(by_day) == [
        ("annual-2023", "U1"),
        ("annual-2023", "U2"),
        ("annual-2023", "U3"),
        ("campaign-2023", "U1"),
        ("campaign-2023", "U2"),
        ("campaign-2023", "U3"),
        ("year-2024", "U1"),
    ]
