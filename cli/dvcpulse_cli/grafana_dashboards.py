"""Grafana dashboards as code: four dashboards built from the registry's levels and the targets
file, written to grafana/dashboards/*.json (`dvcpulse grafana generate`).

Every panel reads the scoring (or alerts) HTTP API through the Infinity data source; Grafana
never opens the DuckDB file (it has one writer process). Query URLs are relative: the data
source's URL is the service's base URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dvcpulse_common.registry import Registry
from dvcpulse_shared.targets import MetricTargets, TargetSet, TargetSetKind

INFINITY = "yesoreyeram-infinity-datasource"
SCORING_DS = "dvcpulse-scoring"
ALERTS_DS = "dvcpulse-alerts"
FOLDER_UID = "dvcpulse"
FOLDER_TITLE = "dvcpulse — Dịch vụ công trực tuyến"
REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
# Where the alerts service's list of alerts sits in its JSON answer ("" = the answer is a list).
ALERTS_ROOT = ""
ALERT_FIELDS = (
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
)

METRICS = {
    "online": "Tỷ lệ hồ sơ trực tuyến",
    "digitization": "Tỷ lệ số hóa",
    "online_payment": "Tỷ lệ thanh toán trực tuyến",
}
COUNTS = {
    "received": "Hồ sơ tiếp nhận",
    "online": "Trực tuyến",
    "digitized": "Đã số hóa",
    "fee_required": "Có phí, lệ phí",
    "paid_online": "Thanh toán trực tuyến",
}
STATUS_TEXT = {
    "met": ("Đạt", "green"),
    "below_target": ("Chưa đạt", "orange"),
    "zero": ("0%", "red"),
    "no_data": ("Chưa có dữ liệu", "text"),
    "not_applicable": ("N/A", "text"),
}
# Smallest non-zero rate is far above this: the red step covers exactly 0%.
ABOVE_ZERO = 1e-9


@dataclass(frozen=True)
class Column:
    selector: str
    text: str
    type: str = "string"  # string | number | timestamp | boolean


def thresholds_campaign(target_sets: list[TargetSet], pinned: str | None) -> TargetSet | None:
    """The campaign whose targets colour the panels: the pinned one, else the latest started.
    (Not "today's": the generated JSON must not change with the date it is generated on.)"""
    if pinned:
        return next((s for s in target_sets if s.id == pinned), None)
    campaigns = [s for s in target_sets if s.kind is TargetSetKind.campaign]
    return max(campaigns, key=lambda s: s.valid_from) if campaigns else None


def rate_thresholds(target: Decimal | None) -> dict[str, Any]:
    """Red at 0%, amber above 0 and below target, green at or above the target."""
    steps: list[dict[str, Any]] = [{"color": "red", "value": None}]
    if target is None or target == 0:
        steps.append({"color": "green", "value": ABOVE_ZERO})
    else:
        steps += [
            {"color": "orange", "value": ABOVE_ZERO},
            {"color": "green", "value": float(target)},
        ]
    return {"mode": "absolute", "steps": steps}


def na_mapping() -> list[dict[str, Any]]:
    # A null rate is "no data" or "not applicable" (no fee-bearing dossiers): never 0%.
    return [{"type": "special", "options": {"match": "null", "result": {"text": "N/A"}}}]


def infinity_query(
    ref: str,
    path: str,
    params: dict[str, str],
    columns: list[Column],
    *,
    datasource: str = SCORING_DS,
    kind: str = "json",
    fmt: str = "table",
    root: str = "rows",
) -> dict[str, Any]:
    headers = [{"key": "Accept", "value": "text/csv" if kind == "csv" else "application/json"}]
    return {
        "refId": ref,
        "datasource": {"type": INFINITY, "uid": datasource},
        "type": kind,
        "source": "url",
        "parser": "backend",
        "format": fmt,
        "url": path,
        "url_options": {
            "method": "GET",
            "data": "",
            "params": [{"key": k, "value": v} for k, v in params.items()],
            "headers": headers,
        },
        "root_selector": root if kind == "json" else "",
        "columns": [{"selector": c.selector, "text": c.text, "type": c.type} for c in columns],
        "filters": [],
    }


class Layout:
    """Left-to-right, top-to-bottom grid placement (24 columns wide)."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> dict[str, Any]:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {
            "type": "row",
            "title": title,
            "id": self.new_id(),
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            "panels": [],
        }
        self.y += 1
        return panel

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def panel(
    layout: Layout,
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    *,
    w: int,
    h: int,
    defaults: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    description: str = "",
    datasource: str = SCORING_DS,
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "id": layout.new_id(),
        "gridPos": layout.place(w, h),
        "datasource": {"type": INFINITY, "uid": datasource},
        "targets": targets,
        "fieldConfig": {"defaults": defaults or {}, "overrides": overrides or []},
        "options": options or {},
    }


def window_variable(target_sets: list[TargetSet]) -> dict[str, Any]:
    """The scoring window: the active campaign or any target set of the targets file (the
    API's `window` values)."""
    choices = [("Chiến dịch đang áp dụng", "campaign")]
    choices += [(s.name, s.id) for s in target_sets]
    options = [
        {"text": text, "value": value, "selected": i == 0}
        for i, (text, value) in enumerate(choices)
    ]
    return {
        "type": "custom",
        "name": "window",
        "label": "Kỳ đánh giá",
        "query": ",".join(f"{text} : {value}" for text, value in choices),
        "current": {"text": choices[0][0], "value": choices[0][1]},
        "options": options,
        "hide": 0,
        "multi": False,
        "includeAll": False,
    }


def window_param() -> dict[str, str]:
    # raw: the ids are URL-safe, and Grafana must not quote them.
    return {"window": "${window:raw}"}


def _utc(day: date, at: time) -> str:
    local = datetime.combine(day, at, ZoneInfo("Asia/Ho_Chi_Minh"))
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def dashboard(
    uid: str,
    title: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    campaign: TargetSet | None,
    tags: list[str],
    description: str,
) -> dict[str, Any]:
    # The time picker only zooms the charts; the `window` variable chooses the data.
    time_range = (
        {"from": _utc(campaign.valid_from, time(0)), "to": _utc(campaign.valid_to, time(23, 59))}
        if campaign
        else {"from": "now-90d", "to": "now"}
    )
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["dvcpulse", *tags],
        "timezone": "Asia/Ho_Chi_Minh",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": time_range,
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["dvcpulse"], "asDropdown": True, "title": "dvcpulse"}
        ],
        "panels": panels,
    }


def level_rows_query(ref: str, level: str | None, metric_cols: list[Column]) -> dict[str, Any]:
    params = window_param()
    if level:
        params["level"] = level
    return infinity_query(ref, "/api/v1/scores/levels", params, metric_cols)


def overview(registry: Registry, target_sets: list[TargetSet], campaign: TargetSet | None):
    layout = Layout()
    panels: list[dict[str, Any]] = []
    groups = [(lv.code, lv.label) for lv in registry.levels] + [(None, "Toàn tỉnh")]
    for level, label in groups:
        panels.append(layout.row(f"{label}: ba chỉ tiêu so với mục tiêu"))
        targets = (
            campaign.levels.get(level, MetricTargets()) if campaign and level else MetricTargets()
        )
        for metric, metric_label in METRICS.items():
            target = getattr(targets, metric)
            column = Column(f"{metric}_rate", metric_label, "number")
            suffix = f" (mục tiêu {target}%)" if target is not None else " (không có mục tiêu)"
            # Rows are the level's row then the `total` row (of the selected units):
            # "first" picks the level's own row; without a level filter "last" is the total.
            calc = "first" if level else "last"
            panels.append(
                panel(
                    layout,
                    "gauge",
                    f"{label} — {metric_label}",
                    [level_rows_query("A", level, [Column("level", "Cấp"), column])],
                    w=8,
                    h=6,
                    description=f"Tổng số đếm của cấp, rồi chia; {metric_label.lower()}{suffix}.",
                    defaults={
                        "unit": "percent",
                        "min": 0,
                        "max": 100,
                        "decimals": 2,
                        "noValue": "N/A",
                        "mappings": na_mapping(),
                        "thresholds": rate_thresholds(target),
                        "color": {"mode": "thresholds"},
                    },
                    options={
                        "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
                        "showThresholdMarkers": True,
                        "showThresholdLabels": False,
                    },
                )
            )
    panels.append(layout.row("Số hồ sơ theo cấp"))
    count_cols = [Column("label", "Cấp"), Column("units", "Số đơn vị", "number")]
    count_cols += [Column(k, v, "number") for k, v in COUNTS.items()]
    panels.append(
        panel(
            layout,
            "table",
            "Số hồ sơ theo cấp (CSV)",
            [
                infinity_query(
                    "A",
                    "/api/v1/scores/levels",
                    {**window_param(), "format": "csv"},
                    count_cols,
                    kind="csv",
                )
            ],
            w=24,
            h=7,
            description="Số đếm của từng cấp và toàn tỉnh (dòng cuối là tổng các cấp).",
            defaults={"custom": {"align": "auto"}},
        )
    )
    panels.append(layout.row("Xu hướng trong kỳ"))
    trend_cols = [Column("time", "Thời gian", "timestamp")]
    trend_cols += [Column(f"cum_{m}_rate", f"{t} (lũy kế)", "number") for m, t in METRICS.items()]
    panels.append(
        panel(
            layout,
            "timeseries",
            "Toàn tỉnh — tỷ lệ lũy kế theo ngày",
            [
                infinity_query(
                    "A",
                    "/api/v1/timeseries",
                    {**window_param(), "interval": "day"},
                    trend_cols,
                    fmt="timeseries",
                )
            ],
            w=24,
            h=9,
            defaults={"unit": "percent", "min": 0, "max": 100, "decimals": 2},
        )
    )
    for level, label in groups[:-1]:
        cols = [Column("time", "Thời gian", "timestamp")]
        for metric, metric_label in METRICS.items():
            cols.append(Column(f"cum_{metric}_rate", f"{metric_label} (lũy kế)", "number"))
            cols.append(Column(f"target_{metric}", f"Mục tiêu — {metric_label}", "number"))
        panels.append(
            panel(
                layout,
                "timeseries",
                f"{label} — tỷ lệ lũy kế so với mục tiêu",
                [
                    infinity_query(
                        "A",
                        "/api/v1/timeseries",
                        {**window_param(), "level": level, "interval": "day"},
                        cols,
                        fmt="timeseries",
                    )
                ],
                w=8,
                h=9,
                defaults={"unit": "percent", "min": 0, "max": 100, "decimals": 2},
                overrides=[
                    {
                        "matcher": {"id": "byRegexp", "options": "^Mục tiêu.*"},
                        "properties": [
                            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
                        ],
                    }
                ],
            )
        )
    counts_cols = [Column("time", "Thời gian", "timestamp")]
    counts_cols += [Column(k, v, "number") for k, v in COUNTS.items()]
    panels.append(
        panel(
            layout,
            "barchart",
            "Số hồ sơ tiếp nhận theo tuần",
            [
                infinity_query(
                    "A",
                    "/api/v1/timeseries",
                    {**window_param(), "interval": "week"},
                    counts_cols,
                    fmt="table",
                )
            ],
            w=24,
            h=8,
            options={"xField": "Thời gian", "stacking": "none"},
        )
    )
    return dashboard(
        "dvcpulse-overview",
        "Tổng quan tỉnh — Dịch vụ công trực tuyến",
        panels,
        [window_variable(target_sets)],
        campaign,
        ["tong-quan"],
        "Ba tỷ lệ theo cấp và toàn tỉnh so với mục tiêu của kỳ; ngưỡng màu theo tệp mục tiêu.",
    )


def rate_overrides(targets: MetricTargets) -> list[dict[str, Any]]:
    out = []
    for metric, label in METRICS.items():
        out.append(
            {
                "matcher": {"id": "byName", "options": label},
                "properties": [
                    {"id": "unit", "value": "percent"},
                    {"id": "decimals", "value": 2},
                    {"id": "thresholds", "value": rate_thresholds(getattr(targets, metric))},
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    {"id": "mappings", "value": na_mapping()},
                ],
            }
        )
    status_map = {
        "type": "value",
        "options": {
            key: {"text": text, "color": colour, "index": i}
            for i, (key, (text, colour)) in enumerate(STATUS_TEXT.items())
        },
    }
    out.append(
        {
            "matcher": {"id": "byRegexp", "options": "^Đánh giá.*"},
            "properties": [
                {"id": "mappings", "value": [status_map]},
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            ],
        }
    )
    return out


def leaderboard(registry: Registry, target_sets: list[TargetSet], campaign: TargetSet | None):
    layout = Layout()
    panels: list[dict[str, Any]] = []
    cols = [Column("unit_code", "Mã"), Column("unit_name", "Đơn vị")]
    cols += [Column(f"{m}_rate", t, "number") for m, t in METRICS.items()]
    cols += [Column(f"status.{m}", f"Đánh giá — {t}") for m, t in METRICS.items()]
    cols += [Column(k, v, "number") for k, v in COUNTS.items()]
    for level in registry.levels:
        targets = campaign.levels.get(level.code, MetricTargets()) if campaign else MetricTargets()
        panels.append(
            panel(
                layout,
                "table",
                f"Bảng xếp hạng — {level.label}",
                [
                    infinity_query(
                        "A", "/api/v1/scores", {**window_param(), "level": level.code}, cols
                    )
                ],
                w=24,
                h=12,
                description="Đỏ: 0%; cam: dưới mục tiêu; xanh: đạt. N/A: không có hồ sơ có phí "
                "(hoặc chưa có hồ sơ). Bấm tiêu đề cột để sắp xếp.",
                defaults={"custom": {"align": "auto", "filterable": True}},
                overrides=rate_overrides(targets),
                options={
                    "showHeader": True,
                    "sortBy": [{"displayName": METRICS["online"], "desc": True}],
                },
            )
        )
    return dashboard(
        "dvcpulse-leaderboard",
        "Bảng xếp hạng đơn vị theo cấp",
        panels,
        [window_variable(target_sets)],
        campaign,
        ["xep-hang"],
        "Mỗi đơn vị với ba tỷ lệ, tô màu theo mục tiêu của cấp.",
    )


def unit_variable() -> dict[str, Any]:
    query = infinity_query(
        "unit",
        "/api/v1/units",
        {},
        [Column("name", "__text"), Column("code", "__value")],
        root="",
    )
    return {
        "type": "query",
        "name": "unit",
        "label": "Đơn vị",
        "datasource": {"type": INFINITY, "uid": SCORING_DS},
        "query": {"queryType": "infinity", "infinityQuery": query, "refId": "unit"},
        "refresh": 1,
        "sort": 0,
        "hide": 0,
        "multi": False,
        "includeAll": False,
        "current": {},
        "options": [],
    }


def interval_variable() -> dict[str, Any]:
    choices = [("Ngày", "day"), ("Tuần", "week")]
    return {
        "type": "custom",
        "name": "interval",
        "label": "Chu kỳ",
        "query": ",".join(f"{t} : {v}" for t, v in choices),
        "current": {"text": "Ngày", "value": "day"},
        "options": [{"text": t, "value": v, "selected": v == "day"} for t, v in choices],
        "hide": 0,
        "multi": False,
        "includeAll": False,
    }


def drilldown(registry: Registry, target_sets: list[TargetSet], campaign: TargetSet | None):
    layout = Layout()
    panels: list[dict[str, Any]] = []
    unit_params = {**window_param(), "unit": "${unit:raw}"}
    for metric, label in METRICS.items():
        panels.append(
            panel(
                layout,
                "stat",
                label,
                [
                    infinity_query(
                        "A",
                        "/api/v1/scores",
                        unit_params,
                        [
                            Column(f"{metric}_rate", label, "number"),
                            Column(f"targets.{metric}", "Mục tiêu", "number"),
                        ],
                    )
                ],
                w=8,
                h=5,
                defaults={
                    "unit": "percent",
                    "decimals": 2,
                    "noValue": "N/A",
                    "mappings": na_mapping(),
                    # The unit's own target differs by level and override: colour by the
                    # status panel below; here red only for exactly 0%.
                    "thresholds": rate_thresholds(None),
                    "color": {"mode": "thresholds"},
                },
                options={
                    "reduceOptions": {"calcs": ["first"], "fields": "", "values": False},
                    "colorMode": "background",
                    "textMode": "value_and_name",
                },
            )
        )
    count_cols = [Column("unit_code", "Mã"), Column("unit_name", "Đơn vị")]
    count_cols += [Column(k, v, "number") for k, v in COUNTS.items()]
    count_cols += [Column(f"status.{m}", f"Đánh giá — {t}") for m, t in METRICS.items()]
    panels.append(
        panel(
            layout,
            "table",
            "Số hồ sơ và đánh giá",
            [infinity_query("A", "/api/v1/scores", unit_params, count_cols)],
            w=24,
            h=5,
            overrides=rate_overrides(MetricTargets())[-1:],
        )
    )
    series_params = {**window_param(), "unit": "${unit:raw}", "interval": "${interval:raw}"}
    for metric, label in METRICS.items():
        cols = [
            Column("time", "Thời gian", "timestamp"),
            Column("rate", "Trong kỳ", "number"),
            Column("cum_rate", "Lũy kế", "number"),
            Column("target", "Mục tiêu", "number"),
        ]
        panels.append(
            panel(
                layout,
                "timeseries",
                f"{label} theo thời gian",
                [
                    infinity_query(
                        "A",
                        "/api/v1/timeseries",
                        {**series_params, "metric": metric},
                        cols,
                        fmt="timeseries",
                    )
                ],
                w=24,
                h=8,
                defaults={"unit": "percent", "min": 0, "max": 100, "decimals": 2},
                overrides=[
                    {
                        "matcher": {"id": "byName", "options": "Mục tiêu"},
                        "properties": [
                            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                            {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                        ],
                    }
                ],
            )
        )
    return dashboard(
        "dvcpulse-unit",
        "Chi tiết đơn vị",
        panels,
        [unit_variable(), window_variable(target_sets), interval_variable()],
        campaign,
        ["don-vi"],
        "Một đơn vị: tỷ lệ theo ngày (hoặc tuần) và lũy kế so với mục tiêu.",
    )


def alerts(target_sets: list[TargetSet], campaign: TargetSet | None):
    layout = Layout()
    labels = {
        "unit_code": "Mã",
        "unit_name": "Đơn vị",
        "level": "Cấp",
        "metric": "Chỉ tiêu",
        "kind": "Loại",
        "severity": "Mức độ",
        "value": "Giá trị (%)",
        "target": "Mục tiêu (%)",
        "window": "Kỳ",
        "started_at": "Bắt đầu",
        "resolved_at": "Kết thúc",
        "last_notified_at": "Thông báo gần nhất",
        "silenced": "Tạm tắt",
    }
    types = {
        "value": "number",
        "target": "number",
        "started_at": "timestamp",
        "resolved_at": "timestamp",
        "last_notified_at": "timestamp",
        "silenced": "boolean",
    }
    cols = [Column(f, labels[f], types.get(f, "string")) for f in ALERT_FIELDS]
    mappings = [
        {
            "matcher": {"id": "byName", "options": "Tạm tắt"},
            "properties": [
                {
                    "id": "mappings",
                    "value": [
                        {
                            "type": "value",
                            "options": {
                                "true": {"text": "Đã tạm tắt", "color": "blue", "index": 0},
                                "false": {"text": "Đang thông báo", "color": "red", "index": 1},
                            },
                        }
                    ],
                }
            ],
        },
        {
            "matcher": {"id": "byName", "options": "Loại"},
            "properties": [
                {
                    "id": "mappings",
                    "value": [
                        {
                            "type": "value",
                            "options": {
                                "zero": {"text": "0%", "color": "red", "index": 0},
                                "below_target": {
                                    "text": "Dưới mục tiêu",
                                    "color": "orange",
                                    "index": 1,
                                },
                            },
                        }
                    ],
                }
            ],
        },
    ]
    panels = [
        panel(
            layout,
            "stat",
            "Số cảnh báo đang kích hoạt",
            [
                infinity_query(
                    "A",
                    "/api/v1/alerts",
                    {"state": "firing"},
                    [Column("unit_code", "Mã")],
                    datasource=ALERTS_DS,
                    root=ALERTS_ROOT,
                )
            ],
            w=24,
            h=4,
            datasource=ALERTS_DS,
            options={"reduceOptions": {"calcs": ["count"], "fields": "/.*/", "values": False}},
            defaults={"noValue": "0"},
        ),
        panel(
            layout,
            "table",
            "Cảnh báo đang kích hoạt",
            [
                infinity_query(
                    "A",
                    "/api/v1/alerts",
                    {"state": "firing"},
                    cols,
                    datasource=ALERTS_DS,
                    root=ALERTS_ROOT,
                )
            ],
            w=24,
            h=12,
            datasource=ALERTS_DS,
            overrides=mappings,
            options={"sortBy": [{"displayName": "Bắt đầu", "desc": True}]},
        ),
        panel(
            layout,
            "table",
            "Cảnh báo đã kết thúc",
            [
                infinity_query(
                    "A",
                    "/api/v1/alerts",
                    {"state": "resolved"},
                    cols,
                    datasource=ALERTS_DS,
                    root=ALERTS_ROOT,
                )
            ],
            w=24,
            h=10,
            datasource=ALERTS_DS,
            overrides=mappings,
            options={"sortBy": [{"displayName": "Kết thúc", "desc": True}]},
        ),
    ]
    return dashboard(
        "dvcpulse-alerts",
        "Cảnh báo",
        panels,
        [],
        campaign,
        ["canh-bao"],
        "Cảnh báo đang kích hoạt, từ khi nào, có đang tạm tắt hay không (dịch vụ alerts).",
    )


def build_dashboards(
    registry: Registry, target_sets: list[TargetSet], pinned_campaign: str | None = None
) -> dict[str, dict[str, Any]]:
    """File name -> dashboard model."""
    campaign = thresholds_campaign(target_sets, pinned_campaign)
    return {
        "overview.json": overview(registry, target_sets, campaign),
        "leaderboard.json": leaderboard(registry, target_sets, campaign),
        "unit.json": drilldown(registry, target_sets, campaign),
        "alerts.json": alerts(target_sets, campaign),
    }


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, ensure_ascii=False, indent=2) + "\n"


def write_dashboards(models: dict[str, dict[str, Any]], out_dir: Path = DASHBOARD_DIR) -> list[str]:
    """Write the files that differ; returns their names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, model in models.items():
        path = out_dir / name
        text = render(model)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed
