"""Settings of the alerts service: the common ones plus SMTP, webhook, routing and timing."""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any

from dvcpulse_common.settings import CONFIG_DIR, Settings
from pydantic import BeforeValidator, Field, SecretStr

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> Any:
    """'30', '30s', '1.5m', '24h', '7d' (or ISO 8601 'PT30S'): env values read as people write."""
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2) or "s"])
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class AlertsSettings(Settings):
    # Email (real SMTP). No host = the email channel records "skipped" instead of sending.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "dvcpulse <canh-bao@dvcpulse.local>"
    smtp_timeout: float = 10.0

    # Webhook: JSON POST signed with HMAC-SHA256 of the raw body (header X-Dvcpulse-Signature).
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout: float = 5.0

    recipients_file: Path = CONFIG_DIR / "ca_mau" / "recipients.yaml"

    # Alertmanager-like timing.
    group_wait: Duration = Field(default=timedelta(seconds=30))
    repeat_interval: Duration = Field(default=timedelta(hours=24))
    silent_days: int = Field(default=7, ge=1)
    min_dossiers: int = Field(default=1, ge=1)

    # Weekly digest: weekday 0=Monday .. 4=Friday, local time in `timezone`.
    digest_weekday: int = Field(default=4, ge=0, le=6)
    digest_time: time = time(15, 0)
    # A digest missed while the service was down is still sent if this late at most.
    digest_grace: Duration = Field(default=timedelta(hours=12))
    digest_enabled: bool = True

    # Delivery retries (tenacity): attempts per delivery and the first backoff step.
    delivery_attempts: int = Field(default=5, ge=1)
    delivery_backoff: float = Field(default=1.0, gt=0)
    delivery_backoff_max: float = Field(default=60.0, gt=0)

    # How often the scheduler looks at groups, reminders, silent units and the digest.
    tick_seconds: float = Field(default=0.2, gt=0)
    scores_batch: int = Field(default=500, ge=1)

    # Optional Grafana annotations: a region per alert, from firing to resolved.
    grafana_url: str | None = None
    grafana_token: SecretStr | None = None

    @property
    def alerts_db_path(self) -> Path:
        return self.data_dir / "alerts.sqlite3"


def alerts_settings(settings: Settings) -> AlertsSettings:
    """Keep what the caller set; read the alerts-only fields from the environment."""
    if isinstance(settings, AlertsSettings):
        return settings
    return AlertsSettings(**{k: getattr(settings, k) for k in Settings.model_fields})
