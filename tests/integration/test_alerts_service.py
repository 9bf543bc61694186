"""The alerts service over the real Redis, a real SMTP server (aiosmtpd) and a real HTTP server
receiving the signed webhook. Time is a ManualClock: group_wait, repeat_interval and the Friday
digest are reached by moving it, never by waiting."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
import redis
import yaml
from aiosmtpd.controller import Controller
from dvcpulse_alerts.app import create_app
from dvcpulse_alerts.clock import ManualClock
from dvcpulse_alerts.recipients import parse_recipients
from dvcpulse_alerts.settings import AlertsSettings
from dvcpulse_shared.api import Counts, MetricStatus, ScoreUpdate, Status, Window
from dvcpulse_shared.streams import ALERTS_GROUP, DATA_FIELD, StreamNames
from dvcpulse_shared.targets import MetricTargets
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from tests.helpers import ServerThread, free_port, wait_until

pytestmark = pytest.mark.integration

VN = ZoneInfo("Asia/Ho_Chi_Minh")
SECRET = "s3cret-for-tests"
CAMPAIGN = Window(
    id="campaign-2023",
    name="Chiến dịch cao điểm 69 ngày đêm 2023",
    date_from=date(2023, 3, 1),
    date_to=date(2023, 5, 9),
)
# Thursday 09/03/2023 09:00 local, inside the campaign.
START = datetime(2023, 3, 9, 9, 0, tzinfo=VN)

RECIPIENTS = {
    "recipients": [
        {
            "id": "office",
            "name": "Văn phòng UBND tỉnh",
            "channels": ["email", "webhook"],
            "email": "vp@camau.example",
            "all_units": True,
        },
        {
            "id": "h01",
            "name": "Chủ tịch UBND TP Cà Mau",
            "channels": ["webhook"],
            "match": [{"unit": "CMU-H01"}, {"parent": "CMU-H01"}],
        },
        {
            "id": "x01",
            "name": "Chủ tịch UBND xã Hòa Thành",
            "channels": ["email", "webhook"],
            "email": "x01@camau.example",
            "match": [{"unit": "CMU-H01-X01"}],
        },
        {
            "id": "x02",
            "name": "Chủ tịch UBND xã Lý Văn Lâm",
            "channels": ["webhook"],
            "match": [{"unit": "CMU-H01-X02"}],
        },
    ]
}


# -- real receivers --------------------------------------------------------------------------
class WebhookReceiver:
    """A real HTTP server; answers 500 to the first `fail_first` posts."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        self.always_fail = False
        self.calls = 0
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            with self._lock:
                self.calls += 1
                if self.always_fail or self.calls <= self.fail_first:
                    return JSONResponse({"error": "down"}, status_code=500)
                self.received.append((dict(request.headers), body))
            return JSONResponse({"ok": True})

        self.server = ServerThread(app)

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"

    def payloads(self, type_: str = "alerts", recipient: str | None = None) -> list[dict]:
        with self._lock:
            items = [json.loads(b) for _, b in self.received]
        return [
            p
            for p in items
            if p["type"] == type_ and (recipient is None or p["recipient"]["id"] == recipient)
        ]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    with receiver.server:
        yield receiver


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture
def alerts_settings(settings, webhook, mailbox) -> AlertsSettings:
    _, port = mailbox
    return AlertsSettings(
        **{k: getattr(settings, k) for k in type(settings).model_fields},
        smtp_host="127.0.0.1",
        smtp_port=port,
        webhook_url=webhook.url,
        webhook_secret=SECRET,
        group_wait=timedelta(seconds=30),
        repeat_interval=timedelta(hours=24),
        tick_seconds=0.02,
        delivery_attempts=3,
        delivery_backoff=0.01,
        delivery_backoff_max=0.05,
        digest_enabled=False,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START.astimezone(UTC))


@pytest.fixture
def recipients(registry):
    return parse_recipients(RECIPIENTS, registry)


@pytest.fixture
def alerts(alerts_settings, registry, target_sets, recipients, clock):
    app = create_app(alerts_settings, registry, target_sets, recipients=recipients, clock=clock)
    with ServerThread(app) as server:
        yield server


# -- helpers ---------------------------------------------------------------------------------
def publish(
    settings,
    unit: str,
    counts: Counts,
    *,
    level: str = "commune",
    last: date | None = date(2023, 3, 9),
    computed_at: datetime | None = None,
    window: Window = CAMPAIGN,
) -> bytes:
    """XADD one ScoreUpdate as scoring does (field __data__ = its JSON)."""
    na = MetricStatus(online=Status.met, digitization=Status.met, online_payment=Status.met)
    update = ScoreUpdate(
        unit_code=unit,
        level=level,
        window=window,
        **counts.model_dump(),
        online_rate=None,
        digitization_rate=None,
        online_payment_rate=None,
        targets=MetricTargets(),
        status=na,
        last_received_on=last,
        computed_at=computed_at or datetime.now(UTC),
    )
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    return client.xadd(
        StreamNames(settings.stream_prefix).scores,
        {DATA_FIELD: orjson.dumps(update.model_dump(mode="json"))},
    )


def get(server, path, **params):
    resp = httpx.get(f"{server.url}{path}", params=params, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def firing(server, **params):
    return get(server, "/api/v1/alerts", state="firing", **params)


def acked(settings) -> bool:
    """Every score update read by group `alerts` is acknowledged (state committed)."""
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    stream = StreamNames(settings.stream_prefix).scores
    groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
    g = groups.get(ALERTS_GROUP)
    return (
        bool(g)
        and g["pending"] == 0
        and g["last-delivered-id"] == client.xinfo_stream(stream)["last-generated-id"]
    )


def settled(server, settings, clock) -> bool:
    """Every update committed and acked, and a scheduler tick has run at the clock's current
    time (so anything due by now has been queued)."""
    if not acked(settings):
        return False
    ticked = get(server, "/health")["ticked_at"]
    return ticked is not None and datetime.fromisoformat(ticked) >= clock.now()


def sent(server, **params) -> list[dict]:
    return get(server, "/api/v1/notifications", **params)


GOOD = Counts(received=10, online=8, digitized=9, fee_required=5, paid_online=3)  # commune: met
ZERO_ONLINE = Counts(received=10, online=0, digitized=9, fee_required=5, paid_online=3)


def check_signature(headers: dict[str, str], body: bytes) -> None:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-dvcpulse-signature"], expected)


# -- tests -----------------------------------------------------------------------------------
def test_first_fire_is_grouped_signed_and_mailed(alerts, alerts_settings, clock, webhook, mailbox):
    box, _ = mailbox
    publish(alerts_settings, "CMU-H01-X01", ZERO_ONLINE)
    [alert] = wait_until(lambda: firing(alerts), what="alert firing")
    assert alert["unit_code"] == "CMU-H01-X01"
    assert (alert["kind"], alert["severity"], alert["metric"]) == ("zero", "critical", "online")
    assert (alert["value"], alert["target"], alert["window"]) == (0.0, 60.0, "campaign-2023")
    assert alert["unit_name"] == "UBND xã Hòa Thành" and alert["level"] == "commune"
    assert alert["resolved_at"] is None and alert["silenced"] is False
    assert alert["last_notified_at"] is not None

    # Nothing leaves before group_wait.
    assert wait_until(lambda: acked(alerts_settings), what="acked")
    assert webhook.payloads() == [] and box.messages == []
    clock.advance(timedelta(seconds=30))
    wait_until(lambda: len(webhook.payloads()) == 3, what="3 webhooks (office, h01, x01)")
    wait_until(lambda: len(box.messages) == 2, what="2 emails (office, x01)")

    # The webhook is signed over the raw body; a tampered body would not verify.
    for headers, body in webhook.received:
        check_signature(headers, body)
    x01 = webhook.payloads(recipient="x01")[0]
    assert x01["alerts"][0]["unit_code"] == "CMU-H01-X01"
    assert x01["alerts"][0]["value"] == 0.0 and x01["alerts"][0]["event"] == "firing"
    assert webhook.payloads(recipient="x02") == []

    mail = box.to("x01@camau.example")[0]
    text = mail.get_content()
    assert "Kính gửi Chủ tịch UBND xã Hòa Thành" in text
    assert (
        "[Tỷ lệ 0%] UBND xã Hòa Thành (CMU-H01-X01) — Tỷ lệ hồ sơ trực tuyến: 0,00% (0/10 hồ sơ); chỉ tiêu 60,00%; thiếu 60,00 điểm %."
        in text
    )
    assert "1 chỉ số 0%" in mail["Subject"]
    log = sent(alerts)
    assert {(d["recipient"], d["channel"], d["status"], d["attempts"]) for d in log} == {
        ("office", "email", "sent", 1),
        ("office", "webhook", "sent", 1),
        ("h01", "webhook", "sent", 1),
        ("x01", "email", "sent", 1),
        ("x01", "webhook", "sent", 1),
    }


def test_unchanged_and_redelivered_updates_send_nothing_then_reminder_then_resolve(
    alerts, alerts_settings, clock, webhook
):
    t0 = datetime.now(UTC)
    publish(alerts_settings, "CMU-H01-X02", ZERO_ONLINE, computed_at=t0)
    wait_until(lambda: firing(alerts), what="firing")
    clock.advance(timedelta(seconds=30))
    wait_until(lambda: len(webhook.payloads(recipient="x02")) == 1, what="first notice")

    # The same update again (a redelivery) and a newer one with the same counts: no change.
    publish(alerts_settings, "CMU-H01-X02", ZERO_ONLINE, computed_at=t0)
    publish(alerts_settings, "CMU-H01-X02", ZERO_ONLINE, computed_at=t0 + timedelta(seconds=5))
    wait_until(lambda: acked(alerts_settings), what="acked")
    clock.advance(timedelta(hours=23))
    wait_until(lambda: acked(alerts_settings))
    n_before = len(sent(alerts))
    clock.advance(timedelta(minutes=59, seconds=29))  # 23h59m59s after the first notice
    wait_until(lambda: settled(alerts, alerts_settings, clock))
    assert len(sent(alerts)) == n_before
    assert len(webhook.payloads(recipient="x02")) == 1

    # repeat_interval (24 h) passed: one reminder, after group_wait.
    clock.advance(timedelta(seconds=1))
    wait_until(lambda: firing(alerts)[0]["last_notified_at"] > firing(alerts)[0]["started_at"])
    clock.advance(timedelta(seconds=30))
    wait_until(lambda: len(webhook.payloads(recipient="x02")) == 2, what="reminder")
    reminder = webhook.payloads(recipient="x02")[1]
    assert [a["event"] for a in reminder["alerts"]] == ["reminder"]
    assert "VẪN CHƯA KHẮC PHỤC" in reminder["text"]

    # Recovered: resolved, one "resolved" message.
    publish(alerts_settings, "CMU-H01-X02", GOOD, computed_at=t0 + timedelta(seconds=10))
    wait_until(lambda: not firing(alerts), what="resolved")
    [done] = get(alerts, "/api/v1/alerts", state="resolved")
    assert done["resolved_at"] is not None and done["value"] == 80.0
    clock.advance(timedelta(seconds=30))
    wait_until(lambda: len(webhook.payloads(recipient="x02")) == 3, what="resolved notice")
    last = webhook.payloads(recipient="x02")[2]
    assert [(a["event"], a["status"]) for a in last["alerts"]] == [("resolved", "resolved")]
    assert "ĐÃ KHẮC PHỤC" in last["text"] and "80,00%" in last["text"]
    # And nothing more.
    clock.advance(timedelta(days=2))
    wait_until(lambda: settled(alerts, alerts_settings, clock))
    assert len(webhook.payloads(recipient="x02")) == 3


def test_grouping_worst_first_and_routing(alerts, alerts_settings, clock, webhook):
    # Several units within group_wait -> one message per recipient, worst first.
    publish(alerts_settings, "CMU-H01-X01", Counts(received=10, online=5, digitized=9))  # 50 < 60
    publish(alerts_settings, "CMU-H01-X02", Counts(received=10, online=2, digitized=9))  # 20 < 60
    publish(alerts_settings, "CMU-H01-X03", Counts(received=10, online=0, digitized=9))  # 0%
    publish(
        alerts_settings,
        "CMU-S01",
        Counts(received=4, online=3, digitized=4, fee_required=2, paid_online=1),
        level="province",
    )  # 75 < 80
    wait_until(lambda: len(firing(alerts)) == 4, what="4 alerts")
    clock.advance(timedelta(seconds=10))
    wait_until(lambda: settled(alerts, alerts_settings, clock))
    assert webhook.payloads() == []
    clock.advance(timedelta(seconds=20))
    wait_until(lambda: len(webhook.payloads()) == 4, what="office, h01, x01, x02")
    office = webhook.payloads(recipient="office")
    assert len(office) == 1
    order = [(a["unit_code"], a["kind"]) for a in office[0]["alerts"]]
    assert order == [
        ("CMU-H01-X03", "zero"),
        ("CMU-H01-X02", "below_target"),  # gap 40
        ("CMU-H01-X01", "below_target"),  # gap 10
        ("CMU-S01", "below_target"),  # gap 5
    ]
    h01 = webhook.payloads(recipient="h01")[0]
    assert {a["unit_code"] for a in h01["alerts"]} == {"CMU-H01-X01", "CMU-H01-X02", "CMU-H01-X03"}
    # A commune's head gets only his own commune.
    assert [a["unit_code"] for a in webhook.payloads(recipient="x01")[0]["alerts"]] == [
        "CMU-H01-X01"
    ]
    assert [a["unit_code"] for a in webhook.payloads(recipient="x02")[0]["alerts"]] == [
        "CMU-H01-X02"
    ]
    text = office[0]["text"]
    assert text.index("CMU-H01-X03") < text.index("CMU-H01-X02") < text.index("CMU-S01")
    assert "thiếu 40,00 điểm %" in text


def test_not_applicable_and_no_data_are_never_zero(alerts, alerts_settings, clock, webhook):
    # No fee-bearing dossiers: payment not applicable. A unit without fee procedures neither.
    publish(alerts_settings, "CMU-H01-X01", Counts(received=6, online=6, digitized=6))
    publish(
        alerts_settings,
        "CMU-S02",
        Counts(received=6, online=6, digitized=6, fee_required=2, paid_online=0),
        level="province",
    )
    publish(alerts_settings, "CMU-H01-X02", Counts(), last=None)  # no data at all
    wait_until(lambda: acked(alerts_settings), what="acked")
    clock.advance(timedelta(minutes=5))
    wait_until(lambda: settled(alerts, alerts_settings, clock))
    assert get(alerts, "/api/v1/alerts") == []
    assert sent(alerts) == []


def test_silent_unit_is_info_not_zero(alerts, alerts_settings, clock, webhook):
    publish(alerts_settings, "CMU-H01-X01", GOOD, last=date(2023, 3, 8))
    clock.advance(timedelta(days=5, hours=14))  # 14/03 23:00: 6 days since 08/03
    wait_until(lambda: settled(alerts, alerts_settings, clock))
    assert firing(alerts) == []
    clock.advance(timedelta(hours=1))  # 15/03 00:00: 7 days since 08/03
    [alert] = wait_until(lambda: firing(alerts), what="silent")
    assert (alert["kind"], alert["severity"], alert["metric"], alert["value"]) == (
        "silent",
        "info",
        "received",
        7.0,
    )
    clock.advance(timedelta(seconds=30))
    [msg] = wait_until(lambda: webhook.payloads(recipient="x01"))
    assert "không tiếp nhận hồ sơ nào trong 7 ngày" in msg["text"]
    assert "0,00%" not in msg["text"] and "0%" not in msg["subject"]
    # A dossier arrives: silent resolves.
    publish(
        alerts_settings,
        "CMU-H01-X01",
        GOOD.model_copy(update={"received": 11, "online": 9}),
        last=date(2023, 3, 15),
    )
    wait_until(lambda: not firing(alerts), what="silent resolved")


def test_silence_mutes_but_shows_firing_then_delete_notifies(
    alerts, alerts_settings, clock, webhook
):
    until = (clock.now() + timedelta(days=3)).isoformat()
    resp = httpx.post(
        f"{alerts.url}/api/v1/silences",
        json={
            "unit_code": "CMU-H01-X01",
            "kind": "zero",
            "until": until,
            "reason": "Mất mạng",
            "author": "vp",
        },
    )
    assert resp.status_code == 201, resp.text
    silence = resp.json()
    assert silence["active"] is True and silence["unit_code"] == "CMU-H01-X01"
    assert [s["id"] for s in get(alerts, "/api/v1/silences")] == [silence["id"]]

    publish(alerts_settings, "CMU-H01-X01", ZERO_ONLINE)
    publish(alerts_settings, "CMU-H01-X02", ZERO_ONLINE)
    wait_until(lambda: len(firing(alerts)) == 2)
    by_unit = {a["unit_code"]: a for a in firing(alerts)}
    assert by_unit["CMU-H01-X01"]["silenced"] is True
    assert by_unit["CMU-H01-X01"]["last_notified_at"] is None
    assert by_unit["CMU-H01-X02"]["silenced"] is False
    clock.advance(timedelta(seconds=30))
    wait_until(lambda: len(webhook.payloads()) == 3, what="office, h01, x02")
    assert webhook.payloads(recipient="x01") == []
    assert all(a["unit_code"] == "CMU-H01-X02" for p in webhook.payloads() for a in p["alerts"])

    assert httpx.delete(f"{alerts.url}/api/v1/silences/{silence['id']}").status_code == 204
    assert httpx.delete(f"{alerts.url}/api/v1/silences/{silence['id']}").status_code == 404
    assert get(alerts, "/api/v1/silences") == []
    wait_until(lambda: firing(alerts, unit="CMU-H01-X01")[0]["last_notified_at"], what="told")
    clock.advance(timedelta(seconds=30))
    wait_until(lambda: webhook.payloads(recipient="x01"), what="x01 told after the silence")


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (
            {"until": "2023-03-12T00:00:00+07:00", "reason": "x", "author": "a"},
            "body",
            "at least one of",
        ),
        (
            {
                "unit_code": "NOPE",
                "until": "2023-03-12T00:00:00+07:00",
                "reason": "x",
                "author": "a",
            },
            "unit_code",
            "unknown unit",
        ),
        (
            {"kind": "boom", "until": "2023-03-12T00:00:00+07:00", "reason": "x", "author": "a"},
            "kind",
            "Input should be",
        ),
        (
            {"kind": "zero", "until": "2023-03-12T00:00:00", "reason": "x", "author": "a"},
            "until",
            "timezone",
        ),
        (
            {"kind": "zero", "until": "2023-03-01T00:00:00+07:00", "reason": "x", "author": "a"},
            "until",
            "future",
        ),
        (
            {"kind": "zero", "until": "2023-03-12T00:00:00+07:00", "reason": "", "author": "a"},
            "reason",
            "at least 1",
        ),
        (
            {"kind": "zero", "until": "2023-03-12T00:00:00+07:00", "reason": "x"},
            "author",
            "Field required",
        ),
    ],
)
def test_bad_silence_names_field_and_reason(alerts, body, field, reason):
    resp = httpx.post(f"{alerts.url}/api/v1/silences", json=body)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert any(d["loc"][-1] == field and reason in d["msg"] for d in detail), detail


def test_failed_webhook_is_retried_with_backoff_and_logged(alerts, alerts_settings, clock, webhook):
    webhook.fail_first = 2  # two 500s, then OK
    publish(alerts_settings, "CMU-H01-X02", ZERO_ONLINE)
    wait_until(lambda: firing(alerts))
    clock.advance(timedelta(seconds=30))
    # Three webhook deliveries (office, h01, x02); the first two POSTs fail and are retried.
    hooks = wait_until(
        lambda: (
            (h := [d for d in sent(alerts) if d["channel"] == "webhook"])
            and all(d["status"] == "sent" for d in h)
            and h
        ),
        what="all webhooks sent",
    )
    assert len(hooks) == 3 and len(webhook.payloads()) == 3
    assert sum(d["attempts"] for d in hooks) == 3 + 2

    # Down for good: every attempt made, then `failed` with the error, never silently dropped.
    webhook.always_fail = True
    publish(alerts_settings, "CMU-H01-X01", ZERO_ONLINE)
    wait_until(lambda: len(firing(alerts)) == 2)
    clock.advance(timedelta(seconds=30))
    failed = wait_until(
        lambda: [d for d in sent(alerts, status="failed") if d["channel"] == "webhook"],
        what="failed",
    )
    assert all(d["attempts"] == alerts_settings.delivery_attempts for d in failed)
    assert all("500" in d["error"] for d in failed)
    assert get(alerts, "/health")["failed_deliveries"] == len(failed)
    metrics = httpx.get(f"{alerts.url}/metrics").text
    assert 'dvcpulse_alerts_deliveries_total{channel="webhook",status="failed"}' in metrics


def test_restart_resends_nothing_and_reads_pending_first(
    alerts_settings, registry, target_sets, recipients, clock, webhook, mailbox
):
    box, _ = mailbox

    def start():
        return ServerThread(
            create_app(alerts_settings, registry, target_sets, recipients=recipients, clock=clock)
        )

    with start() as first:
        publish(
            alerts_settings,
            "CMU-H01-X01",
            ZERO_ONLINE,
            computed_at=datetime(2023, 3, 9, 2, tzinfo=UTC),
        )
        wait_until(lambda: firing(first))
        clock.advance(timedelta(seconds=30))
        wait_until(lambda: len(webhook.payloads()) == 3 and len(box.messages) == 2)
        log_before = sent(first)
    # While alerts is down: the same update again (redelivered by scoring after a crash) and a
    # new one read by our consumer but never acknowledged (as if we crashed before XACK).
    publish(
        alerts_settings, "CMU-H01-X01", ZERO_ONLINE, computed_at=datetime(2023, 3, 9, 2, tzinfo=UTC)
    )
    client = redis.Redis.from_url(alerts_settings.redis_url.get_secret_value())
    stream = StreamNames(alerts_settings.stream_prefix).scores
    publish(alerts_settings, "CMU-H01-X02", ZERO_ONLINE)
    import socket

    client.xreadgroup(ALERTS_GROUP, f"alerts-{socket.gethostname()}", {stream: ">"}, count=1)
    assert client.xpending(stream, ALERTS_GROUP)["pending"] == 1

    with start() as second:
        wait_until(lambda: len(firing(second)) == 2, what="pending entry processed")
        wait_until(lambda: acked(alerts_settings))
        assert client.xpending(stream, ALERTS_GROUP)["pending"] == 0
        clock.advance(timedelta(seconds=30))
        wait_until(lambda: webhook.payloads(recipient="x02"))
        # X01 was told once, before the restart; nothing of it is sent again.
        x01 = [
            a for p in webhook.payloads() for a in p["alerts"] if a["unit_code"] == "CMU-H01-X01"
        ]
        assert len(x01) == 3  # office, h01, x01 — from the first run only
        assert len(box.to("x01@camau.example")) == 1
        after = sent(second)
        assert {d["id"] for d in log_before} <= {d["id"] for d in after}
        # Only X02's message: office (email + webhook), h01 (webhook), x02 (webhook).
        assert len(after) == len(log_before) + 4


def test_an_older_update_arriving_late_changes_nothing(alerts, alerts_settings, clock, webhook):
    t0 = datetime.now(UTC)
    publish(alerts_settings, "CMU-H01-X01", GOOD, computed_at=t0)
    # The same unit's older counts (e.g. a redelivery from before a crash) come in afterwards.
    publish(alerts_settings, "CMU-H01-X01", ZERO_ONLINE, computed_at=t0 - timedelta(seconds=1))
    clock.advance(timedelta(minutes=1))
    wait_until(lambda: settled(alerts, alerts_settings, clock))
    assert get(alerts, "/api/v1/alerts") == []
    assert sent(alerts) == []


def test_friday_digest_once_per_recipient_with_change_since_last_week(
    alerts_settings, registry, target_sets, recipients, clock, webhook, mailbox
):
    box, _ = mailbox
    cfg = alerts_settings.model_copy(update={"digest_enabled": True})
    app = create_app(cfg, registry, target_sets, recipients=recipients, clock=clock)
    with ServerThread(app) as alerts:
        publish(cfg, "CMU-H01-X01", Counts(received=10, online=5, digitized=9))  # 50 < 60
        publish(cfg, "CMU-H01-X02", ZERO_ONLINE)
        publish(
            cfg,
            "CMU-S01",
            Counts(received=4, online=4, digitized=4, fee_required=2, paid_online=1),
            level="province",
        )
        # Friday 10/03/2023 14:59:59 local: not yet.
        clock.set(datetime(2023, 3, 10, 14, 59, 59, tzinfo=VN))
        wait_until(lambda: settled(alerts, cfg, clock))
        assert webhook.payloads("digest") == []
        clock.set(datetime(2023, 3, 10, 15, 0, tzinfo=VN))
        wait_until(lambda: len(webhook.payloads("digest")) == 4, what="4 digests")
        office = webhook.payloads("digest", "office")[0]
        text = office["text"]
        assert "BÁO CÁO TUẦN — Chiến dịch cao điểm 69 ngày đêm 2023" in text
        assert "ĐƠN VỊ CÓ TỶ LỆ 0% (1):" in text
        assert (
            "UBND xã Lý Văn Lâm (CMU-H01-X02) — Tỷ lệ hồ sơ trực tuyến: 0,00% (0/10 hồ sơ)" in text
        )
        assert "ĐƠN VỊ DƯỚI CHỈ TIÊU (" in text
        assert (
            "UBND xã Hòa Thành (CMU-H01-X01) — Tỷ lệ hồ sơ trực tuyến: 50,00%, chỉ tiêu 60,00%, "
            "thiếu 10,00 điểm" in text
        )
        # Totals are sums of counts, then divided: (5+0+4)/(10+10+4) = 37,50%.
        assert "- Tỷ lệ hồ sơ trực tuyến: 37,50% (9/24)" in text
        # A commune head's digest covers only his commune.
        x01 = webhook.payloads("digest", "x01")[0]
        assert [u["unit_code"] for u in x01["units"]] == ["CMU-H01-X01"]
        mail = wait_until(
            lambda: [m for m in box.to("vp@camau.example") if "Báo cáo tuần" in m["Subject"]]
        )
        assert mail[0]["Subject"].startswith("[dvcpulse] Báo cáo tuần 10/03/2023: 1 chỉ số 0%")

        # Once per Friday, however often the scheduler looks.
        clock.set(datetime(2023, 3, 10, 16, 0, tzinfo=VN))
        wait_until(lambda: settled(alerts, cfg, clock))
        assert len(webhook.payloads("digest")) == 4

        # Next Friday: the change since last week.
        publish(cfg, "CMU-H01-X01", Counts(received=12, online=8, digitized=11))  # 66,66%
        wait_until(lambda: acked(cfg))
        clock.set(datetime(2023, 3, 17, 15, 0, 1, tzinfo=VN))
        wait_until(lambda: len(webhook.payloads("digest")) == 8, what="second digests")
        x01 = webhook.payloads("digest", "x01")[1]
        assert "66,66% (CT 60,00%) (+16,66 điểm so với tuần trước)" in x01["text"]
        assert x01["units"][0]["online_previous"] == 50.0


def test_cli_lists_alerts_and_adds_and_deletes_silences(alerts, alerts_settings, clock):
    from dvcpulse_cli.alerts_cli import app as cli
    from typer.testing import CliRunner

    runner = CliRunner()
    publish(alerts_settings, "CMU-H01-X01", ZERO_ONLINE)
    wait_until(lambda: firing(alerts))
    out = runner.invoke(cli, ["--url", alerts.url], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "CMU-H01-X01" in out.output and "zero" in out.output and "0,00%" in out.output
    until = (clock.now() + timedelta(days=1)).isoformat()
    out = runner.invoke(
        cli,
        [
            "silence",
            "add",
            "--url",
            alerts.url,
            "--unit",
            "CMU-H01-X01",
            "--until",
            until,
            "--reason",
            "Bảo trì",
            "--author",
            "vp",
        ],
    )
    assert out.exit_code == 0, out.output
    [silence] = get(alerts, "/api/v1/silences")
    assert (silence["unit_code"], silence["reason"]) == ("CMU-H01-X01", "Bảo trì")
    assert firing(alerts)[0]["silenced"] is True
    out = runner.invoke(
        cli,
        [
            "silence",
            "add",
            "--url",
            alerts.url,
            "--unit",
            "NOPE",
            "--until",
            until,
            "--reason",
            "x",
            "--author",
            "a",
        ],
    )
    assert out.exit_code == 1 and "unknown unit" in out.output
    out = runner.invoke(cli, ["silence", "delete", "--url", alerts.url, str(silence["id"])])
    assert out.exit_code == 0, out.output
    assert get(alerts, "/api/v1/silences") == []
    out = runner.invoke(cli, ["notifications", "--url", alerts.url])
    assert out.exit_code == 0, out.output


def test_grafana_annotations_region_from_firing_to_resolved(
    alerts_settings, registry, target_sets, recipients, clock
):
    """grafana-client against an HTTP server speaking Grafana's annotations API (POST
    /api/annotations, PATCH /api/annotations/{id}); not a full Grafana."""
    calls: list[tuple[str, str, dict]] = []
    grafana = FastAPI()

    @grafana.post("/api/annotations")
    async def add(request: Request) -> dict:
        calls.append(("POST", "/api/annotations", await request.json()))
        return {"id": 41 + len(calls), "message": "Annotation added"}

    @grafana.patch("/api/annotations/{annotation_id}")
    async def patch(annotation_id: int, request: Request) -> dict:
        calls.append(("PATCH", f"/api/annotations/{annotation_id}", await request.json()))
        return {"message": "Annotation patched"}

    with ServerThread(grafana) as gserver:
        cfg = alerts_settings.model_copy(
            update={"grafana_url": gserver.url, "grafana_token": SecretStr("glsa_test")}
        )
        app = create_app(cfg, registry, target_sets, recipients=recipients, clock=clock)
        with ServerThread(app) as alerts:
            publish(
                cfg, "CMU-H01-X01", ZERO_ONLINE, computed_at=datetime(2023, 3, 9, 2, tzinfo=UTC)
            )
            wait_until(lambda: calls, what="annotation added")
            method, path, body = calls[0]
            assert (method, path) == ("POST", "/api/annotations")
            assert body["time"] == int(START.timestamp() * 1000)
            assert set(body["tags"]) >= {"dvcpulse", "zero", "critical", "online", "CMU-H01-X01"}
            assert "UBND xã Hòa Thành" in body["text"]
            clock.advance(timedelta(hours=2))
            publish(cfg, "CMU-H01-X01", GOOD, computed_at=datetime(2023, 3, 9, 3, tzinfo=UTC))
            wait_until(lambda: len(calls) == 2, what="annotation closed")
            assert calls[1][:2] == ("PATCH", "/api/annotations/42")
            assert calls[1][2]["timeEnd"] == int((START + timedelta(hours=2)).timestamp() * 1000)
            clock.advance(timedelta(minutes=5))
            wait_until(lambda: settled(alerts, cfg, clock))
            assert len(calls) == 2  # nothing annotated twice


def test_a_failed_delivery_is_sent_again_on_request(alerts, alerts_settings, clock, webhook):
    webhook.always_fail = True
    publish(alerts_settings, "CMU-H01-X02", ZERO_ONLINE)
    wait_until(lambda: firing(alerts))
    clock.advance(timedelta(seconds=30))
    failed = wait_until(
        lambda: (f := [d for d in sent(alerts, status="failed")]) and len(f) == 3 and f,
        what="3 failed webhooks",
    )
    x02 = next(d for d in failed if d["recipient"] == "x02")

    webhook.always_fail = False  # the receiver is back
    resp = httpx.post(f"{alerts.url}/api/v1/notifications/{x02['id']}/resend")
    assert resp.status_code == 201, resp.text
    again = resp.json()
    assert again["id"] != x02["id"] and again["message_id"] == x02["message_id"]
    assert (again["recipient"], again["channel"], again["status"]) == ("x02", "webhook", "pending")
    wait_until(lambda: webhook.payloads(recipient="x02"), what="x02's message delivered")
    log = {d["id"]: d for d in sent(alerts)}
    assert log[again["id"]]["status"] == "sent" and log[again["id"]]["attempts"] == 1
    assert log[x02["id"]]["status"] == "failed"  # the failure stays on record
    [payload] = webhook.payloads(recipient="x02")
    assert payload["alerts"][0]["unit_code"] == "CMU-H01-X02"
    # Sent once more is allowed (a manager says it never arrived), here from the CLI.
    from dvcpulse_cli.alerts_cli import app as cli
    from typer.testing import CliRunner

    out = CliRunner().invoke(cli, ["resend", str(again["id"]), "--url", alerts.url])
    assert out.exit_code == 0, out.output
    assert "queued: x02 by webhook" in out.output
    wait_until(lambda: len(webhook.payloads(recipient="x02")) == 2, what="sent a second time")
    missing = httpx.post(f"{alerts.url}/api/v1/notifications/999999/resend")
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]


def test_the_recipients_file_is_read_again_when_it_changes(
    alerts_settings, registry, target_sets, clock, webhook, tmp_path
):
    path = tmp_path / "recipients.yaml"
    path.write_text(yaml.safe_dump(RECIPIENTS, allow_unicode=True), encoding="utf-8")
    cfg = alerts_settings.model_copy(update={"recipients_file": path})
    app = create_app(cfg, registry, target_sets, clock=clock)
    with ServerThread(app) as server:
        ids = lambda: [r["id"] for r in get(server, "/api/v1/recipients")]  # noqa: E731
        assert ids() == ["office", "h01", "x01", "x02"]
        x02 = get(server, "/api/v1/recipients")[3]
        assert (x02["channels"], x02["units"]) == (["webhook"], 1)

        # Edited on disk: x02 leaves, x05 comes. Picked up within a tick, no restart.
        edited = {"recipients": [*RECIPIENTS["recipients"][:3], {
            "id": "x05", "name": "Chủ tịch UBND xã 5", "channels": ["webhook"],
            "match": [{"unit": "CMU-H01-X05"}],
        }]}  # fmt: skip
        path.write_text(yaml.safe_dump(edited, allow_unicode=True), encoding="utf-8")
        wait_until(lambda: ids() == ["office", "h01", "x01", "x05"], what="file read again")
        publish(cfg, "CMU-H01-X02", ZERO_ONLINE)
        publish(cfg, "CMU-H01-X05", ZERO_ONLINE)
        wait_until(lambda: len(firing(server)) == 2, what="two alerts")
        clock.advance(timedelta(seconds=30))
        wait_until(lambda: webhook.payloads(recipient="x05"), what="x05 notified")
        wait_until(lambda: len(webhook.payloads(recipient="office")) == 1, what="office")
        assert webhook.payloads(recipient="x02") == []  # removed: nothing new for it

        # A broken edit is refused whole: the recipients in force stay, the reason is shown.
        broken = {"recipients": [{**edited["recipients"][3], "match": [{"unit": "CMU-NOPE"}]}]}
        path.write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
        wait_until(lambda: get(server, "/health")["recipients_error"], what="error reported")
        assert "unknown unit code 'CMU-NOPE'" in get(server, "/health")["recipients_error"]
        assert ids() == ["office", "h01", "x01", "x05"]
        from dvcpulse_cli.alerts_cli import app as cli
        from typer.testing import CliRunner

        out = CliRunner().invoke(cli, ["recipients", "--reload", "--url", server.url])
        assert out.exit_code == 1 and "CMU-NOPE" in out.output
        resp = httpx.post(f"{server.url}/api/v1/recipients/reload")
        assert resp.status_code == 422
        assert resp.json()["detail"][0]["loc"] == ["body", "recipients_file"]
        assert (
            "recipients.0 (x05).match.0: unknown unit code 'CMU-NOPE'"
            in resp.json()["detail"][0]["msg"]
        )

        path.write_text(yaml.safe_dump(RECIPIENTS, allow_unicode=True), encoding="utf-8")
        resp = httpx.post(f"{server.url}/api/v1/recipients/reload")
        assert resp.json() == {"file": str(path), "recipients": 4}
        assert ids() == ["office", "h01", "x01", "x02"]
        assert get(server, "/health")["recipients_error"] is None
        out = CliRunner().invoke(cli, ["recipients", "--url", server.url], env={"COLUMNS": "200"})
        assert out.exit_code == 0 and "4 recipients" in out.output and "x02" in out.output


def test_recipients_given_in_code_are_not_reloaded(alerts):
    resp = httpx.post(f"{alerts.url}/api/v1/recipients/reload")
    assert resp.status_code == 409 and resp.json() == {"detail": "recipients were given in code"}
