"""`dvcpulse docs`: the API documents under docs/, generated from the code.

- `docs/asyncapi.json`: the Redis streams (FastStream's AsyncAPI 3.0 generator over the brokers
  of ingest and scoring: events, scores, events:dlq), with their message schemas.
- `docs/openapi-<service>.json`: the HTTP APIs (FastAPI's OpenAPI) of ingest, scoring and alerts.

The documents describe the default deployment (stream prefix `dvcpulse`, the shipped settings):
the apps are built from `Settings` defaults, never from the environment or a .env file, so the
same code gives the same bytes on every machine. Nothing connects to Redis or opens a database.
`tests/unit/test_docs.py` fails when the committed files differ from what the code generates.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

REPO = Path(__file__).resolve().parents[2]
DOCS_DIR = REPO / "docs"
# The server the AsyncAPI document names; the default of DVCPULSE_REDIS_URL.
DOC_REDIS_URL = "redis://127.0.0.1:6379/0"

console = Console()


def _json(doc: dict[str, Any], sort_keys: bool = False) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n"


def build_documents() -> dict[str, str]:
    """File name -> content of every document under docs/ that the code defines."""
    from dvcpulse_common.registry import load_registry
    from dvcpulse_common.settings import Settings
    from dvcpulse_common.targets import load_targets
    from dvcpulse_ingest.app import create_app as create_ingest
    from dvcpulse_scoring.app import create_app as create_scoring
    from faststream.redis import RedisBroker
    from faststream.specification import AsyncAPI

    with tempfile.TemporaryDirectory(prefix="dvcpulse-docs-") as tmp:
        # model_construct: the declared defaults, not the environment of whoever runs this.
        defaults = {"data_dir": Path(tmp), "consumer_name": "scoring-<hostname>"}
        settings = Settings.model_construct(**defaults)
        registry = load_registry(settings.units_file, settings.level_labels)
        target_sets = load_targets(settings.targets_file)
        # One broker for both services, never connected: AsyncAPI shows every stream once.
        broker = RedisBroker(DOC_REDIS_URL)
        ingest = create_ingest(settings, registry, broker=broker)
        scoring = create_scoring(settings, registry, target_sets, broker=broker)
        streams = AsyncAPI(
            broker,
            title="dvcpulse streams",
            version="1",
            description=(
                "Redis streams of dvcpulse (prefix `DVCPULSE_STREAM_PREFIX`, default `dvcpulse`). "
                "Ingest appends validated dossier events to `dvcpulse:events`; scoring reads them "
                "in consumer group `scoring` (XREADGROUP, created at id 0), counts each event_id "
                "once, dead-letters entries it cannot count to `dvcpulse:events:dlq` and, after "
                "each batch, appends one score update per affected unit and window to "
                "`dvcpulse:scores`, which the alerts service reads in consumer group `alerts`. "
                "Each entry keeps its JSON in the `__data__` field."
            ),
        )
        docs = {
            "asyncapi.json": streams.to_specification().to_jsonable(),
            "openapi-ingest.json": ingest.openapi(),
            "openapi-scoring.json": scoring.openapi(),
        }
        if importlib.util.find_spec("dvcpulse_alerts.app") is not None:
            from dvcpulse_alerts.app import create_app as create_alerts
            from dvcpulse_alerts.settings import AlertsSettings

            alerts_settings = AlertsSettings.model_construct(**defaults)
            docs["openapi-alerts.json"] = create_alerts(
                alerts_settings, registry, target_sets, recipients=[]
            ).openapi()
    # FastStream lists channels in set order, which changes from run to run: sort that one.
    text = {name: _json(doc, sort_keys=name == "asyncapi.json") for name, doc in docs.items()}
    # A host name must never leak into a committed document.
    host = socket.gethostname()
    for name, content in text.items():
        if len(host) > 3 and f"scoring-{host}" in content:
            raise RuntimeError(f"{name} names this host ({host}); it must not")
    return text


def stale_documents(directory: Path, docs: dict[str, str]) -> list[str]:
    """Names whose committed content differs from `docs`, plus generated-looking leftovers."""
    out = [
        name
        for name, content in docs.items()
        if not (directory / name).exists()
        or (directory / name).read_text(encoding="utf-8") != content
    ]
    leftovers = [
        p.name
        for pattern in ("asyncapi*.json", "openapi-*.json")
        for p in directory.glob(pattern)
        if p.name not in docs
    ]
    return sorted(out + leftovers)


def docs_command(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Write nothing; exit 1 if a committed document differs from the code"
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Directory of the documents")] = DOCS_DIR,
) -> None:
    """Regenerate the AsyncAPI document of the Redis streams and the OpenAPI documents of the
    HTTP APIs under docs/ (run it after changing an endpoint, a model or a stream)."""
    docs = build_documents()
    if check:
        stale = stale_documents(out, docs)
        if stale:
            console.print(f"[red]out of date in {out}:[/] {', '.join(stale)} — run `dvcpulse docs`")
            raise typer.Exit(1)
        console.print(f"{len(docs)} documents in {out} match the code")
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, content in docs.items():
        (out / name).write_text(content, encoding="utf-8")
        console.print(f"wrote {out / name}")
