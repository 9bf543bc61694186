"""The event contract: every field checked, every error names its field."""

from __future__ import annotations

import pytest
from dvcpulse_ingest.domain import BodyError, TooLarge, split_body, validate_events

from tests.factories import digitized, paid, received

UNITS = {"CMU-S01", "CMU-H01-X07"}


def errors_of(event: dict) -> list[tuple[str, str]]:
    out = validate_events([event], UNITS)
    assert not out.events
    return [(e.field, e.message) for e in out.rejected[0].errors]


def test_valid_events_of_each_type():
    out = validate_events([received(), digitized("CMU-S01", "D"), paid("CMU-S01", "D")], UNITS)
    assert [e.type for e in out.events] == ["dossier.received", "dossier.digitized", "dossier.paid"]
    assert out.rejected == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"dossier_id": "d" * 65}, "dossier_id"),
        ({"occurred_at": "2023-03-02T09:00:00"}, "occurred_at"),
        ({"occurred_at": 1677722400}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"channel": "fax"}, "channel"),
        ({"fee_required": "yes"}, "fee_required"),
        ({"type": "dossier.lost"}, "type"),
        ({"surprise": 1}, "surprise"),
        ({"unit_code": "NOPE"}, "unit_code"),
    ],
)
def test_each_bad_field_is_named(change, field):
    fields = [f for f, _ in errors_of({**received(), **change})]
    assert field in fields


def test_naive_time_message_says_why():
    [(field, message)] = errors_of(received(at="2023-03-02T09:00:00"))
    assert field == "occurred_at" and "offset" in message


def test_paid_amount_must_be_a_non_negative_integer():
    assert errors_of(paid("CMU-S01", "D", amount=-1))[0][0] == "amount_vnd"
    assert errors_of({**paid("CMU-S01", "D"), "amount_vnd": 1.5})[0][0] == "amount_vnd"


def test_unit_code_in_nfd_resolves_to_the_same_code():
    import unicodedata

    units = {"XÃ-1"}
    event = received(unit=unicodedata.normalize("NFD", "XÃ-1"))
    out = validate_events([event], units)
    assert out.events and out.events[0].unit_code == "XÃ-1"


def test_missing_type_names_type():
    event = received()
    del event["type"]
    assert errors_of(event)[0][0] == "type"


def test_split_body_array_ndjson_and_limits():
    assert len(split_body(b'[{"a":1},{"b":2}]', 10)) == 2
    assert len(split_body(b'{"a":1}\n\n{"b":2}\n', 10)) == 2
    with pytest.raises(BodyError):
        split_body(b"[1,", 10)
    with pytest.raises(BodyError):
        split_body(b"   ", 10)
    with pytest.raises(BodyError):
        split_body(b"nope\nnever", 10)
    with pytest.raises(TooLarge):
        split_body(b"[" + b",".join([b"{}"] * 11) + b"]", 10)


def test_non_object_items_are_rejected_with_their_index():
    out = validate_events([received(), 5, "x"], UNITS)
    assert len(out.events) == 1
    assert [r.index for r in out.rejected] == [1, 2]
