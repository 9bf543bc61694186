"""Fixtures over the real Redis (DVCPULSE_TEST_REDIS_URL, default 127.0.0.1:6379) and real
DuckDB files. Every test gets its own stream prefix; nothing is flushed globally."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis
from dvcpulse_common.registry import Registry, load_registry
from dvcpulse_common.settings import Settings
from dvcpulse_common.targets import load_targets
from dvcpulse_shared.targets import TargetSet

REDIS_URL = os.environ.get("DVCPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique stream prefix; its keys are deleted afterwards (only this test's keys)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def settings(tmp_path: Path, prefix: str, redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        stream_prefix=prefix,
        block_ms=50,
        claim_idle_ms=1000,
        log_json=True,
    )


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return load_registry(settings.units_file, settings.level_labels)


@pytest.fixture
def target_sets(settings: Settings) -> list[TargetSet]:
    return load_targets(settings.targets_file)


@pytest.fixture
def sync_redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
async def async_redis(redis_url: str) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def service_env(settings: Settings) -> dict[str, str]:
    """Environment for services started as processes in e2e tests."""
    return {
        "DVCPULSE_REDIS_URL": settings.redis_url.get_secret_value(),
        "DVCPULSE_DATA_DIR": str(settings.data_dir),
        "DVCPULSE_STREAM_PREFIX": settings.stream_prefix,
        "DVCPULSE_BLOCK_MS": "50",
        "DVCPULSE_CLAIM_IDLE_MS": "1000",
    }
