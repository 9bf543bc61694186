"""Shared pieces of the benchmarks: raw Redis baselines, services as processes, RSS sampling,
count checks, the table and the JSON results.

Every benchmark works under its own random key prefix on the shared Redis and deletes only its
own keys afterwards (never FLUSHALL).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from redis.utils import HIREDIS_AVAILABLE
from rich.console import Console
from rich.table import Table

from bench.gen_national import COUNT_FIELDS, Expected

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
REDIS_URL = os.environ.get(
    "DVCPULSE_BENCH_REDIS_URL",
    os.environ.get("DVCPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
)
DATA_FIELD = b"__data__"
console = Console()


# -- keys --------------------------------------------------------------------------------------
def new_prefix(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:10]}"


def cleanup(prefix: str, url: str = REDIS_URL) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()


@contextmanager
def own_prefix(name: str):  # type: ignore[no-untyped-def]
    prefix = new_prefix(name)
    try:
        yield prefix
    finally:
        cleanup(prefix)


# -- raw Redis baselines -------------------------------------------------------------------------
def load_stream(
    client: redis.Redis, stream: str, payloads: Sequence[bytes], chunk: int = 10_000
) -> float:
    """Pipelined XADD of every payload (no MULTI); returns entries per second."""
    started = time.perf_counter()
    for i in range(0, len(payloads), chunk):
        pipe = client.pipeline(transaction=False)
        for p in payloads[i : i + chunk]:
            pipe.xadd(stream, {DATA_FIELD: p})
        pipe.execute()
    return len(payloads) / (time.perf_counter() - started)


def raw_read_ack(
    client: redis.Redis, stream: str, group: str = "raw", count: int = 1000
) -> tuple[int, float]:
    """XREADGROUP COUNT `count` + XACK until the stream is drained; (entries, entries/s)."""
    client.xgroup_create(stream, group, id="0", mkstream=True)
    done = 0
    started = time.perf_counter()
    while True:
        reply = client.xreadgroup(group, "raw-1", {stream: ">"}, count=count)
        if not reply or not reply[0][1]:
            break
        ids = [entry_id for entry_id, _ in reply[0][1]]
        client.xack(stream, group, *ids)
        done += len(ids)
    return done, done / (time.perf_counter() - started)


def redis_baselines(payloads: Sequence[bytes], prefix: str) -> dict[str, float]:
    """The same run's raw Redis figures over the same payloads (on a stream of their own)."""
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"{prefix}:raw"
    xadd = load_stream(client, stream, payloads)
    n, read_ack = raw_read_ack(client, stream)
    assert n == len(payloads), (n, len(payloads))
    client.delete(stream)
    client.close()
    return {"raw_xadd_per_s": xadd, "raw_xreadgroup_xack_per_s": read_ack}


def best_baselines(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Raw figures measured before and after the pipeline's run, the better of each: one pass
    of ~1 s on a shared VM varies by ±20%, and the better one makes the ratio the harder."""
    out = {k: max(before[k], after[k]) for k in before}
    out.update({f"{k}_before": v for k, v in before.items()})
    out.update({f"{k}_after": v for k, v in after.items()})
    return out


# -- services as processes -----------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`python -m dvcpulse_cli serve NAME` with its own env; RSS sampled until stopped."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **env,
            f"DVCPULSE_{name.upper()}_PORT": str(self.port),
            "DVCPULSE_LOG_LEVEL": "WARNING",
        }
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self, timeout: float = 120, wait: bool = True) -> Service:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dvcpulse_cli", "serve", self.name],
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=REPO,
        )
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 120) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not healthy after {timeout}s")

    def _sample(self) -> None:
        assert self.proc is not None
        try:
            proc = psutil.Process(self.proc.pid)
            while not self._stop.is_set():
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
                time.sleep(0.05)
        except psutil.Error:
            pass

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def service_env(
    prefix: str, data_dir: Path, units_file: Path | None = None, **extra: str
) -> dict[str, str]:
    env = {
        "DVCPULSE_REDIS_URL": REDIS_URL,
        "DVCPULSE_STREAM_PREFIX": prefix,
        "DVCPULSE_DATA_DIR": str(data_dir),
        "DVCPULSE_LOG_JSON": "true",
    }
    if units_file is not None:
        env["DVCPULSE_UNITS_FILE"] = str(units_file)
    env.update(extra)
    return env


# -- progress of the scoring group -----------------------------------------------------------------
def group_progress(client: redis.Redis, stream: str, group: str = "scoring") -> tuple[int, int]:
    """(entries read by the group, entries pending) — acked = read - pending."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return 0, 0
    for g in groups:
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group:
            return int(g.get("entries-read") or 0), int(g.get("pending") or 0)
    return 0, 0


@dataclass
class DrainTiming:
    events: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def time_drain(client: redis.Redis, stream: str, total: int, timeout: float = 3600) -> DrainTiming:
    """Watch the scoring group acknowledge `total` entries; the clock starts at the first
    acknowledged batch and counts only entries acknowledged after it (start-up excluded)."""
    deadline = time.monotonic() + timeout
    t0 = acked0 = None
    while time.monotonic() < deadline:
        read, pending = group_progress(client, stream)
        acked = read - pending
        now = time.perf_counter()
        if t0 is None and acked > 0:
            t0, acked0 = now, acked
        if acked >= total:
            assert t0 is not None and acked0 is not None
            if acked0 >= total:  # everything in one observation: cannot time it
                return DrainTiming(0, 0.0)
            return DrainTiming(total - acked0, now - t0)
        time.sleep(0.005)
    raise TimeoutError(f"scoring acknowledged {acked}/{total} in {timeout}s")


# -- correctness ---------------------------------------------------------------------------------
def fetch_scores(
    url: str, params: dict[str, str] | None = None, timeout: float = 120
) -> tuple[list[dict], float]:
    started = time.perf_counter()
    resp = httpx.get(f"{url}/api/v1/scores", params=params or {}, timeout=timeout)
    elapsed = time.perf_counter() - started
    resp.raise_for_status()
    return resp.json()["rows"], elapsed


def check_counts(rows: Iterable[dict], expected: dict[str, list[int]]) -> list[str]:
    """Every unit's five counts against the generator's; the mismatches (empty when right)."""
    problems = []
    seen = set()
    for row in rows:
        code = row["unit_code"]
        seen.add(code)
        want = expected.get(code, [0, 0, 0, 0, 0])
        got = [row[k] for k in COUNT_FIELDS]
        if got != want:
            problems.append(f"{code}: got {got}, expected {want}")
    missing = set(expected) - seen
    problems.extend(f"{code}: no row" for code in sorted(missing))
    return problems


def verify(url: str, expected: Expected, campaign: bool = True) -> dict[str, Any]:
    rows, _ = fetch_scores(url)
    problems = check_counts(rows, expected.all_time)
    if campaign:
        rows, _ = fetch_scores(url, {"window": "campaign-2023"})
        problems += [f"campaign {p}" for p in check_counts(rows, expected.campaign)]
    return {"counts_ok": not problems, "mismatches": problems[:20], "mismatch_count": len(problems)}


# -- output --------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    client = redis.Redis.from_url(REDIS_URL)
    info = client.info("server")
    client.close()
    import duckdb

    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "redis": info.get("redis_version"),
        "duckdb": duckdb.__version__,
        "hiredis": HIREDIS_AVAILABLE,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mib(n: float) -> float:
    return round(n / 2**20, 1)


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        if isinstance(value, float):
            value = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(name, str(value))
    console.print(table)


def write_results(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"benchmark": name, "finished_at": datetime.now(UTC).isoformat(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"results: {path}")
    return path


def repeat(runs: int, fn: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i in range(runs):
        console.print(f"[bold]run {i + 1}/{runs}[/bold]")
        out.append(fn(i))
    return out


def medians(runs: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    return {k: median([r[k] for r in runs if r.get(k) is not None]) for k in keys}


@dataclass
class Timer:
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
