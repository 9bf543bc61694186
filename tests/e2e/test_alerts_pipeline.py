"""Ingest, scoring and alerts as processes: a 0% unit posted over HTTP reaches a real webhook
receiver, signed; the time from the event to the webhook is measured."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI, Request

from tests.helpers import ServerThread, ServiceProcess, free_port, services, wait_until

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret"
GROUP_WAIT = 1.0


class Receiver:
    def __init__(self) -> None:
        self.hits: list[tuple[float, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict:
            body = await request.body()
            with self.lock:
                self.hits.append((time.monotonic(), dict(request.headers), body))
            return {"ok": True}

        self.server = ServerThread(app)


def test_zero_rate_event_reaches_signed_webhook_within_group_wait_plus_2s(
    service_env, tmp_path, registry
):
    receiver = Receiver()
    recipients = tmp_path / "recipients.yaml"
    recipients.write_text(
        "recipients:\n"
        "  - id: chu-tich-h01\n"
        '    name: "Chủ tịch UBND thành phố Cà Mau"\n'
        "    channels: [webhook, log]\n"
        "    match: [{unit: CMU-H01}, {parent: CMU-H01}]\n",
        encoding="utf-8",
    )
    with receiver.server:
        ports = {name: free_port() for name in ("ingest", "scoring", "alerts")}
        env = {
            **service_env,
            **{f"DVCPULSE_{n.upper()}_PORT": str(p) for n, p in ports.items()},
            "DVCPULSE_WEBHOOK_URL": f"{receiver.server.url}/hook",
            "DVCPULSE_WEBHOOK_SECRET": SECRET,
            "DVCPULSE_RECIPIENTS_FILE": str(recipients),
            "DVCPULSE_GROUP_WAIT": f"{GROUP_WAIT}s",
            "DVCPULSE_TICK_SECONDS": "0.05",
            "DVCPULSE_DIGEST_ENABLED": "false",
        }
        procs = [
            ServiceProcess(n, env, ports[n], tmp_path) for n in ("ingest", "scoring", "alerts")
        ]
        with services(*procs) as (ingest, _scoring, alerts):
            # Today's dossiers (the window alerts judges is the current one): 3 received at a
            # commune, none online -> online rate 0%, a `zero` alert.
            today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).replace(microsecond=0)
            events = [
                {
                    "event_id": f"e2e-{i}",
                    "type": "dossier.received",
                    "dossier_id": f"E2E-{i}",
                    "unit_code": "CMU-H01-X01",
                    "occurred_at": today.isoformat(),
                    "channel": "direct",
                    "fee_required": False,
                }
                for i in range(3)
            ]
            posted = time.monotonic()
            resp = httpx.post(f"{ingest.url}/api/v1/events", json=events, timeout=10)
            assert resp.status_code == 202 and resp.json()["accepted"] == 3, resp.text

            wait_until(lambda: receiver.hits, timeout=30, every=0.01, what="webhook")
            arrived, headers, body = receiver.hits[0]
            latency = arrived - posted
            print(f"\nevent -> webhook latency: {latency:.3f} s (group_wait {GROUP_WAIT} s)")

            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-dvcpulse-signature"], expected)
            payload = json.loads(body)
            assert payload["recipient"]["id"] == "chu-tich-h01"
            [alert] = [a for a in payload["alerts"] if a["metric"] == "online"]
            assert (alert["unit_code"], alert["kind"], alert["value"]) == (
                "CMU-H01-X01",
                "zero",
                0.0,
            )
            assert (alert["numerator"], alert["denominator"]) == (0, 3)
            assert "Tỷ lệ hồ sơ trực tuyến: 0,00% (0/3 hồ sơ)" in payload["text"]
            # Payment is not applicable (no fee-bearing dossier): never reported as 0%.
            assert all(a["metric"] != "online_payment" for a in payload["alerts"])
            assert GROUP_WAIT <= latency < GROUP_WAIT + 2.0

            firing = httpx.get(f"{alerts.url}/api/v1/alerts", params={"state": "firing"}).json()
            assert {(a["unit_code"], a["metric"], a["kind"]) for a in firing} == {
                ("CMU-H01-X01", "online", "zero"),
                ("CMU-H01-X01", "digitization", "zero"),
            }
            log = httpx.get(f"{alerts.url}/api/v1/notifications").json()
            assert {(d["channel"], d["status"]) for d in log} == {
                ("webhook", "sent"),
                ("log", "sent"),
            }
