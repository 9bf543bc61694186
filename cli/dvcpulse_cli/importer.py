"""`dvcpulse import FILE`: post a one-stop export (CSV or XLSX) to ingest over HTTP.

Rows are checked here first (import_rules.py), then posted in batches to `/api/v1/events`;
whatever ingest still rejects is mapped back to its row. Every bad row, with its reasons, goes
to a rejects file (CSV, UTF-8 with BOM so Excel shows the Vietnamese correctly).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import httpx
import typer
from dvcpulse_common.registry import Registry

from .import_rules import ColumnMap, Layout, MappingError, find_layout, row_events

HEADER_SCAN_ROWS = 20


class ImportFailed(RuntimeError):
    """The import cannot go on (unreadable file, ingest refusing the requests)."""


@dataclass
class Reject:
    row: int  # 1-based row number in the file, as a spreadsheet shows it
    dossier_id: str | None
    errors: list[tuple[str, str]]  # (column, reason)
    cells: Sequence[Any]


@dataclass
class ImportSummary:
    rows: int = 0
    accepted: int = 0
    events: int = 0
    rejects: list[Reject] = field(default_factory=list)
    rejects_file: Path | None = None
    header_row: int = 0

    @property
    def rejected(self) -> int:
        return len(self.rejects)


def read_rows(path: Path, sheet: str | None = None) -> Iterator[tuple[int, list[Any]]]:
    """(row number, cells) for every non-empty row of a CSV or XLSX file."""
    suffix = path.suffix.lower()
    if suffix in {".xlsx", ".xlsm"}:
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # zip/XML errors: name the file, not the library internals
            raise ImportFailed(f"{path}: not a readable XLSX file ({exc})") from exc
        try:
            if sheet is not None and sheet not in wb.sheetnames:
                raise ImportFailed(
                    f"{path}: no sheet {sheet!r}; sheets: {', '.join(wb.sheetnames)}"
                )
            ws = wb[sheet] if sheet else wb.worksheets[0]
            for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
                cells = list(values)
                if any(c is not None and str(c).strip() for c in cells):
                    yield number, cells
        finally:
            wb.close()
        return
    if suffix not in {".csv", ".txt", ".tsv"}:
        raise ImportFailed(f"{path}: unsupported file type {suffix!r}; use .csv or .xlsx")
    with path.open(encoding="utf-8-sig", newline="") as f:
        sample = f.read(64 * 1024)
        f.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        for number, cells in enumerate(csv.reader(f, dialect), start=1):
            if any(c.strip() for c in cells):
                yield number, list(cells)


def _post(client: httpx.Client, events: list[dict[str, Any]], deadline_s: float) -> dict:
    """POST one batch; retry 503 (as told by Retry-After) and connection errors until a
    deadline, then give up with a clear message."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            resp = client.post("/api/v1/events", json=events)
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                raise ImportFailed(f"ingest did not answer: {exc}") from exc
            time.sleep(1.0)
            continue
        if resp.status_code == 503 and time.monotonic() < deadline:
            time.sleep(float(resp.headers.get("retry-after", "1")))
            continue
        if resp.status_code in (202, 422):
            return resp.json()
        raise ImportFailed(f"ingest answered {resp.status_code}: {resp.text[:300]}")


def import_file(
    path: Path,
    url: str,
    registry: Registry,
    cmap: ColumnMap,
    tz: ZoneInfo,
    *,
    sheet: str | None = None,
    batch_rows: int = 500,
    rejects_path: Path | None = None,
    api_key: str | None = None,
    retry_s: float = 60.0,
    on_progress: Callable[[int, int], None] | None = None,  # (rows done, rows total)
) -> ImportSummary:
    if not path.exists():
        raise ImportFailed(f"{path}: no such file")
    rows = list(read_rows(path, sheet))
    try:
        layout: Layout = find_layout(rows[:HEADER_SCAN_ROWS], cmap)
    except MappingError as exc:
        raise ImportFailed(f"{path}: {exc}") from exc
    data = [(n, cells) for n, cells in rows if n > layout.header_row]
    summary = ImportSummary(rows=len(data), header_row=layout.header_row)
    headers = {"x-api-key": api_key} if api_key else {}
    done = 0
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for start in range(0, len(data), batch_rows):
            chunk = data[start : start + batch_rows]
            events: list[dict[str, Any]] = []
            origin: list[int] = []  # position in chunk of each event
            failed: dict[int, Reject] = {}
            for pos, (number, cells) in enumerate(chunk):
                result = row_events(cells, layout, cmap, registry, tz)
                if result.errors:
                    failed[pos] = Reject(number, result.dossier_id, result.errors, cells)
                    continue
                events.extend(result.events)
                origin.extend([pos] * len(result.events))
            if events:
                answer = _post(client, events, retry_s)
                for rejection in answer.get("rejected", []):
                    pos = origin[rejection["index"]]
                    number, cells = chunk[pos]
                    reject = failed.setdefault(
                        pos, Reject(number, events[rejection["index"]]["dossier_id"], [], cells)
                    )
                    for err in rejection["errors"]:
                        column = _column_of(err["field"], layout) or err["field"] or "row"
                        reason = (column, f"ingest: {err['message']}")
                        if reason not in reject.errors:
                            reject.errors.append(reason)
                summary.events += answer.get("accepted", 0)
            summary.accepted += len(chunk) - len(failed)
            summary.rejects.extend(failed[p] for p in sorted(failed))
            done += len(chunk)
            if on_progress:
                on_progress(done, len(data))
    if summary.rejects:
        target = rejects_path or path.with_name(f"{path.stem}.rejects.csv")
        write_rejects(target, layout, summary.rejects)
        summary.rejects_file = target
    return summary


# Fields of an event -> the import field whose column the reader should look at.
_EVENT_FIELD = {
    "dossier_id": "dossier_id",
    "unit_code": "unit",
    "occurred_at": "received_at",
    "channel": "channel",
    "fee_required": "fee",
    "amount_vnd": "fee",
    "procedure_code": "procedure_code",
}


def _column_of(event_field: str, layout: Layout) -> str | None:
    name = _EVENT_FIELD.get(event_field.split(".", 1)[0])
    if name is None or name not in layout.index:
        return None
    return layout.headers[layout.index[name]]


def write_rejects(target: Path, layout: Layout, rejects: list[Reject]) -> None:
    """One line per bad row: its row number, dossier, the columns at fault and why, then the
    row as it was, so it can be fixed and imported again."""
    with target.open("w", encoding="utf-8-sig", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Dòng", "Mã hồ sơ", "Cột lỗi", "Lý do", *layout.headers])
        for r in rejects:
            out.writerow(
                [
                    r.row,
                    r.dossier_id or "",
                    "; ".join(dict.fromkeys(col for col, _ in r.errors)),
                    "; ".join(f"{col}: {why}" for col, why in r.errors),
                    *["" if c is None else c for c in r.cells],
                ]
            )


def import_command(
    file: Annotated[Path, typer.Argument(help="One-stop export: .csv or .xlsx")],
    url: Annotated[str, typer.Option(help="Ingest base URL")] = "http://127.0.0.1:8001",
    mapping: Annotated[
        Path | None,
        typer.Option(help="YAML column mapping (columns, channels, yes/no spellings, units)"),
    ] = None,
    sheet: Annotated[str | None, typer.Option(help="XLSX sheet (default: the first)")] = None,
    batch: Annotated[int, typer.Option(min=1, max=3000, help="Rows per request")] = 500,
    rejects: Annotated[
        Path | None, typer.Option(help="Rejects file (default: FILE.rejects.csv next to FILE)")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="DVCPULSE_API_KEY", help="Ingest API key")
    ] = None,
) -> None:
    """Import a one-stop export (CSV or XLSX with Vietnamese headers, dates dd/mm/yyyy).

    Columns are found by their headers (Mã hồ sơ, Đơn vị, Ngày tiếp nhận, Kênh tiếp nhận, Số hóa, Phí lệ phí, Thanh toán trực tuyến, Mã TTHC); name yours with --mapping. Rows are posted to ingest in batches; each bad row goes to the rejects file with the reason.

    Exit code: 0 all rows accepted, 2 some rows rejected, 1 the import could not run.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .bootstrap import load_config
    from .import_rules import load_column_map

    console = Console()
    cfg = load_config()
    try:
        cmap = load_column_map(mapping, cfg.registry)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"Importing {file.name}", total=None)
            summary = import_file(
                file,
                url,
                cfg.registry,
                cmap,
                ZoneInfo(cfg.settings.timezone),
                sheet=sheet,
                batch_rows=batch,
                rejects_path=rejects,
                api_key=api_key,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except (ImportFailed, MappingError) as exc:
        console.print(f"[bold red]import failed:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"{summary.rows:,} rows (header on row {summary.header_row}): "
        f"[green]{summary.accepted:,} accepted[/] ({summary.events:,} events), "
        f"[{'red' if summary.rejected else 'green'}]{summary.rejected:,} rejected[/]"
    )
    if summary.rejects_file:
        console.print(f"rejected rows and why: {summary.rejects_file}")
        for r in summary.rejects[:10]:
            console.print(f"  row {r.row}: " + "; ".join(f"{c}: {w}" for c, w in r.errors))
        if summary.rejected > 10:
            console.print(f"  … and {summary.rejected - 10} more in the rejects file")
        raise typer.Exit(2)
