"""The live scoreboard: a Vietnamese page at `/` in the layout of the plan's appendix.

The page reads the rates API (`/api/v1/scores`, `/api/v1/scores/levels`, and
`/api/v1/timeseries` for a unit's trend, see series.py) and listens to
`/api/v1/live`, a server-sent-events stream that says "the numbers changed" after each batch that
counted new events; the page then refetches. Everything the page needs (HTML, JS, CSS) is served
from package files under `static/`: no CDN, so it works on a province's closed network.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
from dvcpulse_common.registry import Registry
from dvcpulse_common.settings import Settings
from dvcpulse_common.targets import active_campaign
from dvcpulse_shared.targets import MetricTargets, TargetSet
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

if TYPE_CHECKING:
    from .consumer import BatchOutcome

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Shown where the payment rate does not apply, as the plan's appendix writes it.
NO_FEE_NOTE = "Không có TTHC yêu cầu thực hiện nghĩa vụ tài chính"


class LiveFeed:
    """A change counter that SSE clients wait on. `on_batch` is the consumer's hook."""

    def __init__(self) -> None:
        # A new id per process: a page that reconnects to a restarted service refetches even if
        # the counter happens to match.
        self.boot = uuid.uuid4().hex[:12]
        self.version = 0
        self._changed: asyncio.Event | None = None

    async def on_batch(self, outcome: BatchOutcome) -> None:
        if outcome.unit_days_moved == 0:
            return  # re-sent events and dead letters change no number
        self.version += 1
        if self._changed is not None:
            self._changed.set()  # wakes every waiting client at once
            self._changed = None

    async def wait(self, seen: int, timeout: float) -> int:
        """Return as soon as the version differs from `seen`, or after `timeout` seconds."""
        if self.version != seen:
            return self.version
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass
        return self.version


class WindowChoice(BaseModel):
    id: str
    name: str
    date_from: date | None = None
    date_to: date | None = None


class LevelChoice(BaseModel):
    code: str
    label: str
    targets: MetricTargets


class ScoreboardConfig(BaseModel):
    title: str
    levels: list[LevelChoice]
    windows: list[WindowChoice]
    default_window: str
    no_fee_note: str


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def install_scoreboard(
    app: FastAPI,
    live: LiveFeed,
    settings: Settings,
    registry: Registry,
    target_sets: list[TargetSet],
    *,
    keepalive_s: float = 15.0,
    max_connection_s: float = 20.0,
    min_interval_s: float = 0.5,
) -> None:
    """Add the page, its static files, its config, the live stream and the unit trend.

    Reads the store and the readiness flag from `app.state` (set by `create_app`).
    """
    tz = ZoneInfo(settings.timezone)

    def today() -> date:
        return datetime.now(tz).date()

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/v1/scoreboard/config", response_model=ScoreboardConfig, tags=["scoreboard"])
    async def scoreboard_config() -> ScoreboardConfig:
        """What the scoreboard page offers: levels (with the active campaign's targets) and
        windows (the active campaign, every target set, all time)."""
        try:
            campaign = active_campaign(target_sets, today(), settings.campaign)
        except ValueError:
            campaign = None
        windows = []
        if campaign is not None:
            windows.append(
                WindowChoice(
                    id="campaign",
                    name=f"{campaign.name} (chiến dịch hiện hành)",
                    date_from=campaign.valid_from,
                    date_to=campaign.valid_to,
                )
            )
        windows += [
            WindowChoice(id=s.id, name=s.name, date_from=s.valid_from, date_to=s.valid_to)
            for s in target_sets
        ]
        windows.append(WindowChoice(id="all", name="Toàn bộ thời gian"))
        return ScoreboardConfig(
            title="Tỷ lệ hồ sơ giải quyết trực tuyến, số hóa, thanh toán trực tuyến",
            levels=[
                LevelChoice(
                    code=lv.code,
                    label=lv.label,
                    targets=campaign.levels.get(lv.code, MetricTargets())
                    if campaign
                    else MetricTargets(),
                )
                for lv in registry.levels
            ],
            windows=windows,
            default_window="campaign" if campaign is not None else "all",
            no_fee_note=NO_FEE_NOTE,
        )

    @app.get(
        "/api/v1/live",
        tags=["scoreboard"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def live_stream(request: Request) -> StreamingResponse:
        """Server-sent events: `hello` on connect, then `scores` ({boot, version}) whenever a
        batch counted new events (at most one every half second), comments as keep-alives.
        A connection ends after 20 s and the browser reconnects by itself (`retry`), so
        no client can hold up a shutdown for long."""

        async def events() -> AsyncIterator[bytes]:
            seen = live.version
            yield b"retry: 1000\n" + _sse("hello", {"boot": live.boot, "version": seen})
            # Notice a closed tab at once, not at the next keep-alive write.
            gone = asyncio.ensure_future(_disconnected(request))
            try:
                ends = time.monotonic() + max_connection_s
                while (left := ends - time.monotonic()) > 0:
                    waiter = asyncio.ensure_future(live.wait(seen, min(keepalive_s, left)))
                    await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
                    if gone.done():
                        waiter.cancel()
                        return
                    version = waiter.result()
                    if version == seen:
                        yield b": keep-alive\n\n"
                        continue
                    seen = version
                    yield _sse("scores", {"boot": live.boot, "version": version})
                    # Coalesce bursts: at 3,000 events/s batches land every few ms, and one
                    # refetch per half second is plenty for people.
                    await asyncio.sleep(min_interval_s)
            finally:
                gone.cancel()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
