"""`dvcpulse grafana generate|check|provision`: dashboards as code, pushed through Grafana's HTTP
API with grafana-client. Provisioning is idempotent: each object is read first and written only
when it differs, so a second run changes nothing (and says so)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from .grafana_dashboards import (
    ALERTS_DS,
    DASHBOARD_DIR,
    FOLDER_TITLE,
    FOLDER_UID,
    INFINITY,
    SCORING_DS,
    build_dashboards,
    render,
    write_dashboards,
)

grafana_app = typer.Typer(help="Grafana dashboards as code: generate the JSON, provision Grafana.")

# Dashboard keys Grafana adds or bumps itself; they never count as a difference.
_VOLATILE = {"id", "version"}


def datasource_payloads(scoring_url: str, alerts_url: str) -> list[dict[str, Any]]:
    """The two Infinity data sources (same uids as grafana/provisioning/datasources/)."""
    out = []
    for uid, name, url in (
        (SCORING_DS, "dvcpulse scoring", scoring_url),
        (ALERTS_DS, "dvcpulse alerts", alerts_url),
    ):
        base = url.rstrip("/")
        out.append(
            {
                "uid": uid,
                "name": name,
                "type": INFINITY,
                "access": "proxy",
                "url": base,  # Infinity prefixes relative query URLs with this base URL
                "isDefault": False,
                "jsonData": {"allowedHosts": [base], "timeoutInSeconds": 30},
            }
        )
    return out


@dataclass
class Report:
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, action)

    def add(self, kind: str, name: str, action: str) -> None:
        self.actions.append((kind, name, action))

    @property
    def changed(self) -> int:
        return sum(1 for _, _, a in self.actions if a != "unchanged")


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404


def provision(
    api: Any,
    dashboards: dict[str, dict[str, Any]],
    datasources: list[dict[str, Any]],
) -> Report:
    """Create or update the folder, the data sources and every dashboard; report each."""
    from grafana_client.client import GrafanaClientError

    report = Report()
    try:
        folder = api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if not _not_found(exc):
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        report.add("folder", FOLDER_TITLE, "created")
    else:
        if folder.get("title") != FOLDER_TITLE:
            api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
            report.add("folder", FOLDER_TITLE, "updated")
        else:
            report.add("folder", FOLDER_TITLE, "unchanged")

    for wanted in datasources:
        try:
            current = api.datasource.get_datasource_by_uid(wanted["uid"])
        except GrafanaClientError as exc:
            if not _not_found(exc):
                raise
            api.datasource.create_datasource(wanted)
            report.add("datasource", wanted["name"], "created")
            continue
        if all(current.get(k) == v for k, v in wanted.items()):
            report.add("datasource", wanted["name"], "unchanged")
        else:
            api.datasource.update_datasource_by_uid(wanted["uid"], wanted)
            report.add("datasource", wanted["name"], "updated")

    for model in dashboards.values():
        try:
            current = api.dashboard.get_dashboard(model["uid"])
        except GrafanaClientError as exc:
            if not _not_found(exc):
                raise
            current = None
        if current is not None:
            same_model = {k: v for k, v in current["dashboard"].items() if k not in _VOLATILE} == {
                k: v for k, v in model.items() if k not in _VOLATILE
            }
            if same_model and current.get("meta", {}).get("folderUid") == FOLDER_UID:
                report.add("dashboard", model["title"], "unchanged")
                continue
        payload = {
            "dashboard": {k: v for k, v in model.items() if k not in _VOLATILE} | {"id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "dvcpulse grafana provision",
        }
        api.dashboard.update_dashboard(payload)
        report.add("dashboard", model["title"], "created" if current is None else "updated")
    return report


def _models(units_file: Path | None, targets_file: Path | None) -> dict[str, dict[str, Any]]:
    # Settings are read here, when a command runs, never at import time.
    from dvcpulse_common.settings import Settings

    from .bootstrap import load_config

    overrides: dict[str, Any] = {}
    if units_file:
        overrides["units_file"] = units_file
    if targets_file:
        overrides["targets_file"] = targets_file
    cfg = load_config(Settings(**overrides))
    return build_dashboards(cfg.registry, cfg.target_sets, cfg.settings.campaign)


UnitsOpt = Annotated[Path | None, typer.Option(help="Unit registry (default: settings)")]
TargetsOpt = Annotated[Path | None, typer.Option(help="Targets file (default: settings)")]


@grafana_app.command("generate")
def generate(
    out: Annotated[Path, typer.Option(help="Output directory")] = DASHBOARD_DIR,
    units_file: UnitsOpt = None,
    targets_file: TargetsOpt = None,
) -> None:
    """Write grafana/dashboards/*.json from the registry's levels and the targets file."""
    models = _models(units_file, targets_file)
    changed = write_dashboards(models, out)
    for name in models:
        typer.echo(f"{'written  ' if name in changed else 'unchanged'} {out / name}")


@grafana_app.command("check")
def check(
    out: Annotated[Path, typer.Option(help="Dashboards directory")] = DASHBOARD_DIR,
    units_file: UnitsOpt = None,
    targets_file: TargetsOpt = None,
) -> None:
    """Exit 1 when a committed dashboard differs from what the generator produces."""
    stale = [
        name
        for name, model in _models(units_file, targets_file).items()
        if not (out / name).exists() or (out / name).read_text(encoding="utf-8") != render(model)
    ]
    for name in stale:
        typer.echo(f"stale: {out / name} (run `dvcpulse grafana generate`)", err=True)
    raise typer.Exit(1 if stale else 0)


@grafana_app.command("provision")
def provision_cmd(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://localhost:3000")],
    token: Annotated[
        str | None, typer.Option(envvar="GRAFANA_TOKEN", help="Service-account token")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Basic-auth user (instead of a token)")] = None,
    password: Annotated[
        str | None, typer.Option(envvar="GRAFANA_PASSWORD", help="Basic-auth password")
    ] = None,
    scoring_url: Annotated[
        str, typer.Option(help="Scoring API as Grafana's server reaches it")
    ] = "http://127.0.0.1:8002",
    alerts_url: Annotated[
        str, typer.Option(help="Alerts API as Grafana's server reaches it")
    ] = "http://127.0.0.1:8003",
    from_files: Annotated[
        bool, typer.Option(help="Send the committed JSON files instead of regenerating")
    ] = False,
    units_file: UnitsOpt = None,
    targets_file: TargetsOpt = None,
) -> None:
    """Create or update the dvcpulse folder, the Infinity data sources and the four dashboards
    (idempotent: a second run reports everything unchanged)."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    if token and (user or password):
        raise typer.BadParameter("give either --token or --user/--password", param_hint="--token")
    if not token and not (user and password):
        raise typer.BadParameter(
            "--token, or --user with --password, is required", param_hint="--token"
        )
    credential: str | tuple[str, str] = token if token else (user or "", password or "")
    if from_files:
        models = {
            p.name: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(DASHBOARD_DIR.glob("*.json"))
        }
    else:
        models = _models(units_file, targets_file)
    api = GrafanaApi.from_url(url, credential=credential, timeout=15)
    try:
        report = provision(api, models, datasource_payloads(scoring_url, alerts_url))
    except GrafanaException as exc:
        typer.echo(f"Grafana refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    for kind, name, action in report.actions:
        typer.echo(f"{action:9} {kind:10} {name}")
    typer.echo(f"{report.changed} change(s) at {url}")


@grafana_app.command("render")
def render_cmd(
    scoring_url: Annotated[str, typer.Option(help="Scoring API")] = "http://127.0.0.1:8002",
    alerts_url: Annotated[
        str | None, typer.Option(help="Alerts API (omit to skip the alerts chart)")
    ] = "http://127.0.0.1:8003",
    out: Annotated[Path, typer.Option(help="Output directory")] = DASHBOARD_DIR.parents[1]
    / "docs"
    / "dashboards",
    unit: Annotated[str, typer.Option(help="Unit of the drill-down chart")] = "CMU-S01",
    window: Annotated[str, typer.Option(help="'campaign' or a target-set id")] = "campaign",
) -> None:
    """Draw each dashboard's data as a PNG from the same queries its panels run."""
    from .grafana_render import render_all

    for path in render_all(_models(None, None), scoring_url, alerts_url, out, unit, window):
        typer.echo(f"written {path}")
