"""`dvcpulse alerts`: firing alerts, silences and the delivery log, from the alerts HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Alerts (cảnh báo): list alerts, silence them, read the delivery log.",
    invoke_without_command=True,
)
silence_app = typer.Typer(help="Create, list and delete silences.")
app.add_typer(silence_app, name="silence")
console = Console()

Url = Annotated[str | None, typer.Option(help="Alerts base URL (default: host and alerts port)")]
SEVERITY_COLOUR = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _base(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    from dvcpulse_common.settings import Settings

    s = Settings()
    return f"http://{s.host}:{s.alerts_port}"


def _pct(value: float | None) -> str:
    if value is None:
        return "—"
    hundredths = int(value * 100)  # cut, as the plan prints rates
    return f"{hundredths // 100},{hundredths % 100:02d}%"


def _call(method: str, url: str, **kwargs) -> httpx.Response:
    try:
        resp = httpx.request(method, url, timeout=15, **kwargs)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {url}: {exc}[/]")
        raise typer.Exit(2) from exc
    if resp.status_code >= 400:
        console.print(f"[red]{resp.status_code}[/] {resp.text}")
        raise typer.Exit(1)
    return resp


@app.callback()
def alerts(
    ctx: typer.Context,
    url: Url = None,
    state: Annotated[str, typer.Option(help="firing, resolved or all")] = "firing",
    kind: Annotated[str | None, typer.Option(help="zero, below_target or silent")] = None,
    unit: Annotated[str | None, typer.Option(help="Only this unit code")] = None,
) -> None:
    """List alerts (firing by default) worst first; then the active silences."""
    if ctx.invoked_subcommand is not None:
        return
    base = _base(url)
    params = {k: v for k, v in {"kind": kind, "unit": unit}.items() if v}
    if state != "all":
        params["state"] = state
    rows = _call("GET", f"{base}/api/v1/alerts", params=params).json()
    table = Table(title=f"{len(rows)} alerts ({state})")
    for col in (
        "id",
        "unit",
        "level",
        "metric",
        "kind",
        "value",
        "target",
        "since",
        "notified",
        "",
    ):
        table.add_column(col, justify="right" if col in ("id", "value", "target") else "left")
    for a in rows:
        colour = SEVERITY_COLOUR.get(a["severity"], "")
        value = f"{a['value']:.0f} ngày" if a["kind"] == "silent" else _pct(a["value"])
        table.add_row(
            str(a["id"]),
            f"{a['unit_code']} {a['unit_name']}",
            a["level"],
            a["metric"],
            f"[{colour}]{a['kind']}[/]",
            value,
            "—" if a["kind"] == "silent" else _pct(a["target"]),
            a["started_at"][:16].replace("T", " "),
            (a["last_notified_at"] or "—")[:16].replace("T", " "),
            "[dim]silenced[/]"
            if a["silenced"]
            else ("resolved" if a["state"] == "resolved" else ""),
        )
    console.print(table)
    _print_silences(base)


def _print_silences(base: str) -> None:
    rows = _call("GET", f"{base}/api/v1/silences").json()
    if not rows:
        console.print("[dim]no active silences[/]")
        return
    table = Table("id", "unit", "metric", "kind", "until", "author", "reason", title="silences")
    for s in rows:
        table.add_row(
            str(s["id"]),
            s["unit_code"] or "*",
            s["metric"] or "*",
            s["kind"] or "*",
            s["until"][:16].replace("T", " "),
            s["author"],
            s["reason"],
        )
    console.print(table)


@silence_app.command("list")
def silence_list(url: Url = None) -> None:
    """List active silences."""
    _print_silences(_base(url))


@silence_app.command("add")
def silence_add(
    until: Annotated[
        datetime, typer.Option(help="End, e.g. 2023-03-20T17:00:00+07:00 (local time if no offset)")
    ],
    reason: Annotated[str, typer.Option(help="Why (shown to everyone)")],
    author: Annotated[str, typer.Option(help="Who silences")],
    unit: Annotated[str | None, typer.Option(help="Unit code (default: every unit)")] = None,
    metric: Annotated[
        str | None, typer.Option(help="online, digitization, online_payment or received")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="zero, below_target or silent")] = None,
    url: Url = None,
) -> None:
    """Silence matching alerts until a time: they still show as firing but notify nobody."""
    if until.tzinfo is None:
        until = until.astimezone()  # the operator's local time
    body = {
        "unit_code": unit,
        "metric": metric,
        "kind": kind,
        "until": until.isoformat(),
        "reason": reason,
        "author": author,
    }
    created = _call("POST", f"{_base(url)}/api/v1/silences", json=body).json()
    console.print(f"silence [bold]{created['id']}[/] active until {created['until']}")


@silence_app.command("delete")
def silence_delete(
    silence_id: Annotated[int, typer.Argument(help="Silence id (see `silence list`)")],
    url: Url = None,
) -> None:
    """Delete a silence: matching firing alerts are notified at the next tick."""
    _call("DELETE", f"{_base(url)}/api/v1/silences/{silence_id}")
    console.print(f"silence {silence_id} deleted")


@app.command("notifications")
def notifications(
    url: Url = None,
    status: Annotated[str | None, typer.Option(help="pending, sent, failed or skipped")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many entries")] = 50,
) -> None:
    """The delivery log: recipient, channel, status, attempts, error."""
    params: dict[str, str | int] = {"limit": limit}
    if status:
        params["status"] = status
    rows = _call("GET", f"{_base(url)}/api/v1/notifications", params=params).json()
    table = Table(
        "id",
        "at",
        "recipient",
        "channel",
        "status",
        "attempts",
        "subject / error",
        title=f"deliveries (as of {datetime.now(UTC):%H:%M:%S} UTC)",
    )
    colour = {"sent": "green", "failed": "bold red", "pending": "yellow", "skipped": "dim"}
    for d in rows:
        table.add_row(
            str(d["id"]),
            d["created_at"][:19].replace("T", " "),
            d["recipient"],
            d["channel"],
            f"[{colour.get(d['status'], '')}]{d['status']}[/]",
            str(d["attempts"]),
            d["error"] or d["subject"],
        )
    console.print(table)


@app.command("resend")
def resend(
    delivery_id: Annotated[int, typer.Argument(help="Delivery id (see `notifications`)")],
    url: Url = None,
) -> None:
    """Send a failed (or sent but not received) notification again, to the address configured
    now; the old delivery stays in the log."""
    d = _call("POST", f"{_base(url)}/api/v1/notifications/{delivery_id}/resend").json()
    console.print(
        f"delivery [bold]{d['id']}[/] queued: {d['recipient']} by {d['channel']} "
        f"({d['address'] or '—'})"
    )


@app.command("recipients")
def recipients(
    url: Url = None,
    reload: Annotated[
        bool, typer.Option("--reload", help="Read the recipients file now (else within a tick)")
    ] = False,
) -> None:
    """Who is notified, as the running service sees it (after the last good read of the
    recipients file); --reload reads it at once and says what is wrong if it is invalid."""
    base = _base(url)
    if reload:
        done = _call("POST", f"{base}/api/v1/recipients/reload").json()
        console.print(f"read {done['file']}: {done['recipients']} recipients")
    rows = _call("GET", f"{base}/api/v1/recipients").json()
    table = Table("id", "name", "channels", "units", "digest", title=f"{len(rows)} recipients")
    for r in rows:
        table.add_row(
            r["id"],
            r["name"],
            ", ".join(r["channels"]),
            str(r["units"]),
            "yes" if r["digest"] else "no",
        )
    console.print(table)
