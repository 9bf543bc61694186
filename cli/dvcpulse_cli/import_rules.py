"""Pure rules of `dvcpulse import`: find the columns of a one-stop export (Vietnamese headers,
configurable), and turn each row into dossier events or into the reasons it cannot be.

No I/O here: the importer reads the file and posts the events.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from dvcpulse_common.registry import Registry

SOURCE = "import"

# Our field -> the headers one-stop systems use for it (matched NFC- and case-insensitively).
DEFAULT_COLUMNS: dict[str, list[str]] = {
    "dossier_id": ["Mã hồ sơ", "Số hồ sơ", "Mã số hồ sơ", "Số biên nhận"],
    "unit": ["Mã đơn vị", "Đơn vị", "Đơn vị tiếp nhận", "Đơn vị xử lý", "Cơ quan tiếp nhận"],
    "received_at": ["Ngày tiếp nhận", "Ngày nhận", "Ngày nộp", "Thời gian tiếp nhận"],
    "channel": ["Kênh tiếp nhận", "Hình thức tiếp nhận", "Hình thức nộp", "Kênh nộp"],
    "digitized": ["Số hóa", "Đã số hóa", "Số hóa hồ sơ"],
    "fee": ["Phí, lệ phí", "Phí lệ phí", "Lệ phí", "Có phí"],
    "paid_online": ["Thanh toán trực tuyến", "TT trực tuyến", "Đã thanh toán trực tuyến"],
    "procedure_code": ["Mã TTHC", "Mã thủ tục"],
}
REQUIRED = ("dossier_id", "unit", "received_at", "channel")

DEFAULT_CHANNELS: dict[str, list[str]] = {
    "online": ["trực tuyến", "online", "qua mạng", "dịch vụ công trực tuyến", "2"],
    "direct": ["trực tiếp", "tại bộ phận một cửa", "tại quầy", "direct", "1"],
    "postal": ["bưu chính", "bưu chính công ích", "bưu điện", "bccI", "postal", "3"],
}
DEFAULT_YES = ["có", "x", "1", "yes", "true", "đã số hóa", "đã thanh toán", "rồi"]
DEFAULT_NO = ["không", "0", "no", "false", "chưa", "-", ""]

_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def fold(text: Any) -> str:
    """Header and value key: NFC, case-folded, whitespace collapsed, a trailing ':' or '*'
    (required-field marks in templates) dropped."""
    s = " ".join(unicodedata.normalize("NFC", str(text)).casefold().split())
    return s.rstrip(":*").strip()


class MappingError(ValueError):
    """The column mapping file, or the file's header row, is unusable: nothing is imported."""


@dataclass
class ColumnMap:
    columns: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    channels: dict[str, str] = field(default_factory=dict)  # folded value -> channel
    yes: set[str] = field(default_factory=lambda: {fold(v) for v in DEFAULT_YES})
    no: set[str] = field(default_factory=lambda: {fold(v) for v in DEFAULT_NO})
    units: dict[str, str] = field(default_factory=dict)  # folded export unit -> our code

    def __post_init__(self) -> None:
        if not self.channels:
            self.channels = {fold(v): ch for ch, vs in DEFAULT_CHANNELS.items() for v in vs}


def load_column_map(path: Path | None, registry: Registry) -> ColumnMap:
    """Defaults, overridden by a YAML mapping file:

    columns: {dossier_id: "Mã HS", unit: [...], received_at: ..., channel: ..., digitized: ...,
              fee: ..., paid_online: ..., procedure_code: ...}
    channels: {online: [...], direct: [...], postal: [...]}   # extra spellings
    yes_values: [...]  no_values: [...]                       # extra spellings of Có/Không
    units: {"Tên đơn vị trong tệp": CMU-S01}                  # export unit -> our unit
    """
    cmap = ColumnMap()
    if path is None:
        return cmap
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise MappingError(f"{path}: expected a mapping with 'columns', 'channels', 'units'")
    # (`yes:`/`no:` would be YAML booleans, hence yes_values/no_values.)
    unknown = {str(k) for k in data} - {"columns", "channels", "yes_values", "no_values", "units"}
    if unknown:
        raise MappingError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    for name, headers in (data.get("columns") or {}).items():
        if name not in DEFAULT_COLUMNS:
            raise MappingError(
                f"{path}: columns.{name}: unknown field; use one of {', '.join(DEFAULT_COLUMNS)}"
            )
        cmap.columns[name] = [headers] if isinstance(headers, str) else [str(h) for h in headers]
    for channel, values in (data.get("channels") or {}).items():
        if channel not in DEFAULT_CHANNELS:
            raise MappingError(f"{path}: channels.{channel}: use online, direct or postal")
        for v in [values] if isinstance(values, str) else values:
            cmap.channels[fold(v)] = channel
    cmap.yes |= {fold(v) for v in data.get("yes_values") or []}
    cmap.no |= {fold(v) for v in data.get("no_values") or []}
    for key, target in (data.get("units") or {}).items():
        unit = registry.resolve(str(target))
        if unit is None:
            raise MappingError(f"{path}: units.{key}: {target!r} is not a unit code or name")
        cmap.units[fold(key)] = unit.code
    return cmap


@dataclass
class Layout:
    """Where the header row is and which column holds which field."""

    header_row: int  # 1-based row number in the file
    headers: list[str]
    index: dict[str, int]  # field -> 0-based column


def find_layout(rows: Sequence[tuple[int, Sequence[Any]]], cmap: ColumnMap) -> Layout:
    """The first row naming every required field is the header (exports often carry a title
    and a date line above it)."""
    best: tuple[int, list[str]] | None = None
    for number, cells in rows:
        folded = [fold(c) if c is not None else "" for c in cells]
        index: dict[str, int] = {}
        for name, headers in cmap.columns.items():
            wanted = {fold(h) for h in headers}
            for i, cell in enumerate(folded):
                if cell in wanted:
                    index[name] = i
                    break
        missing = [f for f in REQUIRED if f not in index]
        if not missing:
            return Layout(number, ["" if c is None else str(c).strip() for c in cells], index)
        if best is None or len(missing) < len(best[1]):
            best = (number, missing)
    detail = ""
    if best is not None:
        detail = "; ".join(
            f"{f}: expected one of {', '.join(repr(h) for h in cmap.columns[f])}" for f in best[1]
        )
    raise MappingError(
        f"no header row with the required columns in the first {len(rows)} rows ({detail}); "
        "pass --mapping FILE to name your columns"
    )


@dataclass
class RowResult:
    events: list[dict[str, Any]]
    errors: list[tuple[str, str]]  # (column header, reason)
    dossier_id: str | None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel keeps numeric codes as floats
    return unicodedata.normalize("NFC", str(value)).strip()


def parse_date(value: Any, tz: ZoneInfo) -> datetime:
    """dd/mm/yyyy [HH:MM[:SS]] as text, or a date cell of a spreadsheet; local time."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=tz) if value.tzinfo is None else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=tz)
    text = _text(value)
    m = _DATE.match(text)
    if not m:
        raise ValueError(f"must be a date dd/mm/yyyy (optionally HH:MM), got {text!r}")
    d, mo, y, hh, mi, ss = m.groups()
    try:
        return datetime(
            int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), tzinfo=tz
        )
    except ValueError:
        raise ValueError(f"is not a real date: {text!r}") from None


def parse_amount(value: Any) -> Decimal | None:
    """A fee cell as an amount in VND (20.000 / 20,000 / 20000 đ), or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    text = fold(value).replace("vnđ", "").replace("vnd", "").replace("đ", "").replace(" ", "")
    if not re.fullmatch(r"\d{1,3}([.,]\d{3})+|\d+", text):
        return None
    try:
        return Decimal(re.sub(r"[.,]", "", text))
    except InvalidOperation:
        return None


def row_events(
    cells: Sequence[Any],
    layout: Layout,
    cmap: ColumnMap,
    registry: Registry,
    tz: ZoneInfo,
) -> RowResult:
    """One export row -> its events, or every reason it is rejected (naming the column)."""
    errors: list[tuple[str, str]] = []

    def cell(name: str) -> Any:
        i = layout.index.get(name)
        return cells[i] if i is not None and i < len(cells) else None

    def header(name: str) -> str:
        return layout.headers[layout.index[name]]

    def flag(name: str) -> bool:
        if name not in layout.index:
            return False
        value = fold(_text(cell(name)))
        if value in cmap.yes:
            return True
        if value in cmap.no:
            return False
        errors.append((header(name), f"must be Có or Không, got {_text(cell(name))!r}"))
        return False

    dossier = _text(cell("dossier_id")) or None
    if dossier is None:
        errors.append((header("dossier_id"), "is empty: every row needs a dossier code"))
    elif len(dossier) > 64:
        errors.append((header("dossier_id"), f"is {len(dossier)} characters long; at most 64"))

    unit_code = None
    unit_text = _text(cell("unit"))
    if not unit_text:
        errors.append((header("unit"), "is empty"))
    else:
        unit_code = cmap.units.get(fold(unit_text))
        if unit_code is None:
            found = registry.resolve(unit_text)
            unit_code = found.code if found else None
        if unit_code is None:
            errors.append(
                (header("unit"), f"unknown unit {unit_text!r}: not a unit code or unique name")
            )

    at = None
    try:
        at = parse_date(cell("received_at"), tz)
    except ValueError as exc:
        errors.append((header("received_at"), str(exc)))

    channel = cmap.channels.get(fold(_text(cell("channel"))))
    if channel is None:
        errors.append(
            (
                header("channel"),
                f"unknown channel {_text(cell('channel'))!r}: use Trực tuyến, Trực tiếp or "
                "Bưu chính",
            )
        )

    fee_required = False
    amount: Decimal | None = None
    if "fee" in layout.index:
        raw = cell("fee")
        amount = parse_amount(raw)
        if amount is not None:
            fee_required = amount > 0
        else:
            fee_required = flag("fee")
    digitized = flag("digitized")
    paid_online = flag("paid_online")
    procedure = _text(cell("procedure_code")) or None
    if procedure is not None and len(procedure) > 64:
        errors.append((header("procedure_code"), "is longer than 64 characters"))

    if errors:
        return RowResult([], errors, dossier)
    assert dossier is not None and unit_code is not None and at is not None
    base = {"dossier_id": dossier, "unit_code": unit_code, "occurred_at": at.isoformat()}
    received: dict[str, Any] = {
        "event_id": f"{SOURCE}:{dossier}:received",
        "type": "dossier.received",
        **base,
        "channel": channel,
        "fee_required": fee_required,
    }
    if procedure:
        received["procedure_code"] = procedure
    events = [received]
    if digitized:
        events.append(
            {"event_id": f"{SOURCE}:{dossier}:digitized", "type": "dossier.digitized", **base}
        )
    # Only online payments are events (see dongbo.py: an offline one would shadow a later
    # online payment of the same dossier under the same id).
    if paid_online and fee_required:
        paid: dict[str, Any] = {
            "event_id": f"{SOURCE}:{dossier}:paid",
            "type": "dossier.paid",
            **base,
            "payment_method": "online",
        }
        if amount is not None and amount == amount.to_integral_value():
            paid["amount_vnd"] = int(amount)
        events.append(paid)
    return RowResult(events, [], dossier)


def headers_of(layout: Layout) -> Mapping[str, str]:
    return {name: layout.headers[i] for name, i in layout.index.items()}
