"""Optional Grafana annotations (grafana-client): a region from when an alert fired to when it
resolved, tagged so a dashboard can show them. Runs only when DVCPULSE_GRAFANA_URL is set.

State lives in the alert store (table grafana_annotations, see store.py), so a restart neither loses nor
duplicates an annotation; a failed call is retried on a later tick and logged."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

import structlog
from dvcpulse_common.registry import Registry

from .domain import KIND_LABEL, METRIC_LABEL, Kind
from .settings import AlertsSettings
from .store import AlertStore, parse_ts, ts

log = structlog.get_logger("dvcpulse.alerts")

RETRY_AFTER = timedelta(seconds=30)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class GrafanaAnnotator:
    def __init__(self, settings: AlertsSettings, store: AlertStore, registry: Registry, api=None):
        self.s = settings
        self.store = store
        self.registry = registry
        self._api = api
        self._paused_until: datetime | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.s.grafana_url)

    def api(self):  # type: ignore[no-untyped-def]
        if self._api is None:
            from grafana_client import GrafanaApi

            token = self.s.grafana_token.get_secret_value() if self.s.grafana_token else None
            self._api = GrafanaApi.from_url(self.s.grafana_url, credential=token, timeout=5)
        return self._api

    def _pending(self, conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return conn.execute(
            "SELECT a.*, g.annotation_id, g.synced_state FROM alerts a "
            "LEFT JOIN grafana_annotations g ON g.alert_id = a.id "
            "WHERE g.alert_id IS NULL OR g.synced_state != a.state ORDER BY a.id LIMIT 200"
        ).fetchall()

    def sync(self, now: datetime) -> int:
        """Create or close the annotations of alerts that changed. Blocking: call in a thread."""
        if not self.enabled or (self._paused_until and now < self._paused_until):
            return 0
        with self.store.transaction() as conn:
            rows = self._pending(conn)
        done = 0
        for r in rows:
            try:
                annotation_id = self._push(r)
            except Exception as exc:
                # Grafana down or refusing: keep the state, try again later, say so.
                self._paused_until = now + RETRY_AFTER
                log.warning("alerts.grafana_failed", alert_id=r["id"], error=str(exc)[:300])
                return done
            with self.store.transaction() as conn:
                conn.execute(
                    "INSERT INTO grafana_annotations VALUES (?,?,?,?) ON CONFLICT (alert_id) DO "
                    "UPDATE SET annotation_id=excluded.annotation_id, "
                    "synced_state=excluded.synced_state, updated_at=excluded.updated_at",
                    (r["id"], annotation_id, r["state"], ts(now)),
                )
            done += 1
        return done

    def _push(self, r: sqlite3.Row) -> int:
        api = self.api()
        started = parse_ts(r["started_at"])
        resolved = parse_ts(r["resolved_at"])
        if r["annotation_id"] is not None:
            # Fired earlier, resolved now: close the region.
            api.annotations.partial_update_annotation(
                r["annotation_id"],
                time_to=_ms(resolved or started),  # type: ignore[arg-type]
            )
            return int(r["annotation_id"])
        unit = self.registry.units.get(r["unit_code"])
        text = (
            f"{KIND_LABEL[Kind(r['kind'])]}: {unit.name if unit else r['unit_code']} "
            f"({r['unit_code']}) — {METRIC_LABEL.get(r['metric'], r['metric'])}"
        )
        answer = api.annotations.add_annotation(
            time_from=_ms(started),  # type: ignore[arg-type]
            time_to=_ms(resolved) if resolved else None,
            tags=["dvcpulse", r["kind"], r["severity"], r["metric"], r["unit_code"]],
            text=text,
        )
        return int(answer["id"])
