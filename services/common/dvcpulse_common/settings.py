"""Settings from the environment (prefix DVCPULSE_) or a .env file; read once at startup."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auth import ApiKey

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"

DEFAULT_LEVEL_LABELS = {
    "root": "UBND tỉnh",
    "province": "Cấp tỉnh",
    "district": "Cấp huyện",
    "commune": "Cấp xã",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DVCPULSE_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    data_dir: Path = Path("./data")
    stream_prefix: str = Field(default="dvcpulse", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    units_file: Path = CONFIG_DIR / "ca_mau" / "units.csv"
    targets_file: Path = CONFIG_DIR / "ca_mau" / "targets.yaml"
    level_labels: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_LEVEL_LABELS))
    timezone: str = "Asia/Ho_Chi_Minh"
    campaign: str | None = Field(
        default=None,
        description="Target-set id of the active campaign; default: the campaign in force today, "
        "else the one that started last.",
    )

    host: str = "127.0.0.1"
    ingest_port: int = 8001
    scoring_port: int = 8002
    alerts_port: int = 8003

    # Security: keys and tokens are stored as SHA-256 hex (`dvcpulse keys new` makes them).
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description="Ingest API keys per source system; empty = ingest is open (development)",
    )
    read_tokens: list[str] = Field(
        default_factory=list,
        description="SHA-256 of bearer tokens for the read APIs; empty = read APIs are open",
    )

    # Ingest limits.
    max_events_per_request: int = 10_000
    max_body_bytes: int = 10 * 1024 * 1024
    # National-portal sync (POST /api/v1/sync/dossiers): portal unit codes or names -> our
    # unit codes, a YAML or CSV file; without it DonViXuLy must be our code or a unique name.
    sync_unit_map_file: Path | None = None

    # Scoring consumer.
    # Larger batches amortise DuckDB's fixed cost per statement (2,000 -> 10,000: 1.7x faster);
    # at low rates a read returns whatever is there, so latency does not grow.
    batch_size: int = Field(default=10_000, ge=1, le=100_000)
    block_ms: int = Field(default=200, ge=1)
    write_max_events: int = Field(
        default=100_000,
        ge=1,
        description="Batches read while the writer is busy are applied together, up to this "
        "many events a DuckDB transaction (a commit, and the scan that finds a batch's dossiers, "
        "cost per transaction as well as per row)",
    )
    claim_idle_ms: int = Field(default=30_000, ge=100, description="Reclaim entries idle this long")
    consumer_name: str | None = None
    malloc_arena_max: int = Field(
        default=2,
        ge=0,
        description="glibc malloc arenas per service process (0: glibc's default of 8 per core). "
        "Threads that allocate (DuckDB, Arrow, executors) otherwise each hold freed memory in "
        "arenas of their own: 2 kept scoring's RSS ~130 MiB lower at 3 M dossiers",
    )
    gc_threshold: int = Field(
        default=20_000,
        ge=0,
        description="Python's young-generation GC threshold in service processes, after "
        "freezing what start-up allocated (0: Python's default of 700); see docs/performance.md",
    )
    # 256MB: at 10 M dossiers scoring then peaked at 932 MiB resident (512MB: 1,074 MiB, ~12%
    # faster); DuckDB evicts table blocks beyond it and reads them back (docs/performance.md).
    duckdb_memory_limit: str = "256MB"
    duckdb_threads: int = 2
    duckdb_checkpoint_threshold: str = "16MB"
    scores_maxlen: int = Field(
        default=100_000, description="Score updates kept while no consumer group reads them"
    )
    score_flush_ms: int = Field(
        default=250,
        ge=0,
        description="Publish score updates at most this often per (unit, window), coalescing "
        "batches; 0 = after every batch",
    )
    stream_retention: bool = Field(
        default=True, description="Trim stream entries every consumer group has acknowledged"
    )
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "scoring.duckdb"
