"""The generated dashboards: committed JSON equals the generator's output, thresholds come from
the targets file, every query goes through Infinity to a real route of the services."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from dvcpulse_cli.grafana_cli import datasource_payloads
from dvcpulse_cli.grafana_dashboards import (
    ALERTS_DS,
    INFINITY,
    SCORING_DS,
    build_dashboards,
    render,
)
from dvcpulse_common.registry import Registry, load_registry
from dvcpulse_common.settings import CONFIG_DIR, DEFAULT_LEVEL_LABELS
from dvcpulse_common.targets import load_targets
from dvcpulse_shared.units import Unit

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"
UNITS = CONFIG_DIR / "ca_mau" / "units.csv"
TARGETS = CONFIG_DIR / "ca_mau" / "targets.yaml"


@pytest.fixture(scope="module")
def models():
    registry = load_registry(UNITS, DEFAULT_LEVEL_LABELS)
    return build_dashboards(registry, load_targets(TARGETS))


def test_committed_json_is_the_generators_output(models):
    assert {p.name for p in DASHBOARDS.glob("*.json")} == set(models)
    for name, model in models.items():
        committed = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert committed == render(model), (
            f"grafana/dashboards/{name} is stale: run `uv run dvcpulse grafana generate`"
        )


def test_generation_is_deterministic(models):
    registry = load_registry(UNITS, DEFAULT_LEVEL_LABELS)
    again = build_dashboards(registry, load_targets(TARGETS))
    assert {k: render(v) for k, v in again.items()} == {k: render(v) for k, v in models.items()}


def queries(model):
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_every_query_is_an_infinity_url_query_on_a_real_route(models):
    from dvcpulse_common.settings import Settings
    from dvcpulse_scoring.app import create_app

    # Building the app connects nothing (no lifespan runs): only its routes are read.
    settings = Settings(data_dir=REPO / "does-not-exist")
    routes = {
        r.path
        for r in create_app(
            settings, load_registry(UNITS, DEFAULT_LEVEL_LABELS), load_targets(TARGETS)
        ).routes
    }
    count = 0
    for name, model in models.items():
        for panel, q in queries(model):
            assert q["datasource"] == {"type": INFINITY, "uid": panel["datasource"]["uid"]}
            assert q["source"] == "url" and q["url_options"]["method"] == "GET"
            assert q["url"].startswith("/api/v1/"), q["url"]
            if q["datasource"]["uid"] == SCORING_DS:
                assert q["url"] in routes, f"{name}: {q['url']} is not a scoring route"
            else:
                assert q["datasource"]["uid"] == ALERTS_DS and q["url"] == "/api/v1/alerts"
            assert q["columns"], f"{name} / {panel['title']}: no columns"
            count += 1
    assert count >= 30


def campaign_levels():
    data = yaml.safe_load(TARGETS.read_text(encoding="utf-8"))
    campaign = next(s for s in data["target_sets"] if s["kind"] == "campaign")
    return campaign["levels"]


def test_leaderboard_colours_follow_the_targets_file(models):
    levels = campaign_levels()
    tables = [p for p in models["leaderboard.json"]["panels"] if p["type"] == "table"]
    assert [t["title"] for t in tables] == [
        "Bảng xếp hạng — Cấp tỉnh",
        "Bảng xếp hạng — Cấp huyện",
        "Bảng xếp hạng — Cấp xã",
    ]
    for table, level in zip(tables, ("province", "district", "commune"), strict=True):
        params = {p["key"]: p["value"] for p in table["targets"][0]["url_options"]["params"]}
        assert params["level"] == level
        by_name = {
            o["matcher"]["options"]: o["properties"] for o in table["fieldConfig"]["overrides"]
        }
        for metric, label in (
            ("online", "Tỷ lệ hồ sơ trực tuyến"),
            ("digitization", "Tỷ lệ số hóa"),
            ("online_payment", "Tỷ lệ thanh toán trực tuyến"),
        ):
            props = {p["id"]: p["value"] for p in by_name[label]}
            steps = props["thresholds"]["steps"]
            # red exactly at 0%, amber above 0 and below target, green from the target
            assert [s["color"] for s in steps] == ["red", "orange", "green"]
            assert steps[0]["value"] is None and 0 < steps[1]["value"] < 0.001
            assert steps[2]["value"] == float(levels[level][metric])
            # null (no fee-bearing dossiers, or no data) shows "N/A", never 0%
            assert props["mappings"][0]["options"] == {"match": "null", "result": {"text": "N/A"}}
        assert table["options"]["sortBy"]


def test_overview_has_three_rates_per_level_and_total(models):
    gauges = [p for p in models["overview.json"]["panels"] if p["type"] == "gauge"]
    assert len(gauges) == 12
    levels = campaign_levels()
    province_online = next(g for g in gauges if g["title"] == "Cấp tỉnh — Tỷ lệ hồ sơ trực tuyến")
    steps = province_online["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == float(levels["province"]["online"]) == 80.0
    total = [g for g in gauges if g["title"].startswith("Toàn tỉnh")]
    assert len(total) == 3 and all(
        g["options"]["reduceOptions"]["calcs"] == ["last"] for g in total
    )
    csv_tables = [q for _, q in queries(models["overview.json"]) if q["type"] == "csv"]
    assert csv_tables and csv_tables[0]["url_options"]["headers"][0]["value"] == "text/csv"


def test_drilldown_has_a_unit_variable_fed_by_the_registry(models):
    variables = {v["name"]: v for v in models["unit.json"]["templating"]["list"]}
    assert set(variables) == {"unit", "window", "interval"}
    unit = variables["unit"]
    assert unit["type"] == "query" and unit["query"]["infinityQuery"]["url"] == "/api/v1/units"
    for _, q in queries(models["unit.json"]):
        params = {p["key"]: p["value"] for p in q["url_options"]["params"]}
        assert params["unit"] == "${unit:raw}"
    window_values = [o["value"] for o in variables["window"]["options"]]
    assert window_values == ["campaign", "campaign-2023", "annual-2023", "annual-2022"]


def test_two_level_registry_after_the_2025_reform():
    units = [
        Unit(code="P", name="UBND tỉnh", level="root"),
        Unit(code="P-S1", name="Sở A", level="province", parent_code="P"),
        Unit(code="P-X1", name="Xã B", level="commune", parent_code="P", has_fee_procedures=False),
    ]
    registry = Registry.build(units, DEFAULT_LEVEL_LABELS)
    models = build_dashboards(registry, load_targets(TARGETS))
    tables = [p["title"] for p in models["leaderboard.json"]["panels"] if p["type"] == "table"]
    assert tables == ["Bảng xếp hạng — Cấp tỉnh", "Bảng xếp hạng — Cấp xã"]
    gauges = [p for p in models["overview.json"]["panels"] if p["type"] == "gauge"]
    assert len(gauges) == 9  # two levels and the total, three rates each


def test_file_provisioning_matches_the_cli_data_sources():
    data = yaml.safe_load(
        (REPO / "grafana/provisioning/datasources/dvcpulse.yaml").read_text(encoding="utf-8")
    )
    from_files = {d["uid"]: d for d in data["datasources"]}
    for wanted in datasource_payloads("http://scoring:8002", "http://alerts:8003"):
        got = from_files[wanted["uid"]]
        for key in ("name", "type", "url", "access", "jsonData"):
            assert got[key] == wanted[key], (wanted["uid"], key)
    providers = yaml.safe_load(
        (REPO / "grafana/provisioning/dashboards/dvcpulse.yaml").read_text(encoding="utf-8")
    )["providers"]
    assert providers[0]["folderUid"] == "dvcpulse"
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/dvcpulse"


def test_dashboards_are_valid_json_with_unique_panel_ids():
    for path in DASHBOARDS.glob("*.json"):
        model = json.loads(path.read_text(encoding="utf-8"))
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), path.name
        assert model["uid"].startswith("dvcpulse-") and model["title"]
