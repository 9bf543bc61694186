"""The Arrow fast path decodes exactly as the reference (`decode_entries`, pydantic) does: the
same rows, the same poison with the same reasons, on valid, invalid and odd payloads."""

from __future__ import annotations

import random
import unicodedata
from zoneinfo import ZoneInfo

import orjson
import pytest
from dvcpulse_scoring.domain import LocalDays, decode_entries
from dvcpulse_scoring.vectorised import VectorDecoder, _joined_if_plain

from tests.factories import digitized, paid, received

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CODES = {"CMU-S01", "CMU-H01", "XÃ-1"}


def valid_events(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        unit = rng.choice(sorted(CODES))
        d = f"D{i}"
        at = rng.choice(
            [
                "2023-03-01T23:30:00+07:00",
                "2023-03-01T16:59:59.999999Z",
                "2023-03-01T17:00:00Z",
                "2023-03-02T01:00:00.5-05:30",
                "2024-02-29T12:00:00+00:00",
                "1970-01-01T00:00:00Z",
            ]
        )
        kind = rng.randrange(3)
        if kind == 0:
            e = received(
                unit,
                d,
                channel=rng.choice(["online", "direct", "postal"]),
                fee=rng.random() < 0.5,
                at=at,
            )
            if rng.random() < 0.3:
                e["procedure_code"] = "1.00" + str(i)
        elif kind == 1:
            e = digitized(unit, d, at=at)
        else:
            e = paid(unit, d, method=rng.choice(["online", "offline"]), at=at)
            if rng.random() < 0.5:
                e["amount_vnd"] = rng.choice([0, 50_000])
        out.append(orjson.dumps(e))
    return out


def odd_payloads() -> list[bytes]:
    base = received("CMU-S01", "ODD")
    dig = digitized("CMU-S01", "ODD")
    pay = paid("CMU-S01", "ODD", method="online")
    variants = [
        {**base, "procedure_code": None},  # allowed null: reference path, still valid
        {**dig, "channel": None},  # a field digitized events do not have, even null
        {**base, "fee_required": "true"},
        {**base, "fee_required": 1},
        {**base, "event_id": 123},
        {**base, "event_id": ""},
        {**base, "event_id": "x" * 129},
        {**base, "dossier_id": "y" * 65},
        {**base, "unit_code": "NOWHERE"},
        {**base, "unit_code": unicodedata.normalize("NFD", "XÃ-1")},  # counted under NFC code
        {**base, "channel": "fax"},
        {**base, "occurred_at": "2023-02-30T08:00:00+07:00"},
        {**base, "occurred_at": "2023-03-01T08:00:00"},
        {**base, "occurred_at": "2023-03-01t08:00:00z"},
        {**base, "occurred_at": "2023-03-01T08:00:60+07:00"},
        {**base, "occurred_at": "2023-03-01 08:00:00+07:00"},
        {**base, "occurred_at": "2023-03-01T08:00:00.1234567+07:00"},
        {**base, "occurred_at": 1677722400},
        {**base, "occurred_at": "1969-12-31T23:00:00Z"},
        {**base, "payment_method": "online"},
        {**dig, "procedure_code": "X"},
        {**pay, "amount_vnd": -1},
        {**pay, "amount_vnd": 1.0},
        {**pay, "channel": "online"},
        {**pay, "payment_method": "cash"},
        {**base, "type": "dossier.closed"},
        {**base, "extra": 1},
        {k: v for k, v in base.items() if k != "fee_required"},
        {k: v for k, v in pay.items() if k != "payment_method"},
    ]
    raw = [orjson.dumps(v) for v in variants]
    raw += [
        orjson.dumps(pay).replace(b'"amount_vnd":50000', b'"amount_vnd":100000000000000000000'),
        b"not json",
        b"[1, 2]",
        b'{"event_id": "a", "event_id": "b"}',
        orjson.dumps(base, option=orjson.OPT_INDENT_2),  # line breaks inside: one row still
        orjson.dumps(base) + b" " + orjson.dumps(dig),  # two objects in one entry
        orjson.dumps(base).replace(b'"ODD"', b'"\\u00d0\\u00e9"', 1),
        orjson.dumps(base).replace(b'"ODD"', b'"\\ud800"', 1),
        b"\xff\xfe",
        b"",
    ]
    return raw


def entries_of(payloads: list[bytes]) -> list[tuple[bytes, list[bytes]]]:
    return [(f"{i}-0".encode(), [b"__data__", p]) for i, p in enumerate(payloads)]


def rows(batch) -> list[tuple]:
    return sorted((tuple(r.values()) for r in batch.to_arrow().to_pylist()), key=lambda r: repr(r))


def poison(batch) -> list[tuple[bytes, str, bytes]]:
    return sorted((p.entry_id, p.reason, p.payload) for p in batch.poison)


def test_clean_batches_take_the_fast_path_and_equal_the_reference():
    rng = random.Random(1)
    entries = entries_of(valid_events(rng, 2000))
    decoder = VectorDecoder(CODES, LocalDays(TZ))
    fast = decoder.decode(entries)
    assert decoder.fast_rows == 2000 and decoder.reference_rows == 0
    assert rows(fast) == rows(decode_entries(entries, CODES, TZ))
    assert len(fast) == 2000 and not fast.poison


@pytest.mark.parametrize("seed", range(8))
def test_mixed_batches_equal_the_reference(seed):
    rng = random.Random(seed)
    payloads = valid_events(rng, 300)
    odd = odd_payloads()
    for p in rng.sample(odd, rng.randrange(1, len(odd))):
        payloads.insert(rng.randrange(len(payloads) + 1), p)
    entries = entries_of(payloads)
    decoder = VectorDecoder(CODES, LocalDays(TZ))
    fast = decoder.decode(entries)
    reference = decode_entries(entries, CODES, TZ)
    assert rows(fast) == rows(reference)
    assert poison(fast) == poison(reference)


def test_each_odd_payload_alone_beside_valid_ones_equals_the_reference():
    rng = random.Random(5)
    valid = valid_events(rng, 20)
    for odd in odd_payloads():
        entries = entries_of([*valid, odd])
        decoder = VectorDecoder(CODES, LocalDays(TZ))
        fast = decoder.decode(entries)
        reference = decode_entries(entries, CODES, TZ)
        assert rows(fast) == rows(reference), odd
        assert poison(fast) == poison(reference), odd


@pytest.mark.parametrize(
    ("odd", "why"),
    [
        (None, "an entry without data"),
        (b"", "an empty payload"),
        (b'{"a": 1}\n{"b": 2}', "two lines in one entry"),
        (b'{"a": "x\ry"}', "a carriage return"),
        (b'{"a": null}', "a null"),
        (b'[{"a": 1}]', "not an object"),
        (b' {"a": 1}', "a leading space"),
    ],
)
def test_the_whole_batch_proof_refuses_what_the_rows_must_check(odd, why):
    plain = [b'{"a": 1}', b'{"b": "annul"}', b'{"c": 3}']
    assert _joined_if_plain(plain) == b'{"a": 1}\n{"b": "annul"}\n{"c": 3}'
    for at in range(len(plain) + 1):
        assert _joined_if_plain([*plain[:at], odd, *plain[at:]]) is None, (why, at)
