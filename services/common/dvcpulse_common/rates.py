"""Rate semantics: rates come from counts, statuses compare exactly (no float rounding)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from dvcpulse_shared.api import Counts, MetricStatus, Rates, Status
from dvcpulse_shared.targets import MetricTargets


def rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator * 100 / denominator


def rates(c: Counts) -> Rates:
    return Rates(
        online_rate=rate(c.online, c.received),
        digitization_rate=rate(c.digitized, c.received),
        online_payment_rate=rate(c.paid_online, c.fee_required),
    )


def metric_status(
    numerator: int, denominator: int, target: Decimal | None, *, applicable: bool = True
) -> Status:
    if not applicable:
        return Status.not_applicable
    if denominator == 0:
        return Status.no_data
    if numerator == 0:
        return Status.zero
    # numerator/denominator*100 < p/q, compared exactly in integers (denominators are > 0).
    if target is not None:
        p, q = _exact(target)
        if numerator * 100 * q < p * denominator:
            return Status.below_target
    return Status.met


@lru_cache(maxsize=4096)
def _exact(target: Decimal) -> tuple[int, int]:
    return target.as_integer_ratio()


def statuses(c: Counts, t: MetricTargets, *, has_fee_procedures: bool = True) -> MetricStatus:
    # No fee-bearing dossiers means the payment rate does not apply: never report it as 0%.
    payment_applicable = has_fee_procedures and (c.received == 0 or c.fee_required > 0)
    if c.received == 0:
        payment = Status.no_data if has_fee_procedures else Status.not_applicable
    else:
        payment = metric_status(
            c.paid_online, c.fee_required, t.online_payment, applicable=payment_applicable
        )
    return MetricStatus(
        online=metric_status(c.online, c.received, t.online),
        digitization=metric_status(c.digitized, c.received, t.digitization),
        online_payment=payment,
    )


def add_counts(a: Counts, b: Counts) -> Counts:
    return Counts(
        received=a.received + b.received,
        online=a.online + b.online,
        digitized=a.digitized + b.digitized,
        fee_required=a.fee_required + b.fee_required,
        paid_online=a.paid_online + b.paid_online,
    )
