"""Prometheus metrics of scoring, on a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ScoringMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "dvcpulse_scoring_events",
            "Stream entries processed, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.decoded = Counter(
            "dvcpulse_scoring_decoded",
            "Stream entries decoded, by path: arrow (column-wise, proven valid) or reference "
            "(one by one with pydantic: anything unusual, and every invalid entry)",
            ["path"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "dvcpulse_scoring_batch_seconds",
            "Time to process one batch",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.pending = Gauge(
            "dvcpulse_scoring_pending",
            "Entries delivered to the group but not acknowledged",
            registry=self.registry,
        )
        self.lag = Gauge(
            "dvcpulse_scoring_lag",
            "Entries in the stream not yet delivered to the group",
            registry=self.registry,
        )
