"""Prometheus metrics of the alerts service (own registry: several apps may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AlertsMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.score_updates = Counter(
            "dvcpulse_alerts_score_updates_total",
            "Score updates read from the scores stream, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "dvcpulse_alerts_transitions_total",
            "Alert state changes",
            ["kind", "state"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "dvcpulse_alerts_deliveries_total",
            "Deliveries finished, by channel and status",
            ["channel", "status"],
            registry=self.registry,
        )
        self.firing = Gauge(
            "dvcpulse_alerts_firing", "Alerts firing now", ["kind"], registry=self.registry
        )
