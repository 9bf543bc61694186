"""Render each dashboard's data as a PNG (matplotlib) from the same HTTP queries its panels run,
so a reader without Grafana sees what the panels show (docs/dashboards/*.png)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from .grafana_dashboards import ALERTS_DS, METRICS, SCORING_DS

LEVEL_COLOURS = {"met": "#2e7d32", "below_target": "#f9a825", "zero": "#c62828"}


def fetch(query: dict[str, Any], bases: dict[str, str], variables: dict[str, str]) -> list[Any]:
    """Run a panel's Infinity query the way Infinity does (JSON form; CSV panels have a JSON
    twin at the same URL)."""
    params = {}
    for p in query["url_options"]["params"]:
        value = p["value"]
        for name, val in variables.items():
            value = value.replace(f"${{{name}:raw}}", val)
        if p["key"] != "format":
            params[p["key"]] = value
    resp = httpx.get(bases[query["datasource"]["uid"]] + query["url"], params=params, timeout=30)
    resp.raise_for_status()
    body = resp.json()
    root = query.get("root_selector") or ("rows" if isinstance(body, dict) else "")
    return body[root] if root else body


def _pct(v: float | None) -> str:
    return "N/A" if v is None else f"{v:.2f}".replace(".", ",") + "%"


def render_all(
    models: dict[str, dict[str, Any]],
    scoring_url: str,
    alerts_url: str | None,
    out: Path,
    unit: str,
    window: str = "campaign",
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    bases = {SCORING_DS: scoring_url, ALERTS_DS: alerts_url or ""}
    variables = {"window": window, "unit": unit, "interval": "day"}
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    metric_names = list(METRICS)

    # 1. Overview: the gauges' rows (levels + total) with targets, and the cumulative trend.
    overview = models["overview.json"]
    levels_q = next(p for p in overview["panels"] if p["type"] == "table")["targets"][0]
    trend_q = next(p for p in overview["panels"] if p["type"] == "timeseries")["targets"][0]
    rows = fetch(levels_q, bases, variables)
    trend = fetch(trend_q, bases, variables)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 5.5))
    width = 0.27
    for i, metric in enumerate(metric_names):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        vals = [r[f"{metric}_rate"] or 0 for r in rows]
        bars = ax1.bar(xs, vals, width, label=METRICS[metric])
        for x, r, b in zip(xs, rows, bars, strict=True):
            ax1.annotate(
                _pct(r[f"{metric}_rate"]),
                (x, b.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
            )
            t = r["targets"].get(metric)
            if t is not None:
                ax1.hlines(float(t), x - width / 2, x + width / 2, colors="black", linewidth=2)
    ax1.set_xticks(range(len(rows)), [f"{r['label']}\n({r['received']:,} hồ sơ)" for r in rows])
    ax1.set_ylim(0, 110)
    ax1.set_ylabel("%")
    ax1.set_title("Ba tỷ lệ theo cấp và toàn tỉnh (vạch đen: mục tiêu)")
    ax1.legend(fontsize=8, loc="upper right")
    times = [datetime.fromisoformat(r["time"]) for r in trend]
    for metric in metric_names:
        ax2.plot(
            times, [r[f"cum_{metric}_rate"] for r in trend], label=f"{METRICS[metric]} (lũy kế)"
        )
    ax2.set_ylim(0, 100)
    ax2.set_title("Toàn tỉnh — tỷ lệ lũy kế theo ngày")
    ax2.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.suptitle(overview["title"])
    written.append(_save(fig, out / "overview.png", plt))

    # 2. Leaderboard: online rate of every unit per level, coloured by its status; N/A payment.
    board = models["leaderboard.json"]
    tables = [p for p in board["panels"] if p["type"] == "table"]
    per_level = [fetch(t["targets"][0], bases, variables) for t in tables]
    heights = [max(3, len(r) * 0.16) for r in per_level]
    fig, axes = plt.subplots(
        len(tables), 1, figsize=(11, sum(heights) + 2), gridspec_kw={"height_ratios": heights}
    )
    for ax, table, units in zip(axes, tables, per_level, strict=True):
        units = sorted(units, key=lambda r: (r["online_rate"] is None, -(r["online_rate"] or 0)))
        names = [f"{r['unit_name'][:38]}" for r in units]
        vals = [r["online_rate"] or 0 for r in units]
        colours = [LEVEL_COLOURS.get(r["status"]["online"], "#9e9e9e") for r in units]
        ax.barh(range(len(units)), vals, color=colours)
        for y, r in enumerate(units):
            ax.text(
                101,
                y,
                f"TT: {_pct(r['online_rate'])}  SH: {_pct(r['digitization_rate'])}  TTTT: {_pct(r['online_payment_rate'])}",
                va="center",
                fontsize=6,
            )
        ax.set_yticks(range(len(units)), names, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlim(0, 160)
        ax.set_title(
            f"{table['title']} — tỷ lệ trực tuyến (đỏ 0%, vàng dưới mục tiêu, xanh đạt)", fontsize=9
        )
    fig.suptitle(board["title"])
    written.append(_save(fig, out / "leaderboard.png", plt))

    # 3. Unit drill-down: daily and cumulative rate vs target, per metric.
    drill = models["unit.json"]
    series_panels = [p for p in drill["panels"] if p["type"] == "timeseries"]
    fig, axes = plt.subplots(len(series_panels), 1, figsize=(12, 9), sharex=True)
    for ax, p in zip(axes, series_panels, strict=True):
        points = fetch(p["targets"][0], bases, variables)
        times = [datetime.fromisoformat(r["time"]) for r in points]
        ax.plot(times, [r["rate"] for r in points], ".", alpha=0.5, label="Trong ngày")
        ax.plot(times, [r["cum_rate"] for r in points], label="Lũy kế")
        ax.plot(times, [r["target"] for r in points], "--", color="red", label="Mục tiêu")
        ax.set_ylim(0, 105)
        ax.set_title(p["title"], fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{drill['title']}: {unit}")
    written.append(_save(fig, out / "unit.png", plt))

    # 4. Alerts: what fires now, since when, silenced or not.
    if alerts_url:
        alerts_board = models["alerts.json"]
        table = next(p for p in alerts_board["panels"] if p["type"] == "table")
        firing = fetch(table["targets"][0], bases, variables)
        cols = [
            "unit_code",
            "unit_name",
            "metric",
            "kind",
            "value",
            "target",
            "started_at",
            "silenced",
        ]
        cells = [
            [
                r["unit_code"],
                r["unit_name"][:30],
                METRICS.get(r["metric"], r["metric"]),
                r["kind"],
                _pct(r["value"]) if r["kind"] != "silent" else str(r["value"]),
                _pct(r["target"]),
                (r["started_at"] or "")[:16],
                "có" if r["silenced"] else "không",
            ]
            for r in firing[:30]
        ]
        fig, ax = plt.subplots(figsize=(14, 0.32 * max(len(cells), 3) + 1.2))
        ax.axis("off")
        labels = {c["selector"]: c["text"] for c in table["targets"][0]["columns"]}
        if cells:
            tbl = ax.table(
                cellText=cells, colLabels=[labels[c] for c in cols], loc="center", cellLoc="left"
            )
            tbl.auto_set_font_size(False)
            tbl.set_fontsize(7)
        ax.set_title(f"{table['title']}: {len(firing)} (30 đầu tiên)")
        written.append(_save(fig, out / "alerts.png", plt))
    return written


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
