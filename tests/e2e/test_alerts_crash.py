"""kill -9 of the alerts service while alerts fire and while they resolve: every notification
reaches the webhook exactly once (none lost, none doubled). Ingest, scoring and alerts run as
processes over the real Redis; the webhook receiver is a real HTTP server."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI, Request

from tests.helpers import ServerThread, ServiceProcess, free_port, services, wait_until

pytestmark = pytest.mark.e2e


class Receiver:
    def __init__(self) -> None:
        self.notices: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict:
            payload = json.loads(await request.body())
            with self.lock:
                self.notices.extend((a["alert_id"], a["event"]) for a in payload["alerts"])
            return {"ok": True}

        self.server = ServerThread(app)

    def count(self, event: str) -> int:
        with self.lock:
            return sum(1 for _, e in self.notices if e == event)


def events_for(units: list[str], wave: str, channel: str, digitized: bool) -> list[dict]:
    now = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).replace(microsecond=0).isoformat()
    out = []
    for unit in units:
        for i in range(2):
            d = f"{unit}-{wave}-{i}"
            out.append(
                {
                    "event_id": f"{d}:r",
                    "type": "dossier.received",
                    "dossier_id": d,
                    "unit_code": unit,
                    "occurred_at": now,
                    "channel": channel,
                    "fee_required": False,
                }
            )
            if digitized:
                out.append(
                    {
                        "event_id": f"{d}:d",
                        "type": "dossier.digitized",
                        "dossier_id": d,
                        "unit_code": unit,
                        "occurred_at": now,
                    }
                )
    return out


def test_alerts_killed_twice_notifies_every_transition_exactly_once(
    service_env, tmp_path, registry
):
    units = [u.code for u in registry.units.values() if u.parent_code in {"CMU-H01", "CMU-H02"}][
        :20
    ]
    receiver = Receiver()
    recipients = tmp_path / "recipients.yaml"
    recipients.write_text(
        "recipients:\n  - id: office\n    name: Văn phòng\n    channels: [webhook]\n    all_units: true\n",
        encoding="utf-8",
    )
    with receiver.server:
        ports = {n: free_port() for n in ("ingest", "scoring", "alerts")}
        env = {
            **service_env,
            **{f"DVCPULSE_{n.upper()}_PORT": str(p) for n, p in ports.items()},
            "DVCPULSE_WEBHOOK_URL": f"{receiver.server.url}/hook",
            "DVCPULSE_WEBHOOK_SECRET": "crash-test-secret",
            "DVCPULSE_RECIPIENTS_FILE": str(recipients),
            "DVCPULSE_GROUP_WAIT": "2s",
            "DVCPULSE_TICK_SECONDS": "0.05",
            "DVCPULSE_DIGEST_ENABLED": "false",
            "DVCPULSE_SCORE_FLUSH_MS": "50",
        }
        ingest, scoring, alerts = (
            ServiceProcess(n, env, ports[n], tmp_path) for n in ("ingest", "scoring", "alerts")
        )
        with services(ingest, scoring, alerts):

            def alert_states() -> Counter:
                rows = httpx.get(f"{alerts.url}/api/v1/alerts", timeout=5).json()
                return Counter(r["state"] for r in rows)

            # Wave 1: every unit at 0% online and 0% digitized -> 40 `zero` alerts fire.
            assert (
                httpx.post(
                    f"{ingest.url}/api/v1/events", json=events_for(units, "a", "direct", False)
                ).status_code
                == 202
            )
            wait_until(
                lambda: alert_states()["firing"] >= 10, timeout=30, every=0.02, what="alerts firing"
            )
            alerts.kill(signal.SIGKILL)  # before group_wait: notifications are still pending
            fired_before_crash = receiver.count("firing")
            alerts.start()
            wait_until(
                lambda: receiver.count("firing") >= 2 * len(units),
                timeout=60,
                what="all firing notices",
            )

            # Wave 2: every unit reaches 50% on both -> the 40 alerts resolve.
            assert (
                httpx.post(
                    f"{ingest.url}/api/v1/events", json=events_for(units, "b", "online", True)
                ).status_code
                == 202
            )
            wait_until(
                lambda: alert_states()["resolved"] >= 10,
                timeout=30,
                every=0.02,
                what="alerts resolving",
            )
            alerts.kill(signal.SIGKILL)
            alerts.start()
            wait_until(
                lambda: receiver.count("resolved") >= 2 * len(units),
                timeout=60,
                what="all resolved notices",
            )
            time.sleep(3)  # one more group_wait: anything sent twice would arrive by now

    counts = Counter(receiver.notices)
    print(
        f"\n{len(counts)} transitions notified; {fired_before_crash} firing notices before the first crash"
    )
    assert {e for _, e in counts} == {"firing", "resolved"}
    assert sum(1 for _, e in counts if e == "firing") == 2 * len(units)
    assert sum(1 for _, e in counts if e == "resolved") == 2 * len(units)
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
