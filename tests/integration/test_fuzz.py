"""Fuzzing: the HTTP APIs from their own OpenAPI documents (schemathesis) and the event contract
(hypothesis). No input may cause a 500, crash a service, or get an invalid event accepted."""

from __future__ import annotations

import json
import string

import httpx
import orjson
import pytest
import schemathesis
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_ingest.domain import validate_events
from dvcpulse_scoring.app import create_app as create_scoring
from dvcpulse_shared.events import EventAdapter
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import ServerThread

pytestmark = pytest.mark.integration

FUZZ = hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def fuzz_operations(base_url: str, skip: set[str] = frozenset()) -> int:
    """Every operation of the live OpenAPI document, with generated inputs; returns how many
    operations were exercised."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    exercised = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in skip:
            continue

        @given(case=operation.as_strategy())
        @FUZZ
        def call(case):
            # Sent with httpx: schemathesis' requests transport trips over the urllib3-future
            # that grafana-client's HTTP stack installs.
            kw = case.as_transport_kwargs(base_url=base_url)
            body = kw.get("data") if kw.get("json") is None else json.dumps(kw["json"]).encode()
            response = httpx.request(
                kw["method"],
                kw["url"],
                params=kw.get("params"),
                headers=kw.get("headers"),
                cookies=kw.get("cookies"),
                content=body,
                timeout=30,
            )
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"

        call()
        exercised += 1
    return exercised


def test_ingest_never_answers_500(settings, registry):
    with ServerThread(create_ingest(settings, registry)) as server:
        assert fuzz_operations(server.url) >= 2


def test_scoring_never_answers_500(settings, registry, target_sets):
    with ServerThread(create_scoring(settings, registry, target_sets)) as server:
        # Server-sent event streams never end; they are covered by the scoreboard tests.
        assert (
            fuzz_operations(
                server.url, skip={"/api/v1/stream", "/api/v1/live", "/api/v1/events/stream"}
            )
            >= 5
        )


UNITS = {"CMU-S01", "CMU-H01-X07"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
near_events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.text(max_size=140) | json_values,
        "type": st.sampled_from(["dossier.received", "dossier.digitized", "dossier.paid", "x"])
        | json_values,
        "dossier_id": st.text(max_size=70) | json_values,
        "unit_code": st.sampled_from(sorted(UNITS))
        | st.text(alphabet=string.printable, max_size=10),
        "occurred_at": st.sampled_from(
            [
                "2023-03-02T09:00:00+07:00",
                "2023-03-02T09:00:00",
                "2023-03-02T09:00:00Z",
                "2023-13-02T09:00:00+07:00",
            ]
        )
        | json_values,
        "channel": st.sampled_from(["online", "direct", "postal", "fax"]) | json_values,
        "fee_required": st.booleans() | json_values,
        "payment_method": st.sampled_from(["online", "offline"]) | json_values,
        "amount_vnd": st.integers(min_value=-5, max_value=10**12) | json_values,
        "procedure_code": st.text(max_size=70) | json_values,
        "extra": json_values,
    },
)


@given(st.lists(near_events | json_values, max_size=8))
@hsettings(max_examples=400, deadline=None)
def test_no_accepted_event_violates_the_contract(items):
    out = validate_events(items, UNITS)
    assert len(out.events) + len(out.rejected) == len(items)
    for event in out.events:
        data = orjson.loads(EventAdapter.dump_json(event))
        # What was accepted round-trips through the contract and names a known unit.
        assert EventAdapter.validate_json(orjson.dumps(data)) == event
        assert event.unit_code in UNITS and event.occurred_at.utcoffset() is not None
        assert 1 <= len(event.event_id) <= 128 and 1 <= len(event.dossier_id) <= 64
    for rejection in out.rejected:
        assert rejection.errors and all(e.message for e in rejection.errors)
