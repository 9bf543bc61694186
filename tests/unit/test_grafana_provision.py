"""What `dvcpulse grafana provision` sends. No Grafana server can run here (no Docker engine, no
Grafana binary), so the test runs a small real HTTP server that keeps folders, data sources and
dashboards the way Grafana's HTTP API does (same paths, 404 for unknown uids, 401 without
credentials) and records every request grafana-client makes over the wire."""

from __future__ import annotations

import base64
import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from dvcpulse_cli.grafana_cli import grafana_app
from dvcpulse_cli.grafana_dashboards import FOLDER_TITLE, FOLDER_UID, INFINITY
from typer.testing import CliRunner

TOKEN = "glsa_test_token"
USER, PASSWORD = "admin", "s3cret-pw"


class FakeGrafana:
    """State and request log of a Grafana-like API."""

    def __init__(self) -> None:
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any, str]] = []  # method, path, body, auth
        self.lock = threading.Lock()

    def writes(self) -> list[tuple[str, str, Any]]:
        return [(m, p, b) for m, p, b, _ in self.requests if m != "GET"]

    def handle(self, method: str, path: str, body: Any, auth: str) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, body, auth))
            if auth not in (
                f"Bearer {TOKEN}",
                "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
            ):
                return 401, {"message": "Unauthorized"}
            parts = path.strip("/").split("/")
            match method, parts:
                case "GET", ["api", "folders", uid]:
                    f = self.folders.get(uid)
                    return (200, f) if f else (404, {"message": "folder not found"})
                case "POST", ["api", "folders"]:
                    self.folders[body["uid"]] = {
                        "uid": body["uid"],
                        "title": body["title"],
                        "id": 7,
                    }
                    return 200, self.folders[body["uid"]]
                case "PUT", ["api", "folders", uid]:
                    self.folders[uid]["title"] = body["title"]
                    return 200, self.folders[uid]
                case "GET", ["api", "datasources", "uid", uid]:
                    d = self.datasources.get(uid)
                    # Grafana adds fields of its own to what was sent
                    return (
                        (200, {**d, "id": 3, "orgId": 1, "readOnly": False})
                        if d
                        else (
                            404,
                            {"message": "Data source not found"},
                        )
                    )
                case "POST", ["api", "datasources"]:
                    self.datasources[body["uid"]] = copy.deepcopy(body)
                    return 200, {"message": "Datasource added", "id": 3}
                case "PUT", ["api", "datasources", "uid", uid]:
                    self.datasources[uid] = copy.deepcopy(body)
                    return 200, {"message": "Datasource updated"}
                case "GET", ["api", "dashboards", "uid", uid]:
                    d = self.dashboards.get(uid)
                    if not d:
                        return 404, {"message": "Dashboard not found"}
                    return 200, {"dashboard": d["dashboard"], "meta": {"folderUid": d["folder"]}}
                case "POST", ["api", "dashboards", "db"]:
                    dash = copy.deepcopy(body["dashboard"])
                    old = self.dashboards.get(dash["uid"])
                    dash["id"] = 11
                    dash["version"] = (old["dashboard"]["version"] + 1) if old else 1
                    self.dashboards[dash["uid"]] = {"dashboard": dash, "folder": body["folderUid"]}
                    return 200, {
                        "status": "success",
                        "uid": dash["uid"],
                        "version": dash["version"],
                    }
            return 404, {"message": f"no route {method} {path}"}


@pytest.fixture
def grafana():
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer = state.handle(
                self.command, self.path, body, self.headers.get("authorization", "")
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield state
    server.shutdown()
    thread.join(10)


runner = CliRunner()


def provision(grafana: FakeGrafana, *auth: str) -> Any:
    args = ["provision", "--url", grafana.url, *auth]  # type: ignore[attr-defined]
    args += ["--scoring-url", "http://scoring:8002/", "--alerts-url", "http://alerts:8003"]
    return runner.invoke(grafana_app, args, env={"GRAFANA_TOKEN": "", "GRAFANA_PASSWORD": ""})


def test_first_run_creates_everything_with_the_right_payloads(grafana):
    result = provision(grafana, "--token", TOKEN)
    assert result.exit_code == 0, result.output
    writes = grafana.writes()
    assert [(m, p) for m, p, _ in writes] == [
        ("POST", "/api/folders"),
        ("POST", "/api/datasources"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * 4,
    ]
    assert writes[0][2] == {"title": FOLDER_TITLE, "uid": FOLDER_UID}
    scoring_ds = writes[1][2]
    assert scoring_ds == {
        "uid": "dvcpulse-scoring",
        "name": "dvcpulse scoring",
        "type": INFINITY,
        "access": "proxy",
        "url": "http://scoring:8002",  # trailing slash removed: queries use /api/v1/...
        "isDefault": False,
        "jsonData": {"allowedHosts": ["http://scoring:8002"], "timeoutInSeconds": 30},
    }
    assert writes[2][2]["uid"] == "dvcpulse-alerts" and writes[2][2]["url"] == "http://alerts:8003"
    uids = []
    for _, _, body in writes[3:]:
        assert body["folderUid"] == FOLDER_UID and body["overwrite"] is True
        assert body["dashboard"]["id"] is None and "version" not in body["dashboard"]
        uids.append(body["dashboard"]["uid"])
    assert sorted(uids) == [
        "dvcpulse-alerts",
        "dvcpulse-leaderboard",
        "dvcpulse-overview",
        "dvcpulse-unit",
    ]
    assert all(auth == f"Bearer {TOKEN}" for *_, auth in grafana.requests)
    assert "created   folder" in result.output and "7 change(s)" in result.output


def test_second_run_changes_nothing(grafana):
    assert provision(grafana, "--token", TOKEN).exit_code == 0
    before = len(grafana.writes())
    result = provision(grafana, "--token", TOKEN)
    assert result.exit_code == 0, result.output
    assert len(grafana.writes()) == before  # only reads the second time
    assert "0 change(s)" in result.output
    assert result.output.count("unchanged") == 7


def test_drift_is_repaired_and_only_the_drifted_objects_are_written(grafana):
    assert provision(grafana, "--token", TOKEN).exit_code == 0
    grafana.dashboards["dvcpulse-unit"]["dashboard"]["title"] = "edited in the UI"
    grafana.datasources["dvcpulse-alerts"]["url"] = "http://elsewhere:9"
    grafana.folders[FOLDER_UID]["title"] = "renamed"
    before = len(grafana.writes())
    result = provision(grafana, "--token", TOKEN)
    assert result.exit_code == 0, result.output
    new = grafana.writes()[before:]
    assert [(m, p) for m, p, _ in new] == [
        ("PUT", "/api/folders/dvcpulse"),
        ("PUT", "/api/datasources/uid/dvcpulse-alerts"),
        ("POST", "/api/dashboards/db"),
    ]
    assert new[2][2]["dashboard"]["uid"] == "dvcpulse-unit"
    assert grafana.dashboards["dvcpulse-unit"]["dashboard"]["title"] == "Chi tiết đơn vị"
    assert "3 change(s)" in result.output


def test_basic_auth_and_credential_errors(grafana):
    result = provision(grafana, "--user", USER, "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    assert grafana.requests[0][3].startswith("Basic ")
    both = provision(grafana, "--token", TOKEN, "--user", USER, "--password", PASSWORD)
    assert both.exit_code != 0 and "--token" in both.output
    neither = provision(grafana)
    assert neither.exit_code != 0 and "--token" in neither.output
    refused = provision(grafana, "--token", "wrong")
    assert refused.exit_code == 2 and "Grafana refused" in refused.output
