"""`dvcpulse report`: the weekly report from the scoring API, as XLSX, HTML or Markdown.

Only the scoring API is read (`/api/v1/units`, `/api/v1/scores`, `/api/v1/scores/levels`), so
the report shows the service's numbers; report_model.py turns the counts into the appendix.
"""

from __future__ import annotations

import html
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import httpx
import typer
from dvcpulse_common.registry import Registry
from dvcpulse_shared.api import Counts, Status
from dvcpulse_shared.targets import MetricTargets
from dvcpulse_shared.units import Unit

from .report_model import (
    METRIC_LABELS,
    METRICS,
    SHORT_LABELS,
    Report,
    ReportRow,
    build_report,
    count_text,
    hundredths,
    points_text,
    rate_text,
    report_rankings,
    target_text,
)

COUNT_FIELDS = ("received", "online", "digitized", "fee_required", "paid_online")
COUNT_LABELS = ("Tiếp nhận", "Trực tuyến", "Số hóa", "Có phí, lệ phí", "TT trực tuyến")


class ReportError(RuntimeError):
    pass


class Format(StrEnum):
    xlsx = "xlsx"
    html = "html"
    md = "md"


def _get(client: httpx.Client, path: str, **params: Any) -> Any:
    try:
        resp = client.get(path, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as exc:
        raise ReportError(f"scoring did not answer at {client.base_url}: {exc}") from exc
    if resp.status_code != 200:
        raise ReportError(f"{path} answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def _counts(rows: list[dict]) -> dict[str, Counts]:
    return {r["unit_code"]: Counts(**{k: r[k] for k in COUNT_FIELDS}) for r in rows}


def fetch_report(
    url: str, window: str, as_of: date | None, today: date, token: str | None = None
) -> Report:
    """Read the scoring API and build the report for `window` up to `as_of` (default: today,
    or the window's last day if it is over)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        units = [Unit.model_validate(u) for u in _get(client, "/api/v1/units")]
        scoped = _get(client, "/api/v1/scores", window=window)
        levels = _get(client, "/api/v1/scores/levels", window=window)
        win = scoped["window"]
        if not win.get("date_from") or not win.get("date_to"):
            raise ReportError(f"window {window!r} has no dates; use 'campaign' or a target-set id")
        first, last = date.fromisoformat(win["date_from"]), date.fromisoformat(win["date_to"])
        end = as_of or min(today, last)
        if not first <= end <= last:
            raise ReportError(
                f"--as-of {end:%d/%m/%Y} is outside the window {first:%d/%m/%Y}–{last:%d/%m/%Y}"
            )
        current = _get(client, "/api/v1/scores", **{"from": first, "to": end})
        prev_to = end - timedelta(days=7)
        previous = (
            _get(client, "/api/v1/scores", **{"from": first, "to": prev_to})
            if prev_to >= first
            else None
        )
    labels = {r["level"]: r["label"] for r in levels["rows"]}
    registry = Registry.build(units, labels)
    counts = _counts(current["rows"])
    return build_report(
        registry=registry,
        window_name=win["name"],
        date_from=first,
        as_of=end,
        previous_to=prev_to if previous is not None else None,
        target_set=scoped["target_set"],
        current=counts,
        previous=_counts(previous["rows"]) if previous is not None else None,
        # Targets of the window asked for (a custom date range could pick another set).
        unit_targets={r["unit_code"]: MetricTargets(**r["targets"]) for r in scoped["rows"]},
        level_targets={
            r["level"]: MetricTargets(**r["targets"])
            for r in levels["rows"]
            if r["level"] != "total"
        },
        # The plan's own figures of the baseline year per level, where the config has them.
        level_baselines={
            r["level"]: MetricTargets(**r["baseline"])
            for r in levels["rows"]
            if r.get("baseline") and r["level"] != "total"
        },
        rankings=report_rankings(registry, counts),
    )


# -- Markdown --------------------------------------------------------------------------------


def _md_rate(row: ReportRow, metric: str) -> str:
    text = rate_text(row.rates[metric])
    if row.status[metric] == Status.zero:
        return f"**{text}** ⛔"
    if row.status[metric] == Status.below_target:
        return f"{text} ▼"
    return text


def render_md(report: Report) -> str:
    head = (
        ["STT", "Đơn vị", *(METRIC_LABELS[m] for m in METRICS), "Ghi chú"]
        + [f"Chỉ tiêu {SHORT_LABELS[m]}" for m in METRICS]
        + [f"± tuần trước {SHORT_LABELS[m]} (điểm %)" for m in METRICS]
        + [f"± so với 2022 {SHORT_LABELS[m]} (điểm %)" for m in METRICS]
    )
    out = [f"# {report.title}", "", report.subtitle, ""]
    out.append("⛔ tỷ lệ 0% · ▼ dưới chỉ tiêu · N/A: không có số liệu hoặc không áp dụng")
    for section in report.sections:
        out += ["", f"## {section.title}", "", "| " + " | ".join(head) + " |"]
        out.append("|" + "---|" * len(head))
        for row in [*section.rows, section.total]:
            name = f"**{row.name}**" if row.is_total else row.name
            cells = [
                "" if row.stt is None else str(row.stt),
                name,
                *(_md_rate(row, m) for m in METRICS),
                row.note,
                *(target_text(row.targets[m]) for m in METRICS),
                *(points_text(row.change_week[m]) for m in METRICS),
                *(points_text(row.change_baseline[m]) for m in METRICS),
            ]
            out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    out += ["", "# XẾP HẠNG THI ĐUA", ""]
    for ranking in report.rankings:
        out += [
            f"## {ranking.label}: {ranking.title}",
            "",
            "| Hạng | Đơn vị | Giá trị |",
            "|---|---|---|",
        ]
        for r in ranking.rows:
            value = _ranking_value(ranking, r.value)
            out.append(f"| {r.rank if r.rank is not None else 'N/A'} | {r.unit.name} | {value} |")
        out.append("")
    return "\n".join(out) + "\n"


def _ranking_value(table: Any, value: Fraction | None) -> str:
    return points_text(value) if table.improvement else rate_text(value)


# -- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font-family:"Times New Roman",serif;margin:2em}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #555;padding:3px 6px;font-size:13px}
th{background:#dde4ee}
td.num{text-align:right;white-space:nowrap}
tr.section td{font-weight:bold;background:#f0f0f0}
tr.total td{font-weight:bold}
td.zero{background:#ffc7ce;color:#9c0006;font-weight:bold}
td.below{background:#ffeb9c;color:#7a5c00}
td.na{color:#777}
"""


def _cls(row: ReportRow, metric: str) -> str:
    status = row.status[metric]
    return {
        Status.zero: "num zero",
        Status.below_target: "num below",
        Status.no_data: "num na",
        Status.not_applicable: "num na",
    }.get(status, "num")


def render_html(report: Report) -> str:
    e = html.escape
    h = [
        "<!doctype html>",
        '<html lang="vi"><head><meta charset="utf-8">',
        f"<title>{e(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h2>{e(report.title)}</h2><p>{e(report.subtitle)}</p>",
        '<p><span class="zero">&nbsp;0%&nbsp;</span> tỷ lệ 0% &nbsp; '
        '<span class="below">&nbsp;▼&nbsp;</span> dưới chỉ tiêu</p>',
        "<table><thead><tr>",
        '<th rowspan="2">STT</th><th rowspan="2">Đơn vị</th>',
        *(f'<th rowspan="2">{e(METRIC_LABELS[m])}</th>' for m in METRICS),
        '<th rowspan="2">Ghi chú</th><th colspan="3">Chỉ tiêu</th>',
        '<th colspan="3">Thay đổi so với tuần trước (điểm %)</th>',
        '<th colspan="3">Thay đổi so với năm 2022 (điểm %)</th></tr><tr>',
        *(f"<th>{e(SHORT_LABELS[m])}</th>" for _ in range(3) for m in METRICS),
        "</tr></thead><tbody>",
    ]
    for section in report.sections:
        h.append(f'<tr class="section"><td colspan="15">{e(section.title)}</td></tr>')
        for row in [*section.rows, section.total]:
            h.append('<tr class="total">' if row.is_total else "<tr>")
            h.append(f"<td>{'' if row.stt is None else row.stt}</td><td>{e(row.name)}</td>")
            h += [f'<td class="{_cls(row, m)}">{rate_text(row.rates[m])}</td>' for m in METRICS]
            h.append(f"<td>{e(row.note)}</td>")
            h += [f'<td class="num">{target_text(row.targets[m])}</td>' for m in METRICS]
            h += [f'<td class="num">{points_text(row.change_week[m])}</td>' for m in METRICS]
            h += [f'<td class="num">{points_text(row.change_baseline[m])}</td>' for m in METRICS]
            h.append("</tr>")
    h.append("</tbody></table><h2>XẾP HẠNG THI ĐUA</h2>")
    for ranking in report.rankings:
        h.append(f"<h3>{e(ranking.label)}: {e(ranking.title)}</h3><table>")
        h.append("<tr><th>Hạng</th><th>Đơn vị</th><th>Giá trị</th></tr>")
        for r in ranking.rows:
            rank = r.rank if r.rank is not None else "N/A"
            h.append(
                f'<tr><td class="num">{rank}</td><td>{e(r.unit.name)}</td>'
                f'<td class="num">{_ranking_value(ranking, r.value)}</td></tr>'
            )
        h.append("</table>")
    h.append("</body></html>")
    return "\n".join(h) + "\n"


# -- XLSX ------------------------------------------------------------------------------------

# Rates are stored as numbers (a fraction with a percent format) cut to hundredths of a percent,
# so that Excel shows the same digits as the plan (63,65% in a Vietnamese locale) and sums and
# formulas still work; N/A is text.
RATE_FORMAT = "0.00%"
POINTS_FORMAT = "+0.00;-0.00;0.00"
FIRST_DATA_ROW = 5


def rate_cell_value(value: Any) -> float | str:
    return "N/A" if value is None else hundredths(value) / 10_000


def points_cell_value(value: Any) -> float | str:
    return "N/A" if value is None else hundredths(value) / 100


def render_xlsx(report: Report, path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    zero_fill = PatternFill("solid", fgColor="FFC7CE")
    below_fill = PatternFill("solid", fgColor="FFEB9C")
    head_fill = PatternFill("solid", fgColor="DDE4EE")
    section_fill = PatternFill("solid", fgColor="F0F0F0")
    thin = Side(style="thin", color="888888")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="center", horizontal="center")

    wb = Workbook()
    ws = wb.active
    ws.title = "Phụ lục"
    ncols = 2 + 3 + 1 + 3 + 3 + 3 + 5
    ws.cell(1, 1, report.title).font = Font(bold=True, size=13)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncols)
    ws.cell(2, 1, report.subtitle).font = Font(italic=True)
    ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=ncols)
    groups = [
        (1, 1, "STT"),
        (2, 2, "Đơn vị"),
        (3, 5, f"Tỷ lệ (đến {report.as_of:%d/%m/%Y})"),
        (6, 6, "Ghi chú"),
        (7, 9, "Chỉ tiêu"),
        (10, 12, "Thay đổi so với tuần trước (điểm %)"),
        (13, 15, "Thay đổi so với năm 2022 (điểm %)"),
        (16, 20, "Số hồ sơ"),
    ]
    subs = (
        ["STT", "Đơn vị", *(METRIC_LABELS[m] for m in METRICS), "Ghi chú"]
        + [SHORT_LABELS[m] for m in METRICS] * 3
        + list(COUNT_LABELS)
    )
    for first, last, text in groups:
        ws.cell(3, first, text)
        if last > first:
            ws.merge_cells(start_row=3, start_column=first, end_row=3, end_column=last)
    for col, text in enumerate(subs, start=1):
        ws.cell(4, col, text)
    for r in (3, 4):
        for col in range(1, ncols + 1):
            c = ws.cell(r, col)
            c.font, c.fill, c.alignment, c.border = bold, head_fill, wrap, border
    ws.freeze_panes = ws.cell(FIRST_DATA_ROW, 3)  # headers and unit names stay in view

    row_no = FIRST_DATA_ROW
    for section in report.sections:
        ws.cell(row_no, 1, section.title).font = bold
        ws.merge_cells(start_row=row_no, start_column=1, end_row=row_no, end_column=ncols)
        ws.cell(row_no, 1).fill = section_fill
        row_no += 1
        for row in [*section.rows, section.total]:
            values: list[Any] = [
                row.stt,
                row.name,
                *(rate_cell_value(row.rates[m]) for m in METRICS),
                row.note or None,
                *(None if row.targets[m] is None else float(row.targets[m]) / 100 for m in METRICS),
                *(points_cell_value(row.change_week[m]) for m in METRICS),
                *(points_cell_value(row.change_baseline[m]) for m in METRICS),
                *(getattr(row.counts, f) for f in COUNT_FIELDS),
            ]
            for col, value in enumerate(values, start=1):
                c = ws.cell(row_no, col, value)
                c.border = border
                if row.is_total:
                    c.font = bold
                if 3 <= col <= 5 or 7 <= col <= 9:
                    c.number_format = RATE_FORMAT
                    c.alignment = Alignment(horizontal="right")
                elif 10 <= col <= 15:
                    c.number_format = POINTS_FORMAT
                    c.alignment = Alignment(horizontal="right")
                elif col >= 16:
                    c.number_format = "#,##0"
                elif col == 6:
                    c.alignment = Alignment(wrap_text=True, vertical="top")
            for i, m in enumerate(METRICS):
                if row.status[m] == Status.zero:
                    ws.cell(row_no, 3 + i).fill = zero_fill
                elif row.status[m] == Status.below_target:
                    ws.cell(row_no, 3 + i).fill = below_fill
            row_no += 1
    widths = [6, 42, 16, 13, 16, 40] + [11] * 9 + [11] * 5
    for col, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(col)].width = width
    ws.row_dimensions[4].height = 45

    rk = wb.create_sheet("Xếp hạng thi đua")
    rk.append(["Cấp", "Xếp theo", "Hạng", "Mã đơn vị", "Đơn vị", "Giá trị"])
    for c in rk[1]:
        c.font, c.fill, c.border = bold, head_fill, border
    rk.freeze_panes = "A2"
    for ranking in report.rankings:
        improvement = ranking.improvement
        for r in ranking.rows:
            value = points_cell_value(r.value) if improvement else rate_cell_value(r.value)
            rk.append(
                [
                    ranking.label,
                    ranking.title,
                    r.rank if r.rank is not None else "N/A",
                    r.unit.code,
                    r.unit.name,
                    value,
                ]
            )
            rk.cell(rk.max_row, 6).number_format = POINTS_FORMAT if improvement else RATE_FORMAT
    for col, width in zip("ABCDEF", (12, 52, 7, 14, 42, 12), strict=True):
        rk.column_dimensions[col].width = width
    wb.save(path)


def report_command(
    window: Annotated[str, typer.Option(help="'campaign' or a target-set id")] = "campaign",
    fmt: Annotated[Format, typer.Option("--format", help="xlsx, html or md")] = Format.xlsx,
    out: Annotated[
        Path | None, typer.Option(help="Output file (default: bao-cao-<date>.<format>)")
    ] = None,
    url: Annotated[str, typer.Option(help="Scoring base URL")] = "http://127.0.0.1:8002",
    as_of: Annotated[
        str | None,
        typer.Option(help="Last day of the report, YYYY-MM-DD (default: today or window end)"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="DVCPULSE_READ_TOKEN", help="Read token, if scoring requires one"),
    ] = None,
) -> None:
    """Write the weekly report in the layout of the plan's appendix.

    Per level (I. CẤP TỈNH, II. CẤP HUYỆN, III. CẤP XÃ) each unit's three rates with a Tổng row from summed counts, the targets, the change since the previous week and since the 2022 baseline (percentage points), units at 0% and below target highlighted, and the emulation ranking (xếp hạng thi đua). Numbers are read from the scoring API.
    """
    from rich.console import Console

    from .bootstrap import load_config

    console = Console()
    settings = load_config().settings
    try:
        end = date.fromisoformat(as_of) if as_of else None
    except ValueError:
        console.print(f"[bold red]--as-of:[/] {as_of!r} is not a date YYYY-MM-DD")
        raise typer.Exit(1) from None
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    try:
        report = fetch_report(url, window, end, today, token)
    except ReportError as exc:
        console.print(f"[bold red]report failed:[/] {exc}")
        raise typer.Exit(1) from None
    target = out or Path(f"bao-cao-{report.as_of.isoformat()}.{fmt.value}")
    if fmt is Format.xlsx:
        render_xlsx(report, target)
    elif fmt is Format.html:
        target.write_text(render_html(report), encoding="utf-8")
    else:
        target.write_text(render_md(report), encoding="utf-8")
    units = sum(len(s.rows) for s in report.sections)
    console.print(f"wrote {target} ({units} units, {report.subtitle})")
    for s in report.sections:
        t = s.total
        console.print(
            f"  {s.title}: "
            + ", ".join(f"{SHORT_LABELS[m]} {rate_text(t.rates[m])}" for m in METRICS)
            + f" ({count_text(t.counts.received)} hồ sơ)"
        )
