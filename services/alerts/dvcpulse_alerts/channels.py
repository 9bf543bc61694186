"""Delivery adapters (email over SMTP, signed JSON webhook, the log) and the dispatcher that
retries with backoff and records every attempt: a delivery ends `sent` or `failed`, never lost."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol

import aiosmtplib
import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from .clock import Clock
from .metrics import AlertsMetrics
from .settings import AlertsSettings
from .store import AlertStore

log = structlog.get_logger("dvcpulse.alerts")

SIGNATURE_HEADER = "X-Dvcpulse-Signature"


def sign(secret: bytes, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, raw body): what a receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class PermanentError(Exception):
    """A failure retrying cannot fix (e.g. the receiver answered 400); recorded, not retried."""


class Delivery(Protocol):
    async def send(self, address: str | None, subject: str, text: str, payload: dict) -> None: ...


class EmailChannel:
    def __init__(self, settings: AlertsSettings) -> None:
        self.s = settings

    async def send(self, address: str | None, subject: str, text: str, payload: dict) -> None:
        if not address:
            raise PermanentError("recipient has no email address")
        msg = EmailMessage()
        msg["From"] = self.s.smtp_from
        msg["To"] = address
        msg["Subject"] = subject
        msg["Date"] = format_datetime(datetime.now().astimezone())
        msg["Message-ID"] = make_msgid(domain="dvcpulse")
        msg.set_content(text, charset="utf-8")
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.s.smtp_host,
                port=self.s.smtp_port,
                start_tls=self.s.smtp_starttls,
                use_tls=self.s.smtp_ssl,
                username=self.s.smtp_user,
                password=self.s.smtp_password.get_secret_value() if self.s.smtp_password else None,
                timeout=self.s.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"SMTP refused the recipient: {exc}") from exc


class WebhookChannel:
    def __init__(self, settings: AlertsSettings, client: httpx.AsyncClient) -> None:
        self.s = settings
        self.client = client

    async def send(self, address: str | None, subject: str, text: str, payload: dict) -> None:
        assert address and self.s.webhook_secret is not None  # checked when queued
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(self.s.webhook_secret.get_secret_value().encode(), body),
        }
        resp = await self.client.post(
            address, content=body, headers=headers, timeout=self.s.webhook_timeout
        )
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise PermanentError(f"webhook answered {resp.status_code}: {resp.text[:200]}")
        resp.raise_for_status()


class LogChannel:
    async def send(self, address: str | None, subject: str, text: str, payload: dict) -> None:
        log.info("alerts.message", subject=subject, text=text)


class Dispatcher:
    """Sends pending deliveries, each in its own task, retrying with exponential backoff."""

    def __init__(
        self,
        settings: AlertsSettings,
        store: AlertStore,
        clock: Clock,
        metrics: AlertsMetrics,
        channels: dict[str, Delivery] | None = None,
    ) -> None:
        self.s = settings
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self._client: httpx.AsyncClient | None = None
        self._channels = channels
        self._inflight: dict[int, asyncio.Task[None]] = {}

    def channels(self) -> dict[str, Delivery]:
        if self._channels is None:
            self._client = httpx.AsyncClient()
            self._channels = {
                "email": EmailChannel(self.s),
                "webhook": WebhookChannel(self.s, self._client),
                "log": LogChannel(),
            }
        return self._channels

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def kick(self) -> None:
        """Start a task for every pending delivery not already in flight (also after a restart:
        a delivery interrupted mid-way is still `pending` and is sent again)."""
        for row in self.store.pending_deliveries():
            if row["id"] not in self._inflight:
                task = asyncio.create_task(self._deliver(dict(row)), name=f"delivery-{row['id']}")
                self._inflight[row["id"]] = task
                task.add_done_callback(lambda _t, i=row["id"]: self._inflight.pop(i, None))

    async def drain(self) -> None:
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def _deliver(self, row: dict[str, Any]) -> None:
        channel = self.channels().get(row["channel"])
        attempts = row["attempts"]
        payload = json.loads(row["payload"])
        if channel is None:
            await self._mark(row, "failed", attempts, f"unknown channel {row['channel']!r}")
            return
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.s.delivery_attempts),
                wait=wait_exponential(
                    multiplier=self.s.delivery_backoff, max=self.s.delivery_backoff_max
                ),
                retry=retry_if_exception(lambda e: not isinstance(e, PermanentError)),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    try:
                        await channel.send(row["address"], row["subject"], row["text"], payload)
                    except Exception as exc:
                        # Every failed attempt is visible in the delivery log while retrying.
                        await self._mark(row, "pending", attempts, f"{type(exc).__name__}: {exc}")
                        log.warning(
                            "alerts.delivery_retry",
                            delivery_id=row["id"],
                            channel=row["channel"],
                            attempt=attempts,
                            error=str(exc),
                        )
                        raise
        except asyncio.CancelledError:
            raise  # shutting down: stays pending, sent after the restart
        except Exception as exc:
            await self._mark(row, "failed", attempts, f"{type(exc).__name__}: {exc}")
            log.error(
                "alerts.delivery_failed",
                delivery_id=row["id"],
                recipient=row["recipient_id"],
                channel=row["channel"],
                attempts=attempts,
                error=str(exc),
            )
            self.metrics.deliveries.labels(row["channel"], "failed").inc()
            return
        await self._mark(row, "sent", attempts, None)
        self.metrics.deliveries.labels(row["channel"], "sent").inc()

    async def _mark(
        self, row: dict[str, Any], status: str, attempts: int, error: str | None
    ) -> None:
        await asyncio.to_thread(
            self.store.mark_delivery, row["id"], status, attempts, error, self.clock.now()
        )
