"""Emulation ranking: order, ties, N/A last (pure rule)."""

from __future__ import annotations

from fractions import Fraction

from dvcpulse_common.registry import Registry
from dvcpulse_scoring.ranking import RankBy, build_rankings, metric_value, rank_level, rank_units
from dvcpulse_shared.api import Counts
from dvcpulse_shared.units import Unit


def unit(code: str, fees: bool = True, base_online: float | None = 50.0) -> Unit:
    return Unit(
        code=code,
        name=f"Đơn vị {code}",
        level="commune",
        parent_code="P",
        has_fee_procedures=fees,
        baseline_online_rate=base_online,
        baseline_online_payment_rate=10.0 if fees else None,
    )


def c(received: int, online: int, fee: int = 0, paid: int = 0) -> Counts:
    return Counts(received=received, online=online, fee_required=fee, paid_online=paid)


def test_order_ties_share_a_rank_and_na_last():
    a, b, cc, d, e, f = (unit(x) for x in "ABCDEF")
    ranked = rank_units(
        [
            (a, Fraction(1, 2)),
            (b, None),
            (cc, Fraction(2, 3)),
            (d, Fraction(4, 6)),  # equal to C exactly
            (e, Fraction(0)),
            (f, Fraction(1, 2)),
        ]
    )
    assert [(r.rank, r.unit.code) for r in ranked] == [
        (1, "C"),
        (1, "D"),
        (3, "A"),
        (3, "F"),
        (5, "E"),  # 0% is ranked (last of the ranked), it is a real value
        (None, "B"),  # no value: listed after every ranked unit, not as 0
    ]


def test_rates_from_counts_tie_exactly_where_floats_would_not():
    # Compared as fractions from the counts: 1 of 3 and 3 of 9 are the same rate.
    x, y, z = unit("X"), unit("Y"), unit("Z")
    counts = {"X": c(3, 1), "Y": c(9, 3), "Z": c(0, 0)}
    ranked = rank_level([x, y, z], counts, RankBy.online_rate)
    assert [(r.rank, r.unit.code, r.value) for r in ranked] == [
        (1, "X", Fraction(100, 3)),
        (1, "Y", Fraction(100, 3)),
        (None, "Z", None),
    ]


def test_improvement_since_baseline_in_points():
    up = unit("U", base_online=20.0)  # 20% -> 50%: +30 points
    flat = unit("F", base_online=66.7)  # 66.7% -> 60%: -6.7 points
    new = unit("N", base_online=None)  # no 2022 baseline: N/A
    counts = {"U": c(10, 5), "F": c(10, 6), "N": c(10, 10)}
    ranked = rank_level([flat, new, up], counts, RankBy.online_improvement)
    assert [(r.rank, r.unit.code, r.value) for r in ranked] == [
        (1, "U", Fraction(30)),
        (2, "F", Fraction(-67, 10)),
        (None, "N", None),
    ]


def test_payment_not_applicable_is_never_zero():
    no_fee = unit("NF", fees=False)
    no_fee_dossiers = unit("ND")
    zero = unit("Z0")
    counts = {"NF": c(10, 5), "ND": c(10, 5, fee=0), "Z0": c(10, 5, fee=4, paid=0)}
    assert metric_value(no_fee, counts["NF"], RankBy.online_payment_rate) is None
    assert metric_value(no_fee_dossiers, counts["ND"], RankBy.online_payment_rate) is None
    assert metric_value(zero, counts["Z0"], RankBy.online_payment_rate) == 0
    assert metric_value(zero, counts["Z0"], RankBy.online_payment_improvement) == -10
    ranked = rank_level([no_fee, no_fee_dossiers, zero], counts, RankBy.online_payment_rate)
    assert [(r.rank, r.unit.code) for r in ranked] == [(1, "Z0"), (None, "NF"), (None, "ND")]


def test_build_rankings_per_level_and_metric():
    reg = Registry.build(
        [
            Unit(code="P", name="Tỉnh", level="root"),
            Unit(code="S1", name="Sở 1", level="province", parent_code="P"),
            Unit(code="S2", name="Sở 2", level="province", parent_code="P"),
            Unit(code="X1", name="Xã 1", level="commune", parent_code="P"),
        ],
        {"province": "Cấp tỉnh", "commune": "Cấp xã"},
    )
    counts = {"S1": c(4, 1), "S2": c(4, 3), "X1": c(2, 2)}
    out = build_rankings(reg, counts, ["province", "commune"], list(RankBy))
    assert [(r.level, r.by) for r in out][:2] == [
        ("province", RankBy.online_rate),
        ("province", RankBy.digitization_rate),
    ]
    assert len(out) == 12
    online = out[0]
    assert online.label == "Cấp tỉnh"
    assert [(r.rank, r.unit_code, r.value) for r in online.rows] == [
        (1, "S2", 75.0),
        (2, "S1", 25.0),
    ]
    # No baselines in this registry: every improvement is N/A, nobody ranked.
    improvement = next(r for r in out if r.by is RankBy.online_improvement)
    assert all(row.rank is None and row.value is None for row in improvement.rows)
