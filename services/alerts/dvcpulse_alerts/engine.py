"""The alert engine: score updates in, alert lifecycle and grouped notifications out.

All state changes of one call happen in one SQLite transaction. Evaluation is a pure function of
the stored counts, so a redelivered or unchanged score update finds nothing to change and sends
nothing; restarting re-reads the same state and re-sends nothing already queued."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from dvcpulse_common.registry import Registry
from dvcpulse_shared.api import Counts, ScoreUpdate
from dvcpulse_shared.targets import TargetSet
from dvcpulse_shared.units import Unit

from .clock import Clock
from .domain import (
    RATE_METRICS,
    SEVERITY,
    DigestRow,
    EvalWindow,
    Event,
    Finding,
    Kind,
    Notice,
    Recipient,
    SilenceRule,
    collapse,
    digest_slot,
    evaluate_unit,
    evaluation_window,
    is_silenced,
    render_alerts,
    render_digest,
    route,
    silent_reference_day,
    targets_for,
)
from .metrics import AlertsMetrics
from .settings import AlertsSettings
from .store import AlertStore, parse_ts, ts

log = structlog.get_logger("dvcpulse.alerts")

# Re-evaluate every unit (silent units, a new window) at least this often by the clock.
SWEEP_EVERY = timedelta(minutes=1)


@dataclass
class ApplySummary:
    applied: int = 0
    stale: int = 0
    unknown: int = 0
    fired: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)


class ResendRefused(ValueError):
    """A delivery that cannot be sent again as asked (why is in the message)."""


class AlertEngine:
    def __init__(
        self,
        settings: AlertsSettings,
        registry: Registry,
        target_sets: list[TargetSet],
        recipients: list[Recipient],
        store: AlertStore,
        clock: Clock,
        metrics: AlertsMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.target_sets = target_sets
        self.recipients = recipients
        self.by_id = {r.id: r for r in recipients}
        self.store = store
        self.clock = clock
        self.metrics = metrics or AlertsMetrics()
        self.tz = ZoneInfo(settings.timezone)
        self._last_sweep: datetime | None = None
        self._last_window: str | None = None

    # -- recipients ----------------------------------------------------------------------------
    def set_recipients(self, recipients: list[Recipient]) -> None:
        """Route to these recipients from now on (a reloaded file). What is already queued for
        a recipient stays queued; a recipient removed from the file gets nothing new."""
        self.recipients = recipients
        self.by_id = {r.id: r for r in recipients}

    def resend(self, delivery_id: int) -> int:
        """Queue a message again on the channel of one delivery (failed, or sent but not
        received), to the recipient's address as configured now — a fixed e-mail address takes
        effect. The old delivery stays in the log as it was. Returns the new delivery's id."""
        now = self.clock.now()
        with self.store.transaction() as conn:
            row = conn.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            if row is None:
                raise LookupError(f"no delivery {delivery_id}")
            if row["status"] == "pending":
                raise ResendRefused(f"delivery {delivery_id} is still being sent (pending)")
            recipient = self.by_id.get(row["recipient_id"])
            if recipient is None:
                raise ResendRefused(
                    f"recipient {row['recipient_id']!r} is no longer in the recipients file"
                )
            if row["channel"] not in recipient.channels:
                raise ResendRefused(
                    f"recipient {recipient.id!r} no longer uses channel {row['channel']!r}"
                )
            address, problem = self._address(recipient, row["channel"])
            if problem:
                raise ResendRefused(problem)
            new_id = self.store.add_delivery(
                conn, row["message_id"], recipient.id, row["channel"], address, now
            )
        log.info("alerts.resend", delivery_id=delivery_id, new_delivery_id=new_id)
        return new_id

    # -- window --------------------------------------------------------------------------------
    def window(self, now: datetime | None = None) -> EvalWindow:
        today = (now or self.clock.now()).astimezone(self.tz).date()
        return evaluation_window(self.target_sets, today, self.settings.campaign)

    # -- score updates -------------------------------------------------------------------------
    def apply_updates(self, updates: Iterable[ScoreUpdate]) -> ApplySummary:
        now = self.clock.now()
        win = self.window(now)
        summary = ApplySummary()
        latest: dict[tuple[str, str], ScoreUpdate] = {}
        for u in updates:
            key = (u.window.id, u.unit_code)
            if key not in latest or latest[key].computed_at <= u.computed_at:
                latest[key] = u
        with self.store.transaction() as conn:
            touched: set[str] = set()
            for (window_id, unit_code), u in latest.items():
                if unit_code not in self.registry.units:
                    summary.unknown += 1
                    log.warning("alerts.unknown_unit", unit_code=unit_code)
                    continue
                stored = self.store.unit_score(conn, window_id, unit_code)
                # Counts only grow; an update computed no later than what we hold is a
                # redelivery or an older copy and changes nothing.
                if stored is not None and stored["computed_at"] >= ts(u.computed_at):
                    summary.stale += 1
                    continue
                counts = Counts(**{k: getattr(u, k) for k in Counts.model_fields})
                self.store.save_unit_score(
                    conn, window_id, u.window.name, unit_code, counts, u.computed_at
                )
                if u.last_received_on is not None:
                    self.store.note_activity(conn, unit_code, u.last_received_on)
                summary.applied += 1
                touched.add(unit_code)
            self._reconcile(conn, sorted(touched), win, now, summary)
        self.metrics.score_updates.labels("applied").inc(summary.applied)
        self.metrics.score_updates.labels("stale").inc(summary.stale)
        self.metrics.score_updates.labels("unknown_unit").inc(summary.unknown)
        return summary

    def _reconcile(
        self,
        conn: sqlite3.Connection,
        unit_codes: list[str],
        win: EvalWindow,
        now: datetime,
        summary: ApplySummary,
    ) -> None:
        if not unit_codes:
            return
        scores = self.store.window_scores(conn, win.id)
        activity = self.store.activity(conn)
        silences = self.silence_rules(conn)
        ref_day = silent_reference_day(now.astimezone(self.tz).date(), win)
        for code in unit_codes:
            unit = self.registry.units[code]
            wanted = evaluate_unit(
                unit,
                scores.get(code, Counts()),
                targets_for(unit, win),
                activity.get(code),
                ref_day,
                min_dossiers=self.settings.min_dossiers,
                silent_days=self.settings.silent_days,
            )
            firing = {(r["metric"], r["kind"]): r for r in self.store.firing(conn, code, win.id)}
            for key, finding in wanted.items():
                row = firing.get((key[0], key[1].value))
                if row is None:
                    alert_id = self._fire(conn, unit, finding, win, now, silences)
                    summary.fired.append(alert_id)
                elif (row["value"], row["target"], row["numerator"], row["denominator"]) != (
                    finding.value,
                    finding.target,
                    finding.numerator,
                    finding.denominator,
                ):
                    conn.execute(
                        "UPDATE alerts SET value=?, target=?, numerator=?, denominator=?, "
                        "updated_at=? WHERE id=?",
                        (
                            finding.value,
                            finding.target,
                            finding.numerator,
                            finding.denominator,
                            ts(now),
                            row["id"],
                        ),
                    )
            wanted_keys = {(m, k.value) for m, k in wanted}
            for key, row in firing.items():
                if key not in wanted_keys:
                    self._resolve(conn, unit, row, scores.get(code, Counts()), win, now, silences)
                    summary.resolved.append(row["id"])

    def _fire(
        self,
        conn: sqlite3.Connection,
        unit: Unit,
        f: Finding,
        win: EvalWindow,
        now: datetime,
        silences: list[SilenceRule],
    ) -> int:
        cur = conn.execute(
            "INSERT INTO alerts (unit_code, metric, kind, window_id, window_name, severity, state, "
            "value, target, numerator, denominator, started_at, updated_at) "
            "VALUES (?,?,?,?,?,?, 'firing', ?,?,?,?,?,?)",
            (
                unit.code,
                f.metric,
                f.kind.value,
                win.id,
                win.name,
                f.severity.value,
                f.value,
                f.target,
                f.numerator,
                f.denominator,
                ts(now),
                ts(now),
            ),
        )
        alert_id = int(cur.lastrowid or 0)
        self.metrics.transitions.labels(f.kind.value, "firing").inc()
        log.info(
            "alerts.firing",
            alert_id=alert_id,
            unit_code=unit.code,
            metric=f.metric,
            kind=f.kind.value,
            value=f.value,
            target=f.target,
        )
        row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        self._notify(conn, row, Event.firing, now, silences)
        return alert_id

    def _resolve(
        self,
        conn: sqlite3.Connection,
        unit: Unit,
        row: sqlite3.Row,
        counts: Counts,
        win: EvalWindow,
        now: datetime,
        silences: list[SilenceRule],
    ) -> None:
        value = row["value"]
        numerator, denominator = row["numerator"], row["denominator"]
        if row["metric"] in RATE_METRICS:
            # The numbers that resolved it, for the "đã khắc phục" line.
            numerator, denominator = {
                "online": (counts.online, counts.received),
                "digitization": (counts.digitized, counts.received),
                "online_payment": (counts.paid_online, counts.fee_required),
            }[row["metric"]]
            value = numerator * 100 / denominator if denominator else None
        conn.execute(
            "UPDATE alerts SET state='resolved', resolved_at=?, value=?, numerator=?, "
            "denominator=?, updated_at=? WHERE id=?",
            (ts(now), value, numerator, denominator, ts(now), row["id"]),
        )
        self.metrics.transitions.labels(row["kind"], "resolved").inc()
        log.info(
            "alerts.resolved",
            alert_id=row["id"],
            unit_code=unit.code,
            metric=row["metric"],
            kind=row["kind"],
            value=value,
        )
        # Only those who were told it fired are told it resolved.
        if row["last_notified_at"] is not None:
            fresh = conn.execute("SELECT * FROM alerts WHERE id = ?", (row["id"],)).fetchone()
            self._notify(conn, fresh, Event.resolved, now, silences)

    def _notify(
        self,
        conn: sqlite3.Connection,
        alert: sqlite3.Row,
        event: Event,
        now: datetime,
        silences: list[SilenceRule],
    ) -> int:
        """Queue one notification per routed recipient (grouped later); none while silenced."""
        if is_silenced(silences, alert["unit_code"], alert["metric"], alert["kind"], now):
            return 0
        unit = self.registry.units[alert["unit_code"]]
        targets = route(self.recipients, unit, Kind(alert["kind"]), alert["metric"])
        for r in targets:
            conn.execute(
                "INSERT INTO notifications (recipient_id, alert_id, event, value, target, "
                "numerator, denominator, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (
                    r.id,
                    alert["id"],
                    event.value,
                    alert["value"],
                    alert["target"],
                    alert["numerator"],
                    alert["denominator"],
                    ts(now),
                ),
            )
        if targets:
            conn.execute(
                "UPDATE alerts SET last_notified_at = ? WHERE id = ?", (ts(now), alert["id"])
            )
        return len(targets)

    # -- silences ------------------------------------------------------------------------------
    def silence_rules(self, conn: sqlite3.Connection) -> list[SilenceRule]:
        return [
            SilenceRule(
                id=r["id"],
                unit_code=r["unit_code"],
                metric=r["metric"],
                kind=r["kind"],
                starts_at=parse_ts(r["starts_at"]),  # type: ignore[arg-type]
                ends_at=parse_ts(r["ends_at"]),  # type: ignore[arg-type]
            )
            for r in self.store.silences(conn)
        ]

    # -- the scheduler tick --------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> list[int]:
        """Sweep, remind, flush due groups, send a due digest. Returns new message ids."""
        now = now or self.clock.now()
        win = self.window(now)
        with self.store.transaction() as conn:
            if (
                self._last_sweep is None
                or now - self._last_sweep >= SWEEP_EVERY
                or now < self._last_sweep
                or self._last_window != win.id
            ):
                self._sweep(conn, win, now)
                self._last_sweep, self._last_window = now, win.id
            self._remind(conn, now)
            messages = self._flush_groups(conn, now)
            if self.settings.digest_enabled:
                messages += self._digest(conn, win, now)
        return messages

    def _sweep(self, conn: sqlite3.Connection, win: EvalWindow, now: datetime) -> None:
        # Alerts of a window no longer evaluated (a campaign ended) end quietly.
        for row in conn.execute(
            "SELECT * FROM alerts WHERE state = 'firing' AND window_id != ?", (win.id,)
        ).fetchall():
            conn.execute(
                "UPDATE alerts SET state='resolved', resolved_at=?, updated_at=? WHERE id=?",
                (ts(now), ts(now), row["id"]),
            )
            log.info("alerts.window_closed", alert_id=row["id"], window=row["window_id"])
        codes = set(self.store.window_scores(conn, win.id)) | set(self.store.activity(conn))
        codes |= {r["unit_code"] for r in self.store.firing(conn)}
        codes &= set(self.registry.units)
        self._reconcile(conn, sorted(codes), win, now, ApplySummary())
        for kind in Kind:
            (n,) = conn.execute(
                "SELECT count(*) FROM alerts WHERE state='firing' AND kind=?", (kind.value,)
            ).fetchone()
            self.metrics.firing.labels(kind.value).set(n)

    def _remind(self, conn: sqlite3.Connection, now: datetime) -> None:
        silences = self.silence_rules(conn)
        due = ts(now - self.settings.repeat_interval)
        for row in self.store.firing(conn):
            if row["last_notified_at"] is None:
                # Never told (silenced until now, or fired while silenced): tell now.
                self._notify(conn, row, Event.firing, now, silences)
            elif row["last_notified_at"] <= due:
                self._notify(conn, row, Event.reminder, now, silences)

    def _flush_groups(self, conn: sqlite3.Connection, now: datetime) -> list[int]:
        due = ts(now - self.settings.group_wait)
        ready = conn.execute(
            "SELECT recipient_id FROM notifications WHERE message_id IS NULL "
            "GROUP BY recipient_id HAVING min(created_at) <= ?",
            (due,),
        ).fetchall()
        out = []
        for (recipient_id,) in ready:
            rows = conn.execute(
                "SELECT n.id AS nid, n.event, n.value, n.target, n.numerator, n.denominator, "
                "a.* FROM notifications n JOIN alerts a ON a.id = n.alert_id "
                "WHERE n.recipient_id = ? AND n.message_id IS NULL ORDER BY n.id",
                (recipient_id,),
            ).fetchall()
            recipient = self.by_id.get(recipient_id)
            notices = collapse([self._notice(r) for r in rows])
            message_id = None
            if recipient is not None and notices:
                msg = render_alerts(recipient, notices, now, self.tz)
                message_id = self._queue_message(conn, recipient, "alerts", msg, now)
                out.append(message_id)
            # Rows of a recipient removed from the file, or collapsed away, are closed with 0.
            conn.executemany(
                "UPDATE notifications SET message_id = ? WHERE id = ?",
                [(message_id or 0, r["nid"]) for r in rows],
            )
        return out

    def _notice(self, r: sqlite3.Row) -> Notice:
        unit = self.registry.units[r["unit_code"]]
        return Notice(
            alert_id=r["id"],
            event=Event(r["event"]),
            unit_code=unit.code,
            unit_name=unit.name,
            level=unit.level,
            metric=r["metric"],
            kind=Kind(r["kind"]),
            value=r["value"],
            target=r["target"],
            numerator=r["numerator"],
            denominator=r["denominator"],
            window_id=r["window_id"],
            window_name=r["window_name"],
            started_at=parse_ts(r["started_at"]),  # type: ignore[arg-type]
            resolved_at=parse_ts(r["resolved_at"]),
        )

    def _queue_message(
        self, conn: sqlite3.Connection, recipient: Recipient, type_: str, msg, now: datetime
    ) -> int:
        message_id = self.store.add_message(
            conn, recipient.id, type_, msg.subject, msg.text, msg.payload, now
        )
        for channel in recipient.channels:
            address, problem = self._address(recipient, channel)
            self.store.add_delivery(
                conn,
                message_id,
                recipient.id,
                channel,
                address,
                now,
                status="skipped" if problem else "pending",
                error=problem,
            )
            if problem:
                # Not sent, and said so: the delivery log shows the reason.
                log.warning(
                    "alerts.delivery_skipped", recipient=recipient.id, channel=channel, why=problem
                )
                self.metrics.deliveries.labels(channel, "skipped").inc()
        return message_id

    def _address(self, recipient: Recipient, channel: str) -> tuple[str | None, str | None]:
        s = self.settings
        if channel == "email":
            if not s.smtp_host:
                return recipient.email, "SMTP is not configured (DVCPULSE_SMTP_HOST)"
            return recipient.email, None
        if channel == "webhook":
            url = recipient.webhook_url or s.webhook_url
            if not url:
                return None, "no webhook URL (DVCPULSE_WEBHOOK_URL or the recipient's webhook_url)"
            if s.webhook_secret is None:
                return (
                    url,
                    "no webhook secret (DVCPULSE_WEBHOOK_SECRET): unsigned webhooks are not sent",
                )
            return url, None
        return "log", None

    # -- weekly digest -------------------------------------------------------------------------
    def _digest(self, conn: sqlite3.Connection, win: EvalWindow, now: datetime) -> list[int]:
        s = self.settings
        slot = digest_slot(now.astimezone(self.tz), s.digest_weekday, s.digest_time)
        if now - slot > s.digest_grace:
            return []
        slot_key = ts(slot)
        done = {
            r["recipient_id"]
            for r in conn.execute("SELECT recipient_id FROM digests WHERE slot = ?", (slot_key,))
        }
        wanted = [r for r in self.recipients if r.digest and r.id not in done]
        if not wanted:
            return []
        scores = self.store.window_scores(conn, win.id)
        activity = self.store.activity(conn)
        ref_day = silent_reference_day(now.astimezone(self.tz).date(), win)
        labels = {lv.code: lv.label for lv in self.registry.levels}
        out = []
        for recipient in wanted:
            units = [
                u
                for u in recipient.units(self.registry)
                if u.parent_code is not None or u.code in scores
            ]
            previous: dict[str, dict[str, float | None]] = {}
            for r in conn.execute(
                "SELECT * FROM digest_snapshots WHERE recipient_id = ?", (recipient.id,)
            ):
                previous.setdefault(r["unit_code"], {})[r["metric"]] = r["value"]
            rows, findings = [], {}
            for u in units:
                counts = scores.get(u.code, Counts())
                targets = targets_for(u, win)
                rows.append(DigestRow(u, counts, targets, previous.get(u.code, {})))
                findings[u.code] = evaluate_unit(
                    u,
                    counts,
                    targets,
                    activity.get(u.code),
                    ref_day,
                    min_dossiers=s.min_dossiers,
                    silent_days=s.silent_days,
                )
            msg = render_digest(recipient, win, rows, findings, slot, labels)
            message_id = self._queue_message(conn, recipient, "digest", msg, now)
            conn.execute(
                "INSERT INTO digests VALUES (?, ?, ?)", (slot_key, recipient.id, message_id)
            )
            for row in rows:
                for metric in RATE_METRICS:
                    conn.execute(
                        "INSERT INTO digest_snapshots VALUES (?,?,?,?,?) ON CONFLICT "
                        "(recipient_id, unit_code, metric) DO UPDATE SET value=excluded.value, "
                        "slot=excluded.slot",
                        (recipient.id, row.unit.code, metric, row.rate(metric), slot_key),
                    )
            out.append(message_id)
            log.info("alerts.digest", recipient=recipient.id, slot=slot_key, units=len(rows))
        return out


def severity_of(kind: str) -> str:
    return SEVERITY[Kind(kind)].value
