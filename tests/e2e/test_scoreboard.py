"""The live scoreboard in a real headless Chromium, driven over the DevTools protocol.

Real ingest and scoring servers (uvicorn), the real Redis and a real DuckDB file; events go in
over HTTP and the test reads what the page shows. The page must update by itself (server-sent
events) after new events, without a reload.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring

from tests.factories import digitized, paid, received
from tests.helpers import ServerThread, await_until, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.e2e
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it",
)

METRICS = {
    "online": ("online", "received"),
    "digitization": ("digitized", "received"),
    "online_payment": ("paid_online", "fee_required"),
}


def vn_rate(num: int, den: int) -> str:
    """63,65%: cut to two decimals (the appendix's rule), computed from the counts."""
    h = num * 10_000 // den
    return f"{h // 100},{h % 100:02d}%"


def expected_cell(row: dict[str, Any], metric: str) -> str:
    status = row["status"][metric]
    if status == "not_applicable":
        return "N/A"
    if status == "no_data":
        return "—"
    num, den = METRICS[metric]
    return vn_rate(row[num], row[den])


class Chromium:
    """Headless Chromium with a fresh profile; the DevTools port is read from the profile."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Chromium:
        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
                "--lang=vi-VN",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: renderers and helpers end with it
        )
        active = self.profile / "DevToolsActivePort"

        def port() -> int:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}")
            text = active.read_text() if active.exists() else ""
            return int(text.splitlines()[0]) if text.strip() else 0

        self.port = wait_until(port, 30, 0.05, what="chromium DevTools port")
        return self

    def page_ws(self) -> str:
        def page() -> str | None:
            targets = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=5).json()
            pages = [t for t in targets if t["type"] == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        return wait_until(page, 15, 0.05, what="a page target")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)  # the group of the chromium this test started
        self.proc.wait(10)

        def group_gone() -> bool:
            try:
                os.killpg(self.proc.pid, 0)  # type: ignore[union-attr]
            except ProcessLookupError:
                return True
            return False

        wait_until(group_gone, 10, what="chromium's helper processes to exit")


class Page:
    """The few DevTools calls the test needs; keeps JS exceptions and console errors."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.errors: list[str] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            if msg.get("method") == "Runtime.exceptionThrown":
                self.errors.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
            elif (
                msg.get("method") == "Runtime.consoleAPICalled" and msg["params"]["type"] == "error"
            ):
                self.errors.append(json.dumps(msg["params"]["args"])[:500])

    async def eval(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path, full_page: bool = False) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = await self.eval(
                "({w: document.documentElement.scrollWidth,"
                " h: document.documentElement.scrollHeight})"
            )
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["w"], "height": size["h"], "scale": 1},
            )
        shot = await self.send("Page.captureScreenshot", **params)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@pytest.fixture
def stack(settings, registry, target_sets) -> Iterator[tuple[ServerThread, ServerThread]]:
    with (
        ServerThread(create_ingest(settings, registry)) as ingest,
        ServerThread(create_scoring(settings, registry, target_sets)) as scoring,
    ):
        yield ingest, scoring


@pytest.fixture
async def page(stack) -> AsyncIterator[Page]:
    # Chromium is closed before the servers stop, so no event stream holds up their shutdown.
    with tempfile.TemporaryDirectory(prefix="dvcpulse-chromium-") as profile:
        with Chromium(Path(profile)) as browser:
            async with websockets.connect(
                browser.page_ws(), max_size=None, proxy=None, open_timeout=10
            ) as ws:
                p = Page(ws)
                await p.send("Runtime.enable")
                await p.send("Page.enable")
                yield p


def post(ingest: ServerThread, events: list[dict[str, Any]]) -> None:
    resp = httpx.post(f"{ingest.url}/api/v1/events", json=events, timeout=10)
    assert resp.status_code == 202 and resp.json()["rejected"] == [], resp.text


def api(scoring: ServerThread, path: str, **params: Any) -> dict[str, Any]:
    resp = httpx.get(f"{scoring.url}{path}", params={"window": "campaign", **params}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def cells(page: Page, selector: str) -> dict[str, dict[str, Any]]:
    """unit code (or total level) -> {metric: (text, status)} plus the name and note."""
    return await page.eval(
        f"""Object.fromEntries([...document.querySelectorAll({json.dumps(selector)})].map(tr => [
            tr.dataset.unit || tr.dataset.total,
            Object.assign(
              {{name: tr.querySelector('td.unit').textContent,
                note: tr.querySelector('td.note').textContent,
                stt: tr.querySelector('td').textContent}},
              Object.fromEntries([...tr.querySelectorAll('td.rate')].map(td =>
                [td.dataset.metric, [td.textContent, td.dataset.status]])))]))"""
    )


@pytest.mark.browser
@needs_chromium
async def test_scoreboard_shows_units_updates_live_and_draws_a_trend(
    stack, page: Page, artifacts: Path
) -> None:
    started = time.monotonic()
    ingest, scoring = stack
    # Campaign days (01/03-09/05/2023), so the campaign's targets judge them.
    events = [
        # Sở TT&TT: 3/4 online (75 < 80: below), 2/4 digitized, 1/4 fee-bearing paid online.
        *[received("CMU-S01", f"S01-{i}", channel="online") for i in range(3)],
        received("CMU-S01", "S01-3", channel="direct"),
        digitized("CMU-S01", "S01-0"),
        digitized("CMU-S01", "S01-1"),
        paid("CMU-S01", "S01-0"),
        # Sở GD&ĐT has no fee-bearing procedures: payment is N/A, never 0%.
        received("CMU-S02", "S02-0", channel="online", fee=False),
        received("CMU-S02", "S02-1", channel="online", fee=False),
        digitized("CMU-S02", "S02-0"),
        digitized("CMU-S02", "S02-1"),
        # TP Cà Mau: nothing online yet (0%, red).
        *[received("CMU-H01", f"H01-{i}", channel="direct") for i in range(3)],
        # phường Tân Thành: 2/3 online = 66.66…%, printed 66,66% (cut, not rounded to 66,67).
        received("CMU-H01-X07", "X07-0", channel="online"),
        received("CMU-H01-X07", "X07-1", channel="online"),
        received("CMU-H01-X07", "X07-2", channel="postal"),
    ]
    post(ingest, events)
    wait_until(
        lambda: api(scoring, "/api/v1/scores/levels")["rows"][-1]["received"] == 12,
        what="scoring to count the first events",
    )

    await page.send(
        "Emulation.setDeviceMetricsOverride",
        width=1400,
        height=1000,
        deviceScaleFactor=1,
        mobile=False,
    )
    await page.send("Page.navigate", url=f"{scoring.url}/")

    async def ready() -> bool:
        try:
            return await page.eval("document.body.dataset.state") == "ready"
        except (AssertionError, RuntimeError):
            return False  # still navigating

    await await_until(ready, 20, what="the page to render")
    await await_until(
        lambda: page.eval("document.getElementById('live').classList.contains('on')"),
        10,
        what="the live event stream to connect",
    )

    # Every unit of the three levels, in the appendix's layout and order.
    scores = api(scoring, "/api/v1/scores")
    levels = {lv["code"]: lv for lv in api(scoring, "/api/v1/scoreboard/config")["levels"]}
    expected_rows = [r for r in scores["rows"] if r["level"] in levels]
    assert len(expected_rows) == 128  # 18 departments, 9 districts, 101 communes
    shown = await cells(page, "tr.unit-row")
    assert list(shown) == [r["unit_code"] for r in expected_rows]
    headings = await page.eval(
        "[...document.querySelectorAll('tr.group td:first-child')].map(td => td.textContent)"
    )
    assert headings == ["I. CẤP TỈNH", "II. CẤP HUYỆN", "III. CẤP XÃ"]
    header = await page.eval("[...document.querySelectorAll('thead th')].map(th => th.textContent)")
    assert header == [
        "STT",
        "Đơn vị",
        "Tỷ lệ hồ sơ giải quyết trực tuyến",
        "Tỷ lệ số hóa",
        "Tỷ lệ thanh toán trực tuyến",
        "Ghi chú",
    ]
    # Each cell agrees with the API (text from counts, colour from status) for all 128 units.
    for row in expected_rows:
        got = shown[row["unit_code"]]
        assert got["name"] == row["unit_name"]
        for metric in METRICS:
            assert got[metric] == [expected_cell(row, metric), row["status"][metric]], (
                row["unit_code"],
                metric,
            )
    assert shown["CMU-S01"]["stt"] == "1" and shown["CMU-S02"]["stt"] == "2"
    assert shown["CMU-H01"]["stt"] == "1"  # numbering restarts in each group
    assert shown["CMU-S01"]["online"] == ["75,00%", "below_target"]
    assert shown["CMU-S01"]["online_payment"] == ["25,00%", "below_target"]
    assert shown["CMU-S02"]["online"] == ["100,00%", "met"]
    assert shown["CMU-S02"]["online_payment"] == ["N/A", "not_applicable"]
    assert shown["CMU-S02"]["note"] == "Không có TTHC yêu cầu thực hiện nghĩa vụ tài chính"
    assert shown["CMU-H01"]["online"] == ["0,00%", "zero"]
    assert shown["CMU-H01-X07"]["online"] == ["66,66%", "met"]
    assert shown["CMU-S03"]["online"] == ["—", "no_data"]
    # Level totals are sums of counts, then divided: 5 of 6 at province level.
    totals = await cells(page, "tr.total")
    assert totals["province"]["online"] == ["83,33%", "met"]
    assert totals["district"]["online"] == ["0,00%", "zero"]
    assert totals["total"]["online"] == ["58,33%", "met"]  # 7 of 12
    # The province-wide row has no target of its own: neutral, not green.
    assert await page.eval(
        "document.querySelector('tr.total[data-total=total] td[data-metric=online]')"
        ".classList.contains('st-none')"
    )
    # Colours really differ on screen (met green, below amber, zero red).
    colours = await page.eval(
        """Object.fromEntries(['met', 'below_target', 'zero', 'not_applicable'].map(s => [s,
            getComputedStyle(document.querySelector(`td.rate[data-status=${s}]`)).backgroundColor]))"""
    )
    assert len(set(colours.values())) == 4, colours
    await page.screenshot(artifacts / "scoreboard-all-levels.png", full_page=True)

    # New events arrive: the same document updates by itself (no reload, no polling wait: the
    # page's safety-net poll is every 60 s, the deadline here is 15 s).
    await page.eval("window.__sameDocument = true")
    renders = int(await page.eval("document.body.dataset.renders"))
    post(ingest, [received("CMU-H01", f"H01-new-{i}", channel="online") for i in range(3)])

    async def updated() -> bool:
        row = (await cells(page, "tr.unit-row[data-unit='CMU-H01']"))["CMU-H01"]
        return row["online"] == ["50,00%", "below_target"]

    await await_until(updated, 15, what="the page to show the new events")
    assert await page.eval("window.__sameDocument === true")
    assert int(await page.eval("document.body.dataset.renders")) > renders
    totals = await cells(page, "tr.total")
    assert totals["district"]["online"] == ["50,00%", "below_target"]  # 3 of 6
    assert totals["total"]["online"] == ["66,66%", "met"]  # 10 of 15

    # Level tabs: the district tab shows only group II with its Tổng row.
    await page.eval("document.querySelector('button.tab[data-level=district]').click()")
    district = await cells(page, "tr.unit-row")
    assert len(district) == 9 and all(code.count("-") == 1 for code in district)
    assert await page.eval(
        "[...document.querySelectorAll('tr.group td:first-child')].map(td => td.textContent)"
    ) == ["II. CẤP HUYỆN"]
    assert list(await cells(page, "tr.total")) == ["district"]
    await page.screenshot(artifacts / "scoreboard-district.png")

    # A unit's trend on click: the campaign's 70 days, cumulative rates, targets.
    await page.eval("document.querySelector('tr.unit-row[data-unit=\"CMU-H01\"]').click()")
    await await_until(
        lambda: page.eval("document.getElementById('trend').dataset.state === 'ready'"),
        10,
        what="the trend panel",
    )
    trend = await page.eval(
        """({title: document.getElementById('trend-title').textContent,
            sub: document.getElementById('trend-sub').textContent,
            series: [...document.querySelectorAll('#trend-chart path.series')]
                        .map(p => p.dataset.metric),
            targets: document.querySelectorAll('#trend-chart line.target').length})"""
    )
    assert trend["title"] == "UBND thành phố Cà Mau"
    assert "09/05/2023" in trend["sub"] and "trực tuyến 50,00%" in trend["sub"]
    assert trend["series"] == ["online", "digitization", "online_payment"]
    assert trend["targets"] == 3
    await page.screenshot(artifacts / "scoreboard-trend.png")

    assert page.errors == [], page.errors
    assert time.monotonic() - started < 60


def test_page_needs_nothing_from_outside(stack, tmp_path: Path) -> None:
    """Every script, style and image the page references is served by scoring itself."""
    _, scoring = stack
    html = httpx.get(f"{scoring.url}/").text
    assert 'lang="vi"' in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    for asset in ("/static/scoreboard.js", "/static/scoreboard.css"):
        assert asset in html
        resp = httpx.get(f"{scoring.url}{asset}")
        assert resp.status_code == 200 and len(resp.content) > 1000
        assert "https://" not in resp.text and "http://" not in resp.text.replace(
            "http://www.w3.org/2000/svg", ""
        )
