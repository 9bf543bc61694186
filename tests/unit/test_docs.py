"""The committed API documents under docs/ are what the code generates.

When this fails after an endpoint, a model or a stream changed: run `uv run dvcpulse docs` and
commit docs/ with the change.
"""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import pytest
from dvcpulse_cli.docs_cli import DOCS_DIR, build_documents, stale_documents
from dvcpulse_cli.main import app
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return build_documents()


def test_committed_documents_match_the_code(generated: dict[str, str]) -> None:
    problems = []
    for name in stale_documents(DOCS_DIR, generated):
        path = DOCS_DIR / name
        if name not in generated:
            problems.append(f"{name}: committed but no longer generated")
            continue
        if not path.exists():
            problems.append(f"{name}: generated but not committed")
            continue
        diff = difflib.unified_diff(
            path.read_text(encoding="utf-8").splitlines(),
            generated[name].splitlines(),
            f"committed/{name}",
            f"generated/{name}",
            lineterm="",
            n=1,
        )
        problems.append("\n".join(list(diff)[:30]))
    assert not problems, "run `uv run dvcpulse docs` and commit docs/:\n" + "\n\n".join(problems)


def test_asyncapi_names_the_three_streams_with_their_payloads(generated: dict[str, str]) -> None:
    doc = json.loads(generated["asyncapi.json"])
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {"dvcpulse:events", "dvcpulse:scores", "dvcpulse:events:dlq"}
    schemas = doc["components"]["schemas"]
    assert {"DossierReceived", "DossierDigitized", "DossierPaid", "ScoreUpdate"} <= set(schemas)
    assert {"DeadLetterEntry"} <= set(schemas)
    received = schemas["DossierReceived"]
    assert received["additionalProperties"] is False
    assert {"event_id", "dossier_id", "unit_code", "occurred_at", "channel", "fee_required"} <= set(
        received["required"]
    )
    scoring = next(c for c in doc["channels"].values() if c["bindings"]["redis"].get("groupName"))
    assert scoring["bindings"]["redis"]["groupName"] == "scoring"
    # No machine-specific value: the consumer name is a placeholder.
    assert scoring["bindings"]["redis"]["consumerName"] == "scoring-<hostname>"


def test_openapi_documents_cover_the_http_apis(generated: dict[str, str]) -> None:
    ingest = json.loads(generated["openapi-ingest.json"])
    scoring = json.loads(generated["openapi-scoring.json"])
    assert "/api/v1/events" in ingest["paths"]
    assert "DossierEvent" in ingest["components"]["schemas"]
    for path in (
        "/api/v1/units",
        "/api/v1/scores",
        "/api/v1/scores/levels",
        "/api/v1/scoreboard/config",
        "/api/v1/live",
    ):
        assert path in scoring["paths"], path
    assert "/" not in scoring["paths"]  # the page itself is not an API
    if "openapi-alerts.json" in generated:
        alerts = json.loads(generated["openapi-alerts.json"])
        assert any(p.startswith("/api/v1/alerts") for p in alerts["paths"])


def test_docs_command_writes_and_checks(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "docs"
    wrote = runner.invoke(app, ["docs", "--out", str(out)])
    assert wrote.exit_code == 0, wrote.output
    assert runner.invoke(app, ["docs", "--check", "--out", str(out)]).exit_code == 0
    # An endpoint added without regenerating: the check fails and names the file.
    doc = json.loads((out / "openapi-scoring.json").read_text(encoding="utf-8"))
    doc["paths"]["/api/v1/new"] = {"get": {}}
    (out / "openapi-scoring.json").write_text(json.dumps(doc), encoding="utf-8")
    shutil.copy(out / "asyncapi.json", out / "asyncapi-old.json")
    checked = runner.invoke(app, ["docs", "--check", "--out", str(out)])
    assert checked.exit_code == 1
    assert "openapi-scoring.json" in checked.output and "asyncapi-old.json" in checked.output
