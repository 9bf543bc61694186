"""`dvcpulse report` and GET /api/v1/ranking over real servers: the XLSX is read back and
checked cell by cell against the scoring API's numbers."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import httpx
import pytest
from dvcpulse_cli.main import app as cli
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring
from openpyxl import load_workbook
from typer.testing import CliRunner

from tests.factories import digitized, paid, received
from tests.helpers import ServerThread, wait_until

pytestmark = pytest.mark.integration

FROM, AS_OF, PREV_TO = "2023-03-01", "2023-03-15", "2023-03-08"
EARLY, LATE = "2023-03-02T09:00:00+07:00", "2023-03-12T09:00:00+07:00"
COUNTS = ("received", "online", "digitized", "fee_required", "paid_online")
PARTS = {
    "online": ("online", "received"),
    "digitization": ("digitized", "received"),
    "online_payment": ("paid_online", "fee_required"),
}
METRICS = tuple(PARTS)


def feed() -> list[dict]:
    ev: list[dict] = []

    def dossier(unit, name, at, channel, *, fee=False, digit=False, pay=False):
        ev.append(received(unit, name, channel=channel, fee=fee, at=at))
        if digit:
            ev.append(digitized(unit, name, at=at))
        if pay:
            ev.append(paid(unit, name, at=at))

    # CMU-S01 (province): 4 dossiers in the first week, 2 more in the second.
    dossier("CMU-S01", "R1", EARLY, "online", fee=True, digit=True, pay=True)
    dossier("CMU-S01", "R2", EARLY, "online", fee=True, digit=True)
    dossier("CMU-S01", "R3", EARLY, "online")
    dossier("CMU-S01", "R4", EARLY, "direct")
    dossier("CMU-S01", "R5", LATE, "online", fee=True, digit=True, pay=True)
    dossier("CMU-S01", "R6", LATE, "online", digit=True)
    # CMU-S03: 5 of 6 online like CMU-S01 (a tie), all digitized, fees but none paid online.
    for i in range(6):
        dossier("CMU-S03", f"T{i}", EARLY, "online" if i else "direct", fee=True, digit=True)
    # CMU-S02 has no fee procedures: payment N/A; nothing online: 0%.
    dossier("CMU-S02", "Z1", EARLY, "direct")
    dossier("CMU-S02", "Z2", LATE, "direct")
    # District CMU-H01: all online, nothing digitized (0%), one fee unpaid online (0%).
    dossier("CMU-H01", "H1", LATE, "online", fee=True)
    dossier("CMU-H01", "H2", LATE, "online")
    # Commune CMU-H01-X07: 1 of 2 online, below the 60% target.
    dossier("CMU-H01-X07", "X1", LATE, "online", digit=True)
    dossier("CMU-H01-X07", "X2", LATE, "direct", digit=True)
    return ev


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """One stack, one feed, the three formats written once for every test of the module."""
    from dvcpulse_common.registry import load_registry
    from dvcpulse_common.settings import Settings
    from dvcpulse_common.targets import load_baselines, load_targets

    import tests.conftest as conf

    tmp = tmp_path_factory.mktemp("report")
    prefix = f"test-report-{tmp.name[-8:]}"
    settings = Settings(
        redis_url=conf.REDIS_URL, data_dir=tmp / "data", stream_prefix=prefix, block_ms=50
    )
    registry = load_registry(settings.units_file, settings.level_labels)
    target_sets = load_targets(settings.targets_file)
    try:
        with (
            ServerThread(create_ingest(settings, registry)) as ingest,
            ServerThread(
                create_scoring(
                    settings, registry, target_sets, baselines=load_baselines(settings.targets_file)
                )
            ) as scoring,
        ):
            events = feed()
            resp = httpx.post(f"{ingest.url}/api/v1/events", json=events)
            assert resp.json() == {"accepted": len(events), "rejected": []}
            # The stream is consumed in order: once a marker posted after the feed is
            # counted, so is the whole feed.
            marker = received("CMU-H09-X13", "MARKER", channel="direct", fee=False, at=LATE)
            assert httpx.post(f"{ingest.url}/api/v1/events", json=[marker]).status_code == 202
            wait_until(
                lambda: api_rows(scoring.url, AS_OF)["CMU-H09-X13"]["received"] == 1,
                what="feed counted",
            )
            out = {}
            runner = CliRunner()
            for fmt in ("xlsx", "html", "md"):
                path = tmp / f"report.{fmt}"
                args = ["report", "--window", "campaign", "--format", fmt, "--out", str(path)]
                result = runner.invoke(cli, [*args, "--url", scoring.url, "--as-of", AS_OF])
                assert result.exit_code == 0, result.output
                out[fmt] = path
            yield scoring.url, out, registry
    finally:
        import redis

        client = redis.Redis.from_url(conf.REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def api_rows(url: str, to: str) -> dict[str, dict]:
    body = httpx.get(f"{url}/api/v1/scores", params={"from": FROM, "to": to}).json()
    return {r["unit_code"]: r for r in body["rows"]}


def cut(value: Fraction) -> int:
    """Hundredths cut toward zero, the report's printing rule."""
    n = abs(value) * 100
    return int(n) if value >= 0 else -int(n)


def exact(row: dict, metric: str) -> Fraction | None:
    num, den = PARTS[metric]
    return None if row[den] == 0 else Fraction(row[num] * 100, row[den])


def sheet_rows(ws) -> dict[str, list[tuple[int, list]]]:
    """Section title -> [(sheet row, cell values)] for the unit rows and the Tổng row."""
    sections: dict[str, list[tuple[int, list]]] = {}
    current = None
    for r in range(5, ws.max_row + 1):
        values = [ws.cell(r, c).value for c in range(1, 21)]
        if isinstance(values[0], str) and values[0][:4] in ("I. C", "II. ", "III."):
            current = values[0]
            sections[current] = []
        elif current is not None and values[1]:
            sections[current].append((r, values))
    return sections


def test_xlsx_matches_the_api_cell_by_cell(reported):
    url, out, registry = reported
    api = api_rows(url, AS_OF)
    prev = api_rows(url, PREV_TO)
    # The API's own rates agree with its counts (so comparing with counts compares with both).
    assert api["CMU-S01"]["online_rate"] == pytest.approx(500 / 6)

    wb = load_workbook(out["xlsx"])
    ws = wb["Phụ lục"]
    assert ws.freeze_panes == "C5"
    assert ws.column_dimensions["B"].width == 42
    assert ws["A1"].value.startswith("TỶ LỆ HỒ SƠ GIẢI QUYẾT TRỰC TUYẾN")
    assert "01/03/2023 đến 15/03/2023" in ws["A2"].value
    assert [ws.cell(4, c).value for c in range(1, 7)] == [
        "STT",
        "Đơn vị",
        "Tỷ lệ hồ sơ giải quyết trực tuyến",
        "Tỷ lệ số hóa",
        "Tỷ lệ thanh toán trực tuyến",
        "Ghi chú",
    ]
    sections = sheet_rows(ws)
    assert list(sections) == ["I. CẤP TỈNH", "II. CẤP HUYỆN", "III. CẤP XÃ"]

    levels = httpx.get(f"{url}/api/v1/scores/levels", params={"from": FROM, "to": AS_OF}).json()[
        "rows"
    ]
    by_level = {r["level"]: r for r in levels}
    # Exact decimals, as the targets beside them.
    assert by_level["province"]["baseline"]["online"] == "63.65"
    assert isinstance(by_level["province"]["targets"]["online"], str)
    assert by_level["province"]["baseline_year"] == 2022
    assert by_level["total"]["baseline"] == {
        "online": "52.23",
        "digitization": None,
        "online_payment": None,
    }
    checked = checked_totals = 0
    for title, level in zip(sections, ("province", "district", "commune"), strict=True):
        units = [u for u in registry.units.values() if u.level == level]
        rows = sections[title]
        assert len(rows) == len(units) + 1  # every unit, then Tổng
        for (r, values), unit in zip(rows, units, strict=False):
            a, p = api[unit.code], prev[unit.code]
            assert values[0] == units.index(unit) + 1 and values[1] == unit.name
            assert values[15:20] == [a[k] for k in COUNTS], unit.code
            for i, m in enumerate(METRICS):
                rate = exact(a, m)
                if m == "online_payment" and not unit.has_fee_procedures:
                    rate = None
                expected = "N/A" if rate is None else cut(rate) / 10_000
                assert values[2 + i] == expected, (unit.code, m)
                # Change since the previous week, in points.
                before = exact(p, m) if unit.has_fee_procedures or m != "online_payment" else None
                week = None if rate is None or before is None else rate - before
                assert values[9 + i] == ("N/A" if week is None else cut(week) / 100)
                base = getattr(unit, f"baseline_{m}_rate")
                since = None if rate is None or base is None else rate - Fraction(str(base))
                assert values[12 + i] == ("N/A" if since is None else cut(since) / 100)
                fill = ws.cell(r, 3 + i).fill.fgColor.rgb
                status = a["status"][m]
                if status == "zero":
                    assert fill.endswith("FFC7CE"), (unit.code, m)
                elif status == "below_target":
                    assert fill.endswith("FFEB9C"), (unit.code, m)
                else:
                    assert fill in (None, "00000000"), (unit.code, m, fill)
                checked += 1
        # Tổng: the level's summed counts from /scores/levels, rates from those counts.
        _, total = rows[-1]
        lv = by_level[level]
        assert total[1] == "Tổng" and total[0] is None
        assert total[15:20] == [lv[k] for k in COUNTS]
        for i, m in enumerate(METRICS):
            rate = exact(lv, m)
            assert total[2 + i] == ("N/A" if rate is None else cut(rate) / 10_000)
            # Since 2022: against the plan's printed figure for the level (the targets file's
            # `baselines:`, served with the level's row), never an average of unit baselines.
            base = lv["baseline"][m]
            since = None if rate is None or base is None else rate - Fraction(str(base))
            assert total[12 + i] == ("N/A" if since is None else cut(since) / 100), (level, m)
            checked_totals += since is not None
    assert checked == 3 * 128
    # 3 levels x 3 rates, but no commune dossier of this feed bears a fee: payment N/A there.
    assert checked_totals == 8

    cells = {u: v for rows in sections.values() for _, v in rows for u in [v[1]]}
    s01 = cells["Sở Thông tin và Truyền thông"]
    assert s01[2] == 0.8333  # 5 of 6 online: 83,33%, cut not rounded
    assert s01[9] == 8.33  # from 3 of 4 (75%) a week earlier
    assert s01[12] == 16.63  # 83.333... - 66.70
    assert s01[6:9] == [0.8, 0.8, 0.4]  # campaign targets, province
    s02 = cells["Sở Giáo dục và Đào tạo"]
    assert s02[4] == "N/A" and s02[5] == "Không có TTHC yêu cầu thực hiện nghĩa vụ tài chính"
    assert cells["Sở Tư pháp"][5] == "Chưa có hồ sơ trong kỳ"  # CMU-S04: no data
    assert cells["Sở Tư pháp"][2:5] == ["N/A", "N/A", "N/A"]
    province_total = sections["I. CẤP TỈNH"][-1][1]
    # Totals are sums of counts: 10 of 14 online, not the average of 83.33/0/83.33.
    assert province_total[15:17] == [14, 10] and province_total[2] == 0.7142
    assert province_total[12] == 7.77  # 71.428...% - the plan's 63,65% for the province


def test_ranking_sheet_and_api_agree(reported):
    url, out, _ = reported
    api = httpx.get(
        f"{url}/api/v1/ranking",
        params={"from": FROM, "to": AS_OF, "level": "province", "by": "online_rate"},
    ).json()
    assert api["window"]["date_to"] == AS_OF
    (table,) = api["rankings"]
    top = [(r["rank"], r["unit_code"]) for r in table["rows"][:3]]
    # CMU-S01 and CMU-S03 tie at 5/6; CMU-S02 at 0% is ranked; units without data are N/A.
    assert top == [(1, "CMU-S01"), (1, "CMU-S03"), (3, "CMU-S02")]
    assert all(r["rank"] is None and r["value"] is None for r in table["rows"][3:])
    assert len(table["rows"]) == 18

    ws = load_workbook(out["xlsx"])["Xếp hạng thi đua"]
    sheet = [
        [c.value for c in row]
        for row in ws.iter_rows(min_row=2)
        if row[0].value == "Cấp tỉnh" and row[1].value == "Tỷ lệ hồ sơ trực tuyến"
    ]
    assert [(r[2], r[3]) for r in sheet] == [
        (r["rank"] if r["rank"] is not None else "N/A", r["unit_code"]) for r in table["rows"]
    ]
    assert sheet[0][5] == 0.8333 and sheet[3][5] == "N/A"

    improvement = httpx.get(
        f"{url}/api/v1/ranking",
        params={"from": FROM, "to": AS_OF, "level": "province", "by": "online_improvement"},
    ).json()["rankings"][0]["rows"]
    # CMU-S03: 83.33 - 49.30 (baseline); CMU-S01: 83.33 - 66.70; CMU-S02: 0 - 61.
    assert [r["unit_code"] for r in improvement[:3]] == ["CMU-S03", "CMU-S01", "CMU-S02"]
    assert improvement[2]["value"] == pytest.approx(-61.0)

    bad = httpx.get(f"{url}/api/v1/ranking", params={"level": "galaxy"})
    assert bad.status_code == 400 and "galaxy" in bad.json()["detail"]
    bad = httpx.get(f"{url}/api/v1/ranking", params={"by": "speed"})
    assert bad.status_code == 422


def test_markdown_and_html(reported):
    _, out, _ = reported
    md = out["md"].read_text(encoding="utf-8")
    assert "## I. CẤP TỈNH" in md and "## III. CẤP XÃ" in md
    assert "| 1 | Sở Thông tin và Truyền thông | 83,33% | 66,66% ▼ | 66,66% |" in md
    assert "| 2 | Sở Giáo dục và Đào tạo | **0,00%** ⛔ | **0,00%** ⛔ | N/A |" in md
    assert "N/A | Không có TTHC yêu cầu thực hiện nghĩa vụ tài chính |" in md
    assert "|  | **Tổng** | 71,42% ▼ | 71,42% ▼ | 22,22% ▼ |  | 80% | 80% | 40% | -1,29 |" in md
    # ... and since 2022 against the plan's level figures: 71,42 - 63,65; 71,42 - 51,72; ...
    assert "| -1,29 | -1,29 | +9,72 | +7,77 | +19,70 | +21,14 |" in md
    assert "| N/A | N/A | N/A | +69,72 | -40,01 | -0,97 |" in md  # district: 100% - 30,28%
    assert "50,00% ▼" in md  # CMU-H01-X07 below the commune target of 60%
    page = out["html"].read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<td>III. CẤP XÃ</td>" not in page
    assert '<td class="num zero">0,00%</td>' in page
    assert '<td class="num below">50,00%</td>' in page
    assert "XẾP HẠNG THI ĐUA" in page


def test_report_fails_clearly(reported):
    url, _, _ = reported
    result = CliRunner().invoke(
        cli, ["report", "--url", url, "--as-of", "2024-01-01", "--format", "md"]
    )
    assert result.exit_code == 1
    assert "outside the window 01/03/2023–09/05/2023" in " ".join(result.output.split())
    result = CliRunner().invoke(cli, ["report", "--url", url, "--window", "nope"])
    assert result.exit_code == 1 and "unknown window" in " ".join(result.output.split())
    assert date.fromisoformat(AS_OF)  # the fixture's date is the one checked above


def test_report_with_a_read_token(settings, registry, target_sets):
    from dvcpulse_cli.report import ReportError, fetch_report
    from dvcpulse_common.auth import hash_secret

    token = "dvp_test-report-read-token"
    secured = settings.model_copy(update={"read_tokens": [hash_secret(token)]})
    with ServerThread(create_scoring(secured, registry, target_sets)) as scoring:
        with pytest.raises(ReportError, match="answered 401"):
            fetch_report(scoring.url, "campaign", date(2023, 3, 15), date(2026, 1, 1))
        report = fetch_report(scoring.url, "campaign", None, date(2026, 1, 1), token)
    # Over and done with: the report runs to the campaign's last day.
    assert report.as_of == date(2023, 5, 9) and report.previous_to == date(2023, 5, 2)
    assert [s.title for s in report.sections] == ["I. CẤP TỈNH", "II. CẤP HUYỆN", "III. CẤP XÃ"]
