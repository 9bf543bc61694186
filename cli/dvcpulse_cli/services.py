"""Run one service in this process (uvicorn handles SIGTERM: finish, commit, ack, exit)."""

from __future__ import annotations

import uvicorn
from dvcpulse_common.process import tune_gc

from .bootstrap import Config


def serve_ingest(cfg: Config) -> None:
    from dvcpulse_ingest.app import create_app

    app = create_app(cfg.settings, cfg.registry)
    tune_gc(cfg.settings.gc_threshold)  # what start-up built is kept: freeze it
    uvicorn.run(app, host=cfg.settings.host, port=cfg.settings.ingest_port, log_level="warning")


def serve_scoring(cfg: Config) -> None:
    from dvcpulse_scoring.app import create_app

    app = create_app(cfg.settings, cfg.registry, cfg.target_sets, baselines=cfg.baselines)
    tune_gc(cfg.settings.gc_threshold)  # what start-up built is kept: freeze it
    uvicorn.run(app, host=cfg.settings.host, port=cfg.settings.scoring_port, log_level="warning")


def serve_alerts(cfg: Config) -> None:
    from dvcpulse_alerts.app import create_app  # type: ignore[import-not-found]

    app = create_app(cfg.settings, cfg.registry, cfg.target_sets)
    tune_gc(cfg.settings.gc_threshold)  # what start-up built is kept: freeze it
    uvicorn.run(app, host=cfg.settings.host, port=cfg.settings.alerts_port, log_level="warning")
