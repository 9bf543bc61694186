"""`dvcpulse import` over real servers: a generated XLSX with Vietnamese headers and bad rows,
a CSV with a column mapping, and a row that only ingest can reject."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from dvcpulse_cli.import_rules import ColumnMap, load_column_map
from dvcpulse_cli.importer import import_file
from dvcpulse_cli.main import app as cli
from dvcpulse_common.registry import Registry
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring
from dvcpulse_shared.units import Unit
from openpyxl import Workbook
from typer.testing import CliRunner

from tests.helpers import ServerThread, wait_until

pytestmark = pytest.mark.integration

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
]


@pytest.fixture
def stack(settings, registry, target_sets):
    with (
        ServerThread(create_ingest(settings, registry)) as ingest,
        ServerThread(create_scoring(settings, registry, target_sets)) as scoring,
    ):
        yield ingest, scoring


def counts(scoring_url: str, unit: str) -> tuple[int, ...]:
    row = httpx.get(f"{scoring_url}/api/v1/scores", params={"unit": unit}).json()["rows"][0]
    return tuple(row[k] for k in ("received", "online", "digitized", "fee_required", "paid_online"))


def text(result) -> str:
    # rich wraps long lines at the terminal width; compare with whitespace collapsed
    return " ".join(result.output.split())


def sample_xlsx(path: Path) -> Path:
    """An export as one-stop systems produce it: a title, a period line, then the table."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Hồ sơ"
    ws.append(["DANH SÁCH HỒ SƠ TIẾP NHẬN"])
    ws.append(["Từ ngày 01/03/2023 đến ngày 07/03/2023"])
    ws.append([])
    ws.append(HEADERS)
    good = [
        [1, "IMP-1", "Sở Thông tin và Truyền thông", "02/03/2023", "Trực tuyến", "Có", 50000, "Có"],
        [2, "IMP-2", "CMU-S01", datetime(2023, 3, 2, 15, 30), "Trực tiếp", "Không", "0", ""],
        [
            3,
            "IMP-3",
            "sở thông tin và truyền thông",
            "03/03/2023 08:00",
            "Bưu chính",
            "x",
            "Có",
            "Không",
        ],
        [4, "IMP-4", "CMU-H01-X07", "04/03/2023", "Trực tuyến", "", "20.000", "Có"],
    ]
    bad = [
        [5, "IMP-5", "Sở Không Có", "02/03/2023", "Trực tuyến", "Có", 0, ""],  # unknown unit
        [6, "IMP-6", "CMU-S01", "2023-03-02", "Trực tuyến", "Có", 0, ""],  # ISO date
        [7, "", "CMU-S01", "02/03/2023", "Trực tuyến", "Có", 0, ""],  # no dossier code
        [8, "IMP-8", "CMU-S01", "30/02/2023", "Fax", "Có", 0, ""],  # two bad columns
    ]
    for row in good[:2] + bad[:2] + good[2:] + bad[2:]:
        ws.append(row)
    wb.save(path)
    return path


def test_xlsx_import_with_bad_rows(stack, tmp_path, monkeypatch):
    ingest, scoring = stack
    xlsx = sample_xlsx(tmp_path / "hoso.xlsx")
    result = CliRunner().invoke(cli, ["import", str(xlsx), "--url", ingest.url, "--batch", "3"])
    assert result.exit_code == 2, result.output
    assert "8 rows (header on row 4): 4 accepted (8 events), 4 rejected" in text(result)
    assert "row 12: Ngày tiếp nhận: is not a real date: '30/02/2023'; Kênh tiếp nhận" in text(
        result
    )

    rejects = tmp_path / "hoso.rejects.csv"
    with rejects.open(encoding="utf-8-sig", newline="") as f:
        lines = list(csv.DictReader(f))
    by_row = {int(r["Dòng"]): r for r in lines}
    # Spreadsheet row numbers: header on row 4, the bad rows are on rows 7, 8, 11, 12.
    assert sorted(by_row) == [7, 8, 11, 12]
    assert by_row[7]["Cột lỗi"] == "Đơn vị" and "Sở Không Có" in by_row[7]["Lý do"]
    assert by_row[8]["Cột lỗi"] == "Ngày tiếp nhận" and "dd/mm/yyyy" in by_row[8]["Lý do"]
    assert by_row[11]["Cột lỗi"] == "Mã hồ sơ"
    assert by_row[12]["Cột lỗi"] == "Ngày tiếp nhận; Kênh tiếp nhận"
    assert by_row[12]["Mã hồ sơ"] == "IMP-8" and by_row[12]["Kênh tiếp nhận"] == "Fax"

    wait_until(lambda: counts(scoring.url, "CMU-H01-X07")[0] == 1, what="last good row")
    wait_until(lambda: counts(scoring.url, "CMU-S01")[0] == 3, what="CMU-S01 rows")
    # IMP-1 online, digitized, fee 50,000 paid online; IMP-2 direct, no fee; IMP-3 postal,
    # digitized, fee "Có", not paid online.
    assert counts(scoring.url, "CMU-S01") == (3, 1, 2, 2, 1)
    assert counts(scoring.url, "CMU-H01-X07") == (1, 1, 0, 1, 1)

    # Importing the same file again changes nothing (event ids come from the dossier codes).
    again = CliRunner().invoke(cli, ["import", str(xlsx), "--url", ingest.url])
    assert again.exit_code == 2
    marker = tmp_path / "marker.csv"
    marker.write_text(
        "Mã hồ sơ;Đơn vị;Ngày tiếp nhận;Kênh tiếp nhận\nIMP-M;CMU-S01;05/03/2023;Trực tiếp\n",
        encoding="utf-8",
    )
    ok = CliRunner().invoke(cli, ["import", str(marker), "--url", ingest.url])
    assert ok.exit_code == 0, ok.output
    assert not (tmp_path / "marker.rejects.csv").exists()
    wait_until(lambda: counts(scoring.url, "CMU-S01")[0] == 4, what="marker")
    assert counts(scoring.url, "CMU-S01") == (4, 1, 2, 2, 1)


def test_csv_with_a_column_mapping(stack, tmp_path, registry):
    ingest, scoring = stack
    path = tmp_path / "export.csv"
    path.write_text(
        "Số HS,Nơi tiếp nhận,Tiếp nhận lúc,Kênh,Số hóa\n"
        "M-1,Một cửa Sở TTTT,09/03/2023,Cổng DVC,Đã có\n"
        "M-2,CMU-S05,09/03/2023,Trực tiếp,Không\n",
        encoding="utf-8",
    )
    summary = import_file(
        path, ingest.url, registry, load_column_map(DATA / "import_mapping.yaml", registry), TZ
    )
    assert (summary.rows, summary.accepted, summary.rejected, summary.events) == (2, 2, 0, 3)
    wait_until(lambda: counts(scoring.url, "CMU-S05")[0] == 1, what="M-2")
    wait_until(lambda: counts(scoring.url, "CMU-S01") == (1, 1, 1, 0, 0), what="M-1")


def test_rows_only_ingest_rejects_are_reported_with_its_reason(stack, tmp_path, registry):
    ingest, _ = stack
    # The importer's registry knows a unit the service does not (a stale local copy).
    local = Registry.build(
        [
            *registry.units.values(),
            Unit(code="CMU-S99", name="Sở Mới", level="province", parent_code="CMU"),
        ],
        {},
    )
    path = tmp_path / "x.csv"
    path.write_text(
        "Mã hồ sơ,Đơn vị,Ngày tiếp nhận,Kênh tiếp nhận\n"
        "N-1,Sở Mới,02/03/2023,Trực tuyến\n"
        "N-2,CMU-S02,02/03/2023,Trực tuyến\n",
        encoding="utf-8",
    )
    summary = import_file(path, ingest.url, local, ColumnMap(), TZ)
    assert (summary.accepted, summary.rejected) == (1, 1)
    reject = summary.rejects[0]
    assert reject.row == 2 and reject.dossier_id == "N-1"
    assert reject.errors == [("Đơn vị", "ingest: unknown unit 'CMU-S99'")]
    assert summary.rejects_file == tmp_path / "x.rejects.csv"


def test_unusable_file_fails_clearly(stack, tmp_path):
    ingest, _ = stack
    path = tmp_path / "wrong.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["import", str(path), "--url", ingest.url])
    assert result.exit_code == 1
    assert "no header row with the required columns" in text(result)
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "none.xlsx"), "--url", ingest.url])
    assert result.exit_code == 1 and "no such file" in text(result)
