"""Rules of `dvcpulse import`: header detection, column mapping, row -> events (pure)."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dvcpulse_cli.import_rules import (
    ColumnMap,
    MappingError,
    find_layout,
    load_column_map,
    parse_amount,
    parse_date,
    row_events,
)

DATA = Path(__file__).resolve().parents[1] / "data"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
HEADERS = [
    "STT",
    "Mã hồ sơ",
    "Đơn vị",
    "Ngày tiếp nhận",
    "Kênh tiếp nhận",
    "Số hóa",
    "Phí, lệ phí",
    "Thanh toán trực tuyến",
    "Mã TTHC",
]


def layout(cmap=None):
    rows = [(1, ["BÁO CÁO HỒ SƠ"]), (2, ["Từ 01/03/2023"]), (4, HEADERS)]
    return find_layout(rows, cmap or ColumnMap())


def run(cells, registry, cmap=None):
    cmap = cmap or ColumnMap()
    result = row_events(cells, layout(cmap), cmap, registry, TZ)
    return result.events, dict(result.errors)


def test_header_row_found_below_title_lines():
    lay = layout()
    assert lay.header_row == 4
    assert lay.index["dossier_id"] == 1 and lay.index["procedure_code"] == 8


def test_headers_match_nfd_and_case():
    nfd = [unicodedata.normalize("NFD", h.upper()) for h in HEADERS]
    lay = find_layout([(1, nfd)], ColumnMap())
    assert lay.index["received_at"] == 3


def test_missing_required_column_names_it():
    with pytest.raises(MappingError, match=r"channel: expected one of 'Kênh tiếp nhận'"):
        find_layout([(1, HEADERS[:4])], ColumnMap())


def test_good_row_to_events(registry):
    events, errors = run(
        [
            1,
            "HS-1",
            "Sở Thông tin và Truyền thông",
            "02/03/2023 14:05",
            "Trực tuyến",
            "Có",
            "50.000",
            "Có",
            "1.0001",
        ],
        registry,
    )
    assert errors == {}
    assert events == [
        {
            "event_id": "import:HS-1:received",
            "type": "dossier.received",
            "dossier_id": "HS-1",
            "unit_code": "CMU-S01",
            "occurred_at": "2023-03-02T14:05:00+07:00",
            "channel": "online",
            "fee_required": True,
            "procedure_code": "1.0001",
        },
        {
            "event_id": "import:HS-1:digitized",
            "type": "dossier.digitized",
            "dossier_id": "HS-1",
            "unit_code": "CMU-S01",
            "occurred_at": "2023-03-02T14:05:00+07:00",
        },
        {
            "event_id": "import:HS-1:paid",
            "type": "dossier.paid",
            "dossier_id": "HS-1",
            "unit_code": "CMU-S01",
            "occurred_at": "2023-03-02T14:05:00+07:00",
            "payment_method": "online",
            "amount_vnd": 50000,
        },
    ]


def test_spreadsheet_cells_dates_numbers_and_codes(registry):
    events, errors = run(
        [2, 12345.0, "CMU-H01-X07", datetime(2023, 3, 5, 9, 0), "Bưu chính", None, 0, "Không"],
        registry,
    )
    assert errors == {}
    assert [e["type"] for e in events] == ["dossier.received"]
    assert events[0]["dossier_id"] == "12345"  # Excel float code, not "12345.0"
    assert (events[0]["channel"], events[0]["fee_required"]) == ("postal", False)
    assert events[0]["occurred_at"] == "2023-03-05T09:00:00+07:00"


def test_bad_row_names_every_column(registry):
    _, errors = run([3, "", "Sở Không Có", "2023-03-02", "Fax", "có lẽ", "abc", "?"], registry)
    assert set(errors) == {
        "Mã hồ sơ",
        "Đơn vị",
        "Ngày tiếp nhận",
        "Kênh tiếp nhận",
        "Số hóa",
        "Phí, lệ phí",
        "Thanh toán trực tuyến",
    }
    assert "dd/mm/yyyy" in errors["Ngày tiếp nhận"]
    assert "unknown unit 'Sở Không Có'" in errors["Đơn vị"]


def test_impossible_date_and_paid_without_fee(registry):
    _, errors = run([4, "HS-4", "CMU-S01", "31/02/2023", "Trực tiếp"], registry)
    assert errors == {"Ngày tiếp nhận": "is not a real date: '31/02/2023'"}
    events, errors = run(
        [5, "HS-5", "CMU-S01", "01/03/2023", "Trực tiếp", "", "Không", "Có"], registry
    )
    assert errors == {} and [e["type"] for e in events] == ["dossier.received"]


def test_parsers():
    assert parse_date("1/3/2023", TZ) == datetime(2023, 3, 1, tzinfo=TZ)
    assert parse_date(date(2023, 3, 1), TZ) == datetime(2023, 3, 1, tzinfo=TZ)
    assert parse_amount("1.250.000 đ") == Decimal(1250000)
    assert parse_amount("20,000") == Decimal(20000)
    assert parse_amount(0) == 0
    assert parse_amount("Có") is None
    assert parse_amount("1.5") is None  # not a VND amount


def test_mapping_file(registry):
    cmap = load_column_map(DATA / "import_mapping.yaml", registry)
    lay = find_layout([(1, ["Số HS", "Nơi tiếp nhận", "Tiếp nhận lúc", "Kênh", "Số hóa"])], cmap)
    result = row_events(
        ["A-1", "Một cửa Sở TTTT", "09/03/2023", "Cổng DVC", "Đã có"], lay, cmap, registry, TZ
    )
    assert result.errors == []
    assert result.events[0]["unit_code"] == "CMU-S01"
    assert result.events[0]["channel"] == "online"
    assert [e["type"] for e in result.events] == ["dossier.received", "dossier.digitized"]


def test_bad_mapping_files(tmp_path, registry):
    bad = tmp_path / "m.yaml"
    bad.write_text("columns: {colour: X}\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"columns\.colour: unknown field"):
        load_column_map(bad, registry)
    bad.write_text("units: {'A': NOPE}\n", encoding="utf-8")
    with pytest.raises(MappingError, match="'NOPE' is not a unit code"):
        load_column_map(bad, registry)
    bad.write_text("colums: {}\n", encoding="utf-8")
    with pytest.raises(MappingError, match="unknown key"):
        load_column_map(bad, registry)
