"""The dashboards' data path, proven against the real scoring service (real Redis stream, real
DuckDB file, real HTTP): the timeseries and CSV endpoints give exact numbers, and every Infinity
query of every generated panel returns rows carrying every field the panel uses."""

from __future__ import annotations

import csv
import importlib.util
import io
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from dvcpulse_cli.grafana_dashboards import ALERTS_DS, SCORING_DS, build_dashboards
from dvcpulse_common.registry import load_registry
from dvcpulse_common.settings import Settings
from dvcpulse_common.targets import load_targets
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring

from tests.conftest import REDIS_URL
from tests.factories import digitized, paid, received
from tests.helpers import ServerThread, wait_until

pytestmark = pytest.mark.integration

# A known event set: two days of a department, a district office the next week, a commune, and
# a department without fee procedures. 2023-03-01 is a Wednesday (campaign-2023 starts).
EVENTS = [
    received("CMU-S01", "G-D1", channel="online", fee=True, at="2023-03-01T09:00:00+07:00"),
    received("CMU-S01", "G-D2", channel="direct", fee=True, at="2023-03-01T10:00:00+07:00"),
    received("CMU-S01", "G-D3", channel="postal", fee=False, at="2023-03-01T11:00:00+07:00"),
    digitized("CMU-S01", "G-D1", at="2023-03-01T12:00:00+07:00"),
    paid("CMU-S01", "G-D1", method="online", at="2023-03-01T13:00:00+07:00"),
    paid("CMU-S01", "G-D2", method="offline", at="2023-03-01T13:00:00+07:00"),
    # 23:30 local on 2 March is 16:30 UTC: counts on the local day 2023-03-02.
    received("CMU-S01", "G-D4", channel="online", fee=True, at="2023-03-02T16:30:00+00:00"),
    digitized("CMU-S01", "G-D4", at="2023-03-03T08:00:00+07:00"),
    received("CMU-H01", "G-E1", channel="online", fee=False, at="2023-03-08T09:00:00+07:00"),
    received("CMU-H01-X07", "G-F1", channel="direct", fee=True, at="2023-03-08T09:00:00+07:00"),
    received("CMU-S02", "G-G1", channel="online", fee=False, at="2023-03-09T09:00:00+07:00"),
]
TOTAL_RECEIVED = 7


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One scoring service for the module (the queries only read), fed through real ingest."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        redis_url=REDIS_URL,
        data_dir=tmp_path_factory.mktemp("grafana") / "data",
        stream_prefix=prefix,
        block_ms=50,
        claim_idle_ms=1000,
    )
    registry = load_registry(settings.units_file, settings.level_labels)
    target_sets = load_targets(settings.targets_file)
    try:
        with (
            ServerThread(create_ingest(settings, registry)) as ingest,
            ServerThread(create_scoring(settings, registry, target_sets)) as scoring,
        ):
            resp = httpx.post(f"{ingest.url}/api/v1/events", json=EVENTS)
            assert resp.json() == {"accepted": len(EVENTS), "rejected": []}

            def loaded() -> bool:
                rows = httpx.get(f"{scoring.url}/api/v1/scores/levels").json()["rows"]
                total = rows[-1]
                return total["received"] == TOTAL_RECEIVED and total["digitized"] == 2

            wait_until(loaded, 30, what="the event set scored")
            yield {
                "scoring": scoring.url,
                "ingest": ingest.url,
                "settings": settings,
                "registry": registry,
                "target_sets": target_sets,
            }
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="module")
def scoring_url(stack: dict[str, Any]) -> str:
    return stack["scoring"]


def series(url: str, **params: str) -> dict[str, Any]:
    resp = httpx.get(f"{url}/api/v1/timeseries", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_timeseries_daily_and_cumulative_rates(scoring_url):
    body = series(scoring_url, unit="CMU-S01", window="campaign")
    assert body["window"]["id"] == "campaign-2023" and body["units"] == 1
    rows = body["rows"]
    assert len(rows) == 70  # every day of 01/03–09/05/2023, empty days included
    assert rows[0]["time"] == "2023-03-01T00:00:00+07:00"
    assert rows[-1]["time"] == "2023-05-09T00:00:00+07:00"
    d1, d2, d3 = rows[:3]
    assert [d1[k] for k in ("received", "online", "digitized", "fee_required", "paid_online")] == [
        3,
        1,
        1,
        2,
        1,
    ]
    assert d1["online_rate"] == 100 / 3 and d1["online_payment_rate"] == 50.0
    # D4 was received late on 2 March local time, digitized the next day: counts on 2 March.
    assert (d2["received"], d2["online"], d2["digitized"], d2["fee_required"]) == (1, 1, 1, 1)
    assert d2["online_payment_rate"] == 0.0  # one fee-bearing dossier, not paid online
    assert d2["cum_received"] == 4 and d2["cum_online_rate"] == 50.0
    assert d2["cum_online_payment_rate"] == 100 / 3  # 1 of 3 fee-bearing, from counts
    # A day without dossiers: no rate (never 0%), the cumulative carries on.
    assert d3["received"] == 0 and d3["online_rate"] is None
    assert d3["cum_online_rate"] == 50.0
    # CMU-S01 is a department: the campaign's province-level targets.
    assert (d1["target_online"], d1["target_digitization"], d1["target_online_payment"]) == (
        80.0,
        80.0,
        40.0,
    )


def test_timeseries_one_metric_weekly(scoring_url):
    body = series(scoring_url, window="campaign", metric="online", interval="week")
    rows = body["rows"]
    # ISO weeks: 2023-03-01 is in the week starting Monday 27 February.
    assert rows[0]["time"] == "2023-02-27T00:00:00+07:00"
    assert rows[1]["time"] == "2023-03-06T00:00:00+07:00"
    assert set(rows[0]) == {
        "time",
        "metric",
        "numerator",
        "denominator",
        "rate",
        "cum_numerator",
        "cum_denominator",
        "cum_rate",
        "target",
    }
    assert (rows[0]["numerator"], rows[0]["denominator"]) == (2, 4)
    assert (rows[1]["numerator"], rows[1]["denominator"]) == (2, 3)
    assert rows[1]["cum_rate"] == 4 * 100 / 7  # summed counts, then divided
    assert rows[0]["target"] is None  # all levels together: no single target


def test_timeseries_level_targets_and_errors(scoring_url):
    rows = series(scoring_url, window="campaign", level="commune", metric="online_payment")["rows"]
    week = next(r for r in rows if r["denominator"])
    assert (week["numerator"], week["denominator"], week["rate"], week["target"]) == (
        0,
        1,
        0.0,
        30.0,
    )
    for params, fld in (
        ({"unit": "NOPE"}, "unit"),
        ({"level": "galaxy"}, "level"),
        ({"window": "nope"}, "window"),
        ({"from": "2023-03-05", "to": "2023-03-01"}, "to"),
    ):
        resp = httpx.get(f"{scoring_url}/api/v1/timeseries", params=params)
        assert resp.status_code == 400 and resp.json()["field"] == fld, resp.text
    resp = httpx.get(f"{scoring_url}/api/v1/timeseries", params={"metric": "speed"})
    assert resp.status_code == 422 and "metric" in resp.text


def test_scores_as_csv(scoring_url):
    by_param = httpx.get(
        f"{scoring_url}/api/v1/scores", params={"window": "campaign", "format": "csv"}
    )
    by_accept = httpx.get(
        f"{scoring_url}/api/v1/scores",
        params={"window": "campaign"},
        headers={"Accept": "text/csv"},
    )
    as_json = httpx.get(f"{scoring_url}/api/v1/scores", params={"window": "campaign"}).json()
    assert by_param.headers["content-type"].startswith("text/csv")
    assert by_param.text == by_accept.text
    rows = {r["unit_code"]: r for r in csv.DictReader(io.StringIO(by_param.text))}
    assert len(rows) == len(as_json["rows"])
    s01 = rows["CMU-S01"]
    assert (s01["received"], s01["fee_required"], s01["paid_online"]) == ("4", "3", "1")
    assert float(s01["online_payment_rate"]) == 100 / 3  # unrounded, as in JSON
    assert (s01["target_online"], s01["status_online"], s01["window"]) == (
        "80",
        "below_target",
        "campaign-2023",
    )
    # No fee-bearing dossier: payment rate empty (N/A), never 0.
    g = rows["CMU-S02"]
    assert g["online_payment_rate"] == "" and g["status_online_payment"] == "not_applicable"
    levels = list(
        csv.DictReader(
            io.StringIO(
                httpx.get(f"{scoring_url}/api/v1/scores/levels", params={"format": "csv"}).text
            )
        )
    )
    assert [r["level"] for r in levels] == ["province", "district", "commune", "total"]
    assert levels[-1]["received"] == str(TOTAL_RECEIVED)
    bad = httpx.get(f"{scoring_url}/api/v1/scores", params={"format": "xml"})
    assert bad.status_code == 400 and bad.json()["field"] == "format"
    # Errors stay JSON even when CSV is asked: they name the field.
    err = httpx.get(f"{scoring_url}/api/v1/scores", params={"format": "csv", "level": "x"})
    assert err.status_code == 400 and err.json()["field"] == "level"


# -- every panel's query, executed ------------------------------------------------------------

VARIABLE_VALUES = {"window": "campaign", "interval": "day"}


def resolve(value: str, variables: dict[str, str]) -> str:
    for name, val in variables.items():
        value = value.replace(f"${{{name}:raw}}", val).replace(f"${{{name}}}", val)
        value = value.replace(f"${name}", val)
    assert "$" not in value, f"unresolved variable in {value!r}"
    return value


def pick(row: dict[str, Any], selector: str) -> Any:
    """Infinity's dotted selector ("status.online") on a JSON row; KeyError when missing."""
    value: Any = row
    for part in selector.split("."):
        value = value[part]
    return value


def run_query(query: dict[str, Any], bases: dict[str, str], variables: dict[str, str]):
    """Do what Infinity does for a URL query: method, base URL + relative URL, params,
    headers, then the root selector (JSON) or the CSV header."""
    assert query["source"] == "url" and query["type"] in {"json", "csv"}
    opts = query["url_options"]
    assert opts["method"] == "GET"
    base = bases[query["datasource"]["uid"]]
    params = {p["key"]: resolve(p["value"], variables) for p in opts["params"]}
    headers = {h["key"]: h["value"] for h in opts["headers"]}
    resp = httpx.request("GET", base + query["url"], params=params, headers=headers)
    assert resp.status_code == 200, f"{query['url']} {params}: {resp.text[:300]}"
    if query["type"] == "csv":
        assert resp.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(resp.text)))
    body = resp.json()
    return pick(body, query["root_selector"]) if query["root_selector"] else body


def check_type(value: Any, kind: str, where: str) -> None:
    if value is None or value == "":
        assert kind != "timestamp" or "resolved_at" in where or "notified" in where, where
        return
    if kind == "number":
        float(value)  # a JSON number, or a CSV cell that parses as one
        assert not isinstance(value, bool), where
    elif kind == "timestamp":
        assert datetime.fromisoformat(value).utcoffset() is not None, f"{where}: {value!r}"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{where}: {value!r}"
    else:
        assert isinstance(value, str), f"{where}: {value!r}"


def all_queries(model: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    settings = Settings()
    registry = load_registry(settings.units_file, settings.level_labels)
    return build_dashboards(registry, load_targets(settings.targets_file))


def test_every_scoring_panel_query_returns_its_fields(scoring_url, dashboards):
    bases = {SCORING_DS: scoring_url}
    unit_var = dashboards["unit.json"]["templating"]["list"][0]
    # The `unit` variable's own query first: its values feed the drill-down panels.
    choices = run_query(unit_var["query"]["infinityQuery"], bases, {})
    by_text = {c["selector"]: c["text"] for c in unit_var["query"]["infinityQuery"]["columns"]}
    assert set(by_text.values()) == {"__text", "__value"}
    assert len(choices) == 129 and all(c["code"] and c["name"] for c in choices)
    variables = {**VARIABLE_VALUES, "unit": "CMU-S01"}
    executed = 0
    for name, model in dashboards.items():
        if name == "alerts.json":
            continue
        for title, query in all_queries(model):
            rows = run_query(query, bases, variables)
            assert rows, f"{name} / {title}: no rows"
            for column in query["columns"]:
                for i, row in enumerate(rows):
                    where = f"{name} / {title} / row {i} / {column['selector']}"
                    try:
                        value = pick(row, column["selector"])
                    except KeyError:
                        pytest.fail(f"{where}: field missing")
                    check_type(value, column["type"], where)
            executed += 1
    assert executed >= 25  # gauges, tables, trends: every panel ran


def test_gauges_read_the_row_of_their_level(scoring_url, dashboards):
    """A gauge reduces the level rows with "first" (level filter) or "last" (the total): the
    row it reads must be that level's, with the exact rate from summed counts."""
    overview = dashboards["overview.json"]
    seen = set()
    for panel in overview["panels"]:
        if panel["type"] != "gauge":
            continue
        query = panel["targets"][0]
        rows = run_query(query, {SCORING_DS: scoring_url}, VARIABLE_VALUES)
        calc = panel["options"]["reduceOptions"]["calcs"]
        level = next(
            (p["value"] for p in query["url_options"]["params"] if p["key"] == "level"), None
        )
        row = rows[0] if calc == ["first"] else rows[-1]
        assert row["level"] == (level or "total"), panel["title"]
        seen.add(row["level"])
    assert seen == {"province", "district", "commune", "total"}
    province = run_query(
        next(p for p in overview["panels"] if p["type"] == "gauge")["targets"][0],
        {SCORING_DS: scoring_url},
        VARIABLE_VALUES,
    )[0]
    # Departments: CMU-S01 (4 dossiers, 2 online) and CMU-S02 (1, online) -> 3 of 5.
    assert province["online_rate"] == 60.0


ALERTS_APP = importlib.util.find_spec("dvcpulse_alerts.app") is not None


def test_alerts_panels_ask_for_the_documented_fields(dashboards):
    """Shape of the alerts panels against issue 3's documented fields (see the next test for
    the live service when it exists)."""
    documented = {
        "unit_code",
        "unit_name",
        "level",
        "metric",
        "kind",
        "severity",
        "value",
        "target",
        "window",
        "started_at",
        "resolved_at",
        "last_notified_at",
        "silenced",
    }
    queries = list(all_queries(dashboards["alerts.json"]))
    assert len(queries) == 3
    for title, query in queries:
        assert query["datasource"]["uid"] == ALERTS_DS and query["url"] == "/api/v1/alerts"
        states = {p["value"] for p in query["url_options"]["params"] if p["key"] == "state"}
        assert states <= {"firing", "resolved"} and states, title
        assert {c["selector"] for c in query["columns"]} <= documented
    tables = [q for t, q in queries if "Cảnh báo" in t and len(q["columns"]) > 1]
    assert all({c["selector"] for c in q["columns"]} == documented for q in tables)


@pytest.mark.skipif(not ALERTS_APP, reason="dvcpulse_alerts.app is not built yet (issue 3)")
def test_alerts_panel_queries_against_the_alerts_service(dashboards, stack):
    """The real alerts service over the same streams: a department at 0% online fires an
    alert, and the panels' queries return it with every field they show."""
    from dvcpulse_alerts.app import create_app as create_alerts  # type: ignore[import-not-found]

    app = create_alerts(stack["settings"], stack["registry"], stack["target_sets"])
    with ServerThread(app) as alerts:
        # Sent after alerts started, so its score update reaches the alerts consumer group.
        event = received("CMU-S03", "G-Z1", channel="direct", at="2023-03-10T09:00:00+07:00")
        assert httpx.post(f"{stack['ingest']}/api/v1/events", json=[event]).status_code == 202

        def s03_firing() -> bool:
            url = f"{alerts.url}/api/v1/alerts"
            firing = httpx.get(url, params={"state": "firing"}).json()
            return any(a["unit_code"] == "CMU-S03" for a in firing)

        wait_until(s03_firing, 30, 0.2, what="CMU-S03 firing")
        executed = 0
        for title, query in all_queries(dashboards["alerts.json"]):
            rows = run_query(query, {ALERTS_DS: alerts.url}, {})
            assert isinstance(rows, list), title
            firing = {p["value"] for p in query["url_options"]["params"]} == {"firing"}
            assert rows or not firing, f"{title}: no rows"
            for row in rows:
                for column in query["columns"]:
                    where = f"{title}/{column['selector']}"
                    try:
                        value = pick(row, column["selector"])
                    except KeyError:
                        pytest.fail(f"{where}: field missing")
                    check_type(value, column["type"], where)
            executed += 1
        assert executed == 3


def test_dashboard_files_are_where_compose_mounts_them():
    root = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
    assert {p.name for p in root.glob("*.json")} == {
        "overview.json",
        "leaderboard.json",
        "unit.json",
        "alerts.json",
    }
